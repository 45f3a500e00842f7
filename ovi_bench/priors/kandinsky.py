"""Kandinsky 2.2's learned diffusion prior, run through diffusers' KandinskyV22PriorPipeline."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from pydantic import Field

from ovi_bench.backbones.kandinsky import (
    KANDINSKY22_PRIOR_ID,
    TextSide,
    load_prior_pipeline,
    zero_image_embeds,
)
from ovi_bench.components import Params as BaseParams
from ovi_bench.errors import OviBenchError
from ovi_bench.priors.base import Prior, PriorOutput
from ovi_bench.registry import PRIORS


@PRIORS.register("kandinsky-2.2")
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

    def __init__(self, params: KandinskyPrior.Params, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(params, device=device, dtype=dtype)
        self.pipeline = load_prior_pipeline(params.model, device, dtype)
        # The pipeline computes the same value on every call; every prior shares this cached copy instead.
        self.negative_image_embeds = zero_image_embeds(
            params.model, device, dtype, image_encoder=self.pipeline.image_encoder
        )
        self.text_side = TextSide(self.pipeline.tokenizer, self.pipeline.text_encoder)
        _encode_prompts_through(self.pipeline, self.text_side)

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


_ENCODE_PROMPT_PARAMETERS = [
    "prompt",
    "device",
    "num_images_per_prompt",
    "do_classifier_free_guidance",
    "negative_prompt",
]


def _encode_prompts_through(pipeline: object, text_side: TextSide) -> None:
    """Make the pipeline encode its prompts through `text_side`, which encodes exactly as the pipeline's own
    `_encode_prompt` does but each text once (a prompt's seeds share its encoding, and the empty negative prompt is
    encoded once, not once per sample).

    That method is private to diffusers: when its signature is not the one this replacement was written for
    (diffusers 0.42), the pipeline keeps its own and only loses the cache.
    """
    original = getattr(pipeline, "_encode_prompt", None)
    if original is None or list(inspect.signature(original).parameters) != _ENCODE_PROMPT_PARAMETERS:
        return

    def encode_prompt(
        prompt: str | list[str],
        device: torch.device,
        num_images_per_prompt: int,
        do_classifier_free_guidance: bool,
        negative_prompt: str | list[str] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if negative_prompt is not None or num_images_per_prompt != 1 or not isinstance(prompt, list):
            return original(
                prompt, device, num_images_per_prompt, do_classifier_free_guidance, negative_prompt
            )
        # As the pipeline: the unconditional rows (the empty prompt) first, then the prompts.
        texts = [""] * len(prompt) + prompt if do_classifier_free_guidance else prompt
        encoding = text_side.encode(texts)
        return (
            encoding.text_embeds.to(device),
            encoding.last_hidden_state.to(device),
            encoding.attention_mask.to(device),
        )

    pipeline._encode_prompt = encode_prompt  # type: ignore[attr-defined]
