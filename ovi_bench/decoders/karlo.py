"""Karlo's decoder (`kakaobrain/karlo-v1-alpha-image-variations`): the 64 px unCLIP decoder and its 64 -> 256 px
super-resolution, run through diffusers' UnCLIPImageVariationPipeline fed precomputed `image_embeddings`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from pydantic import Field

from ovi_bench.components import ModelNeed
from ovi_bench.components import Params as BaseParams
from ovi_bench.decoders.base import Decoder, check_decode_inputs, rgb_images
from ovi_bench.errors import SpecError
from ovi_bench.models.karlo import DECODER_PIPELINE_FILES, KARLO_IMAGE_VARIATIONS_ID, load_decoder_pipeline
from ovi_bench.spaces import L


class KarloDecoder(Decoder):
    """unCLIP 64 px decoder + 64 -> 256 px super-resolution from image embeddings; renders only 256x256.

    The pipeline's UnCLIP schedulers; classifier-free guidance in the 64 px decoder only (the super-resolution runs
    unguided, as in the pipeline)."""

    negative_embedding = (
        "none: the unconditional branch uses text_proj's learned classifier-free-guidance embedding and the empty "
        "prompt, as UnCLIPImageVariationPipeline does; the negative image embedding is checked and otherwise unused "
        "(the karlo prior returns zeros)"
    )

    class Params(BaseParams):
        model: str = KARLO_IMAGE_VARIATIONS_ID
        """A Karlo image-variation pipeline: Hugging Face id, local folder, or "tiny" (random weights, for tests)."""
        super_res_steps: int = Field(default=7, ge=1)
        """Steps of the super-resolution (the pipeline's `super_res_num_inference_steps` default): the last step
        runs `super_res_last`, the others `super_res_first`."""

    params: KarloDecoder.Params

    @classmethod
    def embedding_space(cls, params: KarloDecoder.Params) -> str:
        return L.name  # Karlo's decoder is trained on OpenAI CLIP ViT-L/14 image embeddings

    @classmethod
    def required_models(cls, params: KarloDecoder.Params) -> list[ModelNeed]:
        return [ModelNeed(params.model, "unCLIP decoder and super-resolution", DECODER_PIPELINE_FILES)]

    def __init__(self, params: KarloDecoder.Params, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(params, device=device, dtype=dtype)
        self.pipeline = load_decoder_pipeline(params.model, device, dtype)

    @property
    def image_size(self) -> int:
        """The only side the cascade renders (256 for the real one): the super-resolution UNet's sample size."""
        return self.pipeline.super_res_first.config.sample_size

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
        size = self.image_size
        if (height, width) != (size, size):
            decoder_size = self.pipeline.decoder.config.sample_size
            raise SpecError(
                f"decoder 'karlo-decoder' renders only {size}x{size} images (its {decoder_size} px decoder and "
                f"{decoder_size} -> {size} px super-resolution are fixed), not {width}x{height}: set height = {size} "
                f"and width = {size} in the spec's decoder."
            )
        check_decode_inputs(
            "karlo-decoder",
            image_embeds,
            negative_image_embeds,
            generators,
            height=height,
            width=width,
            steps=steps,
            size_multiple=size,  # the one size, checked above
            size_advice=f"set height = width = {size}",
            embedding_width=self.pipeline.text_proj.config.clip_embeddings_dim,
        )
        decoder = self.pipeline.decoder
        with torch.inference_mode():
            images = self.pipeline(
                # The pipeline uses precomputed embeddings as given (no cast), so cast to the decoder's here.
                image_embeddings=image_embeds.to(device=decoder.device, dtype=decoder.dtype),
                decoder_num_inference_steps=steps,
                super_res_num_inference_steps=self.params.super_res_steps,
                decoder_guidance_scale=guidance,
                # One generator per image: the pipeline hands `generator` to diffusers' randn_tensor for the decoder
                # and super-resolution latents and every scheduler step, which draws row i from generators[i].
                generator=list(generators),
                output_type="np",
            ).images
        return rgb_images(images)
