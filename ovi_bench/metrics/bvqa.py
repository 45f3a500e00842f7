"""`b-vqa`: T2I-CompBench's attribute-binding metric (color, shape, texture; also an input of 3-in-1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import Field

from ovi_bench.components import ModelNeed, model_files
from ovi_bench.metrics.base import ScoreInput, ScoreRow
from ovi_bench.metrics.common import AnalyzerParams, TextAnalyzingMetric
from ovi_bench.metrics.functional.bvqa import bvqa_questions, bvqa_score
from ovi_bench.models.evaluators import BLIP_VQA_ID, OFFICIAL_BLIP_IMAGE_SIZE, BlipVQA


class BVQAParams(AnalyzerParams):
    model: str = BLIP_VQA_ID
    """BLIP VQA checkpoint (the official one is BLIP ViT-B CapFilt-L, `Salesforce/blip-vqa-capfilt-large`), a folder
    or "tiny"."""
    image_size: int = Field(OFFICIAL_BLIP_IMAGE_SIZE, ge=16)
    """Square input side (official: 480, position embeddings interpolated)."""
    official_rounding: bool = True
    """Round each question's probability and the product to 4 decimals in float32, as the official script does."""


class BVQAMetric(TextAnalyzingMetric):
    """Product over the prompt's noun chunks of BLIP-VQA's P(yes)/(P(yes)+P(no)) for "<chunk>?"."""

    Params = BVQAParams
    version = "1"
    categories = ("color", "shape", "texture", "complex")
    params: BVQAParams

    @classmethod
    def required_models(cls, params: BVQAParams) -> list[ModelNeed]:
        return [ModelNeed(params.model, "BLIP VQA model", model_files(""))]

    def __init__(self, params: BVQAParams, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(params, device=device, dtype=dtype)
        self.vqa = BlipVQA(params.model, device=device, dtype=dtype, image_size=params.image_size)

    def score(self, batch: Sequence[ScoreInput]) -> list[ScoreRow]:
        questions = [bvqa_questions(self.analyzer.noun_chunks(item.prompt)) for item in batch]
        probabilities = self.vqa.yes_probabilities([item.image for item in batch], questions)
        rows = []
        for image_questions, image_probabilities in zip(questions, probabilities, strict=True):
            score, reason = bvqa_score(
                image_questions, image_probabilities, official_rounding=self.params.official_rounding
            )
            rows.append(ScoreRow(score=score, reason=reason))
        return rows
