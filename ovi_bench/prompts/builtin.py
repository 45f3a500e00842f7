"""A tiny prompt list written for ovi-bench, so smoke tests and demos run without the official files.

Each category follows the phrasing of its T2I-CompBench++ counterpart, so category-specific metrics can parse it.
Some prompts carry non-ASCII letters, an apostrophe or double quotes on purpose: they exercise file naming,
tokenisation and JSON paths downstream. No prompt contains '_' or '/', which the official image naming forbids.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ovi_bench.prompts.base import (
    BUILTIN_SOURCE,
    PromptSet,
    PromptSource,
    make_prompt_set,
    number_prompts,
    require_val_split,
    resolve_categories,
)

BUILTIN_PROMPTS: dict[str, tuple[str, ...]] = {
    "color": (
        "a red kite and a blue teapot",
        "a yellow umbrella and a green bicycle",
        "a purple scarf and an orange lamp",
        "a man's green hat and a white glove",
    ),
    "shape": (
        "a round clock and a triangular sign",
        "an oval mirror and a rectangular rug",
        "a cubic box and a cylindrical vase",
        "a spherical lantern and a square crêpe",
    ),
    "texture": (
        "a wooden spoon and a metallic bowl",
        "a fluffy pillow and a leather sofa",
        "a glass bottle and a rubber duck",
        "a plastic chair and a fabric cushion",
    ),
    "spatial": (
        "a cat on the left of a flowerpot",
        "a bicycle on the right of a bench",
        "a bird on the top of a mailbox",
        "a dog next to a suitcase",
    ),
    "3d_spatial": (
        "a chair in front of a bookshelf",
        "a tree behind a house",
        "a ball hidden by a box",
        "a vase in front of a mirror",
    ),
    "non_spatial": (
        "A girl is feeding ducks at the pond early in the morning.",
        "A chef is chopping peppers for a jalapeño salsa.",
        "Two friends are sharing an umbrella while walking home.",
        "An old man is reading the newspaper on a park bench.",
    ),
    "numeracy": (
        "two cats and one dog",
        "three apples, an orange and five bananas",
        "a backpack and six pencils",
        "four chairs, seven books and eight spoons",
    ),
    "complex": (
        "The blue car is parked next to the red fire hydrant while a dog sleeps under the tree.",
        "A small brown rabbit hides behind the green bush, and a white butterfly rests on its ear.",
        'The wooden table stands on the left of the window, where a woman sips from a "Welcome" mug.',
        "The shiny golden trophy sits on the shelf above the old leather armchair in the café.",
    ),
}


BUILTIN_COMPLEX_SUBSETS: tuple[str, ...] = ("spatialaction", "spatialaction", "spatialaction", "spatial")
"""The 3-in-1 routing of the built-in complex prompts, in order (what the official lists would say of them)."""


def load_builtin(categories: Sequence[str] | None, limit: int | None) -> PromptSet:
    """The built-in prompts of `categories` (all when None), ids f"{category}-builtin-{index:04d}"."""
    prompts = [
        prompt
        for category in resolve_categories(categories)
        for prompt in number_prompts(
            BUILTIN_PROMPTS[category],
            category=category,
            split="val",
            id_tag="builtin",
            limit=limit,
            subsets=BUILTIN_COMPLEX_SUBSETS if category == "complex" else None,
        )
    ]
    return make_prompt_set(BUILTIN_SOURCE, prompts, files={})


class BuiltinPrompts(PromptSource):
    """A few prompts per T2I-CompBench++ category, shipped with ovi-bench: smoke tests and demos, offline."""

    def load(
        self, categories: Sequence[str] | None, split: str, limit: int | None, data_dir: str | Path | None
    ) -> PromptSet:
        require_val_split(split, "the built-in prompt list")
        return load_builtin(categories, limit)
