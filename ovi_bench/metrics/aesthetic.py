"""`aesthetic`: the LAION improved aesthetic predictor v2 (an MLP over L2-normalised CLIP ViT-L/14 image embeddings).

The predictor is Christoph Schuhmann's "improved aesthetic predictor"
(https://github.com/christophschuhmann/improved-aesthetic-predictor): an MLP 768→1024→128→64→16→1 with dropouts
between the first layers, trained on SAC + LAION-Logos + AVA ratings, applied to the L2-normalised
`image_embeds` of OpenAI CLIP ViT-L/14. Its output is a rating on the AVA scale, roughly 1–10 (LAION-Aesthetics
filtered at 5, 6 and 6.5).

Weights. The MLP is not on the Hugging Face hub as an official model: download
`sac+logos+ava1-l14-linearMSE.pth` (about 3.7 MB) from that repository and point `weights` at it. It is a plain
`state_dict` of tensors (keys `layers.0/2/4/6/7.weight|bias`), so it loads with `torch.load(weights_only=True)`;
ovi-bench never unpickles anything else. To keep a pickle-free copy, convert it once:

    import torch, safetensors.torch
    state = torch.load("sac+logos+ava1-l14-linearMSE.pth", map_location="cpu", weights_only=True)
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, "aesthetic-v2-l14.safetensors")

The repository has no LICENSE file; cite it when publishing numbers. The CLIP tower is `openai/clip-vit-large-patch14`
(`CLIPVisionModelWithProjection`), loaded with `from_pretrained`.

Faithfulness: the reference script encodes images with OpenAI's `clip` package (bicubic resize to 224, centre crop);
`transformers`' CLIP image processor for the same checkpoint applies the equivalent resize, crop and normalisation.
The embedding is normalised in float32 and the MLP always runs in float32, whatever the metric's dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ovi_bench.components import FileNeed, ModelNeed, Params, model_files
from ovi_bench.metrics.base import Metric, ScoreInput, ScoreRow
from ovi_bench.models.aesthetic import AESTHETIC_CLIP_ID, AestheticPredictor


class AestheticParams(Params):
    weights: str
    """The predictor MLP: a path to `sac+logos+ava1-l14-linearMSE.pth` (from the improved-aesthetic-predictor
    repository; loaded with torch.load(weights_only=True)) or to its `.safetensors` conversion, or "tiny" (random
    weights for tests, with clip_model = "tiny")."""
    clip_model: str = AESTHETIC_CLIP_ID
    """The CLIP vision tower whose normalised image_embeds the MLP reads: a Hugging Face id, a local folder or
    "tiny". The released MLP was trained on openai/clip-vit-large-patch14 (projection width 768)."""


class AestheticMetric(Metric):
    """LAION improved aesthetic predictor v2: an MLP rating (roughly 1–10) of the normalised CLIP ViT-L/14 embedding."""

    Params = AestheticParams
    version = "1"
    categories = None
    higher_is_better = True
    params: AestheticParams

    @classmethod
    def required_models(cls, params: AestheticParams) -> list[ModelNeed]:
        return [ModelNeed(params.clip_model, "CLIP vision tower", model_files(""))]

    @classmethod
    def required_files(cls, params: AestheticParams) -> list[FileNeed]:
        if params.weights == "tiny":
            return []
        fix = "download sac+logos+ava1-l14-linearMSE.pth (see the metric's documentation) and set `weights` to it"
        return [FileNeed("aesthetic predictor weights", params.weights, fix=fix)]

    def __init__(self, params: AestheticParams, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(params, device=device, dtype=dtype)
        self.predictor = AestheticPredictor(params.clip_model, params.weights, device, dtype)

    def normalised_embeds(self, images: Sequence) -> torch.Tensor:
        """L2-normalised CLIP image_embeds in float32, [B, projection_dim], on the metric's device."""
        return self.predictor.normalised_embeds(images)

    def score(self, batch: Sequence[ScoreInput]) -> list[ScoreRow]:
        if not batch:
            return []
        ratings = self.predictor.ratings([item.image for item in batch])
        return [ScoreRow(score=value, reason=f"aesthetic {value:.2f}") for value in ratings]
