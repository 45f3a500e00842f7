"""PartiPrompts and DrawBench as prompt sources (pins, digests, categories, challenge labels, offline behaviour) and
the prompt-length view (buckets by CLIP token count, truncated share).

The sample files below are written for these tests in each source's real file format (they are not upstream rows);
they are loaded through the same pinned, sha256-checked path as the real files by pinning their own digest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import urllib.request
from pathlib import Path

import huggingface_hub.constants
import pandas as pd
import pytest

from ovi_bench.errors import DataError, SpecError
from ovi_bench.models.clip import clip_token_counts, tiny_tokenizer
from ovi_bench.plan import metric_applies, plan
from ovi_bench.prompts import (
    DRAWBENCH_FILES,
    PARTI_FILES,
    PinnedFiles,
    Prompt,
    load_builtin,
    load_drawbench,
    load_partiprompts,
    load_prompts,
)
from ovi_bench.prompts.base import prompt_set_digest
from ovi_bench.prompts.drawbench import DRAWBENCH_DIR_ENV, DRAWBENCH_FILE, DRAWBENCH_LICENCE
from ovi_bench.prompts.labelled import category_name
from ovi_bench.prompts.parti import PARTI_DIR_ENV, PARTI_FILE, PARTI_LICENCE
from ovi_bench.registry import PROMPTS
from ovi_bench.results.prompt_length import (
    LENGTH_BUCKETS,
    count_prompt_tokens,
    length_bucket,
    prompt_length_markdown,
    prompt_length_summary,
    prompt_length_view,
    run_prompt_length,
    truncated_share,
)
from ovi_bench.results.records import RunRecord
from ovi_bench.spec import parse_spec

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
"""Where real copies of the files are looked for (<source>/<file name>), as for the official T2I-CompBench files."""

PARTI_SAMPLE = (
    "Prompt\tCategory\tChallenge\tNote\n"
    "a lighthouse\tArtifacts\tBasic\tA single object\n"
    "a kettle on a stove\tArtifacts\tSimple Detail\t\n"
    'a mug with the word "hello" printed on it\tArtifacts\tWriting & Symbols\tQuoted text\n'
    "a fox\tAnimals\tBasic\t\n"
    "a fox sleeping in the snow under a pine tree while a crow watches from a branch\tAnimals\tComplex\t\n"
    "a bowl of ramen\tFood & Beverage\tFine-grained Detail\t\n"
)
DRAWBENCH_SAMPLE = (
    "Prompts,Category\n"
    "A green colored kettle.,Colors\n"
    "A violet car and an amber lamp.,Colors\n"
    '"A lamp, a chair and a rug in an empty room.",DALL-E\n'
    "A kite flying a child.,Gary Marcus et al. \n"
    "Two owls on a fence.,Counting"
)


@pytest.fixture(autouse=True)
def hermetic_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the user's cache or data folders, or touches the network, unless it asks to."""
    monkeypatch.setenv("OVI_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OVI_BENCH_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv(PARTI_DIR_ENV, raising=False)
    monkeypatch.delenv(DRAWBENCH_DIR_ENV, raising=False)


def write_sample(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(text.encode("utf-8"))
    return path


def pinned_to(files: PinnedFiles, path: Path) -> PinnedFiles:
    """The source's pin with the sample's digest in place of the real file's."""
    return dataclasses.replace(files, sha256={path.name: hashlib.sha256(path.read_bytes()).hexdigest()})


@pytest.fixture
def parti_sample(tmp_path: Path) -> tuple[Path, PinnedFiles]:
    path = write_sample(tmp_path / "parti", PARTI_FILE, PARTI_SAMPLE)
    return path.parent, pinned_to(PARTI_FILES, path)


@pytest.fixture
def drawbench_sample(tmp_path: Path) -> tuple[Path, PinnedFiles]:
    path = write_sample(tmp_path / "drawbench", DRAWBENCH_FILE, DRAWBENCH_SAMPLE)
    return path.parent, pinned_to(DRAWBENCH_FILES, path)


# --- the sources ----------------------------------------------------------------------------------------------


def test_both_sources_are_registered_with_their_licence() -> None:
    assert {"partiprompts", "drawbench"} <= set(PROMPTS.names())
    assert PROMPTS.get("partiprompts").licence == PARTI_LICENCE == "Apache-2.0"
    assert PROMPTS.get("drawbench").licence == DRAWBENCH_LICENCE
    assert PROMPTS.get("builtin").licence is None


def test_parti_sample_loads_offline_with_categories_ids_and_challenges(
    parti_sample: tuple[Path, PinnedFiles],
) -> None:
    folder, pin = parti_sample
    prompt_set = load_partiprompts(None, "val", None, folder, files=pin)
    assert prompt_set.source == "partiprompts"
    assert prompt_set.licence == "Apache-2.0"
    assert prompt_set.files == {PARTI_FILE: pin.sha256[PARTI_FILE]}
    assert [prompt.id for prompt in prompt_set.prompts] == [
        "artifacts-parti-0000",
        "artifacts-parti-0001",
        "artifacts-parti-0002",
        "animals-parti-0000",
        "animals-parti-0001",
        "food_beverage-parti-0000",
    ]
    assert [prompt.challenge for prompt in prompt_set.prompts][2:5] == [
        "Writing & Symbols",
        "Basic",
        "Complex",
    ]
    assert prompt_set.prompts[2].text == 'a mug with the word "hello" printed on it'


def test_drawbench_sample_loads_offline_with_quoted_commas_and_label_names(
    drawbench_sample: tuple[Path, PinnedFiles],
) -> None:
    folder, pin = drawbench_sample
    prompt_set = load_drawbench(None, "val", None, folder, files=pin)
    assert list(prompt_set.by_category()) == ["colors", "dall_e", "gary_marcus_et_al", "counting"]
    assert prompt_set.prompts[2].text == "A lamp, a chair and a rug in an empty room."
    assert prompt_set.licence == DRAWBENCH_LICENCE
    assert all(prompt.challenge is None for prompt in prompt_set.prompts)


@pytest.mark.parametrize(
    ("label", "name"),
    [
        ("Food & Beverage", "food_beverage"),
        ("DALL-E", "dall_e"),
        ("Gary Marcus et al. ", "gary_marcus_et_al"),
        ("World Knowledge", "world_knowledge"),
        ("Rare Words", "rare_words"),
    ],
)
def test_category_labels_become_valid_category_names(label: str, name: str) -> None:
    assert category_name(label) == name


def test_a_label_with_no_letters_is_refused() -> None:
    with pytest.raises(DataError, match="letters, digits"):
        category_name(" & ")


def test_category_filter_keeps_order_and_limit_and_suggests_on_a_typo(
    parti_sample: tuple[Path, PinnedFiles],
) -> None:
    folder, pin = parti_sample
    chosen = load_partiprompts(["food_beverage", "animals"], "val", 1, folder, files=pin)
    assert [prompt.id for prompt in chosen.prompts] == ["food_beverage-parti-0000", "animals-parti-0000"]
    with pytest.raises(SpecError, match="Did you mean 'animals'") as raised:
        load_partiprompts(["animal"], "val", None, folder, files=pin)
    assert "food_beverage" in str(raised.value)
    with pytest.raises(SpecError, match="only a 'val' split"):
        load_partiprompts(None, "train", None, folder, files=pin)


@pytest.mark.parametrize(
    ("loader", "pin", "name"),
    [(load_partiprompts, PARTI_FILES, PARTI_FILE), (load_drawbench, DRAWBENCH_FILES, DRAWBENCH_FILE)],
)
def test_a_modified_file_is_refused_with_both_digests_and_the_fix(
    tmp_path: Path, loader: object, pin: PinnedFiles, name: str
) -> None:
    sample = PARTI_SAMPLE if name == PARTI_FILE else DRAWBENCH_SAMPLE
    path = write_sample(tmp_path / "data", name, sample)
    sample_pin = pinned_to(pin, path)
    path.write_bytes(path.read_bytes().replace(b"a ", b"an ", 1))
    with pytest.raises(DataError, match=name) as raised:
        loader(None, "val", None, path.parent, files=sample_pin)  # type: ignore[operator]
    message = str(raised.value)
    assert sample_pin.sha256[name] in message
    assert hashlib.sha256(path.read_bytes()).hexdigest() in message
    assert pin.commit in message and pin.repo in message


def test_the_registered_source_refuses_a_file_that_is_not_the_pinned_one(
    parti_sample: tuple[Path, PinnedFiles], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _ = parti_sample
    monkeypatch.setenv(PARTI_DIR_ENV, str(folder))
    with pytest.raises(DataError, match=PARTI_FILE) as raised:
        load_prompts("partiprompts")
    assert PARTI_FILES.sha256[PARTI_FILE] in str(raised.value)


def test_offline_with_an_empty_cache_explains_how_to_provide_the_file() -> None:
    with pytest.raises(DataError) as raised:
        load_prompts("drawbench")
    message = str(raised.value)
    assert DRAWBENCH_DIR_ENV in message
    assert "OVI_BENCH_OFFLINE=1" in message
    assert "builtin" in message


def test_a_download_is_verified_then_cached(
    drawbench_sample: tuple[Path, PinnedFiles], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, pin = drawbench_sample
    data = (folder / DRAWBENCH_FILE).read_bytes()
    requested: list[str] = []

    def serve(url: str, timeout: float) -> io.BytesIO:
        requested.append(url)
        return io.BytesIO(data)

    monkeypatch.delenv("OVI_BENCH_OFFLINE")
    monkeypatch.setattr(urllib.request, "urlopen", serve)
    assert (
        load_drawbench(["counting"], "val", None, None, files=pin).prompts[0].text == "Two owls on a fence."
    )
    load_drawbench(None, "val", None, None, files=pin)
    assert requested == [
        f"https://raw.githubusercontent.com/mwomick/VaReSynth/{pin.commit}/data/DrawBench.csv"
    ]
    assert (pin.cache_dir() / DRAWBENCH_FILE).read_bytes() == data
    with pytest.raises(DataError, match="sha256"):
        load_partiprompts(None, "val", None, None)  # the real pin refuses the served bytes
    assert not (PARTI_FILES.cache_dir() / PARTI_FILE).exists()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Prompt\tCategory\tChallenge\n", "header"),
        ("Prompt\tCategory\tChallenge\tNote\na fox\tAnimals\n", "line 2: 2 tab-separated cells"),
    ],
)
def test_a_malformed_parti_table_names_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = write_sample(tmp_path / "bad", PARTI_FILE, text)
    with pytest.raises(DataError, match=problem):
        load_partiprompts(None, "val", None, path.parent, files=pinned_to(PARTI_FILES, path))


def test_the_challenge_label_leaves_prompt_digests_alone() -> None:
    plain = Prompt(id="a-parti-0000", category="a", split="val", index=0, text="a fox")
    labelled = dataclasses.replace(plain, challenge="Complex")
    assert prompt_set_digest([plain]) == prompt_set_digest([labelled])
    # The built-in list's digest as it was before prompts had a challenge label.
    assert (
        load_builtin(None, None).digest == "cc92ffd1b2eccfbd60a1c81f77220130fa91cb7a128fc2dec9b8c9dfc1b1795b"
    )


def test_metrics_for_every_category_score_parti_prompts_and_compbench_ones_do_not(
    parti_sample: tuple[Path, PinnedFiles],
) -> None:
    folder, pin = parti_sample
    prompt_set = load_partiprompts(None, "val", None, folder, files=pin)
    spec = parse_spec(
        {
            "priors": [{"name": "text-embedding", "params": {"model": "tiny"}}],
            "prompts": {"source": "partiprompts", "data_dir": str(folder)},
            "metrics": [
                {"name": name, "params": {"weights": "tiny"} if name == "aesthetic" else {}}
                for name in ("clip", "vqascore", "aesthetic", "b-vqa", "numeracy")
            ],
        }
    )
    categories = list(prompt_set.by_category())
    applies = {metric.name: [c for c in categories if metric_applies(metric, c)] for metric in spec.metrics}
    assert applies == {
        "clip": categories,
        "vqascore": categories,
        "aesthetic": categories,
        "b-vqa": [],
        "numeracy": [],
    }
    items = plan(spec, prompt_set)
    assert len(items) == len(prompt_set.prompts) * len(spec.seeds)


def real_file(folder: str, name: str) -> Path:
    path = SHARED_DATA / folder / name
    if not path.is_file():
        pytest.skip(f"no copy of {name} at {path}; the real-file check needs one (see docs)")
    return path


def test_the_real_partiprompts_file() -> None:
    path = real_file("partiprompts", PARTI_FILE)
    prompt_set = load_partiprompts(None, "val", None, path.parent)
    assert len(prompt_set.prompts) == 1632
    assert len(prompt_set.by_category()) == 12
    challenges = pd.Series([prompt.challenge for prompt in prompt_set.prompts]).value_counts()
    assert len(challenges) == 11 and challenges["Complex"] == 113


def test_the_real_drawbench_file() -> None:
    path = real_file("drawbench", DRAWBENCH_FILE)
    prompt_set = load_drawbench(None, "val", None, path.parent)
    assert len(prompt_set.prompts) == 200
    assert len(prompt_set.by_category()) == 11


# --- the prompt-length view -------------------------------------------------------------------------------------


def length_rows(decoders: tuple[str, ...] = ()) -> pd.DataFrame:
    """Two priors × four prompts at the bucket edges (10/11, 77/78 tokens) × two seeds, one metric."""
    prompts = {"p10": 10, "p11": 11, "p77": 77, "p78": 78}
    rows = []
    for decoder in decoders or (None,):
        for prior, offset in (("ovi", 0.0), ("kandinsky", 0.5)):
            for rank, (prompt_id, tokens) in enumerate(prompts.items()):
                for seed in (0, 1):
                    row = {
                        "prior": prior,
                        "category": "animals",
                        "metric": "clip",
                        "prompt_id": prompt_id,
                        "prompt": f"prompt {prompt_id}",
                        "seed": seed,
                        "score": rank + offset + seed * 0.1,
                        "clip_tokens": tokens,
                    }
                    rows.append(row if decoder is None else {**row, "decoder": decoder})
    return pd.DataFrame(rows)


def test_bucket_edges() -> None:
    assert [length_bucket(tokens) for tokens in (2, 10, 11, 20, 21, 40, 41, 77, 78, 300)] == [
        "1–10",
        "1–10",
        "11–20",
        "11–20",
        "21–40",
        "21–40",
        "41–77",
        "41–77",
        ">77",
        ">77",
    ]
    assert [bucket.label for bucket in LENGTH_BUCKETS] == ["1–10", "11–20", "21–40", "41–77", ">77"]


def test_the_view_splits_each_prior_by_bucket_with_known_means() -> None:
    view = prompt_length_view(length_rows(), higher_is_better={"clip": True})
    assert list(view["prior"]) == ["ovi"] * 4 + ["kandinsky"] * 4
    assert list(view["bucket"]) == ["1–10", "11–20", "41–77", ">77"] * 2
    assert list(view["n_prompts"]) == [1] * 8
    assert list(view["n"]) == [2] * 8
    assert view["mean"].round(6).tolist() == [0.05, 1.05, 2.05, 3.05, 0.55, 1.55, 2.55, 3.55]
    assert view["higher_is_better"].tolist() == [True] * 8
    assert "decoder" not in view.columns


def test_the_view_has_a_decoder_facet_when_the_scores_have_one() -> None:
    view = prompt_length_view(length_rows(("kandinsky-2.2-decoder", "sdxl-ip-adapter")))
    assert list(view.columns[:2]) == ["prior", "decoder"]
    assert len(view) == 16
    assert set(view["decoder"]) == {"kandinsky-2.2-decoder", "sdxl-ip-adapter"}


def test_the_truncated_share_counts_prompts_not_images() -> None:
    scores = length_rows()
    assert truncated_share(scores) == 0.25
    summary = prompt_length_summary(scores).set_index("bucket")
    assert summary.loc["21–40", "n_prompts"] == 0
    assert summary.loc["truncated", "n_prompts"] == 1
    assert summary.loc["41–77", "share"] == 0.25


def test_counts_come_from_the_tokenizer_when_the_scores_have_none() -> None:
    tokenizer = tiny_tokenizer()  # one token per byte (the last of a word marked): easy to count by hand
    assert clip_token_counts(tokenizer, ["ab cd", "x" * 100]) == [6, 102]
    scores = length_rows().drop(columns="clip_tokens")
    counts = count_prompt_tokens(scores, lambda texts: clip_token_counts(tokenizer, texts))
    assert counts == {
        "prompt p10": 11,
        "prompt p11": 11,
        "prompt p77": 11,
        "prompt p78": 11,
    }  # 9 bytes + start, end
    view = prompt_length_view(scores, counts)
    assert set(view["bucket"]) == {"11–20"}
    with pytest.raises(DataError, match="no CLIP token count"):
        prompt_length_view(scores, {"prompt p10": 3})


def test_the_markdown_names_the_truncated_share_and_every_bucket() -> None:
    scores = length_rows()
    text = prompt_length_markdown(
        prompt_length_view(scores, higher_is_better={"clip": True}), prompt_length_summary(scores)
    )
    assert "1 of 4 (25.0%) exceed 77 tokens" in text
    assert "**clip** (higher is better)" in text
    assert "| ovi " in text and "0.0500 [" in text and "| &gt;77 " in text  # markdown_text escapes ">"


def test_the_view_works_from_a_run_folder(tmp_path: Path) -> None:
    run = RunRecord(
        tmp_path, {"spec_fingerprint": "x", "metrics": {"clip": {"higher_is_better": True}}}, length_rows()
    )
    view, summary = run_prompt_length(run)
    assert view["higher_is_better"].all()
    assert summary.set_index("bucket").loc["truncated", "share"] == 0.25
