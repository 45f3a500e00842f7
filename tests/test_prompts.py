"""Prompt loading: the official T2I-CompBench++ files, the download cache, the built-in list and custom files."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
import textwrap
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import huggingface_hub.constants
import pytest

from ovi_bench.errors import DataError, OviBenchError, SpecError
from ovi_bench.plan import load_run_prompts
from ovi_bench.prompts import (
    BUILTIN_PROMPTS,
    CATEGORIES,
    COMPBENCH_COMMIT,
    COMPBENCH_DIR_ENV,
    COMPLEX_SUBSETS,
    FILE_SHA256,
    PromptSet,
    PromptSource,
    compbench_file,
    complex_subsets,
    load_prompt_file,
    load_prompts,
    normalise_complex_prompt,
    read_prompt_lines,
)
from ovi_bench.prompts.base import select_prompts
from ovi_bench.prompts.compbench import offline_setting
from ovi_bench.registry import PROMPTS
from ovi_bench.spec import parse_spec

OFFICIAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "t2i-compbench"


@pytest.fixture(autouse=True)
def hermetic_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may read the user's cache, follow their data folder or touch the network unless it asks to."""
    monkeypatch.setenv("OVI_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OVI_BENCH_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # huggingface_hub read HF_HUB_OFFLINE when first imported (the session sets it): as if it had not been set.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv(COMPBENCH_DIR_ENV, raising=False)


@pytest.fixture
def official_dir() -> Path:
    if not (OFFICIAL_DIR / "color_val.txt").is_file():
        pytest.skip(
            f"the official T2I-CompBench files are not at {OFFICIAL_DIR} (a checkout without ../shared)"
        )
    return OFFICIAL_DIR


@pytest.fixture
def cached_path() -> Path:
    """Where the download cache keeps color_val.txt (under the hermetic OVI_BENCH_CACHE)."""
    from ovi_bench.paths import cache_dir

    return cache_dir() / "t2i-compbench" / COMPBENCH_COMMIT / "color_val.txt"


class FakeGitHub:
    """Stands in for urllib.request.urlopen: serves `files` by name and records every URL asked for."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requested: list[str] = []

    def __call__(self, url: str, timeout: float) -> io.BytesIO:
        self.requested.append(url)
        return io.BytesIO(self.files[url.rsplit("/", 1)[1]])


def go_online(monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]) -> FakeGitHub:
    monkeypatch.delenv("OVI_BENCH_OFFLINE")
    fake = FakeGitHub(files)
    monkeypatch.setattr(urllib.request, "urlopen", fake)
    return fake


def non_empty_stripped_lines(path: Path) -> list[str]:
    """An independent reading of a prompt file, on bytes, to check read_prompt_lines against."""
    return [line.strip().decode("utf-8") for line in path.read_bytes().split(b"\n") if line.strip()]


# --- the official files -------------------------------------------------------------------------------------


def test_hash_table_matches_the_official_files(official_dir: Path) -> None:
    expected_names = (
        {f"{category}_{split}.txt" for category in CATEGORIES for split in ("val", "train")}
        | {f"complex_{split}_{subset}.txt" for split in ("val", "train") for subset in COMPLEX_SUBSETS}
        | {"new_objects.txt"}
    )
    assert set(FILE_SHA256) == expected_names
    for name, expected in FILE_SHA256.items():
        assert hashlib.sha256((official_dir / name).read_bytes()).hexdigest() == expected, name


def test_every_category_has_300_val_prompts(official_dir: Path) -> None:
    prompt_set = load_prompts("t2i-compbench", data_dir=official_dir)
    assert Counter(prompt.category for prompt in prompt_set.prompts) == dict.fromkeys(CATEGORIES, 300)
    assert list(prompt_set.by_category()) == list(CATEGORIES)
    assert prompt_set.source == "t2i-compbench"
    assert prompt_set.files == {
        f"{category}_val.txt": FILE_SHA256[f"{category}_val.txt"] for category in CATEGORIES
    }


def test_train_split_has_700_prompts_and_keeps_duplicates(official_dir: Path) -> None:
    spatial = load_prompts("t2i-compbench", ["spatial"], split="train", data_dir=official_dir)
    assert len(spatial.prompts) == 700
    assert spatial.prompts[0].id == "spatial-train-0000"
    color = load_prompts("t2i-compbench", ["color"], split="train", data_dir=official_dir)
    texts = [prompt.text for prompt in color.prompts]
    assert len(texts) == 700
    assert (
        len(set(texts)) == 679
    )  # SOURCE.md: 21 duplicate lines, kept because images are indexed by position


@pytest.mark.parametrize("category", CATEGORIES)
def test_texts_are_the_stripped_lines_in_file_order(official_dir: Path, category: str) -> None:
    expected = non_empty_stripped_lines(official_dir / f"{category}_val.txt")
    prompts = load_prompts("t2i-compbench", [category], data_dir=official_dir).prompts
    assert [prompt.text for prompt in prompts] == expected
    assert prompts[0].text == expected[0]
    assert prompts[-1].text == expected[-1]


def test_crlf_files_leave_no_carriage_returns(official_dir: Path) -> None:
    assert b"\r\n" in (official_dir / "color_val.txt").read_bytes()  # the case this test is about
    prompt_set = load_prompts("t2i-compbench", data_dir=official_dir)
    assert not [prompt.id for prompt in prompt_set.prompts if "\r" in prompt.text or "\n" in prompt.text]
    assert all(prompt.text == prompt.text.strip() and prompt.text for prompt in prompt_set.prompts)


def test_ids_are_positional_unique_and_stable(official_dir: Path) -> None:
    first = load_prompts("t2i-compbench", data_dir=official_dir)
    second = load_prompts("t2i-compbench", data_dir=official_dir)
    assert first == second
    ids = [prompt.id for prompt in first.prompts]
    assert len(set(ids)) == len(ids) == 2400
    for category, prompts in first.by_category().items():
        assert [prompt.index for prompt in prompts] == list(range(300))
        assert all(prompt.id == f"{category}-val-{prompt.index:04d}" for prompt in prompts)
        assert {prompt.split for prompt in prompts} == {"val"}


def test_digest_is_sha256_of_canonical_id_category_text_triples(official_dir: Path) -> None:
    prompt_set = load_prompts("t2i-compbench", ["numeracy"], data_dir=official_dir)
    triples = [[prompt.id, prompt.category, prompt.text] for prompt in prompt_set.prompts]
    canonical = json.dumps(triples, separators=(",", ":"), ensure_ascii=False)
    assert prompt_set.digest == hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def test_limit_keeps_the_first_prompts_of_each_category(official_dir: Path) -> None:
    full = load_prompts("t2i-compbench", ["spatial", "color"], data_dir=official_dir)
    limited = load_prompts("t2i-compbench", ["spatial", "color"], limit=5, data_dir=official_dir)
    assert [prompt.category for prompt in limited.prompts] == ["spatial"] * 5 + ["color"] * 5
    grouped = full.by_category()
    assert list(limited.prompts) == grouped["spatial"][:5] + grouped["color"][:5]
    assert limited.digest != full.digest


def test_non_ascii_prompts_survive(official_dir: Path) -> None:
    # SOURCE.md: the only non-ASCII prompts are in the train splits, not in val.
    non_spatial = load_prompts("t2i-compbench", ["non_spatial"], split="train", data_dir=official_dir)
    assert any("café" in prompt.text for prompt in non_spatial.prompts)
    shape = load_prompts("t2i-compbench", ["shape"], split="train", data_dir=official_dir)
    assert any("piñata" in prompt.text for prompt in shape.prompts)


def test_complex_routing_matches_the_official_counts(official_dir: Path) -> None:
    routing = complex_subsets("val", data_dir=official_dir)
    assert len(routing) == 300
    assert Counter(routing.values()) == {"spatial": 58, "action": 212, "spatialaction": 30}
    spatialaction_file = read_prompt_lines(official_dir / "complex_val_spatialaction.txt")
    assert {key for key, subset in routing.items() if subset == "spatialaction"} == {
        normalise_complex_prompt(text) for text in spatialaction_file
    }
    complex_prompts = load_prompts("t2i-compbench", ["complex"], data_dir=official_dir).prompts
    assert all(normalise_complex_prompt(prompt.text) in routing for prompt in complex_prompts)


def test_complex_routing_of_the_train_split(official_dir: Path) -> None:
    routing = complex_subsets("train", data_dir=official_dir)
    assert Counter(routing.values()) == {"spatial": 130, "action": 504, "spatialaction": 66}


def test_normalise_complex_prompt_keeps_the_first_sentence_lowercased() -> None:
    assert normalise_complex_prompt("The Red hat was on top. Then more.\r\n") == "the red hat was on top"


# --- where the official files come from ---------------------------------------------------------------------


def test_modified_file_is_refused(official_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    data = bytearray((official_dir / "color_val.txt").read_bytes())
    data[0] ^= 0x20
    (folder / "color_val.txt").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"color_val\.txt") as raised:
        load_prompts("t2i-compbench", ["color"], data_dir=folder)
    message = str(raised.value)
    assert FILE_SHA256["color_val.txt"] in message
    assert hashlib.sha256(bytes(data)).hexdigest() in message
    assert COMPBENCH_COMMIT in message


def test_missing_file_in_data_dir_names_folder_and_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as raised:
        compbench_file("shape_val.txt", data_dir=tmp_path)
    assert "shape_val.txt" in str(raised.value)
    assert str(tmp_path) in str(raised.value)


def test_unknown_official_file_name_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match=r"color_val\.txt"):
        compbench_file("colour_val.txt")


def test_environment_variable_points_at_the_files(
    official_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(COMPBENCH_DIR_ENV, str(official_dir))
    assert compbench_file("texture_val.txt") == official_dir / "texture_val.txt"
    assert len(load_prompts("t2i-compbench", ["texture"]).prompts) == 300


def test_explicit_data_dir_wins_over_environment_variable(
    official_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(COMPBENCH_DIR_ENV, str(tmp_path))
    assert compbench_file("texture_val.txt", data_dir=official_dir) == official_dir / "texture_val.txt"
    with pytest.raises(DataError, match=COMPBENCH_DIR_ENV):
        compbench_file("texture_val.txt")


def test_offline_with_empty_cache_explains_how_to_provide_the_files() -> None:
    with pytest.raises(DataError) as raised:
        load_prompts("t2i-compbench", ["color"])
    message = str(raised.value)
    assert COMPBENCH_DIR_ENV in message
    assert "builtin" in message
    assert "OVI_BENCH_OFFLINE=1" in message


def test_hf_hub_offline_also_blocks_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = go_online(monkeypatch, {})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="HF_HUB_OFFLINE"):
        compbench_file("color_val.txt")
    assert fake.requested == []


def test_a_run_taken_offline_by_the_preflight_downloads_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    # The preflight's offline mode leaves the environment alone: the prompt loader must still see it.
    from ovi_bench.availability import hub_offline_mode

    fake = go_online(monkeypatch, {})
    assert offline_setting() == ""
    with hub_offline_mode(), pytest.raises(DataError, match="offline mode"):
        compbench_file("color_val.txt")
    assert fake.requested == []
    assert offline_setting() == ""


def test_valid_cached_copy_is_used_offline(official_dir: Path, cached_path: Path) -> None:
    cached_path.parent.mkdir(parents=True)
    shutil.copyfile(official_dir / "color_val.txt", cached_path)
    assert compbench_file("color_val.txt") == cached_path


def test_corrupt_cached_copy_is_deleted_when_offline(cached_path: Path) -> None:
    cached_path.parent.mkdir(parents=True)
    cached_path.write_bytes(b"a truncated download")
    with pytest.raises(DataError, match="corrupt") as raised:
        compbench_file("color_val.txt")
    assert COMPBENCH_DIR_ENV in str(raised.value)
    assert not cached_path.exists()


def test_corrupt_cached_copy_is_downloaded_again_once(
    official_dir: Path, cached_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached_path.parent.mkdir(parents=True)
    cached_path.write_bytes(b"a truncated download")
    fake = go_online(monkeypatch, {"color_val.txt": (official_dir / "color_val.txt").read_bytes()})
    assert compbench_file("color_val.txt") == cached_path
    assert cached_path.read_bytes() == (official_dir / "color_val.txt").read_bytes()
    upstream = f"https://raw.githubusercontent.com/Karine-Huang/T2I-CompBench/{COMPBENCH_COMMIT}"
    assert fake.requested == [f"{upstream}/examples/dataset/color_val.txt"]
    compbench_file("color_val.txt")
    assert len(fake.requested) == 1  # the second call is served from the cache


def test_download_with_wrong_content_is_not_cached(
    cached_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    go_online(monkeypatch, {"color_val.txt": b"<html>captive portal</html>"})
    with pytest.raises(DataError, match="sha256"):
        compbench_file("color_val.txt")
    assert not cached_path.exists()


def test_download_failure_explains_the_alternatives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OVI_BENCH_OFFLINE")

    def unreachable(url: str, timeout: float) -> io.BytesIO:
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    with pytest.raises(DataError, match="no route to host") as raised:
        compbench_file("color_val.txt")
    assert COMPBENCH_DIR_ENV in str(raised.value)
    assert "builtin" in str(raised.value)


# --- reading prompt text ------------------------------------------------------------------------------------


def test_read_prompt_lines_handles_endings_bom_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "odd.txt"
    path.write_bytes("\ufeff a café \r\n\r\nsecond\rthird\n  \nsecond\nlast without newline  ".encode())
    assert read_prompt_lines(path) == ["a café", "second", "third", "second", "last without newline"]


def test_read_prompt_lines_refuses_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("a café".encode("latin-1"))
    with pytest.raises(DataError, match="UTF-8"):
        read_prompt_lines(path)


# --- validation of the request ------------------------------------------------------------------------------


def test_unknown_category_suggests_the_nearest() -> None:
    with pytest.raises(SpecError) as raised:
        load_prompts("builtin", ["colour"])
    message = str(raised.value)
    assert "did you mean 'color'" in message.lower()
    assert all(category in message for category in CATEGORIES)


@pytest.mark.parametrize("categories", [[], "color"])
def test_categories_must_be_a_non_empty_list(categories: list[str] | str) -> None:
    with pytest.raises(SpecError, match=r"prompts\.categories"):
        load_prompts("builtin", categories)


def test_repeated_category_is_loaded_once() -> None:
    prompt_set = load_prompts("builtin", ["shape", "color", "shape"])
    assert list(prompt_set.by_category()) == ["shape", "color"]


def test_unknown_split_is_refused() -> None:
    with pytest.raises(SpecError, match="Did you mean 'val'"):
        load_prompts("t2i-compbench", split="vall")


@pytest.mark.parametrize("limit", [0, -1, True, 2.5, "3"])
def test_limit_must_be_a_positive_whole_number(limit: object) -> None:
    with pytest.raises(SpecError, match=r"prompts\.limit"):
        load_prompts("builtin", limit=limit)  # type: ignore[arg-type]


def test_unknown_source_lists_the_valid_ones() -> None:
    with pytest.raises(SpecError) as raised:
        load_prompts("t2i-compbench++")
    message = str(raised.value)
    assert "Did you mean 't2i-compbench'" in message
    assert "builtin" in message
    assert ".csv" in message


# --- the built-in list --------------------------------------------------------------------------------------


def test_builtin_covers_every_category_with_unique_ids() -> None:
    assert tuple(BUILTIN_PROMPTS) == CATEGORIES
    prompt_set = load_prompts("builtin")
    grouped = prompt_set.by_category()
    assert list(grouped) == list(CATEGORIES)
    assert all(len(prompts) >= 3 for prompts in grouped.values())
    ids = [prompt.id for prompt in prompt_set.prompts]
    assert len(set(ids)) == len(ids)
    assert ids[0] == "color-builtin-0000"
    assert prompt_set.source == "builtin"
    assert prompt_set.files == {}
    assert {prompt.split for prompt in prompt_set.prompts} == {"val"}


def test_builtin_exercises_odd_text_but_keeps_official_naming_safe() -> None:
    texts = [prompt.text for prompt in load_prompts("builtin").prompts]
    assert any(not text.isascii() for text in texts)
    assert any("'" in text or '"' in text for text in texts)
    assert not [text for text in texts if "_" in text or "/" in text or text != text.strip()]


def test_builtin_prompts_are_not_copied_from_the_official_files(official_dir: Path) -> None:
    official = {line.lower() for path in official_dir.glob("*.txt") for line in read_prompt_lines(path)}
    assert not [text for texts in BUILTIN_PROMPTS.values() for text in texts if text.lower() in official]


def test_builtin_limit_and_train_split() -> None:
    assert [prompt.id for prompt in load_prompts("builtin", ["numeracy"], limit=2).prompts] == [
        "numeracy-builtin-0000",
        "numeracy-builtin-0001",
    ]
    with pytest.raises(SpecError, match="only a 'val' split"):
        load_prompts("builtin", split="train")


# --- custom prompt files ------------------------------------------------------------------------------------


def test_txt_prompt_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.txt"
    path.write_bytes(b"\xef\xbb\xbfa red fox\r\n\r\n  a blue whale  \nan owl")
    prompt_set = load_prompts(str(path))
    assert [(prompt.id, prompt.category, prompt.text) for prompt in prompt_set.prompts] == [
        ("custom-file-0000", "custom", "a red fox"),
        ("custom-file-0001", "custom", "a blue whale"),
        ("custom-file-0002", "custom", "an owl"),
    ]
    assert prompt_set.source == "file:mine.txt"
    assert prompt_set.files == {"mine.txt": hashlib.sha256(path.read_bytes()).hexdigest()}


def test_txt_prompt_file_takes_its_category_from_the_request(tmp_path: Path) -> None:
    path = tmp_path / "colors.txt"
    path.write_text("a red fox\na blue whale\n", encoding="utf-8")
    prompt_set = load_prompts(str(path), ["color"], limit=1)
    assert [prompt.id for prompt in prompt_set.prompts] == ["color-file-0000"]
    with pytest.raises(SpecError, match="single category"):
        load_prompts(str(path), ["color", "shape"])


def test_csv_prompt_file_groups_by_category(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text(
        'prompt,category\n"a red fox, running",color\ntwo owls,numeracy\n,color\na blue whale,color\nan oak,\n',
        encoding="utf-8",
    )
    prompt_set = load_prompt_file(path)
    assert [(prompt.id, prompt.text) for prompt in prompt_set.prompts] == [
        ("color-file-0000", "a red fox, running"),
        ("color-file-0001", "a blue whale"),
        ("numeracy-file-0000", "two owls"),
        ("custom-file-0000", "an oak"),
    ]
    selected = load_prompts(str(path), ["numeracy", "color"], limit=1)
    assert [prompt.id for prompt in selected.prompts] == ["numeracy-file-0000", "color-file-0000"]
    assert selected.files == prompt_set.files
    with pytest.raises(SpecError, match="Did you mean 'color'"):
        load_prompts(str(path), ["colour"])


def test_csv_without_category_column_uses_the_default(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("prompt\na café terrace\n", encoding="utf-8")
    assert [prompt.id for prompt in load_prompt_file(path, "scenes").prompts] == ["scenes-file-0000"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("text\na fox\n", "no 'prompt' column"),
        ("prompt,categroy\na fox,color\n", "Did you mean 'category'"),
        ("prompt,category\na fox,my-color\n", "line 2"),
        ("prompt,category\n", "no prompts"),
    ],
)
def test_malformed_csv_is_refused(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=expected):
        load_prompt_file(path)


def test_missing_prompt_file_and_bad_custom_category(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_prompts(str(tmp_path / "absent.txt"))
    path = tmp_path / "ok.txt"
    path.write_text("a fox\n", encoding="utf-8")
    with pytest.raises(SpecError, match="letters, digits"):
        load_prompt_file(path, "my category")
    with pytest.raises(SpecError, match="only a 'val' split"):
        load_prompts(str(path), split="train")


def test_prompt_set_is_frozen() -> None:
    prompt_set = load_prompts("builtin", limit=1)
    assert isinstance(prompt_set, PromptSet)
    with pytest.raises(AttributeError):
        prompt_set.digest = "x"  # type: ignore[misc]


@pytest.mark.skipif(not OFFICIAL_DIR.is_dir(), reason=f"official prompt files not found at {OFFICIAL_DIR}")
def test_complex_prompts_carry_their_official_3_in_1_routing() -> None:
    prompts = load_prompts("t2i-compbench", ["complex"], data_dir=OFFICIAL_DIR).prompts
    assert Counter(prompt.subset for prompt in prompts) == {"action": 212, "spatial": 58, "spatialaction": 30}
    assert all(
        prompt.subset is None
        for prompt in load_prompts("t2i-compbench", ["color"], data_dir=OFFICIAL_DIR).prompts
    )
    assert {prompt.subset for prompt in load_prompts("builtin", ["complex"]).prompts} <= {
        "spatial",
        "action",
        "spatialaction",
    }


# --- prompt sources as plugins ------------------------------------------------------------------------------

ACME_PROMPTS = """
from ovi_bench.prompts.base import PromptSource, make_prompt_set, number_prompts, select_prompts


class FoxPrompts(PromptSource):
    \"\"\"Three prompts about foxes, in one category of their own.\"\"\"

    def load(self, categories, split, limit, data_dir):
        texts = ["a red fox", "two foxes and a hen", "a fox on the left of a tree"]
        prompts = number_prompts(texts, category="foxes", split=split, id_tag="acme", limit=limit)
        return select_prompts(make_prompt_set("acme-foxes", prompts, files={}), categories, None)
"""


@pytest.fixture
def installed_prompt_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `pip install` of a package declaring `[project.entry-points."ovi_bench.prompts"] acme-foxes = ...` leaves
    in site-packages; the registry forgets it (and its entries) afterwards."""
    site = tmp_path / "site"
    dist_info = site / "acme_prompts-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (site / "acme_prompts.py").write_text(textwrap.dedent(ACME_PROMPTS))
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-prompts\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[ovi_bench.prompts]\nacme-foxes = acme_prompts:FoxPrompts\n")
    (dist_info / "RECORD").write_text("")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(PROMPTS, "_entry_points", None)
    monkeypatch.setattr(PROMPTS, "_entries", dict(PROMPTS._entries))
    monkeypatch.delitem(sys.modules, "acme_prompts", raising=False)


@pytest.mark.usefixtures("installed_prompt_plugin")
def test_an_installed_prompt_source_loads_through_load_prompts_and_the_spec() -> None:
    assert "acme-foxes" in PROMPTS.names()
    prompt_set = load_prompts("acme-foxes", limit=2)
    assert prompt_set.source == "acme-foxes"
    assert [prompt.id for prompt in prompt_set.prompts] == ["foxes-acme-0000", "foxes-acme-0001"]
    spec = parse_spec(
        {
            "priors": [{"name": "text-embedding", "params": {"model": "tiny"}}],
            "prompts": {"source": "acme-foxes", "categories": ["foxes"], "limit": 2},
        }
    )
    assert load_run_prompts(spec).digest == prompt_set.digest
    with pytest.raises(SpecError, match=r"Did you mean 'acme-foxes'\?.*a plugin's \(acme-foxes\)"):
        load_prompts("acme-foxe")


def test_a_prompt_source_registered_with_the_decorator_is_loadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(PROMPTS, "_entries", dict(PROMPTS._entries))

    @PROMPTS.register("owls")
    class OwlPrompts(PromptSource):
        """Owls, from a file in the folder given as data_dir."""

        def load(self, categories, split, limit, data_dir):  # type: ignore[no-untyped-def]
            return select_prompts(load_prompt_file(Path(data_dir) / "owls.txt", "owls"), categories, limit)

    (tmp_path / "owls.txt").write_text("a barn owl\na snowy owl\n")
    assert [prompt.text for prompt in load_prompts("owls", limit=1, data_dir=tmp_path).prompts] == [
        "a barn owl"
    ]
    with pytest.raises(
        OviBenchError, match=r"ovi_bench.prompts.base.PromptSet cannot .* ovi_bench.prompts.base.PromptSource"
    ):
        PROMPTS.register("not-a-source")(PromptSet)


def test_the_builtin_sources_are_registered_prompt_sources() -> None:
    assert {"t2i-compbench", "builtin"} <= set(PROMPTS.names())
    assert all(issubclass(PROMPTS.get(name), PromptSource) for name in ("t2i-compbench", "builtin"))
