"""HPS v2 on transformers: open_clip ViT checkpoints converted to a `CLIPModel`, HPS's pixel preparation, the tiny one.

HPS v2 / v2.1 (Wu et al. 2023, https://github.com/tgxs002/HPSv2) is open_clip's ViT-H-14 (laion2B-s32B-b79K)
fine-tuned on human preferences. Its checkpoint (`HPS_v2.1_compressed.pt` in the hub repository `xswu/HPSv2`) is a
dict whose `state_dict` holds the open_clip model's tensors. open_clip itself cannot be installed beside a CPU torch
(it imports torchvision), so the tensors are renamed into a transformers `CLIPModel` of the same architecture, whose
config is the one of `laion/CLIP-ViT-H-14-laion2B-s32B-b79K` (only its config.json and tokenizer are read):

| open_clip | transformers CLIPModel |
|---|---|
| `visual.conv1.weight`, `visual.class_embedding`, `visual.positional_embedding` | `vision_model.embeddings.patch_embedding.weight`, `.class_embedding`, `.position_embedding.weight` |
| `visual.ln_pre`, `visual.ln_post` | `vision_model.pre_layrnorm`, `vision_model.post_layernorm` |
| `visual.proj` [width, dim] | `visual_projection.weight` [dim, width] (transposed) |
| `token_embedding.weight`, `positional_embedding` | `text_model.embeddings.token_embedding.weight`, `.position_embedding.weight` |
| `ln_final` | `text_model.final_layer_norm` |
| `text_projection` [width, dim] | `text_projection.weight` [dim, width] (transposed) |
| `…resblocks.N.attn.in_proj_weight` / `in_proj_bias` | `…layers.N.self_attn.q_proj/k_proj/v_proj` (split in three, q first) |
| `…resblocks.N.attn.out_proj`, `ln_1`, `ln_2`, `mlp.c_fc`, `mlp.c_proj` | `…layers.N.self_attn.out_proj`, `layer_norm1`, `layer_norm2`, `mlp.fc1`, `mlp.fc2` |
| `logit_scale` | `logit_scale` |

(`visual.transformer.resblocks.N` ↔ `vision_model.encoder.layers.N`, `transformer.resblocks.N` ↔
`text_model.encoder.layers.N`.) open_clip's ViT-H-14 uses exact GELU in both towers (not OpenAI's quick GELU) and
LayerNorm eps 1e-5; the converted model's config is set to that whatever the config file says. A checkpoint with a
missing, extra or mis-shaped tensor is refused with a message naming it; `.pt` files are read only with
`torch.load(weights_only=True)`.

Pixels are prepared as HPS's `img_score.py` prepares them (its open_clip `image_transform` with
`resize_longest_max=True`, see `hps_pixel_values`), not with the CLIP image processor.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from PIL import Image
from safetensors import SafetensorError
from transformers import CLIPConfig, CLIPModel

from ovi_bench.errors import ModelLoadError
from ovi_bench.io import publish_directory
from ovi_bench.models.clip import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    TINY_CLIP_BUILDERS,
    load_tokenizer,
    tiny_clip_dir,
)
from ovi_bench.models.hub import LOAD_ERRORS, load_pretrained, looks_like_path, model_file, resolve_model
from ovi_bench.models.preference import PreferenceScorer
from ovi_bench.paths import cache_dir, expand_user

HPS_CLIP_ID = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
HPS_WEIGHTS_REPO = "xswu/HPSv2"
HPS_WEIGHTS_FILE = "HPS_v2.1_compressed.pt"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors")
TINY_HPS_FILE = "hps-tiny.pt"

# ---------------------------------------------------------------------------------------------------------------------
# The key mapping, both ways.

_BLOCK_RENAMES = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
_QKV = ("q_proj", "k_proj", "v_proj")


@dataclass(frozen=True)
class OpenClipKeyMap:
    """Where each open_clip tensor goes in a CLIPModel of a given config (see the module docstring's table)."""

    renamed: dict[str, str]
    """open_clip key -> CLIPModel key, the same tensor."""
    transposed: dict[str, str]
    """open_clip [width, dim] projection -> CLIPModel Linear weight [dim, width]."""
    split: dict[str, tuple[str, str]]
    """open_clip `attn.in_proj_weight|bias` -> (CLIPModel attention prefix, "weight"|"bias"): q, k, v in thirds."""

    def open_clip_keys(self) -> set[str]:
        return set(self.renamed) | set(self.transposed) | set(self.split)


def open_clip_key_map(config: CLIPConfig) -> OpenClipKeyMap:
    """The mapping for a CLIPModel with `config`'s numbers of text and vision layers."""
    renamed = {
        "logit_scale": "logit_scale",
        "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
        "positional_embedding": "text_model.embeddings.position_embedding.weight",
        "ln_final.weight": "text_model.final_layer_norm.weight",
        "ln_final.bias": "text_model.final_layer_norm.bias",
        "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
        "visual.class_embedding": "vision_model.embeddings.class_embedding",
        "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    }
    for open_clip_name, hf_name in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        for part in ("weight", "bias"):
            renamed[f"visual.{open_clip_name}.{part}"] = f"vision_model.{hf_name}.{part}"
    split: dict[str, tuple[str, str]] = {}
    towers = (
        ("transformer.resblocks", "text_model.encoder.layers", config.text_config.num_hidden_layers),
        (
            "visual.transformer.resblocks",
            "vision_model.encoder.layers",
            config.vision_config.num_hidden_layers,
        ),
    )
    for open_clip_prefix, hf_prefix, layers in towers:
        for layer in range(layers):
            source, target = f"{open_clip_prefix}.{layer}", f"{hf_prefix}.{layer}"
            for open_clip_name, hf_name in _BLOCK_RENAMES.items():
                for part in ("weight", "bias"):
                    renamed[f"{source}.{open_clip_name}.{part}"] = f"{target}.{hf_name}.{part}"
            for part in ("weight", "bias"):
                split[f"{source}.attn.in_proj_{part}"] = (f"{target}.self_attn", part)
    transposed = {"visual.proj": "visual_projection.weight", "text_projection": "text_projection.weight"}
    return OpenClipKeyMap(renamed=renamed, transposed=transposed, split=split)


def _listed(keys: set[str]) -> str:
    shown = sorted(keys)[:6]
    return f"{shown}{f' and {len(keys) - len(shown)} more' if len(keys) > len(shown) else ''}"


def check_keys(found: set[str], expected: set[str], where: str, fix: str) -> None:
    """Refuse a state dict whose keys are not exactly `expected`, naming the missing and unexpected ones."""
    missing, unexpected = expected - found, found - expected
    if missing or unexpected:
        raise ModelLoadError(
            f"{where} does not match the model: missing {_listed(missing) if missing else 'none'}, unexpected "
            f"{_listed(unexpected) if unexpected else 'none'}. {fix}"
        )


def open_clip_to_hf(
    state: dict[str, torch.Tensor], config: CLIPConfig, where: str
) -> dict[str, torch.Tensor]:
    """An open_clip ViT CLIP state dict as CLIPModel tensors, checked key by key and shape by shape
    against a CLIPModel of `config`; `where` names the checkpoint in messages."""
    key_map = open_clip_key_map(config)
    check_keys(
        set(state),
        key_map.open_clip_keys(),
        f"the open_clip checkpoint {where}",
        f"HPS v2 checkpoints hold open_clip ViT-H-14 tensors; check that the checkpoint and the config "
        f"(the `model` parameter, {HPS_CLIP_ID} for HPS) are the same architecture.",
    )
    converted = {target: state[source] for source, target in key_map.renamed.items()}
    converted |= {target: state[source].t() for source, target in key_map.transposed.items()}
    for source, (prefix, part) in key_map.split.items():
        for name, third in zip(_QKV, state[source].chunk(3, dim=0), strict=True):
            converted[f"{prefix}.{name}.{part}"] = third
    with torch.device("meta"):
        shapes = {key: tuple(value.shape) for key, value in CLIPModel(config).state_dict().items()}
    wrong = [key for key, value in converted.items() if tuple(value.shape) != shapes[key]]
    if wrong:
        reverse = _reverse_names(key_map)
        raise ModelLoadError(
            f"the open_clip checkpoint {where} has tensors of the wrong shape for the config: "
            + ", ".join(
                f"{reverse[key]} {tuple(converted[key].shape)} (expected {shapes[key]})" for key in wrong[:6]
            )
            + ". The config (the `model` parameter) must describe the checkpoint's architecture."
        )
    # No copy beyond the transposed projections (made contiguous, as a saved weight is): renamed tensors and q/k/v
    # thirds are the checkpoint's own or views of them (a ViT-H checkpoint is 2 GB in float16); from_pretrained
    # casts them to the run's dtype.
    return {key: value.detach().contiguous() for key, value in converted.items()}


def _reverse_names(key_map: OpenClipKeyMap) -> dict[str, str]:
    """CLIPModel key -> the open_clip key it comes from (for messages)."""
    reverse = {target: source for source, target in {**key_map.renamed, **key_map.transposed}.items()}
    for source, (prefix, part) in key_map.split.items():
        reverse |= {f"{prefix}.{name}.{part}": source for name in _QKV}
    return reverse


def hf_to_open_clip(state: dict[str, torch.Tensor], config: CLIPConfig) -> dict[str, torch.Tensor]:
    """The inverse of `open_clip_to_hf`: CLIPModel tensors in open_clip's layout (the tiny HPS checkpoint)."""
    key_map = open_clip_key_map(config)
    expected = set(_reverse_names(key_map))
    check_keys(set(state), expected, "the CLIPModel state dict", "Pass a whole CLIPModel's state_dict().")
    converted = {source: state[target] for source, target in key_map.renamed.items()}
    converted |= {source: state[target].t() for source, target in key_map.transposed.items()}
    for source, (prefix, part) in key_map.split.items():
        converted[source] = torch.cat([state[f"{prefix}.{name}.{part}"] for name in _QKV], dim=0)
    return {key: value.contiguous() for key, value in converted.items()}


def open_clip_architecture(config: CLIPConfig) -> CLIPConfig:
    """`config` with open_clip's ViT-H-14 activation and LayerNorm eps in both towers (what HPS v2 was built with:
    `force_quick_gelu=False`), so that a config file saying otherwise cannot silently change the model."""
    for tower in (config.text_config, config.vision_config):
        tower.hidden_act = "gelu"
        tower.layer_norm_eps = 1e-5
    return config


# ---------------------------------------------------------------------------------------------------------------------
# Reading a checkpoint safely.


def read_open_clip_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a `.safetensors` file, or of a `.pt`/`.pth` file loaded with `torch.load(weights_only=True)`:
    a state dict, or a dict whose `state_dict` entry is one (HPS's layout; its other entries are ignored)."""
    fix = (
        f"Download {HPS_WEIGHTS_FILE} from the Hugging Face repository {HPS_WEIGHTS_REPO} (or leave `weights` at "
        f'"{HPS_WEIGHTS_REPO}"), or use weights = "tiny" with model = "tiny".'
    )
    if not path.is_file():
        raise ModelLoadError(f"HPS checkpoint not found at '{path}'. {fix}")
    suffix = path.suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES:
        raise ModelLoadError(
            f"HPS checkpoint '{path}' must be a .pt, .pth or .safetensors file (got '{suffix}')."
        )
    try:
        if suffix == ".safetensors":
            state = safetensors.torch.load_file(path, device="cpu")
        else:
            # weights_only: tensors and plain containers only, never arbitrary pickled objects.
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError,
        SafetensorError,
        RuntimeError,
        OSError,
        EOFError,
        ValueError,
        AttributeError,
    ) as error:
        raise ModelLoadError(
            f"cannot read '{path}' as a weights file ({type(error).__name__}: {error}). It must be a state dict "
            "saved with torch.save (read with torch.load(weights_only=True)) or a .safetensors file; a checkpoint you "
            f"trust that holds more than tensors can be converted to .safetensors once (docs: preference metrics). {fix}"
        ) from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items())
    ):
        raise ModelLoadError(
            f"'{path}' holds no state dict of tensors (found {type(state).__name__}); an HPS checkpoint is a dict "
            f"whose `state_dict` maps open_clip parameter names to tensors. {fix}"
        )
    return state


# ---------------------------------------------------------------------------------------------------------------------
# HPS's pixel preparation.


def hps_pixel_values(images: Sequence[Image.Image], image_size: int, *, antialias: bool) -> torch.Tensor:
    """[B, 3, S, S] pixels as HPS v2's `img_score.py` prepares them (open_clip `image_transform`, `is_train=False`,
    `resize_longest_max=True`): RGB to a float tensor in [0, 1], the longest side resized to `image_size` with
    torchvision's tensor bicubic (`interpolate(..., align_corners=False, antialias=...)`, new sides rounded), then
    zero padding to a square (half each side, the odd pixel right and bottom) and OpenAI CLIP's mean/std.

    No centre crop: a non-square image is letterboxed in black. `antialias=True` is torchvision ≥ 0.17's default,
    False that of torchvision ≤ 0.16 (the versions HPS v2 was released with)."""
    mean = torch.tensor(OPENAI_CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD).view(3, 1, 1)
    rows = []
    for image in images:
        pixels = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).float().div(255)
        height, width = pixels.shape[1:]
        scale = image_size / float(max(height, width))
        if scale != 1.0:
            new_height, new_width = round(height * scale), round(width * scale)
            pixels = torch.nn.functional.interpolate(
                pixels[None],
                size=(new_height, new_width),
                mode="bicubic",
                align_corners=False,
                antialias=antialias,
            )[0]
            pad_height, pad_width = image_size - new_height, image_size - new_width
            pixels = torch.nn.functional.pad(
                pixels,
                (pad_width // 2, pad_width - pad_width // 2, pad_height // 2, pad_height - pad_height // 2),
                value=0.0,
            )
        rows.append((pixels - mean) / std)
    return torch.stack(rows)


# ---------------------------------------------------------------------------------------------------------------------
# Loading, and the tiny checkpoint.


def is_checkpoint_file(ref: str) -> bool:
    """A `weights` value naming a local file (a path, or a name ending in .pt/.pth/.safetensors), not a hub
    repository or a local folder (which hold the checkpoint as `weights_file`)."""
    location = expand_user(ref)
    if location.is_dir():
        return False
    return looks_like_path(ref) or location.is_file() or ref.lower().endswith(CHECKPOINT_SUFFIXES)


def checkpoint_path(weights: str, weights_file: str) -> Path:
    """The local checkpoint file: the tiny one, a file path, or `weights_file` in the local folder or hub
    repository `weights` (downloaded, or read from the hub cache when offline)."""
    if weights == "tiny":
        return tiny_hps_dir() / TINY_HPS_FILE
    if is_checkpoint_file(weights):
        return expand_user(weights)
    return model_file(weights, "", weights_file)


def load_hps(
    model: str, weights: str, weights_file: str, device: torch.device, dtype: torch.dtype, *, antialias: bool
) -> PreferenceScorer:
    """The HPS model: the config and tokenizer of `model` (a hub id, a folder or "tiny"), the open_clip checkpoint
    of `weights`/`weights_file` converted into it, and HPS's pixel preparation."""
    source = resolve_model(model, TINY_CLIP_BUILDERS)
    config = open_clip_architecture(load_pretrained(CLIPConfig, source))
    tokenizer = load_tokenizer(source)
    path = checkpoint_path(weights, weights_file)
    state = open_clip_to_hf(read_open_clip_checkpoint(path), config, f"'{path}'")
    try:
        clip = CLIPModel.from_pretrained(None, config=config, state_dict=state, dtype=dtype)
    except LOAD_ERRORS as error:
        raise ModelLoadError(f"cannot build the HPS CLIPModel from '{path}': {error}.") from error
    return PreferenceScorer(
        model=clip.to(device).eval(),
        tokenizer=tokenizer,
        prepare_pixels=functools.partial(
            hps_pixel_values, image_size=config.vision_config.image_size, antialias=antialias
        ),
    )


def tiny_hps_config() -> CLIPConfig:
    """The tiny CLIP's config (`ovi_bench.models.clip.build_tiny_clip`) with open_clip's activation."""
    return open_clip_architecture(load_pretrained(CLIPConfig, str(tiny_clip_dir())))


def build_tiny_hps(folder: Path) -> None:
    """Save a random-weight tiny CLIPModel (seed 0) in open_clip's layout, as HPS saves its checkpoints."""
    config = tiny_hps_config()
    torch.manual_seed(0)
    model = CLIPModel(config).eval()
    torch.save({"state_dict": hf_to_open_clip(model.state_dict(), config)}, folder / TINY_HPS_FILE)


def tiny_hps_dir() -> Path:
    return publish_directory(build_tiny_hps, cache_dir() / "tiny" / "hps-v1")
