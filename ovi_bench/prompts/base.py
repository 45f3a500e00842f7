"""Prompt records, prompt sets and the one entry point, `load_prompts`, that every run uses to get its prompts.

A prompt's id is built from its category, split and position, never from its text, so that images, embeddings and
scores stay attached to the right prompt even when two prompts share a text (the official files have duplicates).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ovi_bench.errors import SpecError
from ovi_bench.io import canonical_json, sha256_text
from ovi_bench.paths import expand_user
from ovi_bench.registry import did_you_mean
from ovi_bench.text import short_repr

CATEGORIES: tuple[str, ...] = (
    "color",
    "shape",
    "texture",
    "spatial",
    "3d_spatial",
    "non_spatial",
    "numeracy",
    "complex",
)
SPLITS: tuple[str, ...] = ("val", "train")

COMPBENCH_SOURCE = "t2i-compbench"
BUILTIN_SOURCE = "builtin"


@dataclass(frozen=True)
class Prompt:
    """One prompt. `index` is its position in its source after empty lines are dropped: the official evaluators
    map images to prompts by that position, so it must survive any filtering we do."""

    id: str
    category: str
    split: str
    index: int
    text: str
    subset: str | None = None
    """Complex prompts: "spatial", "action" or "spatialaction", the routing of the official 3-in-1 metric (None:
    not known, which 3-in-1 treats as the official "otherwise", spatialaction)."""


@dataclass(frozen=True)
class PromptSet:
    """The prompts of a run plus what is needed to prove later which prompts they were."""

    source: str
    """"t2i-compbench", "builtin" or "file:<file name>"."""
    prompts: tuple[Prompt, ...]
    """Grouped by category in the requested order; source order within a category."""
    digest: str
    """sha256 of the canonical JSON of [(id, category, text), ...]: equal digests mean identical prompt lists."""
    files: dict[str, str]
    """Provenance: file name -> sha256 of the file the prompts were read from ({} for the built-in list)."""

    def by_category(self) -> dict[str, list[Prompt]]:
        grouped: dict[str, list[Prompt]] = {}
        for prompt in self.prompts:
            grouped.setdefault(prompt.category, []).append(prompt)
        return grouped


def prompt_set_digest(prompts: Iterable[Prompt]) -> str:
    return sha256_text(canonical_json([(prompt.id, prompt.category, prompt.text) for prompt in prompts]))


def make_prompt_set(source: str, prompts: Iterable[Prompt], files: dict[str, str]) -> PromptSet:
    """Build a PromptSet whose digest is computed here, so no loader can get it out of step with its prompts."""
    prompts = tuple(prompts)
    return PromptSet(source=source, prompts=prompts, digest=prompt_set_digest(prompts), files=dict(files))


def number_prompts(
    texts: Sequence[str],
    *,
    category: str,
    split: str,
    id_tag: str,
    limit: int | None,
    subsets: Sequence[str | None] | None = None,
) -> list[Prompt]:
    """Turn texts (already stripped, empties dropped, source order) into Prompts with ids
    f"{category}-{id_tag}-{index:04d}", keeping only the first `limit`; `subsets` runs parallel to `texts`."""
    subsets = subsets if subsets is not None else [None] * len(texts)
    return [
        Prompt(
            id=f"{category}-{id_tag}-{index:04d}",
            category=category,
            split=split,
            index=index,
            text=text,
            subset=subset,
        )
        for index, (text, subset) in enumerate(zip(texts[:limit], subsets[:limit], strict=True))
    ]


def validate_limit(limit: int | None) -> None:
    if limit is None:
        return
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise SpecError(
            f"prompts.limit must be a whole number of prompts per category, at least 1 (got {limit!r}). "
            "Leave it out to use every prompt."
        )


def validate_split(split: str) -> None:
    if split not in SPLITS:
        raise SpecError(
            f"unknown prompt split '{split}'.{did_you_mean(split, SPLITS)} "
            f"Valid splits: {', '.join(SPLITS)} (the official evaluation uses 'val')."
        )


def require_val_split(split: str, what: str) -> None:
    """The built-in list and custom files have no train/val distinction; asking for 'train' is a mistake."""
    validate_split(split)
    if split != "val":
        raise SpecError(f"{what} has only a 'val' split (got '{split}'). Set prompts.split = \"val\".")


def resolve_categories(
    categories: Sequence[str] | None, known: Sequence[str] = CATEGORIES
) -> tuple[str, ...]:
    """The requested categories in the requested order (duplicates dropped); None means every known one."""
    if categories is None:
        return tuple(known)
    if isinstance(categories, str):
        raise SpecError(
            f"prompts.categories must be a list of category names, not the string '{categories}'. "
            f'Write ["{categories}"].'
        )
    if not categories:
        raise SpecError(
            "prompts.categories is empty. List at least one category, or leave it out to use all."
        )
    for category in categories:
        if category not in known:
            raise SpecError(
                f"unknown prompt category '{category}'.{did_you_mean(category, known)} "
                f"Valid categories: {', '.join(known)}."
            )
    return tuple(dict.fromkeys(categories))


def select_prompts(prompt_set: PromptSet, categories: Sequence[str] | None, limit: int | None) -> PromptSet:
    """Keep the requested categories (of those present in the set) and the first `limit` prompts of each."""
    grouped = prompt_set.by_category()
    selected = resolve_categories(categories, known=tuple(grouped))
    prompts = [prompt for category in selected for prompt in grouped[category][:limit]]
    return make_prompt_set(prompt_set.source, prompts, prompt_set.files)


def load_prompts(
    source: str,
    categories: Sequence[str] | None = None,
    split: str = "val",
    limit: int | None = None,
    data_dir: str | Path | None = None,
) -> PromptSet:
    """Load the prompts of a run.

    `source` is "t2i-compbench" (the official files; `data_dir` optionally points at a local copy), "builtin"
    (a small list shipped with ovi-bench, for smoke tests) or the path of a .txt/.csv prompt file.
    `limit` keeps the first N prompts of each category, in file order.
    """
    # Imported here because the loaders build on the records defined above.
    from ovi_bench.prompts.builtin import load_builtin
    from ovi_bench.prompts.compbench import load_compbench
    from ovi_bench.prompts.files import is_prompt_file_path, load_prompt_file_source

    validate_limit(limit)
    if source == COMPBENCH_SOURCE:
        return load_compbench(categories, split, limit, data_dir)
    if source == BUILTIN_SOURCE:
        require_val_split(split, "the built-in prompt list")
        return load_builtin(categories, limit)
    if is_prompt_file_path(source):
        return load_prompt_file_source(expand_user(source), categories, split, limit)
    raise SpecError(
        f"unknown prompt source {short_repr(source)}.{did_you_mean(str(source), (COMPBENCH_SOURCE, BUILTIN_SOURCE))} "
        f'Use "{COMPBENCH_SOURCE}" (official prompts), "{BUILTIN_SOURCE}" (small built-in list) '
        "or the path to a .txt or .csv prompt file."
    )
