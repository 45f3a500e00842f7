"""SDXL and SD 1.5 with an IP-Adapter: loading the base pipeline and the adapter by hub id, local folder or "tiny"
(always through `from_pretrained` and the pipeline's own `load_ip_adapter`), and the tiny random-weight folders
built in code.

The adapter turns a CLIP image embedding into four extra attention tokens that every cross-attention layer of the
UNet reads beside the text (decoupled cross-attention). ovi-bench hands it the prior's embedding directly
(`ip_adapter_image_embeds`), so the adapter's image encoder is never loaded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from ovi_bench.components import model_files
from ovi_bench.errors import ModelLoadError
from ovi_bench.io import publish_directory
from ovi_bench.models.clip import tiny_text_config, tiny_tokenizer
from ovi_bench.models.hub import LOAD_ERRORS, explain_load_failure, load_pretrained, model_file, resolve_model
from ovi_bench.paths import cache_dir
from ovi_bench.spaces import BIGG, H

SDXL_BASE_ID = "stabilityai/stable-diffusion-xl-base-1.0"
SD15_BASE_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
IP_ADAPTER_ID = "h94/IP-Adapter"

IP_ADAPTER_TOKENS = 4
"""Attention tokens the (plain, not "plus") IP-Adapter makes from one global image embedding."""


@dataclass(frozen=True)
class IpAdapterModel:
    """One base model family with its IP-Adapter checkpoint: where the files live and how the pipeline loads."""

    pipeline_class: type[DiffusionPipeline]
    base_id: str
    """Hugging Face id of the base text-to-image pipeline."""
    base_files: tuple[str, ...]
    """What `from_pretrained` reads from the base pipeline's repository (see `Component.required_models`)."""
    load_options: Mapping[str, Any]
    """Keyword arguments of `from_pretrained` beyond dtype (components left out, switches)."""
    adapter_subfolder: str
    adapter_weight: str
    space: str
    """The embedding space of the adapter's image encoder (`ovi_bench.spaces`)."""
    tiny_base: Callable[[], Path] = field(repr=False)
    tiny_adapter: Callable[[], Path] = field(repr=False)

    @property
    def adapter_file(self) -> str:
        """The adapter's weights, relative to its repository's root."""
        return f"{self.adapter_subfolder}/{self.adapter_weight}"


_PIPELINE_ROOT = ("model_index.json", "scheduler/scheduler_config.json")


def _tokenizer_files(subfolder: str) -> str:
    return f"{subfolder}/vocab.json|{subfolder}/tokenizer.json"


# ---------------------------------------------------------------------------------------------------------------------
# Tiny random-weight pipelines and adapters, built in code and saved like the real ones (the configs follow diffusers'
# own pipeline tests). Each folder is built once into `cache_dir()/tiny/<name>-v1/`; bump the version in the name
# whenever a builder's output changes.


def _tiny_text_config() -> CLIPTextConfig:
    # Width 32 (SDXL's UNet reads two of them side by side, 64), with a projection of 32 where one is used.
    return tiny_text_config(32, layers=2, heads=4, intermediate_size=37)


def _tiny_vae(scaling_factor: float) -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        sample_size=32,
        scaling_factor=scaling_factor,  # the real VAE's, so latents are scaled as in the real pipeline
    ).eval()


def _tiny_unet(cross_attention_dim: int, **sdxl_options: Any) -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        cross_attention_dim=cross_attention_dim,
        norm_num_groups=8,
        **sdxl_options,
    ).eval()


def _tiny_sdxl_unet() -> UNet2DConditionModel:
    # SDXL's UNet reads both text encoders' states side by side (32 + 32) and a "text_time" embedding of the second
    # encoder's pooled output (32) with six size/crop numbers (6 x 8).
    return _tiny_unet(
        64,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=32 + 6 * 8,
    )


def _tiny_sd15_unet() -> UNet2DConditionModel:
    return _tiny_unet(32)


def build_tiny_sdxl(folder: Path) -> None:
    """Save a tiny StableDiffusionXLPipeline (two CLIP text encoders, UNet, VAE, Euler scheduler) into `folder`."""
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_tiny_text_config()).eval()
    torch.manual_seed(1)
    text_encoder_2 = CLIPTextModelWithProjection(_tiny_text_config()).eval()
    pipeline = StableDiffusionXLPipeline(
        vae=_tiny_vae(scaling_factor=0.13025),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tiny_tokenizer(),
        tokenizer_2=tiny_tokenizer(),
        unet=_tiny_sdxl_unet(),
        # The real base model's scheduler_config.json.
        scheduler=EulerDiscreteScheduler.from_config(
            {
                "beta_start": 0.00085,
                "beta_end": 0.012,
                "beta_schedule": "scaled_linear",
                "interpolation_type": "linear",
                "num_train_timesteps": 1000,
                "prediction_type": "epsilon",
                "steps_offset": 1,
                "timestep_spacing": "leading",
                "use_karras_sigmas": False,
            }
        ),
        image_encoder=None,
        feature_extractor=None,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    pipeline.save_pretrained(folder, safe_serialization=True)


def build_tiny_sd15(folder: Path) -> None:
    """Save a tiny StableDiffusionPipeline (CLIP text encoder, UNet, VAE, PNDM scheduler, no safety checker)."""
    torch.manual_seed(0)
    pipeline = StableDiffusionPipeline(
        vae=_tiny_vae(scaling_factor=0.18215),
        text_encoder=CLIPTextModel(_tiny_text_config()).eval(),
        tokenizer=tiny_tokenizer(),
        unet=_tiny_sd15_unet(),
        # The real base model's scheduler_config.json.
        scheduler=PNDMScheduler.from_config(
            {
                "beta_start": 0.00085,
                "beta_end": 0.012,
                "beta_schedule": "scaled_linear",
                "num_train_timesteps": 1000,
                "set_alpha_to_one": False,
                "skip_prk_steps": True,
                "steps_offset": 1,
            }
        ),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder, safe_serialization=True)


def _attention_widths(unet: UNet2DConditionModel) -> list[int]:
    """The width of each cross-attention layer (an "attn2" processor), in the order `load_ip_adapter` numbers them."""
    widths = []
    channels = list(unet.config.block_out_channels)
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue  # self-attention: the adapter adds nothing there
        if name.startswith("mid_block"):
            widths.append(channels[-1])
        elif name.startswith("up_blocks"):
            widths.append(list(reversed(channels))[int(name.split(".")[1])])
        else:
            widths.append(channels[int(name.split(".")[1])])
    return widths


def ip_adapter_state_dict(
    unet: UNet2DConditionModel, image_embed_dim: int, seed: int
) -> dict[str, torch.Tensor]:
    """Random IP-Adapter weights for `unet` in the released checkpoints' flat safetensors layout.

    `image_proj.*`: a linear map from one image embedding to four tokens of the UNet's cross-attention width, and
    a LayerNorm. `ip_adapter.<k>.to_k_ip.weight` / `.to_v_ip.weight`: the key and value projections of the image
    tokens, for the k-th attention layer of the original implementation, where self-attention layers took the even
    numbers, so cross-attention layers are 1, 3, 5, ...
    """
    generator = torch.Generator().manual_seed(seed)

    def linear(rows: int, columns: int) -> torch.Tensor:
        return torch.randn(rows, columns, generator=generator) / math.sqrt(columns)

    width = unet.config.cross_attention_dim
    tensors = {
        "image_proj.proj.weight": linear(IP_ADAPTER_TOKENS * width, image_embed_dim),
        "image_proj.proj.bias": 0.1 * torch.randn(IP_ADAPTER_TOKENS * width, generator=generator),
        "image_proj.norm.weight": 1 + 0.1 * torch.randn(width, generator=generator),
        "image_proj.norm.bias": 0.1 * torch.randn(width, generator=generator),
    }
    for index, hidden in enumerate(_attention_widths(unet)):
        key_id = 2 * index + 1
        tensors[f"ip_adapter.{key_id}.to_k_ip.weight"] = linear(hidden, width)
        tensors[f"ip_adapter.{key_id}.to_v_ip.weight"] = linear(hidden, width)
    return tensors


def _tiny_adapter_builder(
    unet: Callable[[], UNet2DConditionModel], image_embed_dim: int, subfolder: str, weight: str
) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        (folder / subfolder).mkdir(parents=True)
        save_file(ip_adapter_state_dict(unet(), image_embed_dim, seed=0), folder / subfolder / weight)

    return build


def tiny_sdxl_dir() -> Path:
    """The tiny SDXL base pipeline folder."""
    return publish_directory(build_tiny_sdxl, cache_dir() / "tiny" / "sdxl-base-v1")


def tiny_sd15_dir() -> Path:
    """The tiny SD 1.5 base pipeline folder."""
    return publish_directory(build_tiny_sd15, cache_dir() / "tiny" / "sd15-base-v1")


def tiny_sdxl_adapter_dir() -> Path:
    """The tiny SDXL IP-Adapter folder: `sdxl_models/ip-adapter_sdxl.safetensors`, for image embeddings of the tiny
    ViT-bigG/14 space's width."""
    build = _tiny_adapter_builder(
        _tiny_sdxl_unet, BIGG.tiny_width, "sdxl_models", "ip-adapter_sdxl.safetensors"
    )
    return publish_directory(build, cache_dir() / "tiny" / "sdxl-ip-adapter-v1")


def tiny_sd15_adapter_dir() -> Path:
    """The tiny SD 1.5 IP-Adapter folder: `models/ip-adapter_sd15.safetensors`, for image embeddings of the tiny
    ViT-H/14 space's width."""
    build = _tiny_adapter_builder(_tiny_sd15_unet, H.tiny_width, "models", "ip-adapter_sd15.safetensors")
    return publish_directory(build, cache_dir() / "tiny" / "sd15-ip-adapter-v1")


SDXL = IpAdapterModel(
    pipeline_class=StableDiffusionXLPipeline,
    base_id=SDXL_BASE_ID,
    base_files=(
        *_PIPELINE_ROOT,
        *model_files("unet", "vae", "text_encoder", "text_encoder_2"),
        _tokenizer_files("tokenizer"),
        _tokenizer_files("tokenizer_2"),
    ),
    # The invisible watermark would change pixels depending on whether its package is installed.
    load_options={"image_encoder": None, "feature_extractor": None, "add_watermarker": False},
    adapter_subfolder="sdxl_models",
    adapter_weight="ip-adapter_sdxl.safetensors",
    space=BIGG.name,
    tiny_base=tiny_sdxl_dir,
    tiny_adapter=tiny_sdxl_adapter_dir,
)
"""SDXL 1.0 base with `ip-adapter_sdxl` (global OpenCLIP ViT-bigG/14 image embedding)."""

SD15 = IpAdapterModel(
    pipeline_class=StableDiffusionPipeline,
    base_id=SD15_BASE_ID,
    base_files=(
        *_PIPELINE_ROOT,
        *model_files("unet", "vae", "text_encoder"),
        _tokenizer_files("tokenizer"),
    ),
    # No safety checker: it would replace images it flags with black ones, which a benchmark must not score.
    load_options={
        "image_encoder": None,
        "feature_extractor": None,
        "safety_checker": None,
        "requires_safety_checker": False,
    },
    adapter_subfolder="models",
    adapter_weight="ip-adapter_sd15.safetensors",
    space=H.name,
    tiny_base=tiny_sd15_dir,
    tiny_adapter=tiny_sd15_adapter_dir,
)
"""Stable Diffusion 1.5 with `ip-adapter_sd15` (global OpenCLIP ViT-H/14 image embedding)."""


# ---------------------------------------------------------------------------------------------------------------------
# Loading


def load_ip_adapter_pipeline(
    family: IpAdapterModel, model: str, adapter: str, device: torch.device, dtype: torch.dtype
) -> DiffusionPipeline:
    """The base pipeline (`model`: hub id, local folder or "tiny") with the IP-Adapter (`adapter`: the same) loaded
    into its UNet, without the adapter's image encoder; diffusers' progress bars are off."""
    pipeline = load_pretrained(
        family.pipeline_class,
        resolve_model(model, {"tiny": family.tiny_base}),
        dtype=dtype,
        **family.load_options,
    )
    # model_file downloads only the adapter's weights (not the image encoder beside them), or finds them in a local
    # folder; load_ip_adapter then reads them from that folder under their real subfolder and file name.
    resolved = resolve_model(adapter, {"tiny": family.tiny_adapter})
    weights = model_file(resolved, family.adapter_subfolder, family.adapter_weight)
    root = weights.parents[len(Path(family.adapter_subfolder).parts)]
    what = f"the IP-Adapter {family.adapter_file}"
    try:
        _check_adapter_fits(weights, pipeline.unet, f"{what} of '{adapter}'", model)
        pipeline.load_ip_adapter(
            str(root),
            subfolder=family.adapter_subfolder,
            weight_name=family.adapter_weight,
            image_encoder_folder=None,  # the prior's embeddings are given directly
            local_files_only=True,
        )
    except (*LOAD_ERRORS, KeyError, RuntimeError) as error:
        raise explain_load_failure(adapter, what, error) from error
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


def _check_adapter_fits(weights: Path, unet: UNet2DConditionModel, what: str, model: str) -> None:
    """Refuse, before loading, weights that are not a plain IP-Adapter for this UNet (diffusers would fail deep
    inside its loader, or take a "plus" adapter's per-patch weights for another design)."""
    with safe_open(weights, framework="pt") as checkpoint:
        keys = set(checkpoint.keys())
        if "image_proj.proj.weight" not in keys:
            raise ModelLoadError(
                f"{what} is not a plain IP-Adapter checkpoint (it has no image_proj.proj.weight): these decoders "
                "read one global image embedding, as ip-adapter_sdxl and ip-adapter_sd15 do; the plus and face "
                "variants read per-patch embeddings instead."
            )
        tokens_width = checkpoint.get_slice("image_proj.proj.weight").get_shape()[0]
    layers = sum(key.endswith(".to_k_ip.weight") for key in keys)
    expected_layers = len(_attention_widths(unet))
    if tokens_width != IP_ADAPTER_TOKENS * unet.config.cross_attention_dim or layers != expected_layers:
        raise ModelLoadError(
            f"{what} does not fit the base pipeline '{model}': it makes tokens of width "
            f"{tokens_width // IP_ADAPTER_TOKENS} for {layers} attention layers, but the UNet's cross-attention "
            f"is {unet.config.cross_attention_dim} wide in {expected_layers} layers. Pair an SDXL adapter with an "
            "SDXL base model and an SD 1.5 adapter with an SD 1.5 one."
        )
