"""`hpsv2`: Human Preference Score v2.1 (Wu et al. 2023), open_clip ViT-H/14 fine-tuned on HPD v2 preferences.

Score = cos(normalised image features, normalised text features) of each image with its own prompt: the diagonal
of `image_features @ text_features.T` in HPS's `img_score.py` (no logit scale; published values sit around
0.2–0.35).

Weights: `HPS_v2.1_compressed.pt` from the Hugging Face repository `xswu/HPSv2` (the open_clip state dict under
`state_dict`; `HPS_v2_compressed.pt` is HPS v2.0), read with `torch.load(weights_only=True)` or from a `.safetensors`
conversion, and converted into a transformers `CLIPModel` whose config and tokenizer are those of
`laion/CLIP-ViT-H-14-laion2B-s32B-b79K` (the same architecture; its weights are not read). See
`ovi_bench.models.hps` for the key mapping. HPS v2 is released under the Apache-2.0 licence. No extra package: the
authors' `hpsv2` package pins pytest 7 and bundles open_clip, which needs torchvision.

Differences from the authors' package (`hpsv2.score`):
* pixels: the same transform (`resize_longest_max=True`: longest side to 224, bicubic on the float tensor, black
  padding to a square, no centre crop; OpenAI mean/std), written with torch's `interpolate`, which is what
  torchvision's tensor resize calls. `antialias` follows torchvision ≥ 0.17 (True) by default; HPS's own release
  era (torchvision ≤ 0.16) did not antialias, which changes scores of large images slightly (`antialias = false`).
* text: transformers' CLIP tokenizer, the same BPE vocabulary and 77-token truncation (start + 75 tokens + end) as
  open_clip's, but without ftfy's mojibake repair and HTML unescaping (prompts with such text may tokenize
  differently); padding is masked rather than zeros under the causal mask, which gives the same pooled feature.
* precision: the authors run under CUDA autocast (float16 matmuls); this runs in the run's dtype (float32 on CPU).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ovi_bench.components import FileNeed, ModelNeed, Params
from ovi_bench.metrics.base import Metric, ScoreInput, ScoreRow
from ovi_bench.models.clip import CLIP_TOKENIZER_FILES
from ovi_bench.models.hps import HPS_CLIP_ID, HPS_WEIGHTS_FILE, HPS_WEIGHTS_REPO, is_checkpoint_file, load_hps


class HPSv2Params(Params):
    weights: str = HPS_WEIGHTS_REPO
    """The HPS checkpoint: a Hugging Face repository or a local folder holding `weights_file` (downloaded, or read
    from the hub cache offline), a local .pt/.pth/.safetensors file in open_clip's layout, or "tiny" (with
    model = "tiny")."""
    weights_file: str = HPS_WEIGHTS_FILE
    """The checkpoint's file name in the `weights` repository: HPS_v2.1_compressed.pt (v2.1) or
    HPS_v2_compressed.pt (v2.0). Unused when `weights` is a file or "tiny"."""
    model: str = HPS_CLIP_ID
    """The architecture the checkpoint fills: a Hugging Face id, a local folder or "tiny"; only its config.json and
    tokenizer are read."""
    antialias: bool = True
    """Antialiased bicubic downscaling, as torchvision ≥ 0.17 does in HPS's transform; false as torchvision ≤ 0.16."""


class HPSv2Metric(Metric):
    """HPS v2.1: the cosine of HPS-fine-tuned open_clip ViT-H/14 image and prompt features."""

    Params = HPSv2Params
    version = "1"
    categories = None
    higher_is_better = True
    params: HPSv2Params

    @classmethod
    def required_models(cls, params: HPSv2Params) -> list[ModelNeed]:
        needs = [
            ModelNeed(
                params.model,
                "HPS v2 architecture (config and tokenizer)",
                ("config.json", *CLIP_TOKENIZER_FILES),
            )
        ]
        if params.weights != "tiny" and not is_checkpoint_file(params.weights):
            needs.append(ModelNeed(params.weights, "HPS v2 checkpoint", (params.weights_file,)))
        return needs

    @classmethod
    def required_files(cls, params: HPSv2Params) -> list[FileNeed]:
        if params.weights == "tiny" or not is_checkpoint_file(params.weights):
            return []
        fix = f"download {HPS_WEIGHTS_FILE} from the Hugging Face repository {HPS_WEIGHTS_REPO} and set `weights` to it"
        return [FileNeed("HPS v2 checkpoint", params.weights, fix=fix)]

    def __init__(self, params: HPSv2Params, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(params, device=device, dtype=dtype)
        self.scorer = load_hps(
            params.model, params.weights, params.weights_file, device, dtype, antialias=params.antialias
        )

    def score(self, batch: Sequence[ScoreInput]) -> list[ScoreRow]:
        if not batch:
            return []
        cosines = self.scorer.cosines([item.image for item in batch], [item.prompt for item in batch])
        return [ScoreRow(score=value, reason=f"HPS v2 {value:.4f}") for value in cosines]
