"""Kandinsky 2.2: loading its prior and decoder components by hub id, local folder or "tiny" (always through
`from_pretrained`), the cached zero-image embedding, and the tiny random-weight folders built in code.

The prior's text and image encoders are CLIP towers saved in sub-folders of the prior's repository: they load and
encode through `ovi_bench.models.clip`, like every other CLIP embedding.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    DDPMScheduler,
    KandinskyV22Pipeline,
    KandinskyV22PriorPipeline,
    PriorTransformer,
    UnCLIPScheduler,
    UNet2DConditionModel,
    VQModel,
)
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from ovi_bench.components import model_files
from ovi_bench.io import publish_directory
from ovi_bench.models.clip import (
    TINY_EMBEDDING_DIM,
    ClipImageEncoder,
    TextSide,
    checked_text_side,
    clip_image_processor,
    load_clip_image_encoder,
    load_text_encoder,
    load_tokenizer,
    load_vision_tower,
    tiny_text_encoder,
    tiny_tokenizer,
)
from ovi_bench.models.eclipse import refuse_eclipse_checkpoint
from ovi_bench.models.hub import load_pretrained, resolve_model
from ovi_bench.models.zero_image import (
    cached_zero_image_embeds,
    vision_tower_identity,
)
from ovi_bench.paths import cache_dir

KANDINSKY22_PRIOR_ID = "kandinsky-community/kandinsky-2-2-prior"
KANDINSKY22_DECODER_ID = "kandinsky-community/kandinsky-2-2-decoder"

# What each loader below reads from a Kandinsky 2.2 repository (see `Component.required_models`).
PRIOR_TEXT_SIDE_FILES = ("tokenizer/vocab.json|tokenizer/tokenizer.json", *model_files("text_encoder"))
"""`load_text_side`: the tokenizer and the text encoder."""
PRIOR_IMAGE_ENCODER_FILES = model_files("image_encoder")
"""`load_image_encoder`, and `zero_image_embeds` on its first use."""
PRIOR_PIPELINE_FILES = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    *model_files("prior"),
    *PRIOR_TEXT_SIDE_FILES,
    *PRIOR_IMAGE_ENCODER_FILES,
)
"""`load_prior_pipeline`."""
DECODER_PIPELINE_FILES = ("model_index.json", "scheduler/scheduler_config.json", *model_files("unet", "movq"))
"""`load_decoder_pipeline`."""


# ---------------------------------------------------------------------------------------------------------------------
# Tiny random-weight Kandinsky 2.2 folders, built in code and saved like the real ones.
#
# They let tests and dry runs go through the real `from_pretrained` loading code without any download (the same
# approach as diffusers' own tests, whose configs these follow). Each folder is built once into
# `cache_dir()/tiny/<name>-v1/`; bump the version in the name whenever a builder's output changes.


def tiny_image_encoder(projection_dim: int = TINY_EMBEDDING_DIM) -> CLIPVisionModelWithProjection:
    """The tiny CLIP vision tower (random weights, seed 0); `projection_dim` the width of its `image_embeds`."""
    # Wider, shallower and with larger initial weights than diffusers' test tower (width 32, 5 layers, factor 1):
    # optimisation-based priors (OVI) must be able to steer its output to a text direction (cosine >= 0.95), which
    # the test tower cannot. A 32 px image in 8 px patches (16 patches) keeps it cheap.
    config = CLIPVisionConfig(
        hidden_size=64,
        projection_dim=projection_dim,
        intermediate_size=128,
        num_attention_heads=4,
        num_hidden_layers=2,
        image_size=32,
        patch_size=8,
        initializer_factor=4.0,
    )
    torch.manual_seed(0)
    return CLIPVisionModelWithProjection(config).eval()


def _tiny_prior() -> PriorTransformer:
    torch.manual_seed(0)
    prior = PriorTransformer(
        num_attention_heads=2, attention_head_dim=12, embedding_dim=TINY_EMBEDDING_DIM, num_layers=1
    )
    # clip_mean/clip_std start at zero, which would make post_process_latents return zeros. A nonzero mean also
    # makes post-processing visible in tests.
    statistics = torch.Generator().manual_seed(0)
    with torch.no_grad():
        prior.clip_std.copy_(torch.ones_like(prior.clip_std))
        prior.clip_mean.copy_(0.1 * torch.randn(prior.clip_mean.shape, generator=statistics))
    return prior.eval()


def build_tiny_kandinsky_prior(folder: Path) -> None:
    """Save a tiny KandinskyV22PriorPipeline into `folder`."""
    tokenizer = tiny_tokenizer()
    image_encoder = tiny_image_encoder()
    pipeline = KandinskyV22PriorPipeline(
        prior=_tiny_prior(),
        image_encoder=image_encoder,
        text_encoder=tiny_text_encoder(TINY_EMBEDDING_DIM, layers=5, heads=4, intermediate_size=37),
        tokenizer=tokenizer,
        # The real prior's scheduler (x0 prediction).
        scheduler=UnCLIPScheduler(
            variance_type="fixed_small_log",
            prediction_type="sample",
            num_train_timesteps=1000,
            clip_sample=True,
            clip_sample_range=10.0,
        ),
        # Only KandinskyV22PriorPipeline.interpolate uses it (ovi-bench loads the pipeline without it); saved so
        # the folder has the real layout and loads with a plain from_pretrained too.
        image_processor=clip_image_processor(image_encoder.config.image_size),
    )
    pipeline.save_pretrained(folder, safe_serialization=True)


def _tiny_unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        in_channels=4,
        out_channels=8,  # noise and learned variance, as in the real decoder
        addition_embed_type="image",
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        block_out_channels=(32, 64),
        layers_per_block=1,
        encoder_hid_dim=TINY_EMBEDDING_DIM,
        encoder_hid_dim_type="image_proj",
        cross_attention_dim=32,
        attention_head_dim=4,
        resnet_time_scale_shift="scale_shift",
        class_embed_type=None,
    )
    return unet.eval()


def _tiny_movq() -> VQModel:
    torch.manual_seed(0)
    movq = VQModel(
        block_out_channels=[32, 64],
        down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
        in_channels=3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        norm_type="spatial",
        num_vq_embeddings=12,
        out_channels=3,
        up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D"],
        vq_embed_dim=4,
    )
    return movq.eval()


def _decoder_scheduler() -> DDPMScheduler:
    # The real decoder's scheduler_config.json (diffusers' tests use DDIM instead). from_config, not the
    # constructor: it ignores keys DDPMScheduler does not take (set_alpha_to_one), as hub loading does.
    return DDPMScheduler.from_config(
        {
            "beta_schedule": "linear",
            "beta_start": 0.00085,
            "beta_end": 0.012,
            "clip_sample": False,
            "num_train_timesteps": 1000,
            "prediction_type": "epsilon",
            "set_alpha_to_one": False,
            "steps_offset": 1,
        }
    )


def build_tiny_kandinsky_decoder(folder: Path) -> None:
    """Save a tiny KandinskyV22Pipeline (UNet, movq, DDPM scheduler) into `folder`."""
    pipeline = KandinskyV22Pipeline(unet=_tiny_unet(), scheduler=_decoder_scheduler(), movq=_tiny_movq())
    pipeline.save_pretrained(folder, safe_serialization=True)


def tiny_kandinsky_prior_dir() -> Path:
    """The tiny prior folder (prior, image_encoder, text_encoder, tokenizer, scheduler, image_processor)."""
    return publish_directory(build_tiny_kandinsky_prior, cache_dir() / "tiny" / "kandinsky-2.2-prior-v1")


def tiny_kandinsky_decoder_dir() -> Path:
    """The tiny decoder folder (unet, movq, scheduler)."""
    return publish_directory(build_tiny_kandinsky_decoder, cache_dir() / "tiny" / "kandinsky-2.2-decoder-v1")


PRIOR_TINY_BUILDERS = {"tiny": tiny_kandinsky_prior_dir}
"""Tiny references accepted wherever a Kandinsky 2.2 prior folder is expected."""

DECODER_TINY_BUILDERS = {"tiny": tiny_kandinsky_decoder_dir}
"""Tiny references accepted wherever a Kandinsky 2.2 decoder folder is expected."""


# ---------------------------------------------------------------------------------------------------------------------
# Loading


def resolve_prior_model(ref: str) -> str:
    """A prior reference (hub id, local folder or "tiny") as a hub id or an absolute folder path."""
    return resolve_model(ref, PRIOR_TINY_BUILDERS)


def resolve_decoder_model(ref: str) -> str:
    """A decoder reference (hub id, local folder or "tiny") as a hub id or an absolute folder path."""
    return resolve_model(ref, DECODER_TINY_BUILDERS)


def load_text_side(ref: str, device: torch.device, dtype: torch.dtype) -> TextSide:
    """The tokenizer and text encoder of a Kandinsky 2.2 prior folder or hub id."""
    resolved = resolve_prior_model(ref)
    tokenizer = load_tokenizer(resolved, subfolder="tokenizer")
    text_encoder = load_text_encoder(resolved, device, dtype, subfolder="text_encoder")
    return checked_text_side(ref, tokenizer, text_encoder, tokenizer_config="tokenizer/tokenizer_config.json")


def load_image_encoder(ref: str, device: torch.device, dtype: torch.dtype) -> CLIPVisionModelWithProjection:
    """The CLIP vision tower (with projection) of a Kandinsky 2.2 prior folder or hub id."""
    return load_vision_tower(
        resolve_prior_model(ref), device, dtype, whole_model=False, subfolder="image_encoder"
    )


def load_prior_image_encoder(ref: str, device: torch.device, dtype: torch.dtype) -> ClipImageEncoder:
    """The prior's image encoder with its saved image processor, always transformers' PIL implementation (so that
    embeddings do not depend on whether torchvision is installed): how the embedding bank encodes images."""
    return load_clip_image_encoder(
        resolve_prior_model(ref),
        device,
        dtype,
        whole_model=False,
        backend="pil",
        model_subfolder="image_encoder",
        processor_subfolder="image_processor",
    )


def load_prior_pipeline(ref: str, device: torch.device, dtype: torch.dtype) -> KandinskyV22PriorPipeline:
    """The whole diffusion prior pipeline; diffusers' progress bars are off (ovi-bench shows its own)."""
    resolved = resolve_prior_model(ref)
    # The stock PriorTransformer would load an ECLIPSE checkpoint silently and fail only when run.
    refuse_eclipse_checkpoint(resolved, "prior")
    # image_processor=None: only `interpolate` uses it, and without torchvision transformers 5 would swap in a
    # fallback class with a warning. Skipping it also makes folders saved without one loadable.
    pipeline = load_pretrained(KandinskyV22PriorPipeline, resolved, dtype=dtype, image_processor=None)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


def load_decoder_pipeline(ref: str, device: torch.device, dtype: torch.dtype) -> KandinskyV22Pipeline:
    """The decoder pipeline (UNet, movq, scheduler); diffusers' progress bars are off."""
    pipeline = load_pretrained(KandinskyV22Pipeline, resolve_decoder_model(ref), dtype=dtype)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


# ---------------------------------------------------------------------------------------------------------------------
# The zero-image embedding, Kandinsky 2.2's default negative embedding, and the identity of the prior's image encoder
# (`ovi_bench.models.zero_image`, for the tower saved in the prior's image_encoder/ sub-folder).

IMAGE_ENCODER_SUBFOLDER = "image_encoder"


def image_encoder_identity(ref: str) -> str:
    """A digest that names one image encoder's weights (a prior reference: hub id, local folder or "tiny").

    Equal digests mean the same config and weight files (a local folder: names, sizes and modification times) or the
    same hub snapshot commit; loads no weights. Embedding banks record it, so that a bank made by one image encoder is
    never used with another's embeddings.
    """
    return vision_tower_identity(resolve_prior_model(ref), IMAGE_ENCODER_SUBFOLDER)


def zero_image_embeds(
    ref: str,
    device: torch.device,
    dtype: torch.dtype,
    image_encoder: CLIPVisionModelWithProjection | None = None,
) -> torch.Tensor:
    """The image encoder's `image_embeds` of an all-zeros image: [1, D] float32 on the CPU.

    Cached in memory and in `cache_dir()/zero-image-embeds/`, keyed by the model, its image encoder's config and
    weights, and `dtype`; the image encoder is loaded only on a cache miss, unless the caller already has it.
    `device` is where it runs on a miss (the result may differ across devices by float rounding).
    """
    resolved = resolve_prior_model(ref)
    return cached_zero_image_embeds(
        ref,
        resolved,
        IMAGE_ENCODER_SUBFOLDER,
        lambda: image_encoder if image_encoder is not None else load_image_encoder(resolved, device, dtype),
        dtype,
    )
