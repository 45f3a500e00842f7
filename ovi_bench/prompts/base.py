"""Prompt records, prompt sets, the base class of a registered prompt source and the helpers sources build on.

A prompt's id is built from its category, split and position, never from its text, so that images, embeddings and
scores stay attached to the right prompt even when two prompts share a text (the official files have duplicates).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ovi_bench.errors import SpecError
from ovi_bench.io import canonical_json, sha256_text
from ovi_bench.text import did_you_mean

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
    challenge: str | None = None
    """The source's challenge label where it has one (PartiPrompts: "Complex", "Fine-grained Detail", ...); not part
    of the prompt set's digest, which predates it."""


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
    licence: str | None = None
    """The licence the source states for its prompts, where ovi-bench records one (PartiPrompts, DrawBench)."""

    def by_category(self) -> dict[str, list[Prompt]]:
        grouped: dict[str, list[Prompt]] = {}
        for prompt in self.prompts:
            grouped.setdefault(prompt.category, []).append(prompt)
        return grouped


def prompt_set_digest(prompts: Iterable[Prompt]) -> str:
    return sha256_text(canonical_json([(prompt.id, prompt.category, prompt.text) for prompt in prompts]))


def make_prompt_set(
    source: str, prompts: Iterable[Prompt], files: dict[str, str], licence: str | None = None
) -> PromptSet:
    """Build a PromptSet whose digest is computed here, so no loader can get it out of step with its prompts."""
    prompts = tuple(prompts)
    return PromptSet(
        source=source, prompts=prompts, digest=prompt_set_digest(prompts), files=dict(files), licence=licence
    )


def number_prompts(
    texts: Sequence[str],
    *,
    category: str,
    split: str,
    id_tag: str,
    limit: int | None,
    subsets: Sequence[str | None] | None = None,
    challenges: Sequence[str | None] | None = None,
) -> list[Prompt]:
    """Turn texts (already stripped, empties dropped, source order) into Prompts with ids
    f"{category}-{id_tag}-{index:04d}", keeping only the first `limit`; `subsets` and `challenges` run parallel to
    `texts`."""
    subsets = subsets if subsets is not None else [None] * len(texts)
    challenges = challenges if challenges is not None else [None] * len(texts)
    return [
        Prompt(
            id=f"{category}-{id_tag}-{index:04d}",
            category=category,
            split=split,
            index=index,
            text=text,
            subset=subset,
            challenge=challenge,
        )
        for index, (text, subset, challenge) in enumerate(
            zip(texts[:limit], subsets[:limit], challenges[:limit], strict=True)
        )
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
    return make_prompt_set(prompt_set.source, prompts, prompt_set.files, prompt_set.licence)


class PromptSource(abc.ABC):
    """A named set of prompts, chosen in a run spec with `prompts.source = "<name>"`.

    Built-in sources are listed in `ovi_bench.registry.PROMPTS`; a third-party package adds one under the entry point
    group `ovi_bench.prompts` (name = source name, value = `module:Class`), or a `--plugins` module with
    `@PROMPTS.register("name")` above the class. The first line of the class docstring describes the source.
    """

    licence: ClassVar[str | None] = None
    """The licence the source states for its prompts (an SPDX id such as "Apache-2.0", or a phrase such as "none
    stated"); None where ovi-bench records none. `load` passes it on to the PromptSet, and so to the provenance."""

    @abc.abstractmethod
    def load(
        self,
        categories: Sequence[str] | None,
        split: str,
        limit: int | None,
        data_dir: str | Path | None,
    ) -> PromptSet:
        """The prompts of `categories` (None: every category of the source; an unknown one is a SpecError) of
        `split`, keeping the first `limit` of each category (None: all; already validated), grouped by category in
        the requested order. `data_dir` is a folder holding a local copy of the source's files, when the run names one
        (`prompts.data_dir`). Build the result with `make_prompt_set`, so that its digest matches its prompts."""
