"""Kandinsky 2.2's decoder (UNet + movq), run through diffusers' KandinskyV22Pipeline."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from ovi_bench.components import ModelNeed
from ovi_bench.components import Params as BaseParams
from ovi_bench.decoders.base import Decoder, check_decode_inputs, rgb_images
from ovi_bench.models.kandinsky import (
    DECODER_PIPELINE_FILES,
    KANDINSKY22_DECODER_ID,
    load_decoder_pipeline,
)
from ovi_bench.spaces import DEFAULT_SPACE


class KandinskyDecoder(Decoder):
    """Images from (image, negative image) embedding pairs; the pipeline's DDPM scheduler and CFG."""

    class Params(BaseParams):
        model: str = KANDINSKY22_DECODER_ID
        """A Kandinsky 2.2 decoder: Hugging Face id, local folder, or "tiny" (random weights, for tests)."""

    params: KandinskyDecoder.Params

    @classmethod
    def embedding_space(cls, params: KandinskyDecoder.Params) -> str:
        return DEFAULT_SPACE  # Kandinsky 2.2's decoder is trained on ViT-bigG/14 image embeddings

    @classmethod
    def required_models(cls, params: KandinskyDecoder.Params) -> list[ModelNeed]:
        return [ModelNeed(params.model, "decoder pipeline (UNet, movq)", DECODER_PIPELINE_FILES)]

    def __init__(self, params: KandinskyDecoder.Params, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(params, device=device, dtype=dtype)
        self.pipeline = load_decoder_pipeline(params.model, device, dtype)

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this (64 for the real decoder), or the pipeline rounds them up."""
        return self.pipeline.movq_scale_factor**2

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
        multiple = self.size_multiple
        check_decode_inputs(
            "kandinsky-2.2-decoder",
            image_embeds,
            negative_image_embeds,
            generators,
            height=height,
            width=width,
            steps=steps,
            size_multiple=multiple,
            size_advice=f"for example {multiple * 8}x{multiple * 8}; other sizes would be silently rounded up",
            embedding_width=self.pipeline.unet.config.encoder_hid_dim,
        )
        # The pipeline casts the embeds to the UNet's device and dtype only when guidance is on, so cast here.
        unet = self.pipeline.unet
        with torch.inference_mode():
            images = self.pipeline(
                image_embeds=image_embeds.to(device=unet.device, dtype=unet.dtype),
                negative_image_embeds=negative_image_embeds.to(device=unet.device, dtype=unet.dtype),
                height=height,
                width=width,
                num_inference_steps=steps,
                guidance_scale=guidance,
                # One generator per image, so an image does not depend on its position in the batch.
                generator=list(generators),
                output_type="np",
            ).images
        return rgb_images(images)
