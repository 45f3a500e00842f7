"""The CLIP text and vision towers of an embedding space (`ovi_bench.spaces`), in either of the layouts that publish
them: what the training-free priors (`text-embedding`, the OVI family) and the embedding bank load.

* "kandinsky-prior": the sub-folders tokenizer/, text_encoder/, image_encoder/ (and image_processor/) of a Kandinsky
  2.2 prior repository (the ViT-bigG/14 space), loaded by `ovi_bench.models.kandinsky` as always.
* "clip": one transformers CLIPModel folder or hub id (laion/CLIP-ViT-H-14-laion2B-s32B-b79K,
  openai/clip-vit-large-patch14). Its text and vision towers load as CLIPTextModelWithProjection and
  CLIPVisionModelWithProjection from the same checkpoint (their weight names are the CLIPModel's); the projection
  width is taken from the top-level config, which the sub-configs may leave at their default.

`model = "tiny"` selects the space's tiny towers: the tiny Kandinsky 2.2 prior in the bigG space, and in a "clip"
space a tiny CLIPModel whose embeddings have the space's `tiny_width`, built in code and saved with save_pretrained.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPProcessor,
    CLIPTextConfig,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from ovi_bench.components import model_files
from ovi_bench.errors import OviBenchError
from ovi_bench.io import publish_directory
from ovi_bench.models.clip import (
    TINY_CLIP_IMAGE_SIZE,
    TINY_EMBEDDING_DIM,
    ClipImageEncoder,
    TextSide,
    checked_text_side,
    clip_image_processor,
    load_image_processor,
    load_text_encoder,
    load_tokenizer,
    tiny_text_encoder,
    tiny_tokenizer,
)
from ovi_bench.models.hub import load_pretrained, resolve_model
from ovi_bench.models.kandinsky import (
    IMAGE_ENCODER_SUBFOLDER,
    PRIOR_IMAGE_ENCODER_FILES,
    PRIOR_TEXT_SIDE_FILES,
    image_encoder_identity,
    load_image_encoder,
    load_prior_image_encoder,
    load_text_side,
    resolve_prior_model,
    tiny_image_encoder,
    zero_image_embeds,
)
from ovi_bench.models.zero_image import cached_zero_image_embeds, vision_tower_identity
from ovi_bench.paths import cache_dir, expand_user
from ovi_bench.spaces import EmbeddingSpace, get_space

KANDINSKY_PRIOR_LAYOUT = "kandinsky-prior"
CLIP_LAYOUT = "clip"

CLIP_TEXT_SIDE_FILES = ("vocab.json|tokenizer.json", *model_files(""))
"""What the text side reads from a CLIPModel folder: the tokenizer, the config and the weights (both towers')."""
CLIP_VISION_FILES = model_files("")
"""What the vision tower reads from a CLIPModel folder."""


def _layout(space: EmbeddingSpace) -> str:
    if space.towers_layout not in (KANDINSKY_PRIOR_LAYOUT, CLIP_LAYOUT):
        raise OviBenchError(
            f"embedding space {space.name} stores its towers as {space.towers_layout!r}; ovi-bench loads "
            f'"{KANDINSKY_PRIOR_LAYOUT}" and "{CLIP_LAYOUT}".'
        )
    return space.towers_layout


def towers_files(space_name: str) -> tuple[str, ...]:
    """The files the text side and the vision tower of a space's towers are loaded from (`required_models`)."""
    if _layout(get_space(space_name)) == KANDINSKY_PRIOR_LAYOUT:
        return PRIOR_TEXT_SIDE_FILES + PRIOR_IMAGE_ENCODER_FILES
    return CLIP_TEXT_SIDE_FILES


# ---------------------------------------------------------------------------------------------------------------------
# The tiny towers of a "clip" space: a CLIPModel made of the tiny Kandinsky 2.2 towers (the same configs and seeds),
# projected to the space's tiny width.


def build_tiny_clip_towers(folder: Path, width: int) -> None:
    """Save a tiny CLIPModel whose embeddings are `width` wide, with its tokenizer and image processor, into `folder`."""
    tokenizer = tiny_tokenizer()
    # The towers are built alone (as in the tiny Kandinsky 2.2 prior) and copied into the CLIPModel: its own
    # initialisation would give a vision tower that OVI cannot steer (see `tiny_image_encoder`).
    text_encoder = tiny_text_encoder(
        TINY_EMBEDDING_DIM, layers=5, heads=4, intermediate_size=37, projection_dim=width
    )
    image_encoder = tiny_image_encoder(projection_dim=width)
    config = CLIPConfig(
        text_config=text_encoder.config.to_dict(),
        vision_config=image_encoder.config.to_dict(),
        projection_dim=width,
    )
    model = CLIPModel(config).eval()
    state = {**text_encoder.state_dict(), **image_encoder.state_dict()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"logit_scale"}:
        raise AssertionError(f"tiny CLIP towers do not fit a CLIPModel: {missing}, {unexpected}")
    model.save_pretrained(folder, safe_serialization=True)
    processor = CLIPProcessor(image_processor=clip_image_processor(TINY_CLIP_IMAGE_SIZE), tokenizer=tokenizer)
    processor.save_pretrained(folder)


def tiny_towers_dir(space_name: str) -> Path:
    """The tiny towers folder of a "clip" space, built on first use into `cache_dir()/tiny/towers-<space>-v1`."""
    space = get_space(space_name)
    return publish_directory(
        lambda folder: build_tiny_clip_towers(folder, space.tiny_width),
        cache_dir() / "tiny" / f"towers-{space.name}-v1",
    )


# ---------------------------------------------------------------------------------------------------------------------
# Loading


def resolve_towers(ref: str, space_name: str) -> str:
    """A towers reference (hub id, local folder or "tiny") of a space as a hub id or an absolute folder path."""
    if _layout(get_space(space_name)) == KANDINSKY_PRIOR_LAYOUT:
        return resolve_prior_model(ref)
    return resolve_model(ref, {"tiny": lambda: tiny_towers_dir(space_name)})


def _clip_sub_config(resolved: str, side: str) -> CLIPTextConfig | CLIPVisionConfig:
    """The text or vision config of a CLIPModel checkpoint, with the top-level projection width."""
    config = load_pretrained(CLIPConfig, resolved)
    sub_config = config.text_config if side == "text" else config.vision_config
    sub_config.projection_dim = config.projection_dim
    return sub_config


def load_towers_text_side(ref: str, space_name: str, device: torch.device, dtype: torch.dtype) -> TextSide:
    """The tokenizer and text tower of a space's towers (encoding as KandinskyV22PriorPipeline does)."""
    if _layout(get_space(space_name)) == KANDINSKY_PRIOR_LAYOUT:
        return load_text_side(ref, device, dtype)
    resolved = resolve_towers(ref, space_name)
    tokenizer = load_tokenizer(resolved)
    text_encoder = load_text_encoder(resolved, device, dtype, config=_clip_sub_config(resolved, "text"))
    return checked_text_side(ref, tokenizer, text_encoder, tokenizer_config="tokenizer_config.json")


def _load_clip_vision(
    resolved: str, device: torch.device, dtype: torch.dtype
) -> CLIPVisionModelWithProjection:
    config = _clip_sub_config(resolved, "vision")
    model = load_pretrained(CLIPVisionModelWithProjection, resolved, dtype=dtype, config=config)
    return model.to(device).eval()


def load_towers_vision(
    ref: str, space_name: str, device: torch.device, dtype: torch.dtype
) -> CLIPVisionModelWithProjection:
    """The vision tower (with its projection) of a space's towers, in eval mode."""
    if _layout(get_space(space_name)) == KANDINSKY_PRIOR_LAYOUT:
        return load_image_encoder(ref, device, dtype)
    return _load_clip_vision(resolve_towers(ref, space_name), device, dtype)


def towers_zero_image_embeds(
    ref: str,
    space_name: str,
    device: torch.device,
    dtype: torch.dtype,
    image_encoder: CLIPVisionModelWithProjection | None = None,
) -> torch.Tensor:
    """The vision tower's embedding of an all-zeros image, [1, D] float32 on the CPU: the training-free priors'
    negative embedding in every space (Kandinsky 2.2's convention). Cached as `zero_image_embeds` is."""
    if _layout(get_space(space_name)) == KANDINSKY_PRIOR_LAYOUT:
        return zero_image_embeds(ref, device, dtype, image_encoder=image_encoder)
    resolved = resolve_towers(ref, space_name)
    return cached_zero_image_embeds(
        ref,
        resolved,
        "",
        lambda: image_encoder if image_encoder is not None else _load_clip_vision(resolved, device, dtype),
        dtype,
    )


def towers_identity(ref: str, space_name: str) -> str:
    """A digest that names the vision tower of a space's towers (config plus weight files, or hub snapshot commit);
    for the bigG space exactly `image_encoder_identity`, which banks built before spaces existed record."""
    if _layout(get_space(space_name)) == KANDINSKY_PRIOR_LAYOUT:
        return image_encoder_identity(ref)
    return vision_tower_identity(resolve_towers(ref, space_name), "")


def load_towers_image_encoder(
    ref: str, space_name: str, device: torch.device, dtype: torch.dtype
) -> ClipImageEncoder:
    """The vision tower with the image processor saved beside it, always transformers' PIL implementation (so that
    embeddings do not depend on whether torchvision is installed): how the embedding bank encodes images."""
    if _layout(get_space(space_name)) == KANDINSKY_PRIOR_LAYOUT:
        return load_prior_image_encoder(ref, device, dtype)
    resolved = resolve_towers(ref, space_name)
    return ClipImageEncoder(
        tower=_load_clip_vision(resolved, device, dtype),
        processor=load_image_processor(resolved, backend="pil"),
    )


# ---------------------------------------------------------------------------------------------------------------------
# Whether two saved vision towers are the same (two repositories that claim one space), from their weights alone: a few
# named tensors read with safetensors, no model built.

CHECKED_TENSORS = (
    "visual_projection.weight",
    "vision_model.embeddings.class_embedding",
    "vision_model.embeddings.patch_embedding.weight",
    "vision_model.embeddings.position_embedding.weight",
    "vision_model.pre_layrnorm.weight",
    "vision_model.encoder.layers.0.self_attn.q_proj.weight",
    "vision_model.encoder.layers.{last}.mlp.fc2.weight",
    "vision_model.post_layernorm.weight",
)
"""The tensors compared: the projection that defines the space, the patch and position embeddings, the first and last
layers, the layer norms. The names are the same in a tower saved alone and in a whole CLIPModel."""

_LAYER = re.compile(r"^vision_model\.encoder\.layers\.(\d+)\.")


@dataclass(frozen=True)
class TensorComparison:
    """One checked tensor of two towers."""

    name: str
    same: bool
    verdict: str
    """"equal", "equal at float16" (one stored in a wider dtype), or why they differ."""
    digests: tuple[str, str]
    """sha256 of each tensor's stored bytes ("" where it is missing)."""


def _local_folder(ref: str) -> Path:
    """A folder on disk, or OWNER/NAME[/SUBFOLDER] of a hub repository already in the local cache (never downloaded)."""
    folder = expand_user(ref)
    if folder.is_dir():
        return folder
    parts = ref.split("/")
    if ref.startswith(("/", ".", "~")) or "\\" in ref or len(parts) < 2:
        raise OviBenchError(f"no folder {folder}: give a folder that holds a CLIP vision tower's weights.")
    from huggingface_hub import snapshot_download

    repo_id, subfolder = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        snapshot = Path(snapshot_download(repo_id, local_files_only=True))
    except (
        OSError,
        ValueError,
    ) as error:  # not in the cache (LocalEntryNotFoundError), or no valid repository id
        raise OviBenchError(
            f"'{ref}' is neither a folder nor a hub repository in the local cache ({type(error).__name__}): "
            f"download it first (`hf download {repo_id}`) or give its folder."
        ) from None
    if not (snapshot / subfolder).is_dir():
        raise OviBenchError(f"the cached hub repository {repo_id} has no folder '{subfolder}'.")
    return snapshot / subfolder


def vision_tensor_files(ref: str) -> dict[str, Path]:
    """Where each vision tensor of a saved tower lives: name -> safetensors file. `ref`: a tower's folder (an
    image_encoder/ sub-folder, a CLIPModel folder), a Kandinsky 2.2 prior folder (its image_encoder/ is used), or a
    cached hub repository with an optional sub-folder ("h94/IP-Adapter/sdxl_models/image_encoder")."""
    folder = _local_folder(ref)
    if (
        not (folder / "config.json").is_file()
        and (folder / IMAGE_ENCODER_SUBFOLDER / "config.json").is_file()
    ):
        folder = folder / IMAGE_ENCODER_SUBFOLDER
    files = sorted(folder.glob("*.safetensors"))
    # A variant saved beside the weights (model.fp16.safetensors) holds the same tensors: read the main files.
    files = [path for path in files if path.name.count(".") == 1] or files
    if not files:
        raise OviBenchError(
            f"no .safetensors weights in {folder}: `ovi-bench spaces check` reads safetensors files (a tower's "
            "folder, a CLIPModel folder, or a Kandinsky 2.2 prior folder)."
        )
    locations: dict[str, Path] = {}
    for path in files:
        try:
            with safe_open(path, framework="pt") as handle:
                locations |= {
                    name: path
                    for name in handle.keys()  # noqa: SIM118 (a safetensors handle is no mapping)
                    if name.startswith(("vision_model.", "visual_"))
                }
        except (SafetensorError, OSError) as error:
            raise OviBenchError(f"{path} is not a readable safetensors file: {error}") from None
    if CHECKED_TENSORS[0] not in locations:
        raise OviBenchError(
            f"{folder} holds no CLIP vision tower (no tensor '{CHECKED_TENSORS[0]}' in {[p.name for p in files]})."
        )
    return locations


def _read_tensor(locations: dict[str, Path], name: str) -> torch.Tensor | None:
    if name not in locations:
        return None
    with safe_open(locations[name], framework="pt") as handle:
        return handle.get_tensor(name)


def _digest(tensor: torch.Tensor | None) -> str:
    if tensor is None:
        return ""
    return hashlib.sha256(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()


def _compare(first: torch.Tensor | None, second: torch.Tensor | None) -> tuple[bool, str]:
    if first is None or second is None:
        return False, f"missing in the {'first' if first is None else 'second'} tower"
    if first.shape != second.shape:
        return False, f"different shapes {list(first.shape)} and {list(second.shape)}"
    if first.dtype == second.dtype:
        return (True, "equal") if torch.equal(first, second) else (False, "different")
    # The same weights saved at two precisions: compare at the narrower one (rounding the wider copy).
    narrow = min((first.dtype, second.dtype), key=lambda dtype: torch.finfo(dtype).bits)
    if torch.finfo(first.dtype).bits == torch.finfo(second.dtype).bits:
        narrow = torch.float32  # float16 against bfloat16: neither rounds to the other
    if torch.equal(first.to(narrow), second.to(narrow)):
        return True, f"equal at {str(narrow).removeprefix('torch.')}"
    return False, f"different (compared at {str(narrow).removeprefix('torch.')})"


def compare_vision_towers(first: str, second: str) -> list[TensorComparison]:
    """Compare the `CHECKED_TENSORS` of two saved vision towers (see `vision_tensor_files` for the references)."""
    locations = (vision_tensor_files(first), vision_tensor_files(second))
    layers = [int(match.group(1)) for name in locations[0] if (match := _LAYER.match(name))]
    last = max(layers, default=0)
    comparisons = []
    for name in (pattern.format(last=last) for pattern in CHECKED_TENSORS):
        tensors = (_read_tensor(locations[0], name), _read_tensor(locations[1], name))
        same, verdict = _compare(*tensors)
        comparisons.append(TensorComparison(name, same, verdict, (_digest(tensors[0]), _digest(tensors[1]))))
    return comparisons
