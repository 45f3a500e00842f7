"""Karlo (Kakao Brain's unCLIP): loading its prior side (`UnCLIPPipeline` without the decoder cascade) and its
decoder (`UnCLIPImageVariationPipeline`, which accepts precomputed image embeddings) by hub id, local folder or
"tiny" (always through `from_pretrained`), and the tiny random-weight folders built in code.

Both pipelines live in `diffusers.pipelines.deprecated.unclip`: diffusers still ships and imports them, but logs a
"has been deprecated" notice each time one is built, and importing the image-variation pipeline makes transformers
warn (without torchvision) about an image processor ovi-bench never uses. ovi-bench drops exactly those two records
while it imports and builds the pipelines (their behaviour is pinned by the tests instead), so they never bury
ovi-bench's own messages; every other library message passes. The pipelines are built from their components, each
loaded with its own class (see "Loading" below for why).

Karlo lives in the OpenAI CLIP ViT-L/14 image-embedding space (`ovi_bench.spaces.L`, 768-d); the tiny folders use
that space's tiny width, so the tiny Karlo prior and decoder fit each other and every tiny stand-in of the space.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from diffusers import (
    PriorTransformer,
    UnCLIPPipeline,
    UnCLIPScheduler,
    UNet2DConditionModel,
    UNet2DModel,
)
from diffusers.pipelines.deprecated.unclip.text_proj import UnCLIPTextProjModel
from transformers import (
    CLIPTextModelWithProjection,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from ovi_bench.components import model_files
from ovi_bench.io import publish_directory
from ovi_bench.models.clip import (
    TINY_CLIP_IMAGE_SIZE,
    TINY_TEXT_MAX_LENGTH,
    clip_image_processor,
    load_tokenizer,
    tiny_text_encoder,
    tiny_tokenizer,
)
from ovi_bench.models.hub import load_pretrained, resolve_model
from ovi_bench.paths import cache_dir
from ovi_bench.spaces import L

if TYPE_CHECKING:
    from diffusers import UnCLIPImageVariationPipeline

KARLO_ID = "kakaobrain/karlo-v1-alpha"
"""The text-to-image unCLIP pipeline (`UnCLIPPipeline`): the learned prior lives here."""
KARLO_IMAGE_VARIATIONS_ID = "kakaobrain/karlo-v1-alpha-image-variations"
"""The image-variation pipeline (`UnCLIPImageVariationPipeline`): Karlo's decoder and super-resolution cascade fed
an image embedding instead of a text."""

# What each loader below reads from a Karlo repository (see `Component.required_models`).
_TOKENIZER_FILES = ("tokenizer/vocab.json|tokenizer/tokenizer.json",)
PRIOR_PIPELINE_FILES = (
    "prior_scheduler/scheduler_config.json",
    *_TOKENIZER_FILES,
    *model_files("text_encoder", "prior"),
)
"""`load_prior_pipeline`: the tokenizer, text encoder, prior and its scheduler (not the decoder cascade)."""
DECODER_PIPELINE_FILES = (
    "decoder_scheduler/scheduler_config.json",
    "super_res_scheduler/scheduler_config.json",
    *_TOKENIZER_FILES,
    *model_files(
        "text_encoder", "image_encoder", "text_proj", "decoder", "super_res_first", "super_res_last"
    ),
)
"""`load_decoder_pipeline`. The image encoder is never run on precomputed embeddings, but the pipeline reads its
dtype on every call, so it is loaded; the image processor is not (`feature_extractor=None`)."""

# The components of `UnCLIPPipeline` that only render images: the prior side loads without them.
_DECODER_CASCADE = (
    "decoder",
    "text_proj",
    "super_res_first",
    "super_res_last",
    "decoder_scheduler",
    "super_res_scheduler",
)


class _DropNotice(logging.Filter):
    """Drops the log records that contain `text`, and nothing else."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


@contextlib.contextmanager
def _notice_off(logger_name: str, text: str) -> Iterator[None]:
    """Within the block, the logger `logger_name` drops its records that contain `text`."""
    library_logger = logging.getLogger(logger_name)
    notice_filter = _DropNotice(text)
    library_logger.addFilter(notice_filter)
    try:
        yield
    finally:
        library_logger.removeFilter(notice_filter)


def _deprecation_notice_off() -> contextlib.AbstractContextManager[None]:
    # DeprecatedPipelineMixin logs it through diffusers' pipeline_utils logger whenever a pipeline is built.
    return _notice_off("diffusers.pipelines.pipeline_utils", "has been deprecated and will not receive")


def _image_variation_pipeline_class() -> type[UnCLIPImageVariationPipeline]:
    """diffusers' UnCLIPImageVariationPipeline, imported on first use: its module imports transformers'
    CLIPImageProcessor, which without torchvision warns that it falls back to the PIL class. ovi-bench never passes
    images to the pipeline (only embeddings), so that notice says nothing about a run."""
    with _notice_off("transformers.utils.import_utils", "requires torchvision (not installed)"):
        from diffusers import UnCLIPImageVariationPipeline

    return UnCLIPImageVariationPipeline


# ---------------------------------------------------------------------------------------------------------------------
# Tiny random-weight Karlo folders, built in code and saved like the real ones (the layout of the two hub
# repositories), so that tests and tiny runs go through the real `from_pretrained` code without any download.
# Each folder is built once into `cache_dir()/tiny/<name>-v1/`; bump the version in the name whenever a builder's
# output changes. The cascade is as small as the pipeline allows: an 8 px decoder and an 8 -> 32 px
# super-resolution (the real one: 64 -> 256), both UNets at widths 16/32.

TINY_WIDTH = L.tiny_width
"""The tiny image- and text-embedding width (the ViT-L/14 space's tiny width)."""
TINY_DECODER_SIZE = 8
"""The tiny decoder's output side in pixels (the real decoder: 64)."""
TINY_OUTPUT_SIZE = 32
"""The tiny super-resolution's output side, and so the tiny decoder's only image size (the real one: 256)."""
_TINY_TIME_EMBED_DIM = 64  # 4 x the UNets' first block width, as diffusers' UNets compute it
_TINY_CROSS_ATTENTION_DIM = 24


def _tiny_image_encoder() -> CLIPVisionModelWithProjection:
    config = CLIPVisionConfig(
        hidden_size=TINY_WIDTH,
        projection_dim=TINY_WIDTH,
        intermediate_size=32,
        num_attention_heads=2,
        num_hidden_layers=1,
        image_size=TINY_CLIP_IMAGE_SIZE,
        patch_size=8,
    )
    torch.manual_seed(0)
    return CLIPVisionModelWithProjection(config).eval()


def _tiny_prior() -> PriorTransformer:
    torch.manual_seed(0)
    prior = PriorTransformer(
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=1,
        embedding_dim=TINY_WIDTH,
        num_embeddings=TINY_TEXT_MAX_LENGTH,
    )
    # clip_mean/clip_std start at zero, which would make post_process_latents return zeros; a nonzero mean makes
    # the post-processing visible in the golden values.
    statistics = torch.Generator().manual_seed(1)
    with torch.no_grad():
        prior.clip_std.fill_(1.0)
        prior.clip_mean.copy_(0.1 * torch.randn(prior.clip_mean.shape, generator=statistics))
    return prior.eval()


def _tiny_text_proj() -> UnCLIPTextProjModel:
    torch.manual_seed(0)
    text_proj = UnCLIPTextProjModel(
        clip_embeddings_dim=TINY_WIDTH,
        time_embed_dim=_TINY_TIME_EMBED_DIM,
        cross_attention_dim=_TINY_CROSS_ATTENTION_DIM,
    )
    # The learned unconditional embedding starts at zero; the real one is trained, so make it a vector too.
    with torch.no_grad():
        text_proj.learned_classifier_free_guidance_embeddings.normal_()
    return text_proj.eval()


def _tiny_decoder() -> UNet2DConditionModel:
    torch.manual_seed(0)
    decoder = UNet2DConditionModel(
        sample_size=TINY_DECODER_SIZE,
        in_channels=3,
        out_channels=6,  # RGB noise and learned variance ("learned_range"), as in the real decoder
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        block_out_channels=(16, 32),
        norm_num_groups=8,
        layers_per_block=1,
        cross_attention_dim=_TINY_CROSS_ATTENTION_DIM,
        attention_head_dim=8,
        resnet_time_scale_shift="scale_shift",
        class_embed_type="identity",  # text_proj's additive CLIP time embedding arrives as class labels
    )
    return decoder.eval()


def _tiny_super_res(seed: int) -> UNet2DModel:
    torch.manual_seed(seed)
    super_res = UNet2DModel(
        sample_size=TINY_OUTPUT_SIZE,
        in_channels=6,  # noisy image and the upscaled decoder image
        out_channels=3,
        down_block_types=("ResnetDownsampleBlock2D", "ResnetDownsampleBlock2D"),
        up_block_types=("ResnetUpsampleBlock2D", "ResnetUpsampleBlock2D"),
        block_out_channels=(16, 32),
        norm_num_groups=8,
        layers_per_block=1,
    )
    return super_res.eval()


def _schedulers() -> dict[str, UnCLIPScheduler]:
    """The real Karlo repositories' scheduler configs (prior_scheduler, decoder_scheduler, super_res_scheduler)."""
    return {
        "prior_scheduler": UnCLIPScheduler(
            variance_type="fixed_small_log", prediction_type="sample", clip_sample=True, clip_sample_range=5.0
        ),
        "decoder_scheduler": UnCLIPScheduler(
            variance_type="learned_range", prediction_type="epsilon", clip_sample=True, clip_sample_range=1.0
        ),
        "super_res_scheduler": UnCLIPScheduler(
            variance_type="fixed_small_log",
            prediction_type="epsilon",
            clip_sample=True,
            clip_sample_range=1.0,
        ),
    }


def _tiny_cascade() -> dict[str, object]:
    """The components both Karlo pipelines share: text side, text_proj, decoder, super-resolution UNets."""
    schedulers = _schedulers()
    return {
        # Hidden size = projection = the tiny width: the prior reads the text encoder's hidden states with its own
        # width (embedding_dim), as the real Karlo prior does (768 = 768).
        "text_encoder": tiny_text_encoder(TINY_WIDTH, layers=2, heads=2, intermediate_size=32),
        "tokenizer": tiny_tokenizer(),
        "text_proj": _tiny_text_proj(),
        "decoder": _tiny_decoder(),
        "super_res_first": _tiny_super_res(seed=0),
        "super_res_last": _tiny_super_res(seed=1),  # another seed: the two super-resolution UNets differ
        "decoder_scheduler": schedulers["decoder_scheduler"],
        "super_res_scheduler": schedulers["super_res_scheduler"],
    }


def build_tiny_karlo(folder: Path) -> None:
    """Save a tiny UnCLIPPipeline (prior, text side and the whole decoder cascade) into `folder`."""
    with _deprecation_notice_off():
        pipeline = UnCLIPPipeline(
            prior=_tiny_prior(), prior_scheduler=_schedulers()["prior_scheduler"], **_tiny_cascade()
        )
    pipeline.save_pretrained(folder, safe_serialization=True)


def build_tiny_karlo_image_variations(folder: Path) -> None:
    """Save a tiny UnCLIPImageVariationPipeline (the cascade, an image encoder and its processor) into `folder`."""
    with _deprecation_notice_off():
        pipeline = _image_variation_pipeline_class()(
            image_encoder=_tiny_image_encoder(),
            feature_extractor=clip_image_processor(TINY_CLIP_IMAGE_SIZE),
            **_tiny_cascade(),
        )
    pipeline.save_pretrained(folder, safe_serialization=True)


def tiny_karlo_dir() -> Path:
    """The tiny UnCLIPPipeline folder."""
    return publish_directory(build_tiny_karlo, cache_dir() / "tiny" / "karlo-v1")


def tiny_karlo_image_variations_dir() -> Path:
    """The tiny UnCLIPImageVariationPipeline folder."""
    return publish_directory(
        build_tiny_karlo_image_variations, cache_dir() / "tiny" / "karlo-image-variations-v1"
    )


PRIOR_TINY_BUILDERS = {"tiny": tiny_karlo_dir}
"""Tiny references accepted wherever a Karlo (UnCLIPPipeline) folder is expected."""
DECODER_TINY_BUILDERS = {"tiny": tiny_karlo_image_variations_dir}
"""Tiny references accepted wherever a Karlo image-variation folder is expected."""


# ---------------------------------------------------------------------------------------------------------------------
# Loading
#
# Each component is loaded with its own class's `from_pretrained` from its sub-folder and the pipeline is built
# from them, not with the pipeline's `from_pretrained`: model_index.json names text_proj's library after the
# pipelines' pre-0.34 folder (the hub repositories: "unclip"; diffusers 0.42's save_pretrained: "diffusers"), and
# neither resolves now that the class lives in pipelines/deprecated/unclip/, even when text_proj is passed in.


def _load_text_side(resolved: str, dtype: torch.dtype) -> dict[str, object]:
    return {
        "tokenizer": load_tokenizer(resolved, subfolder="tokenizer"),
        "text_encoder": load_pretrained(
            CLIPTextModelWithProjection, resolved, subfolder="text_encoder", dtype=dtype
        ),
    }


def load_prior_pipeline(ref: str, device: torch.device, dtype: torch.dtype) -> UnCLIPPipeline:
    """Karlo's UnCLIPPipeline with only its prior side (tokenizer, text encoder, prior, prior scheduler); the decoder
    cascade is None, so its weights are never read. Progress bars are off."""
    resolved = resolve_model(ref, PRIOR_TINY_BUILDERS)
    components = {
        **_load_text_side(resolved, dtype),
        "prior": load_pretrained(PriorTransformer, resolved, subfolder="prior", dtype=dtype),
        "prior_scheduler": load_pretrained(UnCLIPScheduler, resolved, subfolder="prior_scheduler"),
        **dict.fromkeys(_DECODER_CASCADE),
    }
    with _deprecation_notice_off():
        pipeline = UnCLIPPipeline(**components)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


def load_decoder_pipeline(ref: str, device: torch.device, dtype: torch.dtype) -> UnCLIPImageVariationPipeline:
    """Karlo's UnCLIPImageVariationPipeline; progress bars are off.

    No feature_extractor: it only preprocesses input images, which ovi-bench never passes (it passes image
    embeddings), and without torchvision transformers 5 would swap in a fallback class with a warning."""
    resolved = resolve_model(ref, DECODER_TINY_BUILDERS)
    components = {
        **_load_text_side(resolved, dtype),
        "image_encoder": load_pretrained(
            CLIPVisionModelWithProjection, resolved, subfolder="image_encoder", dtype=dtype
        ),
        "text_proj": load_pretrained(UnCLIPTextProjModel, resolved, subfolder="text_proj", dtype=dtype),
        "decoder": load_pretrained(UNet2DConditionModel, resolved, subfolder="decoder", dtype=dtype),
        "super_res_first": load_pretrained(UNet2DModel, resolved, subfolder="super_res_first", dtype=dtype),
        "super_res_last": load_pretrained(UNet2DModel, resolved, subfolder="super_res_last", dtype=dtype),
        "decoder_scheduler": load_pretrained(UnCLIPScheduler, resolved, subfolder="decoder_scheduler"),
        "super_res_scheduler": load_pretrained(UnCLIPScheduler, resolved, subfolder="super_res_scheduler"),
        "feature_extractor": None,
    }
    with _deprecation_notice_off():
        pipeline = _image_variation_pipeline_class()(**components)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)
