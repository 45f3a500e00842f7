"""`clip`: T2I-CompBench's non-spatial metric, the cosine between CLIP ViT-B/32 image and prompt embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import Field

from ovi_bench.components import ModelNeed, model_files
from ovi_bench.metrics.base import Metric, ScoreInput, ScoreRow
from ovi_bench.metrics.common import AnalyzerParams, analyzer_identity
from ovi_bench.metrics.functional.clip import clip_cosine
from ovi_bench.metrics.text_analysis.choice import make_analyzer
from ovi_bench.metrics.text_analysis.tokens import without_adjectives
from ovi_bench.models.clip import TINY_CLIP_BUILDERS, load_clip_encoders
from ovi_bench.models.hub import resolve_model

OFFICIAL_CLIP_ID = "openai/clip-vit-base-patch32"


class CLIPParams(AnalyzerParams):
    model: str = Field(OFFICIAL_CLIP_ID)
    """CLIP checkpoint: a Hugging Face id, a local folder, or "tiny". The official metric uses ViT-B/32; other
    checkpoints give numbers that are not comparable with published ones."""
    remove_adjectives_in: list[str] = Field(default_factory=lambda: ["complex"])
    """Categories whose prompts lose every ADJ token before encoding: the official complex mode, the CLIP input of
    3-in-1. Empty: always the full prompt."""


class CLIPMetric(Metric):
    """Raw cosine between the L2-normalised CLIP image embedding and the embedding of the full prompt.

    Faithfulness: the official script uses OpenAI's `clip` package (fp16 on CUDA, its own bicubic resize and
    centre crop); this uses the same weights through `transformers`, whose CLIP processor applies the equivalent
    resize, crop and normalisation. Prompts longer than CLIP's 77 tokens are truncated, as in the official code.
    """

    Params = CLIPParams
    version = "2"
    params: CLIPParams

    @classmethod
    def required_models(cls, params: CLIPParams) -> list[ModelNeed]:
        return [ModelNeed(params.model, "CLIP model", model_files(""))]

    def __init__(self, params: CLIPParams, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(params, device=device, dtype=dtype)
        self.analyzer = make_analyzer(params.text_analyzer) if params.remove_adjectives_in else None
        self.clip = load_clip_encoders(resolve_model(params.model, TINY_CLIP_BUILDERS), device, dtype)

    def image_embeds(self, images: Sequence) -> torch.Tensor:
        return self.clip.image_encoder.image_embeds(images).cpu()

    def text_embeds(self, texts: Sequence[str]) -> torch.Tensor:
        return self.clip.text_embeds(texts).cpu()

    @classmethod
    def content_identity(cls, values: dict[str, Any]) -> dict[str, Any]:
        return analyzer_identity(values) if values["remove_adjectives_in"] else {}

    def text_for(self, item: ScoreInput) -> str:
        """The text the image is compared with: the prompt, without adjectives in the configured categories."""
        if self.analyzer is not None and item.category in self.params.remove_adjectives_in:
            return without_adjectives(item.prompt, self.analyzer)
        return item.prompt

    def score(self, batch: Sequence[ScoreInput]) -> list[ScoreRow]:
        if not batch:
            return []
        texts = [self.text_for(item) for item in batch]
        unique_texts = list(dict.fromkeys(texts))
        embeds_by_text = dict(zip(unique_texts, self.text_embeds(unique_texts), strict=True))
        image_embeds = self.image_embeds([item.image.convert("RGB") for item in batch])
        text_embeds = torch.stack([embeds_by_text[text] for text in texts])
        cosines = clip_cosine(image_embeds, text_embeds).tolist()
        return [ScoreRow(score=value, reason=f"CLIP cosine {value:.4f}") for value in cosines]
