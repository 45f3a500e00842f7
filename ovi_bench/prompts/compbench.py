"""The official T2I-CompBench++ prompt files, pinned to one upstream commit and checked by sha256.

Scores are only comparable with published numbers when the prompts are exactly the official ones, so every file is
verified against a hash table before use, whether it comes from a local folder or from the download cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ovi_bench.errors import DataError
from ovi_bench.prompts.base import (
    COMPBENCH_SOURCE,
    Prompt,
    PromptSet,
    PromptSource,
    make_prompt_set,
    number_prompts,
    resolve_categories,
    validate_split,
)
from ovi_bench.prompts.pinned import PinnedFiles
from ovi_bench.prompts.pinned import (
    offline_setting as offline_setting,  # re-exported: callers import it from here
)

COMPBENCH_REPO = "Karine-Huang/T2I-CompBench"
COMPBENCH_COMMIT = "1b7094991a57f3c22abdd4f6e8ba6c1a15517073"
COMPBENCH_DIR_ENV = "OVI_BENCH_COMPBENCH_DIR"

COMPLEX_SUBSETS: tuple[str, ...] = ("spatial", "action", "spatialaction")

FILE_SHA256: dict[str, str] = {
    "color_val.txt": "1634259756dbc77d13093d907d414480080ec9790a8c97ad09efaea7b2534f2d",
    "color_train.txt": "db5d3287027d453f8c977f0c7315f8a01a770f02f61fa54ae19406762982393f",
    "shape_val.txt": "37e1a276906c7ea9516cbd7ac8501be896006c0c17ca7344f260562834455bae",
    "shape_train.txt": "451bdfccd330d4cf979d45664817be7959e89250b93d5c591cc562b858175a87",
    "texture_val.txt": "fbb5363515b4a28009e360afaaaf389d2dd2289e50dbb0c6ef4ea0c7fe4f3d4f",
    "texture_train.txt": "4846315c5972f9e9cc82e4833099e8ec2c28b999ca77269512715f3f56bde54f",
    "spatial_val.txt": "8707a1d7e42ce3002d95363cf55f74bd043c843ae27108f5125aaaa7840ca988",
    "spatial_train.txt": "af14cdf2320057d98f94077e6211c2ddfaabfbb9e3842873657baabb17e00de6",
    "3d_spatial_val.txt": "c9953597315f36a5fcb41291bb19bdc6ab5f64a0fa760d691b4854a73f5d1fe9",
    "3d_spatial_train.txt": "0bba7e9ad31b0ce7908f6cbf2426a4b7ef6e8b841c1b737d0ad2d5b8e688dd93",
    "non_spatial_val.txt": "04c56cc9ac441dc9ea6c5157652058bd1635b5308526dd31bb29a1caab9a758d",
    "non_spatial_train.txt": "dbac5a9ec83204dcd0c3538a12d3212e2ce66db6f7ba45b49a1d869b2d3f2430",
    "numeracy_val.txt": "dad8df141604b70ba7554bec724e3db0a80023680769b5c514854ea2d2527bbe",
    "numeracy_train.txt": "f66bb8708cb0be23c0406e14d892b25661b2b71e3e72abddc79c38466ab629c6",
    "complex_val.txt": "1b808018b8d9916db3d47d5aa2ef18377a3549a56901a474156f799824cdf3b4",
    "complex_train.txt": "d214ac45cb3c5307dd14a144c8c69aa5ffdcc7be74ff71b5dac989f8ca9f924b",
    "complex_val_spatial.txt": "6c7ac0ab75c7c9080cfc7b421fb059b9b0febb98471707aeedf58771088abc02",
    "complex_val_action.txt": "d49ee4c7f99e3f3379fb8704a54ff5288b83bb412971edf616a4721c2473308e",
    "complex_val_spatialaction.txt": "e02ddc7fed812e6577e7386ec2137ce0a994a5ce19771661f68df7ac349a6ca9",
    "complex_train_spatial.txt": "a7ccfa228a825497db4e6e688332a90f3b53da66a76da324390b597be92a0da0",
    "complex_train_action.txt": "2bf41d7d857883a7344aed46c45343f5089a71cc394d81c00f4aab5348a81dc8",
    "complex_train_spatialaction.txt": "933cdc3e6eeaa6564f762736dd32f5e74c4809381fc2c2787bec434bc6b0c7ea",
    "new_objects.txt": "f39a3d2ff6067d7738673cbf465dc659ccc750776162989a5d9916f1d5f3e231",
}

_HOW_TO_PROVIDE = (
    f"Set {COMPBENCH_DIR_ENV} (or prompts.data_dir in the run spec) to a folder holding the official files of "
    f"{COMPBENCH_REPO} at commit {COMPBENCH_COMMIT} (examples/dataset/*.txt), "
    'or use prompts.source = "builtin" for a quick run without them.'
)


COMPBENCH_FILES = PinnedFiles(
    title="T2I-CompBench",
    repo=COMPBENCH_REPO,
    commit=COMPBENCH_COMMIT,
    folder="examples/dataset",
    sha256=FILE_SHA256,
    dir_env=COMPBENCH_DIR_ENV,
    cache_name="t2i-compbench",
    how_to_provide=_HOW_TO_PROVIDE,
)


def compbench_url(name: str) -> str:
    return COMPBENCH_FILES.url(name)


def compbench_cache_dir() -> Path:
    return COMPBENCH_FILES.cache_dir()


def compbench_file(name: str, data_dir: str | Path | None = None) -> Path:
    """Path of a verified official file: from `data_dir`, else `$OVI_BENCH_COMPBENCH_DIR`, else the download cache
    (downloading it on first use)."""
    return COMPBENCH_FILES.file(name, data_dir)


def read_prompt_lines(path: Path) -> list[str]:
    """Non-empty stripped lines in file order. Duplicates are kept: the official images are indexed by position.

    Handles the files' mixed CRLF/LF endings, missing final newlines and a UTF-8 byte-order mark.
    """
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not valid UTF-8 ({error}). Save it as UTF-8 text.") from error
    return [stripped for line in text.splitlines() if (stripped := line.strip())]


def load_compbench(
    categories: Sequence[str] | None,
    split: str,
    limit: int | None,
    data_dir: str | Path | None,
) -> PromptSet:
    """The official `<category>_<split>.txt` prompts, ids f"{category}-{split}-{index:04d}"."""
    validate_split(split)
    prompts: list[Prompt] = []
    files: dict[str, str] = {}
    for category in resolve_categories(categories):
        name = f"{category}_{split}.txt"
        texts = read_prompt_lines(compbench_file(name, data_dir))
        subsets = None
        if category == "complex":
            routing = complex_subsets(split, data_dir)
            subsets = [routing[normalise_complex_prompt(text)] for text in texts]
        prompts += number_prompts(
            texts, category=category, split=split, id_tag=split, limit=limit, subsets=subsets
        )
        files[name] = FILE_SHA256[name]
    return make_prompt_set(COMPBENCH_SOURCE, prompts, files)


class CompBenchPrompts(PromptSource):
    """The official T2I-CompBench++ prompts (8 categories), pinned and sha256-checked; downloaded or from data_dir."""

    def load(
        self, categories: Sequence[str] | None, split: str, limit: int | None, data_dir: str | Path | None
    ) -> PromptSet:
        return load_compbench(categories, split, limit, data_dir)


def normalise_complex_prompt(text: str) -> str:
    """The key the official 3-in-1 script matches complex prompts by: the text before the first '.', lowercased.

    Exactly the official key: no whitespace is stripped, so "a cat . b" keys as "a cat ". The lines it is applied
    to come from `read_prompt_lines`, which strips each line's surrounding whitespace (the official script strips
    only the newline); the official files have no such whitespace, so their routing is the official one.
    """
    return text.split(".", 1)[0].lower()


def complex_subsets(split: str = "val", data_dir: str | Path | None = None) -> dict[str, str]:
    """Normalised complex prompt -> "spatial" | "action" | "spatialaction", routed as the official 3-in-1 script
    does: listed in the spatial file -> spatial, else in the action file -> action, else spatialaction."""
    validate_split(split)
    spatial = set(_normalised_complex_prompts(f"complex_{split}_spatial.txt", data_dir))
    action = set(_normalised_complex_prompts(f"complex_{split}_action.txt", data_dir))
    return {
        key: "spatial" if key in spatial else "action" if key in action else "spatialaction"
        for key in _normalised_complex_prompts(f"complex_{split}.txt", data_dir)
    }


def _normalised_complex_prompts(name: str, data_dir: str | Path | None) -> list[str]:
    return [normalise_complex_prompt(text) for text in read_prompt_lines(compbench_file(name, data_dir))]
