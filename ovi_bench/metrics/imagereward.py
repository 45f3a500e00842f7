"""`imagereward`: ImageReward v1.0, a BLIP reward model of human preference for text-to-image generations.

ImageReward (Xu et al., NeurIPS 2023; https://github.com/THUDM/ImageReward) was trained on 137k expert comparisons
of generated images. An image is encoded by BLIP's ViT-L/16 at 224 px; the prompt is encoded by BLIP's BERT text
encoder with cross-attention to the image's patch states; the [CLS] state goes through an MLP 768→1024→128→64→16→1
(no activations; dropouts inactive at inference), and the output is standardised, (reward − 0.16717362830052426)
/ 1.0333394966054072, the authors' constants. Higher is better; 0 is the mean over the authors' data, most images
score between −2 and 2.

Weights. `THUDM/ImageReward` on the Hugging Face hub: `ImageReward.pt` (1.79 GB, the model's `state_dict`,
loaded with `torch.load(weights_only=True)`; a pickle that needs more is refused) and `med_config.json` (the text
encoder's config). `checkpoint` may be that hub id (only these two files are downloaded), a folder holding them, the
weights file itself (with `med_config.json` beside it) or "tiny". A pickle-free copy, loaded in preference when a
folder holds both:

    import torch, safetensors.torch
    state = torch.load("ImageReward.pt", map_location="cpu", weights_only=True)
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, "ImageReward.safetensors")

The tokenizer is `bert-base-uncased` (`tokenizer`) with BLIP's [DEC] and [ENC] tokens added. Licence: the code is
Apache-2.0 (the `image-reward` package's PyPI metadata and the repository's LICENSE); the model card of
`THUDM/ImageReward` declares Apache-2.0 as well. Cite the paper when publishing numbers.

Preprocessing, as `ImageReward.score`: the image is resized so that its short side is 224 (bicubic, PIL), centre
cropped to 224×224 with torchvision's rounding, converted to RGB, scaled to [0, 1] and normalised with OpenAI
CLIP's mean and std (torchvision's `Compose`, reproduced with PIL and torch). The prompt is tokenized with
`padding="max_length", truncation=True, max_length=35`, and its first token stays [CLS] (ImageReward does not put
[ENC] there, unlike BLIP's ITM head); a longer prompt is truncated, which the score's `reason` says.

How this differs from the authors' package (`image-reward`, which pins timm 0.6.13 and fairscale and is not used):

* The towers are transformers' `BlipVisionModel` and `BlipTextModel` (with cross-attention layers) rather than the
  authors' copies of timm's ViT and BLIP's `med.py`; the checkpoint's tensors are renamed onto them
  (`ovi_bench.models.imagereward.VISION_KEYS`; the text encoder's names are the same in both). The two
  implementations compute the same operations: the tests compare the converted model with a hand-written forward
  of the original layout (timm's ViT with exact GELU, BERT with cross-attention, [CLS] → MLP → standardisation) on
  a tiny random checkpoint written in the release's key layout. The ViT's LayerNorm eps, 1e-6, is BLIP's
  (transformers' default is 1e-5); the tests assert it on the derived config, as the tiny comparison cannot tell
  the two apart at its activations' scale. Attention masks are added as
  the dtype's minimum rather than −10000 (the same probabilities: both underflow to 0).
* Loading is strict where the authors' is not (`load_state_dict(strict=False)`): every tensor of the release must
  land in a module, except BLIP's unused contrastive projections (`blip.vision_proj`, `blip.text_proj`) and the
  `position_ids` buffer; a missing, unexpected or mis-shaped tensor is an error naming it. The ViT's configuration
  is read from the tensors' shapes (64 channels per head, as BLIP's `create_vit`), the text encoder's from
  `med_config.json`.
* Images are scored in batches (the authors' `score` takes one image at a time); each image's reward does not
  depend on its batch mates. The towers run in the metric's dtype (the authors': float32); the MLP always runs in
  float32, as `ImageReward.score` casts the [CLS] state with `.float()`.
* Tokenizer: transformers 5's `BertTokenizer` (the Rust `tokenizers` backend) rather than transformers 4's Python
  one; the vocabulary, lowercasing and accent stripping are bert-base-uncased's in both.
* Verified here: on a tiny random checkpoint written in the release's layout, the converted model equals the
  hand-written original forward (to 2e-5); the configurations derived from the release's shapes are ViT-L/16 at
  224 px and the med BERT cross-attending to 1024-wide states, and their tensors add up to the 1.79 GB of
  `ImageReward.pt` on the hub. Not verified offline: the real `ImageReward.pt` itself. Its key names are taken
  from the authors' code (`ImageReward` holds `self.blip` and `self.mlp`; the training script saves
  `model.state_dict()`); should the file hold another key, loading stops with an error naming it. A `weights` test
  checks the README's example rewards (0.58, 0.27, -1.41, -2.03) when the authors' example images are given.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import Field, model_validator

from ovi_bench.components import FileNeed, ModelNeed, Params
from ovi_bench.metrics.base import Metric, ScoreInput, ScoreRow
from ovi_bench.models.imagereward import (
    IMAGEREWARD_CHECKPOINT,
    IMAGEREWARD_ID,
    IMAGEREWARD_MAX_TOKENS,
    IMAGEREWARD_SAFETENSORS,
    IMAGEREWARD_TOKENIZER_ID,
    MED_CONFIG,
    ImageRewardModel,
)
from ovi_bench.paths import expand_user

WEIGHT_SUFFIXES = (".pt", ".pth", ".safetensors")


class ImageRewardParams(Params):
    checkpoint: str = Field(IMAGEREWARD_ID, min_length=1)
    """ImageReward's weights: a hub id holding ImageReward.pt and med_config.json (THUDM/ImageReward), a folder
    holding them (or ImageReward.safetensors), the weights file itself with med_config.json beside it, or "tiny"
    (random weights for tests, with tokenizer = "tiny")."""
    tokenizer: str = Field(IMAGEREWARD_TOKENIZER_ID, min_length=1)
    """The BERT tokenizer BLIP's [DEC] and [ENC] are added to: a hub id, a local folder or "tiny"."""

    @model_validator(mode="after")
    def _tiny_goes_with_tiny(self) -> ImageRewardParams:
        # The tiny checkpoint's vocabulary is the tiny tokenizer's and the release's is bert-base-uncased's (+2): a
        # mix-up would index the wrong embeddings. Copies of either (folders, files) are the user's to pair.
        if (self.checkpoint == "tiny" and self.tokenizer != "tiny") or (
            self.tokenizer == "tiny" and self.checkpoint == IMAGEREWARD_ID
        ):
            raise ValueError(
                'checkpoint = "tiny" and tokenizer = "tiny" go together; the real checkpoint goes with '
                f"{IMAGEREWARD_TOKENIZER_ID}"
            )
        return self


class ImageRewardMetric(Metric):
    """ImageReward v1.0: BLIP's human-preference reward for an image and its prompt, standardised (higher: better)."""

    Params = ImageRewardParams
    version = "1"
    categories = None
    higher_is_better = True
    params: ImageRewardParams

    @classmethod
    def required_models(cls, params: ImageRewardParams) -> list[ModelNeed]:
        needs = [ModelNeed(params.tokenizer, "ImageReward's BERT tokenizer", ("vocab.txt|tokenizer.json",))]
        if not _is_weights_file(params.checkpoint):
            files = (f"{IMAGEREWARD_CHECKPOINT}|{IMAGEREWARD_SAFETENSORS}", MED_CONFIG)
            needs.append(ModelNeed(params.checkpoint, "ImageReward checkpoint", files))
        return needs

    @classmethod
    def required_files(cls, params: ImageRewardParams) -> list[FileNeed]:
        if not _is_weights_file(params.checkpoint):
            return []
        fix = (
            f"download {IMAGEREWARD_CHECKPOINT} and {MED_CONFIG} (`hf download {IMAGEREWARD_ID} "
            f"{IMAGEREWARD_CHECKPOINT} {MED_CONFIG} --local-dir <folder>`) and point `checkpoint` at them"
        )
        folder = str(expand_user(params.checkpoint).parent)
        return [
            FileNeed("ImageReward weights", params.checkpoint, fix=fix),
            FileNeed("ImageReward text config", folder, folder=True, contains=MED_CONFIG, fix=fix),
        ]

    def __init__(self, params: ImageRewardParams, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(params, device=device, dtype=dtype)
        self.model = ImageRewardModel(params.checkpoint, params.tokenizer, device, dtype)

    def score(self, batch: Sequence[ScoreInput]) -> list[ScoreRow]:
        if not batch:
            return []
        prompts = [item.prompt for item in batch]
        rewards = self.model.rewards([item.image for item in batch], prompts)
        rows = []
        for reward, tokens in zip(rewards, self.model.token_counts(prompts), strict=True):
            reason = f"ImageReward {reward:+.3f}"
            if tokens > IMAGEREWARD_MAX_TOKENS:
                reason += f" (prompt truncated to {IMAGEREWARD_MAX_TOKENS} of its {tokens} tokens)"
            rows.append(ScoreRow(score=reward, reason=reason))
        return rows


def _is_weights_file(checkpoint: str) -> bool:
    """A reference to the weights file itself (rather than a hub id, a folder or "tiny")."""
    return checkpoint.lower().endswith(WEIGHT_SUFFIXES) and not expand_user(checkpoint).is_dir()
