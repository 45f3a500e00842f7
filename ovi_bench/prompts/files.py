"""User prompt files: a .txt with one prompt per line, or a .csv with a `prompt` and an optional `category` column.

Every prompt follows the rule for text shown in tables, logs and reports that the spec's names follow
(`ovi_bench.text.display_text_problem`: one line of printable text, at most MAX_TEXT_LENGTH characters); a prompt
that breaks it is refused with the file, the line and the problem.

Custom category names are allowed, so a run can score its own prompt families; they are restricted to letters,
digits and '_' because they become part of prompt ids ("<category>-file-0003") and of folder names.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from pathlib import Path

from ovi_bench.errors import DataError, SpecError
from ovi_bench.io import sha256_file
from ovi_bench.prompts.base import (
    PromptSet,
    make_prompt_set,
    number_prompts,
    require_val_split,
    select_prompts,
)
from ovi_bench.text import did_you_mean, display_text_problem, short_repr

CUSTOM_CATEGORY = "custom"
PROMPT_FILE_SUFFIXES: tuple[str, ...] = (".txt", ".csv")
CSV_COLUMNS: tuple[str, ...] = ("prompt", "category")
CATEGORY_NAME_PATTERN = re.compile(r"[A-Za-z0-9_]{1,64}")
"""1 to 64 ASCII letters, digits and '_': a category name becomes part of prompt ids, so it can hold no path separator,
'..', NUL or other character with a meaning to a file system, a CSV cell or a URL."""
CATEGORY_NAME_RULE = (
    "is not allowed: use up to 64 letters, digits and '_' only (the name becomes part of prompt ids)."
)


def is_prompt_file_path(source: str) -> bool:
    """Whether a prompt source names a prompt file (existing or not) rather than a built-in source."""
    return Path(source).suffix.lower() in PROMPT_FILE_SUFFIXES


def load_prompt_file(path: str | Path, category: str | None = None) -> PromptSet:
    """Every prompt of a .txt or .csv file, grouped by category in order of first appearance.

    `category` labels the prompts of a .txt file, and the .csv rows whose category cell is empty or absent;
    default "custom". Ids are f"{category}-file-{index:04d}", index counting within the category in file order.
    """
    path = Path(path)
    default_category = category or CUSTOM_CATEGORY
    if not CATEGORY_NAME_PATTERN.fullmatch(default_category):
        raise SpecError(f"prompt category {short_repr(default_category)} {CATEGORY_NAME_RULE}")
    try:
        exists = path.is_file()
    except OSError:  # a name too long for the file system, say
        exists = False
    if not exists:
        raise DataError(
            f"prompt file {short_repr(str(path))} does not exist. Check the path in prompts.source."
        )
    if path.suffix.lower() == ".csv":
        texts_by_category = _read_csv(path, default_category)
    else:
        texts_by_category = {default_category: _read_txt(path)}
    if not any(texts_by_category.values()):
        raise DataError(f"prompt file {path} holds no prompts. Add at least one non-empty line.")
    prompts = [
        prompt
        for name, texts in texts_by_category.items()
        for prompt in number_prompts(texts, category=name, split="val", id_tag="file", limit=None)
    ]
    return make_prompt_set(f"file:{path.name}", prompts, files={path.name: sha256_file(path)})


def load_prompt_file_source(
    path: Path, categories: Sequence[str] | None, split: str, limit: int | None
) -> PromptSet:
    """`load_prompts` for a file: a .txt takes its category from a single requested category; a .csv is filtered
    to the requested categories."""
    require_val_split(split, f"the prompt file {path}")
    txt_category = None
    if path.suffix.lower() == ".txt" and categories is not None:
        if isinstance(categories, str) or len(categories) != 1:
            raise SpecError(
                f"a .txt prompt file holds a single category, but prompts.categories is {short_repr(categories)}. "
                'Give one name (e.g. ["color"]) to label its prompts, or use a .csv file with a "category" column.'
            )
        txt_category = categories[0]
    return select_prompts(load_prompt_file(path, txt_category), categories, limit)


def read_utf8_text(path: Path) -> str:
    """The file's text (a UTF-8 byte-order mark dropped); a file that is not UTF-8 is a DataError naming it."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not valid UTF-8 ({error}). Save it as UTF-8 text.") from error


def _read_txt(path: Path) -> list[str]:
    """Non-empty stripped lines in file order; line numbers as an editor counts them (LF, CRLF or CR), so that any
    other line or page break inside a line is reported rather than silently splitting a prompt in two."""
    texts = []
    for number, line in enumerate(re.split(r"\r\n|\r|\n", read_utf8_text(path)), start=1):
        if text := line.strip():
            texts.append(checked_prompt(text, path, number))
    return texts


def _read_csv(path: Path, default_category: str) -> dict[str, list[str]]:
    reader = csv.DictReader(io.StringIO(read_utf8_text(path), newline=""))
    texts_by_category: dict[str, list[str]] = {}
    try:
        _check_csv_columns(path, reader.fieldnames or [])
        for row in reader:
            prompt_text = (row.get("prompt") or "").strip()
            if not prompt_text:
                continue
            prompt_text = checked_prompt(prompt_text, path, reader.line_num)
            category = (row.get("category") or "").strip() or default_category
            if not CATEGORY_NAME_PATTERN.fullmatch(category):
                raise DataError(
                    f"{path}, line {reader.line_num}: category {short_repr(category)} {CATEGORY_NAME_RULE}"
                )
            texts_by_category.setdefault(category, []).append(prompt_text)
    except csv.Error as error:  # an oversized cell, a NUL, an unclosed quote
        raise DataError(f"{path}, line {reader.line_num}: not readable as CSV ({error}).") from None
    return texts_by_category


def checked_prompt(text: str, path: Path, line_number: int) -> str:
    """`text`, unless it breaks the display rule (module docstring): then a DataError naming the file and line."""
    problem = display_text_problem(text)
    if problem is not None:
        raise DataError(f"{path}, line {line_number}: the prompt {short_repr(text)} {problem}.")
    return text


def _check_csv_columns(path: Path, columns: Sequence[str]) -> None:
    """Unknown columns are refused rather than ignored, so a misspelt 'category' cannot silently relabel rows."""
    if "prompt" not in columns:
        raise DataError(
            f"{path} has no 'prompt' column (its header is {short_repr(list(columns))}). "
            "Make the first line a header naming the columns: prompt[,category]."
        )
    for column in columns:
        if column not in CSV_COLUMNS:
            raise DataError(
                f"{path} has an unknown column {short_repr(column)}.{did_you_mean(column, CSV_COLUMNS)} "
                f"Allowed columns: {', '.join(CSV_COLUMNS)}."
            )
