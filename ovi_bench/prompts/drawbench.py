"""DrawBench: the 200 prompts in 11 categories that the Imagen paper (Saharia et al., 2022) introduced, pinned to one
public GitHub copy of the published sheet and checked by sha256.

Provenance: the Imagen authors publish DrawBench as a Google Sheet (linked from https://imagen.research.google/,
`DRAWBENCH_SHEET`), which cannot be pinned to a version; ovi-bench pins the CSV export of that sheet kept at
`DRAWBENCH_REPO`/`DRAWBENCH_PATH` at commit `DRAWBENCH_COMMIT` (header `Prompts,Category`; 200 rows; the 11
categories with the paper's counts). No licence is stated by the paper, the sheet or that repository.

The categories (Colors, Conflicting, Counting, DALL-E, Descriptions, Gary Marcus et al., Misspellings, Positional,
Rare Words, Reddit, Text) become "colors", ..., "dall_e", "gary_marcus_et_al", "rare_words", ...
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from ovi_bench.errors import DataError
from ovi_bench.prompts.base import PromptSet, PromptSource
from ovi_bench.prompts.files import checked_prompt, read_utf8_text
from ovi_bench.prompts.labelled import LabelledPrompt, labelled_prompt_set
from ovi_bench.prompts.pinned import PinnedFiles
from ovi_bench.text import short_repr

DRAWBENCH_SOURCE = "drawbench"
DRAWBENCH_REPO = "mwomick/VaReSynth"
DRAWBENCH_COMMIT = "06b6b877879a172a26e484b045a1049cb8f9a050"
DRAWBENCH_PATH = "data/DrawBench.csv"
DRAWBENCH_FILE = "DrawBench.csv"
DRAWBENCH_DIR_ENV = "OVI_BENCH_DRAWBENCH_DIR"
DRAWBENCH_SHEET = "https://docs.google.com/spreadsheets/d/1y7nAbmR4FREi6npB1u-Bo3GFdwdOPYJc617rBOxIRHY"
DRAWBENCH_LICENCE = "none stated"
"""Neither the Imagen paper, the published sheet nor the pinned repository states a licence for the prompts."""
DRAWBENCH_COLUMNS: tuple[str, ...] = ("Prompts", "Category")

DRAWBENCH_FILES = PinnedFiles(
    title="DrawBench",
    repo=DRAWBENCH_REPO,
    commit=DRAWBENCH_COMMIT,
    folder=DRAWBENCH_PATH.rsplit("/", 1)[0],
    sha256={DRAWBENCH_FILE: "5f50241927354d1879b5b0b27cd3c83e8e6816a19fcc9c559053e8d09781c392"},
    dir_env=DRAWBENCH_DIR_ENV,
    cache_name="drawbench",
    how_to_provide=(
        f"Set {DRAWBENCH_DIR_ENV} (or prompts.data_dir in the run spec) to a folder holding {DRAWBENCH_FILE} "
        f"({DRAWBENCH_PATH} of {DRAWBENCH_REPO} at commit {DRAWBENCH_COMMIT}), "
        'or use prompts.source = "builtin" for a quick run without it.'
    ),
)


def read_drawbench_table(path: Path) -> list[LabelledPrompt]:
    """The rows of DrawBench.csv: a header `Prompts,Category`, then one prompt a row (quoted where it has a comma)."""
    reader = csv.reader(io.StringIO(read_utf8_text(path), newline=""))
    try:
        header = next(reader, [])
        if header != list(DRAWBENCH_COLUMNS):
            raise DataError(
                f"{path} does not start with the DrawBench header {short_repr(','.join(DRAWBENCH_COLUMNS))} "
                f"(it starts with {short_repr(','.join(header))}). Give the unmodified {DRAWBENCH_FILE}."
            )
        rows = []
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(DRAWBENCH_COLUMNS):
                raise DataError(
                    f"{path}, line {reader.line_num}: {len(cells)} cells, expected "
                    f"{len(DRAWBENCH_COLUMNS)} ({', '.join(DRAWBENCH_COLUMNS)})."
                )
            text = checked_prompt(cells[0].strip(), path, reader.line_num)
            rows.append(LabelledPrompt(text, cells[1]))
    except csv.Error as error:
        raise DataError(f"{path}, line {reader.line_num}: not readable as CSV ({error}).") from None
    return rows


def load_drawbench(
    categories: Sequence[str] | None,
    split: str,
    limit: int | None,
    data_dir: str | Path | None,
    files: PinnedFiles = DRAWBENCH_FILES,
) -> PromptSet:
    """The DrawBench prompts of `categories`, ids f"{category}-drawbench-{index:04d}". `files` is the pin (tests pin
    a sample file the same way)."""
    path = files.file(DRAWBENCH_FILE, data_dir)
    return labelled_prompt_set(
        DRAWBENCH_SOURCE,
        read_drawbench_table(path),
        categories=categories,
        split=split,
        limit=limit,
        id_tag="drawbench",
        licence=DRAWBENCH_LICENCE,
        files={DRAWBENCH_FILE: files.sha256[DRAWBENCH_FILE]},
    )


class DrawBenchPrompts(PromptSource):
    """DrawBench (Imagen): 200 prompts, 11 categories (no licence stated); pinned, downloaded or from data_dir."""

    licence = DRAWBENCH_LICENCE

    def load(
        self, categories: Sequence[str] | None, split: str, limit: int | None, data_dir: str | Path | None
    ) -> PromptSet:
        return load_drawbench(categories, split, limit, data_dir)
