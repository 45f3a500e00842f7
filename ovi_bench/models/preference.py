"""CLIP-based human-preference models: one scorer for PickScore and HPS v2, and PickScore's loader.

Both reward models are CLIP ViT-H/14 fine-tunes that score an image against its prompt with the cosine of the
L2-normalised image and text features; PickScore multiplies it by the model's `logit_scale.exp()`, HPS v2 does not.
They differ only in their weights and in how pixels are prepared, which is why `PreferenceScorer` takes the pixel
preparation as a function (PickScore: the CLIP image processor; HPS v2: `ovi_bench.models.hps.hps_pixel_values`).

Text is encoded as `ClipEncoders` encodes it (the PickScore README's `processor(text=..., padding=True,
truncation=True, max_length=77)`): padded to the batch's longest prompt with the attention mask, cut at the
tokenizer's 77 tokens. With CLIP's causal mask the padding never reaches the pooled end-of-text token, so a prompt's
features do not depend on the rest of the batch beyond float rounding.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from transformers import CLIPModel, PreTrainedTokenizerBase

from ovi_bench.models.clip import (
    TINY_CLIP_BUILDERS,
    encode_token_ids,
    load_image_processor,
    load_tokenizer,
    load_vision_tower,
    pixel_values,
    project_pixels,
    token_ids,
)
from ovi_bench.models.hub import resolve_model

PICKSCORE_MODEL_ID = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR_ID = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"

PixelPreparation = Callable[[Sequence[Image.Image]], torch.Tensor]
"""Images -> [B, 3, H, W] float32 pixel values, ready for the vision tower."""


@dataclass(frozen=True)
class PreferenceScorer:
    """A whole CLIPModel with its tokenizer and pixel preparation: (image, prompt) pairs -> cosines, float32."""

    model: CLIPModel
    tokenizer: PreTrainedTokenizerBase
    prepare_pixels: PixelPreparation

    @property
    def logit_scale(self) -> float:
        """`logit_scale.exp()`: the temperature CLIP's contrastive loss learnt (100 for most checkpoints)."""
        return float(self.model.logit_scale.detach().float().exp())

    @torch.inference_mode()
    def unit_image_features(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """[B, D] L2-normalised image features, float32 on the CPU."""
        features = project_pixels(self.model, self.prepare_pixels(images)).float()
        return torch.nn.functional.normalize(features, dim=-1).cpu()

    @torch.inference_mode()
    def unit_text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """[B, D] L2-normalised text features, float32 on the CPU (texts cut at the tokenizer's maximum length)."""
        tokens = token_ids(self.tokenizer, texts, padding="longest")
        features = encode_token_ids(self.model, tokens, use_attention_mask=True)[0].float()
        return torch.nn.functional.normalize(features, dim=-1).cpu()

    def cosines(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> list[float]:
        """Each image's cosine with its own prompt. Each distinct prompt is encoded once per call."""
        unique = list(dict.fromkeys(prompts))
        by_prompt = dict(zip(unique, self.unit_text_features(unique), strict=True))
        text = torch.stack([by_prompt[prompt] for prompt in prompts])
        return (self.unit_image_features(images) * text).sum(dim=-1).tolist()


def load_pickscore(model: str, processor: str, device: torch.device, dtype: torch.dtype) -> PreferenceScorer:
    """PickScore's CLIPModel from `model` and its tokenizer and image processor from `processor` (each a hub id, a
    local folder or "tiny"), as the PickScore README loads them (`AutoModel` + `AutoProcessor`).

    The image processor is transformers' PIL implementation (the class PickScore was released with), so that pixels
    do not depend on whether torchvision is installed."""
    model_source = resolve_model(model, TINY_CLIP_BUILDERS)
    processor_source = resolve_model(processor, TINY_CLIP_BUILDERS)
    image_processor = load_image_processor(processor_source, backend="pil")
    return PreferenceScorer(
        model=load_vision_tower(model_source, device, dtype, whole_model=True),
        tokenizer=load_tokenizer(processor_source),
        prepare_pixels=functools.partial(pixel_values, image_processor),
    )
