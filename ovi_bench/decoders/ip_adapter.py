"""SDXL and SD 1.5 with an IP-Adapter, fed the prior's image embedding through diffusers' `ip_adapter_image_embeds`.

The adapter was trained to condition a frozen text-to-image model on a CLIP image embedding; given the prior's
embedding in that CLIP space, the base model renders it. By default the text prompt is empty (`prompt_mode =
"empty"`), so that only the prior conditions the image and the benchmark compares priors, not the base model's text
encoder.

Classifier-free guidance follows diffusers' own convention for IP-Adapter image embeddings: the unconditional image
embedding is all zeros (what `encode_image` of these pipelines returns as the negative, and what the adapter saw
when its image condition was dropped in training), concatenated before the positive rows. The prior's negative
embedding is therefore not used.

Each image is rendered by its own pipeline call: the pipelines take `ip_adapter_image_embeds` as the reference
image of the whole batch and repeat it for every prompt, so images with different embeddings cannot share a call.
An image therefore never depends on the batch it was decoded in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np
import torch
from PIL import Image
from pydantic import Field

from ovi_bench.components import ModelNeed
from ovi_bench.components import Params as BaseParams
from ovi_bench.decoders.base import Decoder, check_decode_inputs
from ovi_bench.errors import OviBenchError
from ovi_bench.models.ip_adapter import IP_ADAPTER_ID, SD15, SDXL, IpAdapterModel, load_ip_adapter_pipeline

PromptMode = Literal["empty", "text"]
"""What the base model's text encoder reads: an empty prompt (only the prior conditions the image) or the prompt."""


class IpAdapterParams(BaseParams):
    """What both IP-Adapter decoders take; each gives `model` its own default."""

    model: str
    """The base pipeline: Hugging Face id, local folder, or "tiny" (random weights, for tests)."""
    adapter: str = IP_ADAPTER_ID
    """The IP-Adapter repository: Hugging Face id, local folder (with the same subfolder and file name as the hub
    repository), or "tiny" (random weights, for tests)."""
    scale: float = Field(1.0, ge=0.0)
    """The adapter's weight in every cross-attention layer (`set_ip_adapter_scale`). 1.0, the default, conditions on
    the image embedding alone, as the adapter was trained; diffusers' guide suggests about 0.5 to balance it with a
    text prompt (`prompt_mode = "text"`). 0 switches the adapter off."""
    prompt_mode: PromptMode = "empty"
    """"empty": the text prompt is empty, so only the prior's embedding conditions the image. "text": the prompt is
    given to the base model too."""


class IpAdapterDecoder(Decoder):
    """A base text-to-image pipeline with an IP-Adapter; subclasses name the family."""

    family: ClassVar[IpAdapterModel]
    decoder_name: ClassVar[str]
    """The registered name, for messages."""
    trained_size: ClassVar[int]
    """The base model's training resolution (height = width), for messages."""
    negative_embedding = (
        "zeros (diffusers' unconditional IP-Adapter image embedding); the prior's negative is not used"
    )

    params: IpAdapterParams

    @classmethod
    def embedding_space(cls, params: IpAdapterParams) -> str:
        return cls.family.space

    @classmethod
    def required_models(cls, params: IpAdapterParams) -> list[ModelNeed]:
        return [
            ModelNeed(params.model, "base pipeline (UNet, VAE, text encoders)", cls.family.base_files),
            ModelNeed(params.adapter, "IP-Adapter weights", (cls.family.adapter_file,)),
        ]

    def __init__(self, params: IpAdapterParams, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(params, device=device, dtype=dtype)
        self.pipeline = load_ip_adapter_pipeline(self.family, params.model, params.adapter, device, dtype)
        self.pipeline.set_ip_adapter_scale(params.scale)
        self.reads_prompts = params.prompt_mode == "text"

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this: the VAE's factor times the UNet's (8 x 8 = 64 for the real
        models). The pipeline itself refuses non-multiples of the VAE's factor; between the two, the UNet's
        upsampling would resize its feature maps to fit the skip connections, at sizes the models were not trained
        on."""
        return self.pipeline.vae_scale_factor * 2**self.pipeline.unet.num_upsamplers

    @property
    def embedding_width(self) -> int:
        """The width of image embedding the adapter reads (its image projection's input)."""
        return self.pipeline.unet.encoder_hid_proj.image_projection_layers[0].image_embeds.in_features

    def _texts(self, prompts: Sequence[str] | None, rows: int) -> list[str]:
        """The text prompts the base model reads: empty ones, or the given prompts in "text" mode."""
        if not self.reads_prompts:
            return [""] * rows
        if prompts is None or len(prompts) != rows:
            given = "none" if prompts is None else str(len(prompts))
            raise OviBenchError(
                f"decoder '{self.decoder_name}' with prompt_mode = \"text\" needs one prompt per image ({rows}), got "
                f"{given}: pass `prompts=` to decode."
            )
        return list(prompts)

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
        prompts: Sequence[str] | None = None,
    ) -> list[Image.Image]:
        check_decode_inputs(
            self.decoder_name,
            image_embeds,
            negative_image_embeds,
            generators,
            height=height,
            width=width,
            steps=steps,
            size_multiple=self.size_multiple,
            size_advice=f"for example {self.trained_size}x{self.trained_size}, the size the base model was trained "
            f"at; the pipeline refuses non-multiples of {self.pipeline.vae_scale_factor}, and at the sizes between, "
            "the UNet would resize its feature maps to fit",
            embedding_width=self.embedding_width,
            # Never read: the adapter guides against a zero image embedding (see the module docstring).
            negative_is_read=False,
        )
        texts = self._texts(prompts, len(generators))
        unet = self.pipeline.unet
        guided = guidance > 1 and unet.config.time_cond_proj_dim is None  # the pipelines' own rule
        images = []
        # One pipeline call per image: the pipelines treat `ip_adapter_image_embeds` as the reference image(s) of
        # the whole batch and repeat it for every prompt, so rows with different embeddings cannot share a call.
        for row, (text, generator) in enumerate(zip(texts, generators, strict=True)):
            # [1, 1, D]: one image embedding for one prompt; with guidance the pipeline expects [negative; positive]
            # on the first axis and splits it with chunk(2).
            embeds = image_embeds[row : row + 1, None, :].to(device=unet.device, dtype=unet.dtype)
            if guided:
                embeds = torch.cat([torch.zeros_like(embeds), embeds])
            with torch.inference_mode():
                pixels = self.pipeline(
                    prompt=text,
                    ip_adapter_image_embeds=[embeds],
                    height=height,
                    width=width,
                    num_inference_steps=steps,
                    guidance_scale=guidance,
                    generator=generator,
                    output_type="np",
                ).images[0]
            images.append(Image.fromarray((pixels * 255).round().clip(0, 255).astype(np.uint8)))
        return images


class SdxlIpAdapterDecoder(IpAdapterDecoder):
    """SDXL 1.0 base with `h94/IP-Adapter` `sdxl_models/ip-adapter_sdxl.safetensors` (OpenCLIP ViT-bigG/14)."""

    family = SDXL
    decoder_name = "sdxl-ip-adapter"
    trained_size = 1024

    class Params(IpAdapterParams):
        model: str = SDXL.base_id
        """An SDXL base pipeline: Hugging Face id, local folder, or "tiny" (random weights, for tests)."""


class Sd15IpAdapterDecoder(IpAdapterDecoder):
    """Stable Diffusion 1.5 with `h94/IP-Adapter` `models/ip-adapter_sd15.safetensors` (OpenCLIP ViT-H/14)."""

    family = SD15
    decoder_name = "sd15-ip-adapter"
    trained_size = 512

    class Params(IpAdapterParams):
        model: str = SD15.base_id
        """A Stable Diffusion 1.5 pipeline: Hugging Face id, local folder, or "tiny" (random weights, for tests)."""
