"""Stable unCLIP's decoder (Stable Diffusion 2.1 conditioned on a CLIP image embedding), run through diffusers'
StableUnCLIPImg2ImgPipeline fed precomputed `image_embeds` with an empty text prompt."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from pydantic import Field, model_validator

from ovi_bench.components import ModelNeed
from ovi_bench.components import Params as BaseParams
from ovi_bench.decoders.base import Decoder, check_decode_inputs, rgb_images
from ovi_bench.errors import ModelLoadError, SpecError
from ovi_bench.models.stable_unclip import (
    PIPELINE_FILES,
    STABLE_UNCLIP_H_ID,
    VARIANTS,
    StableUnclipVariant,
    load_pipeline,
    noise_levels,
)

NAME = "stable-unclip"
PIPELINE_SIZE_MULTIPLE = 8
"""StableUnCLIPImg2ImgPipeline refuses heights and widths that are not multiples of 8, whatever its VAE."""


class StableUnclipDecoder(Decoder):
    """Images from image embeddings alone (empty prompt); space by `variant` (h: ViT-H/14, small: ViT-L/14).

    The pipeline's PNDM scheduler, its noise augmentation of the embedding (`noise_level`), and classifier-free
    guidance against a zero embedding."""

    space_parameter = "variant"

    negative_embedding = (
        "zeros: the pipeline's unconditional branch is an all-zero class label (noised embedding and noise-level "
        "embedding); the prior's negative embedding is ignored"
    )

    class Params(BaseParams):
        variant: StableUnclipVariant = "h"
        """Which checkpoint, and so which space: "h" (stabilityai/stable-diffusion-2-1-unclip, OpenCLIP ViT-H/14,
        1024-d) or "small" (stabilityai/stable-diffusion-2-1-unclip-small, OpenAI CLIP ViT-L/14, 768-d)."""
        model: str = STABLE_UNCLIP_H_ID
        """A Stable unCLIP pipeline of the variant: Hugging Face id, local folder, or "tiny" (random weights of the
        variant's space, for tests). Left out, the variant's published checkpoint."""
        noise_level: int = Field(0, ge=0)
        """Noise augmentation of the image embedding: a timestep of the pipeline's image_noising_scheduler (1000
        levels of a squared-cosine schedule in both checkpoints, so 0-999). 0 adds almost none (the schedule's
        first step, a noise of standard deviation 0.0064 in normalised units); higher levels keep less of the
        embedding and vary the images more."""

        @model_validator(mode="before")
        @classmethod
        def _variant_default_model(cls, data: Any) -> Any:
            # A spec that names the variant but not the model gets the variant's checkpoint (the stored value, so
            # the fingerprint names the model actually used).
            if isinstance(data, dict) and data.get("model") is None:
                variant = data.get("variant", "h")
                # A variant that is not a known name is left for the field's own check to refuse by name.
                if isinstance(variant, str) and variant in VARIANTS:
                    data = {**data, "model": VARIANTS[variant].model_id}
            return data

        @model_validator(mode="after")
        def _model_matches_variant(self) -> StableUnclipDecoder.Params:
            for variant, info in VARIANTS.items():
                if self.model == info.model_id and variant != self.variant:
                    raise ValueError(
                        f"model {info.model_id!r} is the {variant!r} variant (space {info.space.name}), but variant "
                        f"is {self.variant!r}: set variant = {variant!r}, or leave model out"
                    )
            return self

    params: StableUnclipDecoder.Params

    @classmethod
    def embedding_space(cls, params: StableUnclipDecoder.Params) -> str:
        return VARIANTS[params.variant].space.name

    @classmethod
    def required_models(cls, params: StableUnclipDecoder.Params) -> list[ModelNeed]:
        return [
            ModelNeed(
                params.model,
                "Stable unCLIP pipeline (UNet, VAE, text encoder, image normalizer)",
                PIPELINE_FILES,
            )
        ]

    def __init__(
        self, params: StableUnclipDecoder.Params, *, device: torch.device, dtype: torch.dtype
    ) -> None:
        super().__init__(params, device=device, dtype=dtype)
        levels = noise_levels(params.model, params.variant)
        if params.noise_level >= levels:
            raise SpecError(
                f"decoder '{NAME}': noise_level {params.noise_level} is out of range: the model's noise schedule has "
                f"{levels} levels, so noise_level must be 0 to {levels - 1}."
            )
        self.pipeline = load_pipeline(params.model, params.variant, device, dtype)
        self._check_embedding_width()

    @property
    def embedding_width(self) -> int:
        """Width of the image embeddings the loaded pipeline takes (its image normalizer's)."""
        return self.pipeline.image_normalizer.config.embedding_dim

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this: 8 (the pipeline's own rule, and the real VAE's factor), or
        the VAE's factor where that is larger (other sizes would be rounded down)."""
        return math.lcm(PIPELINE_SIZE_MULTIPLE, self.pipeline.vae_scale_factor)

    def _check_embedding_width(self) -> None:
        space = VARIANTS[self.params.variant].space
        if self.embedding_width not in (space.width, space.tiny_width):
            raise ModelLoadError(
                f"decoder '{NAME}': the model '{self.params.model}' takes {self.embedding_width}-d image embeddings, "
                f"but variant '{self.params.variant}' renders {space.name} ({space.width}-d): set the variant that "
                "matches the model."
            )

    def decode(
        self,
        image_embeds: torch.Tensor,
        negative_image_embeds: torch.Tensor,
        generators: Sequence[torch.Generator],
        *,
        height: int,
        width: int,
        steps: int,
        guidance: float,
    ) -> list[Image.Image]:
        check_decode_inputs(
            NAME,
            image_embeds,
            negative_image_embeds,
            generators,
            height=height,
            width=width,
            steps=steps,
            size_multiple=self.size_multiple,
            size_advice="for example 768x768, the size both checkpoints were trained at; the pipeline refuses "
            "other sizes or rounds them down",
            embedding_width=self.embedding_width,
            # Never read: the pipeline guides against zeros.
            negative_is_read=False,
        )
        # The pipeline never casts image_embeds: they meet the image normalizer's and the UNet's weights as given.
        unet = self.pipeline.unet
        with torch.inference_mode():
            images = self.pipeline(
                # One empty prompt per image: the image embedding alone conditions (both CFG branches see "").
                prompt=[""] * len(generators),
                image_embeds=image_embeds.to(device=unet.device, dtype=unet.dtype),
                noise_level=self.params.noise_level,
                height=height,
                width=width,
                num_inference_steps=steps,
                guidance_scale=guidance,
                # One generator per image: it draws the image's embedding noise, then its latents, so an image does
                # not depend on its position in the batch.
                generator=list(generators),
                output_type="np",
            ).images
        return rgb_images(images)
