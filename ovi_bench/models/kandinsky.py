"""Loading Kandinsky 2.2 components by hub id, local folder or "tiny", always through `from_pretrained`."""

from __future__ import annotations

import contextlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import KandinskyV22Pipeline, KandinskyV22PriorPipeline
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from transformers import CLIPTextModelWithProjection, CLIPTokenizer, CLIPVisionModelWithProjection

from ovi_bench.components import model_files
from ovi_bench.errors import ModelLoadError
from ovi_bench.io import atomic_write_bytes, canonical_json, sha256_text
from ovi_bench.models.hub import explain_load_failure, load_pretrained, model_file, resolve_model
from ovi_bench.models.tiny import DECODER_TINY_BUILDERS, PRIOR_TINY_BUILDERS
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


def resolve_prior_model(ref: str) -> str:
    """A prior reference (hub id, local folder or "tiny") as a hub id or an absolute folder path."""
    return resolve_model(ref, PRIOR_TINY_BUILDERS)


def resolve_decoder_model(ref: str) -> str:
    """A decoder reference (hub id, local folder or "tiny") as a hub id or an absolute folder path."""
    return resolve_model(ref, DECODER_TINY_BUILDERS)


@dataclass(frozen=True)
class TextEncoding:
    """What the prior's text side gives for a batch of texts, on the text encoder's device and dtype."""

    text_embeds: torch.Tensor
    """[B, D] the projected pooled (EOS token) embedding, not L2-normalised."""
    last_hidden_state: torch.Tensor
    """[B, 77, W] the per-token states the diffusion prior attends to."""
    attention_mask: torch.Tensor
    """[B, 77] bool, True for real tokens (padding is False)."""


TEXT_CACHE_SIZE = 64
"""Texts whose encodings a TextSide keeps. A run plans each prompt's seeds next to each other, so a prompt's 10 seeds
(the official protocol) meet its cached encoding even across batch boundaries; 64 rows of ViT-bigG's [77, 1280]
states are 25 MB in float32."""


@dataclass(frozen=True)
class TextSide:
    """The prior's tokenizer and CLIP text encoder, encoding exactly as KandinskyV22PriorPipeline does.

    Each distinct text is encoded once: the last `TEXT_CACHE_SIZE` texts are kept, so a prompt with several seeds
    is encoded once per run rather than once per seed. A text not in the cache is encoded on its own, never batched
    with others, so that its encoding is the same bits whatever it was batched with and whatever was encoded before
    (with batching, a cached row would carry the rounding of the batch that happened to encode it first). The text
    encoder is a small part of every prior's cost (ViT-bigG's text tower: ~3% of the Kandinsky 2.2 prior's FLOPs at
    25 steps), so the batch-of-one calls cost little.
    """

    tokenizer: CLIPTokenizer
    text_encoder: CLIPTextModelWithProjection
    _cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(
        default_factory=OrderedDict, compare=False, repr=False
    )
    """text -> (text_embeds [D], last_hidden_state [77, W], attention_mask [77]), least recently used first."""

    @property
    def device(self) -> torch.device:
        return self.text_encoder.device

    def encode(self, texts: Sequence[str]) -> TextEncoding:
        texts = list(texts)
        rows = {text: self._cache[text] for text in dict.fromkeys(texts) if text in self._cache}
        for text in dict.fromkeys(texts):
            if text not in rows:
                encoding = self._encode([text])
                rows[text] = (
                    encoding.text_embeds[0],
                    encoding.last_hidden_state[0],
                    encoding.attention_mask[0],
                )
        for text in dict.fromkeys(texts):
            self._cache[text] = rows[text]
            self._cache.move_to_end(text)
        while len(self._cache) > TEXT_CACHE_SIZE:
            self._cache.popitem(last=False)
        return TextEncoding(
            text_embeds=torch.stack([rows[text][0] for text in texts]),
            last_hidden_state=torch.stack([rows[text][1] for text in texts]),
            attention_mask=torch.stack([rows[text][2] for text in texts]),
        )

    def _encode(self, texts: list[str]) -> TextEncoding:
        # no_grad rather than inference_mode: optimisation-based priors use text_embeds as a target inside autograd,
        # which inference tensors cannot join.
        tokens = self.tokenizer(
            texts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        with torch.no_grad():
            # Like the pipeline: no attention mask for the encoder. CLIP's causal mask already keeps the padding
            # after EOS out of every token up to and including the pooled EOS.
            output = self.text_encoder(tokens.input_ids.to(self.device))
        return TextEncoding(
            text_embeds=output.text_embeds,
            last_hidden_state=output.last_hidden_state,
            attention_mask=tokens.attention_mask.bool().to(self.device),
        )


def load_text_side(ref: str, device: torch.device, dtype: torch.dtype) -> TextSide:
    """The tokenizer and text encoder of a Kandinsky 2.2 prior folder or hub id."""
    resolved = resolve_prior_model(ref)
    tokenizer = load_pretrained(CLIPTokenizer, resolved, subfolder="tokenizer")
    if len(tokenizer) <= len(tokenizer.all_special_tokens):
        # transformers 5 silently builds an empty tokenizer (special tokens only) when the files are missing.
        raise explain_load_failure(
            resolved, "CLIPTokenizer (tokenizer)", FileNotFoundError("no vocabulary found")
        )
    text_encoder = load_pretrained(
        CLIPTextModelWithProjection, resolved, subfolder="text_encoder", dtype=dtype
    )
    max_positions = text_encoder.config.max_position_embeddings
    if tokenizer.model_max_length > max_positions:
        raise ModelLoadError(
            f"the tokenizer of '{ref}' pads to {tokenizer.model_max_length} tokens but its text encoder has only "
            f"{max_positions} positions: set model_max_length in tokenizer/tokenizer_config.json."
        )
    return TextSide(tokenizer=tokenizer, text_encoder=text_encoder.to(device).eval())


def load_image_encoder(ref: str, device: torch.device, dtype: torch.dtype) -> CLIPVisionModelWithProjection:
    """The CLIP vision tower (with projection) of a Kandinsky 2.2 prior folder or hub id."""
    resolved = resolve_prior_model(ref)
    image_encoder = load_pretrained(
        CLIPVisionModelWithProjection, resolved, subfolder="image_encoder", dtype=dtype
    )
    return image_encoder.to(device).eval()


def load_prior_pipeline(ref: str, device: torch.device, dtype: torch.dtype) -> KandinskyV22PriorPipeline:
    """The whole diffusion prior pipeline; diffusers' progress bars are off (ovi-bench shows its own)."""
    # Imported here: the eclipse module builds on this one.
    from ovi_bench.priors.eclipse import refuse_eclipse_checkpoint

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
# The zero-image embedding: Kandinsky 2.2's default negative embedding. It needs the (1.8 B parameter) vision tower
# but never changes, so it is computed once per model and dtype and kept on disk.

_ZERO_EMBEDS_MEMO: dict[str, torch.Tensor] = {}
_ZERO_EMBEDS_KEY = "zero_image_embeds"


def clear_zero_image_embeds_memo() -> None:
    """Forget the in-process copies (the files on disk stay)."""
    _ZERO_EMBEDS_MEMO.clear()


def _image_encoder_source(resolved: str) -> tuple[dict, str]:
    """What identifies a resolved model's image encoder without loading it: its weights' source, and its config text."""
    config_path = model_file(resolved, "image_encoder", "config.json")
    config_text = config_path.read_text(encoding="utf-8")
    folder = Path(resolved)
    if folder.is_dir():
        # A local folder can be rewritten in place: its weight files' names, sizes and times identify the version.
        weights = sorted(
            (path.name, path.stat().st_size, path.stat().st_mtime_ns)
            for path in (folder / "image_encoder").iterdir()
            if path.is_file() and path.name != "config.json"
        )
        source = {"folder": str(folder), "weights": weights}
    else:
        # A hub file lives in .../snapshots/<commit>/image_encoder/config.json: the commit names the weights.
        source = {"hub_id": resolved, "commit": config_path.parent.parent.name}
    return source, config_text


def image_encoder_identity(ref: str) -> str:
    """A digest that names one image encoder's weights (a prior reference: hub id, local folder or "tiny").

    Equal digests mean the same config and weight files (a local folder: names, sizes and modification times) or the
    same hub snapshot commit; loads no weights. Embedding banks record it, so that a bank made by one image encoder is
    never used with another's embeddings.
    """
    source, config_text = _image_encoder_source(resolve_prior_model(ref))
    return sha256_text(canonical_json({"source": source, "config": config_text}))


def _zero_image_embeds_key(resolved: str, dtype: torch.dtype) -> tuple[str, dict]:
    """The cache key of a model's zero-image embedding, and the image encoder's config. Loads no weights."""
    source, config_text = _image_encoder_source(resolved)
    key = sha256_text(canonical_json({"source": source, "config": config_text, "dtype": str(dtype)}))
    return key, json.loads(config_text)


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
    key, config = _zero_image_embeds_key(resolved, dtype)
    if key in _ZERO_EMBEDS_MEMO:
        return _ZERO_EMBEDS_MEMO[key].clone()
    path = cache_dir() / "zero-image-embeds" / f"{key}.safetensors"
    embeds = _read_cached(path, width=config["projection_dim"])
    if embeds is None:
        if image_encoder is None:
            image_encoder = load_image_encoder(resolved, device, dtype)
        embeds = _compute_zero_image_embeds(image_encoder)
        if not embeds.isfinite().all():
            raise ModelLoadError(
                f"the zero-image embedding of '{ref}' contains NaN or inf: are its weights corrupt?"
            )
        metadata = {"model": resolved, "dtype": str(dtype)}
        atomic_write_bytes(path, save({_ZERO_EMBEDS_KEY: embeds.contiguous()}, metadata=metadata))
    _ZERO_EMBEDS_MEMO[key] = embeds
    return embeds.clone()
