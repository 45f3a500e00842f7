"""What identifies a saved CLIP vision tower without loading it, and its zero-image embedding, cached on disk.

The zero-image embedding (the tower's `image_embeds` of an all-zeros image) is the default negative embedding of
Kandinsky 2.2 and of the training-free priors in every space. It needs the whole vision tower (1.8 B parameters for
ViT-bigG/14) but never changes, so it is computed once per tower and dtype and kept in `cache_dir()/zero-image-embeds/`.

A tower is saved either in a sub-folder of its repository (a Kandinsky 2.2 prior's `image_encoder/`) or at the root of
a whole CLIPModel folder (`subfolder` ""); both are named the same way: the config text, and the weight files' names,
sizes and times (a local folder) or the hub snapshot's commit.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from transformers import CLIPVisionModelWithProjection

from ovi_bench.errors import ModelLoadError
from ovi_bench.io import atomic_write_bytes, canonical_json, sha256_text
from ovi_bench.models.hub import model_file
from ovi_bench.paths import cache_dir

_ZERO_EMBEDS_MEMO: dict[str, torch.Tensor] = {}
_ZERO_EMBEDS_KEY = "zero_image_embeds"


def clear_zero_image_embeds_memo() -> None:
    """Forget the in-process copies (the files on disk stay)."""
    _ZERO_EMBEDS_MEMO.clear()


def vision_tower_source(resolved: str, subfolder: str) -> tuple[dict, str]:
    """What identifies a resolved model's vision tower (saved in `subfolder`, "" for the root) without loading it:
    its weights' source, and its config text."""
    config_path = model_file(resolved, subfolder, "config.json")
    config_text = config_path.read_text(encoding="utf-8")
    folder = Path(resolved)
    if folder.is_dir():
        # A local folder can be rewritten in place: its weight files' names, sizes and times identify the version.
        weights = sorted(
            (path.name, path.stat().st_size, path.stat().st_mtime_ns)
            for path in (folder / subfolder).iterdir()
            if path.is_file() and path.name != "config.json"
        )
        source = {"folder": str(folder), "weights": weights}
    else:
        # A hub file lives in .../snapshots/<commit>/<subfolder>/config.json: the commit names the weights.
        snapshot = config_path.parents[len(Path(subfolder).parts)]
        source = {"hub_id": resolved, "commit": snapshot.name}
    return source, config_text


def vision_tower_identity(resolved: str, subfolder: str) -> str:
    """A digest that names one vision tower's weights; equal digests mean the same config and weight files (a local
    folder: names, sizes and modification times) or the same hub snapshot commit. Loads no weights."""
    source, config_text = vision_tower_source(resolved, subfolder)
    return sha256_text(canonical_json({"source": source, "config": config_text}))


def _compute_zero_image_embeds(image_encoder: CLIPVisionModelWithProjection) -> torch.Tensor:
    """What diffusers' `get_zero_embed` computes: the image embedding of an all-zeros image, as [1, D]."""
    size = image_encoder.config.image_size
    zeros = torch.zeros(1, 3, size, size, device=image_encoder.device, dtype=image_encoder.dtype)
    with torch.no_grad():
        return image_encoder(pixel_values=zeros).image_embeds.float().cpu()


def _read_cached(path: Path, width: int) -> torch.Tensor | None:
    """The cached embedding, or None when the file is missing; a corrupt file is deleted."""
    if not path.is_file():
        return None
    try:
        embeds = load_file(path)[_ZERO_EMBEDS_KEY]
    except (SafetensorError, KeyError, OSError):
        embeds = None
    if (
        embeds is None
        or embeds.shape != (1, width)
        or embeds.dtype != torch.float32
        or not embeds.isfinite().all()
    ):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return None
    return embeds


def cached_zero_image_embeds(
    ref: str,
    resolved: str,
    subfolder: str,
    load_tower: Callable[[], CLIPVisionModelWithProjection],
    dtype: torch.dtype,
) -> torch.Tensor:
    """The zero-image embedding [1, D] float32 on the CPU of the vision tower saved in `resolved`/`subfolder`.

    Cached in memory and on disk, keyed by the tower's source, config and `dtype`; `load_tower` is called only on a
    cache miss (and decides the device it runs on: the result may differ across devices by float rounding). `ref` is
    the reference as the user gave it, for messages.
    """
    source, config_text = vision_tower_source(resolved, subfolder)
    key = sha256_text(canonical_json({"source": source, "config": config_text, "dtype": str(dtype)}))
    if key in _ZERO_EMBEDS_MEMO:
        return _ZERO_EMBEDS_MEMO[key].clone()
    path = cache_dir() / "zero-image-embeds" / f"{key}.safetensors"
    # A tower saved alone and a whole CLIPModel both keep the projection width at the top of their config.
    embeds = _read_cached(path, width=json.loads(config_text)["projection_dim"])
    if embeds is None:
        embeds = _compute_zero_image_embeds(load_tower())
        if not embeds.isfinite().all():
            raise ModelLoadError(
                f"the zero-image embedding of '{ref}' contains NaN or inf: are its weights corrupt?"
            )
        metadata = {"model": resolved, "dtype": str(dtype)}
        atomic_write_bytes(path, save({_ZERO_EMBEDS_KEY: embeds.contiguous()}, metadata=metadata))
    _ZERO_EMBEDS_MEMO[key] = embeds
    return embeds.clone()
