"""What the published prompt tables (PartiPrompts, DrawBench) share: rows of a prompt and its source's labels, turned
into a prompt set whose categories are the source's own category labels as valid category names.

A label such as "Food & Beverage" becomes the category "food_beverage" (lowercase, every run of other characters one
'_'), so that it can be part of prompt ids and folder names (`CATEGORY_NAME_PATTERN`). Ids are
f"{category}-{id_tag}-{index:04d}", `index` counting within the category in file order: stable as long as the
pinned file is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ovi_bench.errors import DataError
from ovi_bench.prompts.base import (
    Prompt,
    PromptSet,
    make_prompt_set,
    number_prompts,
    require_val_split,
    resolve_categories,
)
from ovi_bench.prompts.files import CATEGORY_NAME_PATTERN, CATEGORY_NAME_RULE
from ovi_bench.text import short_repr


@dataclass(frozen=True)
class LabelledPrompt:
    """One row of a published prompt table."""

    text: str
    label: str
    """The source's category label, as written ("Food & Beverage")."""
    challenge: str | None = None
    """The source's challenge label, where it has one (PartiPrompts)."""


def category_name(label: str) -> str:
    """The category name of a source's label: "Food & Beverage" -> "food_beverage", "DALL-E" -> "dall_e"."""
    name = re.sub(r"[^a-z0-9]+", "_", label.strip().lower()).strip("_")
    if not CATEGORY_NAME_PATTERN.fullmatch(name):
        raise DataError(
            f"the category label {short_repr(label)} gives the name {short_repr(name)}, which {CATEGORY_NAME_RULE}"
        )
    return name


def labelled_prompt_set(
    source: str,
    rows: Sequence[LabelledPrompt],
    *,
    categories: Sequence[str] | None,
    split: str,
    limit: int | None,
    id_tag: str,
    files: dict[str, str],
    licence: str | None,
) -> PromptSet:
    """The prompts of `categories` (None: all, in order of first appearance; an unknown name is a SpecError with a
    "did you mean"), the first `limit` of each, with their challenge labels."""
    require_val_split(split, f"the {source} prompt set")
    grouped: dict[str, list[LabelledPrompt]] = {}
    for row in rows:
        grouped.setdefault(category_name(row.label), []).append(row)
    prompts: list[Prompt] = []
    for category in resolve_categories(categories, known=tuple(grouped)):
        members = grouped[category]
        prompts += number_prompts(
            [row.text for row in members],
            category=category,
            split=split,
            id_tag=id_tag,
            limit=limit,
            challenges=[row.challenge for row in members],
        )
    return make_prompt_set(source, prompts, files, licence)
