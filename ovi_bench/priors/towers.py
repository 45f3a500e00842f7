"""The parameters the training-free priors (`text-embedding` and the OVI family) share: the embedding space they work
in, and the CLIP text and vision towers of that space (`ovi_bench.models.towers`), by default the space's own."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator, model_validator

from ovi_bench.components import Params, added_field
from ovi_bench.errors import UnknownNameError
from ovi_bench.models.kandinsky import KANDINSKY22_PRIOR_ID
from ovi_bench.spaces import DEFAULT_SPACE, SPACES, get_space


class TowersParams(Params):
    space: str = added_field(DEFAULT_SPACE)
    """The image-embedding space to make embeddings in (`ovi-bench spaces`): "clip-vit-bigg-14" (Kandinsky 2.2),
    "clip-vit-h-14" or "clip-vit-l-14". The decoder must render this space."""
    model: str = KANDINSKY22_PRIOR_ID
    """The space's CLIP text and vision towers: Hugging Face id, local folder, or "tiny" (random weights, for tests).
    Default: the space's towers (bigG: the Kandinsky 2.2 prior's text_encoder/ and image_encoder/; H and L: a
    transformers CLIPModel)."""

    @model_validator(mode="before")
    @classmethod
    def _default_towers_of_the_space(cls, values: Any) -> Any:
        # The default model depends on the space; for bigG it is the field's own default, so existing specs are
        # unchanged.
        space = values.get("space") if isinstance(values, dict) else None
        # Only a known name picks the towers; anything else (a typo, a list) is left to the field's own check.
        if isinstance(space, str) and space in SPACES and "model" not in values:
            values = {**values, "model": SPACES[values["space"]].towers}
        return values

    @field_validator("space")
    @classmethod
    def _known_space(cls, space: str) -> str:
        try:
            get_space(space)
        except UnknownNameError as error:  # as a ValueError, so the spec error names the field
            raise ValueError(str(error)) from None
        return space
