"""Kandinsky 2.2's learned diffusion prior, run through diffusers' KandinskyV22PriorPipeline."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import Field

from ovi_bench.components import ModelNeed
from ovi_bench.components import Params as BaseParams
from ovi_bench.errors import OviBenchError
from ovi_bench.models.kandinsky import (
    KANDINSKY22_PRIOR_ID,
    PRIOR_PIPELINE_FILES,
    load_prior_pipeline,
    zero_image_embeds,
)
from ovi_bench.priors.base import Prior, PriorOutput
from ovi_bench.spaces import DEFAULT_SPACE


class KandinskyPrior(Prior):
    """The diffusion prior with classifier-free guidance against the empty prompt; negative = the zero-image embedding."""

    class Params(BaseParams):
        model: str = KANDINSKY22_PRIOR_ID
        """A Kandinsky 2.2 prior: Hugging Face id, local folder, or "tiny" (random weights, for tests)."""
        steps: int = Field(default=25, ge=1)
        """Denoising steps of the UnCLIP scheduler (the pipeline's default, and what the combined pipeline uses)."""
        guidance: float = Field(default=4.0, ge=0.0)
        """Classifier-free guidance scale against the empty prompt; at most 1 turns guidance off."""

    params: KandinskyPrior.Params

    @classmethod
    def embedding_space(cls, params: KandinskyPrior.Params) -> str:
        return DEFAULT_SPACE  # Kandinsky 2.2's prior is trained on its own image encoder

    @classmethod
    def required_models(cls, params: KandinskyPrior.Params) -> list[ModelNeed]:
        return [ModelNeed(params.model, "diffusion prior pipeline", PRIOR_PIPELINE_FILES)]

    def __init__(self, params: KandinskyPrior.Params, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(params, device=device, dtype=dtype)
        self.pipeline = load_prior_pipeline(params.model, device, dtype)
        # The pipeline computes the same value on every call; every prior shares this cached copy instead.
        self.negative_image_embeds = zero_image_embeds(
            params.model, device, dtype, image_encoder=self.pipeline.image_encoder
        )

    def embed(self, texts: Sequence[str], generators: Sequence[torch.Generator]) -> PriorOutput:
        if len(generators) != len(texts):
            raise OviBenchError(
                f"prior 'kandinsky-2.2' got {len(texts)} texts but {len(generators)} generators."
            )
        with torch.inference_mode():
            # A list of generators, one per prompt: with a single generator a prompt's noise (and so its embedding)
            # would depend on its position in the batch.
            output = self.pipeline(
                list(texts),
                negative_prompt=None,
                num_inference_steps=self.params.steps,
                guidance_scale=self.params.guidance,
                generator=list(generators),
                output_type="pt",
            )
        image_embeds = output.image_embeds.float().cpu()
        negative_image_embeds = self.negative_image_embeds.repeat(len(texts), 1)
        return PriorOutput(image_embeds=image_embeds, negative_image_embeds=negative_image_embeds)
