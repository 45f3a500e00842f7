"""The TextEmb baseline: the CLIP text embedding handed to the decoder as if it were an image embedding."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import field_validator

from ovi_bench.components import ModelNeed
from ovi_bench.models.towers import load_towers_text_side, towers_files, towers_zero_image_embeds
from ovi_bench.priors.base import Prior, PriorOutput
from ovi_bench.priors.towers import TowersParams


class TextEmbeddingPrior(Prior):
    """image_embeds = the space's CLIP text `text_embeds`; negative = the zero-image embedding. Deterministic."""

    space_parameter = "space"

    class Params(TowersParams):
        rescale: Literal["none", "zero-image-norm"] | float = "none"
        """Row norms: "none" keeps the text encoder's; "zero-image-norm" rescales each row to the L2 norm of the
        zero-image embedding (a real image embedding's scale); a positive number rescales each row to that norm."""

        @field_validator("rescale")
        @classmethod
        def _positive_norm(cls, rescale: str | float) -> str | float:
            if isinstance(rescale, float) and not (math.isfinite(rescale) and rescale > 0):
                raise ValueError(
                    f"a numeric rescale is a target norm and must be positive and finite, not {rescale}"
                )
            return rescale

    params: TextEmbeddingPrior.Params

    @classmethod
    def embedding_space(cls, params: TextEmbeddingPrior.Params) -> str:
        return params.space

    @classmethod
    def required_models(cls, params: TextEmbeddingPrior.Params) -> list[ModelNeed]:
        files = towers_files(params.space)
        return [ModelNeed(params.model, "text encoder, and image encoder (zero-image negative)", files)]

    def __init__(
        self, params: TextEmbeddingPrior.Params, *, device: torch.device, dtype: torch.dtype
    ) -> None:
        super().__init__(params, device=device, dtype=dtype)
        self.text_side = load_towers_text_side(params.model, params.space, device, dtype)
        self.negative_image_embeds = towers_zero_image_embeds(params.model, params.space, device, dtype)

    def embed(self, texts: Sequence[str], generators: Sequence[torch.Generator]) -> PriorOutput:
        # The generators are ignored: this prior has no randomness.
        with torch.inference_mode():
            image_embeds = self.text_side.encode(texts).text_embeds.float().cpu()
        rescale = self.params.rescale
        if rescale != "none":
            target_norm = self.negative_image_embeds.norm() if rescale == "zero-image-norm" else rescale
            image_embeds = image_embeds / image_embeds.norm(dim=-1, keepdim=True) * target_norm
        negative_image_embeds = self.negative_image_embeds.repeat(len(texts), 1)
        return PriorOutput(image_embeds=image_embeds, negative_image_embeds=negative_image_embeds)
