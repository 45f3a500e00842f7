"""`pickscore`: PickScore v1 (Kirstain et al. 2023), a CLIP-H/14 fine-tuned on Pick-a-Pic human preferences.

Score = `logit_scale.exp() * cos(image_features, text_features)` of each image with its own prompt, as the PickScore
README computes it before its softmax across the images of one prompt (the softmax turns scores into a choice
between images; a benchmark keeps the per-image score, on a scale around 18–23 for ViT-H/14's logit scale 100).

Weights: the model `yuvalkirstain/PickScore_v1` (a transformers `CLIPModel`, ViT-H/14) and the tokenizer and image
processor of `laion/CLIP-ViT-H-14-laion2B-s32B-b79K`, both loaded with `from_pretrained`, as the README does; no
extra package. The model card states no licence: check it before publishing numbers.

Faithfulness: pixels go through that image processor's PIL implementation (shortest side resized to 224 bicubic,
centre crop 224, OpenAI CLIP mean/std), the class PickScore was released with; the README's torch code path
(`get_image_features`/`get_text_features`, L2 normalisation, padding to the longest prompt, 77-token truncation) is
the same computation. The authors run it in whatever dtype the model was loaded in (float32 by default); so does
this, in the run's dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ovi_bench.components import ModelNeed, Params, model_files
from ovi_bench.metrics.base import Metric, ScoreInput, ScoreRow
from ovi_bench.models.clip import CLIP_TOKENIZER_FILES
from ovi_bench.models.preference import PICKSCORE_MODEL_ID, PICKSCORE_PROCESSOR_ID, load_pickscore


class PickScoreParams(Params):
    model: str = PICKSCORE_MODEL_ID
    """The PickScore CLIPModel: a Hugging Face id, a local folder, or "tiny" (the tiny random CLIP, for tests)."""
    processor: str = PICKSCORE_PROCESSOR_ID
    """Where the tokenizer and image processor come from: a Hugging Face id, a local folder, or "tiny". PickScore
    was trained with those of laion/CLIP-ViT-H-14-laion2B-s32B-b79K."""


class PickScoreMetric(Metric):
    """PickScore v1: `logit_scale.exp()` × the cosine of CLIP-H/14 (PickScore fine-tune) image and prompt features."""

    Params = PickScoreParams
    version = "1"
    categories = None
    higher_is_better = True
    params: PickScoreParams

    @classmethod
    def required_models(cls, params: PickScoreParams) -> list[ModelNeed]:
        return [
            ModelNeed(params.model, "PickScore CLIP model", model_files("")),
            ModelNeed(
                params.processor,
                "PickScore tokenizer and image processor",
                ("preprocessor_config.json|processor_config.json", *CLIP_TOKENIZER_FILES),
            ),
        ]

    def __init__(self, params: PickScoreParams, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(params, device=device, dtype=dtype)
        self.scorer = load_pickscore(params.model, params.processor, device, dtype)

    def score(self, batch: Sequence[ScoreInput]) -> list[ScoreRow]:
        if not batch:
            return []
        scale = self.scorer.logit_scale
        cosines = self.scorer.cosines([item.image for item in batch], [item.prompt for item in batch])
        return [
            ScoreRow(score=scale * cosine, reason=f"PickScore {scale * cosine:.2f}") for cosine in cosines
        ]
