"""PartiPrompts (P2): 1,632 prompts from the Parti paper, each with a category and a challenge label, pinned to one
commit of google-research/parti and checked by sha256.

Its 12 categories (Animals, Artifacts, ..., World Knowledge) become the prompt categories ("world_knowledge"); its 11
challenge labels ("Basic", "Complex", "Fine-grained Detail", ...) stay on each prompt (`Prompt.challenge`). The
file's `Note` column is not used.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ovi_bench.errors import DataError
from ovi_bench.prompts.base import PromptSet, PromptSource
from ovi_bench.prompts.files import checked_prompt, read_utf8_text
from ovi_bench.prompts.labelled import LabelledPrompt, labelled_prompt_set
from ovi_bench.prompts.pinned import PinnedFiles
from ovi_bench.text import short_repr

PARTI_SOURCE = "partiprompts"
PARTI_REPO = "google-research/parti"
PARTI_COMMIT = "5a657978134374ce28973948331b319adef164bd"
PARTI_FILE = "PartiPrompts.tsv"
PARTI_DIR_ENV = "OVI_BENCH_PARTIPROMPTS_DIR"
PARTI_LICENCE = "Apache-2.0"
"""The licence of the google-research/parti repository (its LICENSE file), which holds PartiPrompts.tsv."""
PARTI_COLUMNS: tuple[str, ...] = ("Prompt", "Category", "Challenge", "Note")

PARTI_FILES = PinnedFiles(
    title="PartiPrompts",
    repo=PARTI_REPO,
    commit=PARTI_COMMIT,
    folder="",
    sha256={PARTI_FILE: "fab29e41bb512a169b56acab4cf2a41dcb675e285df2efcde6640c7dd3c440eb"},
    dir_env=PARTI_DIR_ENV,
    cache_name="partiprompts",
    how_to_provide=(
        f"Set {PARTI_DIR_ENV} (or prompts.data_dir in the run spec) to a folder holding {PARTI_FILE} of "
        f'{PARTI_REPO} at commit {PARTI_COMMIT}, or use prompts.source = "builtin" for a quick run without it.'
    ),
)


def read_parti_table(path: Path) -> list[LabelledPrompt]:
    """The rows of a PartiPrompts.tsv: a header `Prompt<TAB>Category<TAB>Challenge<TAB>Note`, then one prompt a line.

    The file is tab-separated without quoting (prompts contain '"' as text), so it is split on tabs, never parsed as
    CSV."""
    lines = read_utf8_text(path).split("\n")
    header = lines[0].rstrip("\r").split("\t")
    if header != list(PARTI_COLUMNS):
        raise DataError(
            f"{path} does not start with the PartiPrompts header {short_repr(chr(9).join(PARTI_COLUMNS))} "
            f"(it starts with {short_repr(lines[0][:120])}). Give the unmodified {PARTI_FILE}."
        )
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(PARTI_COLUMNS):
            raise DataError(
                f"{path}, line {number}: {len(cells)} tab-separated cells, expected {len(PARTI_COLUMNS)} "
                f"({', '.join(PARTI_COLUMNS)})."
            )
        text, category, challenge = (cell.strip() for cell in cells[:3])
        rows.append(LabelledPrompt(checked_prompt(text, path, number), category, challenge or None))
    return rows


def load_partiprompts(
    categories: Sequence[str] | None,
    split: str,
    limit: int | None,
    data_dir: str | Path | None,
    files: PinnedFiles = PARTI_FILES,
) -> PromptSet:
    """The PartiPrompts of `categories`, ids f"{category}-parti-{index:04d}". `files` is the pin (tests pin a
    sample file the same way)."""
    path = files.file(PARTI_FILE, data_dir)
    return labelled_prompt_set(
        PARTI_SOURCE,
        read_parti_table(path),
        categories=categories,
        split=split,
        limit=limit,
        id_tag="parti",
        licence=PARTI_LICENCE,
        files={PARTI_FILE: files.sha256[PARTI_FILE]},
    )


class PartiPrompts(PromptSource):
    """PartiPrompts: 1,632 prompts, 12 categories, challenge labels (Apache-2.0); pinned, downloaded or from data_dir."""

    licence = PARTI_LICENCE

    def load(
        self, categories: Sequence[str] | None, split: str, limit: int | None, data_dir: str | Path | None
    ) -> PromptSet:
        return load_partiprompts(categories, split, limit, data_dir)
