"""User text in and out: which text a spec or a prompt file may hold, how errors quote it, and how it is written
into CSV and Markdown files so that no spreadsheet evaluates it and no Markdown viewer renders it as HTML.

Light to import (standard library only): the spec, the prompt loaders and every writer share these rules.
"""

from __future__ import annotations

import difflib
import re
import reprlib
import unicodedata
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

MAX_TEXT_LENGTH = 2_000
"""Longest prompt, name or label, in characters: far above any real prompt (CLIP text encoders read 77 tokens,
T2I-CompBench++ prompts are under 200 characters), far below what would bloat every table and log it is shown in."""

CONTROL_CHARACTERS_ALLOWED_IN_TEXT = frozenset("\t\n\r")
"""Multi-line TOML strings (a question template, say) may hold these; every other control character is refused."""

BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Bidirectional overrides and isolates: they make a name display as other text (U+202E reverses what follows)."""

_short_repr = reprlib.Repr()
_short_repr.maxstring = 80
_short_repr.maxother = 80
_short_repr.maxlevel = 3
_short_repr.maxlist = _short_repr.maxtuple = _short_repr.maxdict = _short_repr.maxset = 6


def short_repr(value: Any) -> str:
    """repr() cut to a readable size: error messages quote user input, which may be huge or deeply nested.

    Every error that quotes user text quotes it through this (a string comes back quoted, its control characters
    escaped, at most 80 characters long)."""
    return _short_repr.repr(value)


def string_problem(text: str) -> str | None:
    """What makes `text` unusable in any text field (NUL, lone surrogates, control characters other than tab and
    line breaks), as a phrase that follows "the text ...", or None."""
    for char in text:
        if char == "\x00":
            return "holds a NUL character (\\x00), which no file name or text field can carry; remove it"
        if "\ud800" <= char <= "\udfff":
            return f"holds a lone surrogate ({char!r}), which is not text; save the file as UTF-8"
        if unicodedata.category(char) == "Cc" and char not in CONTROL_CHARACTERS_ALLOWED_IN_TEXT:
            return f"holds the control character {char!r}; remove it"
    return None


def display_text_problem(text: str) -> str | None:
    """What makes `text` unfit to show as one line in tables, logs and reports (a prompt, a run name, a prior's
    label), as a phrase that follows "the prompt ..." or "the name ...", or None.

    On top of `string_problem`: at most MAX_TEXT_LENGTH characters, and no tab, line break, line or paragraph
    separator or bidirectional control (a control character could rewrite a terminal line or break a table row).
    """
    if len(text) > MAX_TEXT_LENGTH:
        return f"is {len(text):,} characters long; keep it to at most {MAX_TEXT_LENGTH:,} characters"
    problem = string_problem(text)
    if problem is not None:
        return problem
    for char in text:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in BIDI_CONTROLS:
            return f"holds the character {char!r}, which is not allowed here; use printable text on one line"
    return None


# ---------------------------------------------------------------------------------------------------------------------
# CSV cells (OWASP "CSV injection"): a cell that starts with = + - @ tab or carriage return is a formula to Excel,
# LibreOffice and Google Sheets. Such a text cell is written with a leading ' (shown as text, never evaluated).
# Text that already starts with ' before such a character gets one more, so reading back is exact.

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NEEDS_QUOTE = re.compile(r"'*[=+\-@\t\r]")


def spreadsheet_safe(text: str) -> str:
    """The text as a CSV cell that no spreadsheet evaluates: a leading ' where a formula character starts it."""
    return "'" + text if _NEEDS_QUOTE.match(text) else text


def spreadsheet_original(cell: str) -> str:
    """The text `spreadsheet_safe` was given (its inverse)."""
    return cell[1:] if cell.startswith("'") and _NEEDS_QUOTE.match(cell) else cell


# ---------------------------------------------------------------------------------------------------------------------
# Markdown cells.

_MARKDOWN_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "\r\n": " ", "\n": " ", "\r": " "}
_MARKDOWN_SPECIAL = re.compile("|".join(re.escape(key) for key in _MARKDOWN_ESCAPES))


def markdown_text(text: Any) -> str:
    """User text (a label, a prompt, a metric name) as one Markdown table cell or line: `<`, `>` and `&` as HTML
    entities (a `<script>` label is shown, never run, where Markdown is rendered), `|` escaped (it would split the
    cell), line breaks as spaces."""
    return _MARKDOWN_SPECIAL.sub(lambda match: _MARKDOWN_ESCAPES[match.group(0)], str(text))


# ---------------------------------------------------------------------------------------------------------------------


def map_text_cells(frame: pd.DataFrame, function: Callable[[str], str]) -> pd.DataFrame:
    """A copy of `frame` with `function` applied to its column names and to every text cell of its text columns;
    numbers (even in a column that mixes them with text) are left alone."""
    mapped = frame.rename(columns=lambda name: function(name) if isinstance(name, str) else name)
    for position in range(mapped.shape[1]):
        column = mapped.iloc[:, position]
        if column.dtype.kind == "O":  # object, string and categorical columns: where text lives
            mapped.isetitem(
                position, column.map(lambda value: function(value) if isinstance(value, str) else value)
            )
    return mapped


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """' Did you mean 'x'?' for the nearest known name, or '' when nothing is close."""
    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return f" Did you mean '{matches[0]}'?" if matches else ""
