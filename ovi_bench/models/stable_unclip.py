"""Stable unCLIP (Stable Diffusion 2.1 fine-tuned on CLIP image embeddings): its two published variants, loading
the StableUnCLIPImg2ImgPipeline by hub id, local folder or "tiny" (always through `from_pretrained`), and the tiny
random-weight folders built in code.

ovi-bench feeds the pipeline precomputed image embeddings (`image_embeds`), never an input image, so the CLIP image
encoder and feature extractor saved in the repository are not loaded (`image_encoder=None, feature_extractor=None`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    PNDMScheduler,
    StableUnCLIPImg2ImgPipeline,
    UNet2DConditionModel,
)
from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from ovi_bench.components import model_files
from ovi_bench.errors import ModelLoadError
from ovi_bench.io import publish_directory
from ovi_bench.models.clip import (
    TINY_CLIP_IMAGE_SIZE,
    TINY_TEXT_MAX_LENGTH,
    clip_image_processor,
    tiny_tokenizer,
)
from ovi_bench.models.hub import load_pretrained, model_file, resolve_model
from ovi_bench.paths import cache_dir
from ovi_bench.spaces import EmbeddingSpace, H, L

STABLE_UNCLIP_H_ID = "stabilityai/stable-diffusion-2-1-unclip"
"""Stable unCLIP on OpenCLIP ViT-H/14 image embeddings (1024-d)."""
STABLE_UNCLIP_SMALL_ID = "stabilityai/stable-diffusion-2-1-unclip-small"
"""Stable unCLIP on OpenAI CLIP ViT-L/14 image embeddings (768-d)."""

StableUnclipVariant = Literal["h", "small"]


@dataclass(frozen=True)
class VariantInfo:
    """One published Stable unCLIP checkpoint: where it is and which image-embedding space it renders."""

    model_id: str
    space: EmbeddingSpace


VARIANTS: dict[str, VariantInfo] = {
    "h": VariantInfo(STABLE_UNCLIP_H_ID, H),
    "small": VariantInfo(STABLE_UNCLIP_SMALL_ID, L),
}
"""The variants by the name the decoder's `variant` parameter takes."""

PIPELINE_FILES = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "image_noising_scheduler/scheduler_config.json",
    "tokenizer/vocab.json|tokenizer/tokenizer.json",
    *model_files("image_normalizer", "text_encoder", "unet", "vae"),
)
"""What `load_pipeline` reads from a Stable unCLIP repository (not image_encoder/ nor feature_extractor/)."""


# ---------------------------------------------------------------------------------------------------------------------
# Tiny random-weight Stable unCLIP folders, built in code and saved like the real ones.
#
# One per space, whose image-embedding width is that space's `tiny_width` (24 for ViT-H, 16 for ViT-L), so that the
# tiny priors of a space fit the tiny decoder of the same space. The configs follow diffusers' own pipeline tests in
# shape (two UNet blocks, a projection class embedding of twice the image-embedding width); the schedulers are the
# real repository's. Each folder is built once into `cache_dir()/tiny/<name>-v1/`; bump the version in the name
# whenever a builder's output changes.

TINY_TEXT_WIDTH = 32
"""Hidden width of the tiny text encoder, and so the tiny UNet's cross-attention width."""


def _tiny_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    # Our tokenizer's real special ids, so that pooling finds the first EOS token (as for the tiny Kandinsky prior).
    config = CLIPTextConfig(
        hidden_size=TINY_TEXT_WIDTH,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=1000,
        max_position_embeddings=TINY_TEXT_MAX_LENGTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    return CLIPTextModel(config).eval()


def _tiny_image_encoder(width: int) -> CLIPVisionModelWithProjection:
    # Saved only so that the folder has the real repository's layout; generation never loads it.
    config = CLIPVisionConfig(
        hidden_size=32,
        projection_dim=width,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        image_size=TINY_CLIP_IMAGE_SIZE,
        patch_size=8,
    )
    torch.manual_seed(0)
    return CLIPVisionModelWithProjection(config).eval()


def _tiny_image_normalizer(width: int) -> StableUnCLIPImageNormalizer:
    normalizer = StableUnCLIPImageNormalizer(embedding_dim=width)
    # It starts as the identity (mean 0, std 1); statistics of their own make its scale/unscale visible in tests.
    statistics = torch.Generator().manual_seed(0)
    with torch.no_grad():
        normalizer.mean.copy_(0.1 * torch.randn(normalizer.mean.shape, generator=statistics))
        normalizer.std.copy_(1.0 + 0.5 * torch.rand(normalizer.std.shape, generator=statistics))
    return normalizer.eval()


def _tiny_unet(width: int) -> UNet2DConditionModel:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=(2, 4),
        cross_attention_dim=TINY_TEXT_WIDTH,
        # The class label is the noised image embedding followed by the embedding of its noise level (same width).
        class_embed_type="projection",
        projection_class_embeddings_input_dim=2 * width,
        upcast_attention=True,
        use_linear_projection=True,
    )
    return unet.eval()


def _tiny_vae() -> AutoencoderKL:
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
    )
    return vae.eval()


def _scheduler() -> PNDMScheduler:
    # The real repositories' scheduler/scheduler_config.json (v-prediction PLMS). from_config ignores the keys the
    # class does not take, as hub loading does.
    return PNDMScheduler.from_config(
        {
            "beta_start": 0.00085,
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "num_train_timesteps": 1000,
            "prediction_type": "v_prediction",
            "set_alpha_to_one": False,
            "skip_prk_steps": True,
            "steps_offset": 1,
        }
    )


def _image_noising_scheduler() -> DDPMScheduler:
    # The real noise augmentation: 1000 levels of a squared-cosine schedule.
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")


def build_tiny_stable_unclip(folder: Path, *, width: int) -> None:
    """Save a tiny StableUnCLIPImg2ImgPipeline for `width`-d image embeddings into `folder`."""
    tokenizer = tiny_tokenizer()
    pipeline = StableUnCLIPImg2ImgPipeline(
        feature_extractor=clip_image_processor(TINY_CLIP_IMAGE_SIZE),
        image_encoder=_tiny_image_encoder(width),
        image_normalizer=_tiny_image_normalizer(width),
        image_noising_scheduler=_image_noising_scheduler(),
        tokenizer=tokenizer,
        text_encoder=_tiny_text_encoder(tokenizer),
        unet=_tiny_unet(width),
        scheduler=_scheduler(),
        vae=_tiny_vae(),
    )
    pipeline.save_pretrained(folder, safe_serialization=True)


def tiny_stable_unclip_dir(variant: StableUnclipVariant) -> Path:
    """The tiny folder of a variant, for its space's tiny width."""
    width = VARIANTS[variant].space.tiny_width
    build = functools.partial(build_tiny_stable_unclip, width=width)
    return publish_directory(build, cache_dir() / "tiny" / f"stable-unclip-{variant}-v1")


def tiny_builders(variant: StableUnclipVariant) -> dict[str, Callable[[], Path]]:
    """Tiny references accepted wherever a Stable unCLIP folder of `variant` is expected."""
    return {"tiny": functools.partial(tiny_stable_unclip_dir, variant)}


# ---------------------------------------------------------------------------------------------------------------------
# Loading


def resolve_pipeline_model(ref: str, variant: StableUnclipVariant) -> str:
    """A Stable unCLIP reference (hub id, local folder or "tiny") as a hub id or an absolute folder path."""
    return resolve_model(ref, tiny_builders(variant))


def noise_levels(ref: str, variant: StableUnclipVariant) -> int:
    """How many noise levels the pipeline's image_noising_scheduler has (`noise_level` must be below it), read from
    its config alone, so that a level out of range is refused before the weights load."""
    path = model_file(
        resolve_pipeline_model(ref, variant), "image_noising_scheduler", "scheduler_config.json"
    )
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["num_train_timesteps"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelLoadError(
            f"cannot read the number of noise levels from {path}: {error!r}. The model folder is incomplete or "
            "corrupt: download it again."
        ) from error


class _DtypeOnlyImageEncoder(torch.nn.Module):
    """Stands in for the CLIP image encoder, which the pipeline is loaded without.

    `StableUnCLIPImg2ImgPipeline.__call__` reads `next(image_encoder.parameters()).dtype` even when it is given
    `image_embeds` (diffusers 0.42), and fails on a pipeline loaded with `image_encoder=None`; the dtype is only used
    to cast an input image, which ovi-bench never passes. This module has one empty parameter of the pipeline's dtype
    and cannot encode anything, so a path that did encode an image would fail loudly instead of silently.
    """

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype_marker = torch.nn.Parameter(torch.empty(0, dtype=dtype), requires_grad=False)

    # DiffusionPipeline reads these of every component module (`to`, `device`), as of a diffusers model.
    @property
    def dtype(self) -> torch.dtype:
        return self.dtype_marker.dtype

    @property
    def device(self) -> torch.device:
        return self.dtype_marker.device

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        raise RuntimeError("ovi-bench loads Stable unCLIP without its image encoder: pass image_embeds.")


def load_pipeline(
    ref: str, variant: StableUnclipVariant, device: torch.device, dtype: torch.dtype
) -> StableUnCLIPImg2ImgPipeline:
    """The Stable unCLIP pipeline without its image encoder and feature extractor (never read: the embeddings come
    precomputed); diffusers' progress bars are off."""
    pipeline = load_pretrained(
        StableUnCLIPImg2ImgPipeline,
        resolve_pipeline_model(ref, variant),
        dtype=dtype,
        image_encoder=None,
        feature_extractor=None,
    )
    pipeline.image_encoder = _DtypeOnlyImageEncoder(dtype)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)
