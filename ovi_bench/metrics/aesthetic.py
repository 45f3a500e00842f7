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

import pickle
from collections.abc import Sequence
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

from ovi_bench.components import FileNeed, ModelNeed, Params, model_files
from ovi_bench.errors import ModelLoadError
from ovi_bench.io import publish_directory
from ovi_bench.metrics.base import Metric, ScoreInput, ScoreRow
from ovi_bench.models.hub import load_pretrained, resolve_model
from ovi_bench.models.tiny import clip_image_processor
from ovi_bench.paths import cache_dir, expand_user

AESTHETIC_CLIP_ID = "openai/clip-vit-large-patch14"
AESTHETIC_WEIGHTS_URL = "https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/sac+logos+ava1-l14-linearMSE.pth"
AESTHETIC_HIDDEN_WIDTHS = (1024, 128, 64, 16)
"""The hidden widths of the real MLP; the input width is the CLIP projection width (768 for ViT-L/14)."""

TINY_AESTHETIC_IMAGE_SIZE = 32
TINY_AESTHETIC_PROJECTION_DIM = 16
TINY_MLP_FILENAME = "aesthetic-mlp.safetensors"


class AestheticMLP(nn.Module):
    """The improved aesthetic predictor's MLP, laid out so that its `state_dict` keys match the released `.pth`.

    `layers.1/3/5` are dropouts (no parameters): inactive in eval mode, kept so the indices match.
    """

    def __init__(self, input_width: int) -> None:
        super().__init__()
        first, second, third, fourth = AESTHETIC_HIDDEN_WIDTHS
        self.input_width = input_width
        self.layers = nn.Sequential(
            nn.Linear(input_width, first),
            nn.Dropout(0.2),
            nn.Linear(first, second),
            nn.Dropout(0.2),
            nn.Linear(second, third),
            nn.Dropout(0.1),
            nn.Linear(third, fourth),
            nn.Linear(fourth, 1),
        )

    def forward(self, normalised_embeds: torch.Tensor) -> torch.Tensor:
        return self.layers(normalised_embeds).squeeze(-1)


def expected_mlp_shapes(input_width: int) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in AestheticMLP(input_width).state_dict().items()}


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a `.safetensors` file, or of a `.pth`/`.pt` state_dict loaded with `weights_only=True`."""
    if not path.is_file():
        raise ModelLoadError(
            f"aesthetic predictor weights not found at '{path}'. Download sac+logos+ava1-l14-linearMSE.pth from "
            f"{AESTHETIC_WEIGHTS_URL} (or convert it to .safetensors, see ovi_bench/metrics/aesthetic.py) and set "
            'the metric\'s `weights` parameter to its path, or use weights = "tiny" with clip_model = "tiny".'
        )
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            return safetensors.torch.load_file(path, device="cpu")
        except (SafetensorError, OSError, ValueError) as error:
            raise ModelLoadError(f"cannot read the safetensors file '{path}': {error}.") from error
    if suffix in {".pth", ".pt"}:
        try:
            # weights_only: the file may only hold tensors and plain containers, never arbitrary pickled objects.
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError, AttributeError) as error:
            raise ModelLoadError(
                f"refusing to load '{path}': it cannot be loaded safely with torch.load(weights_only=True) ({error}). "
                "Only a plain state_dict of tensors, such as the released sac+logos+ava1-l14-linearMSE.pth, is "
                "accepted; convert other files to .safetensors."
            ) from error
        if not isinstance(state, dict) or not all(
            isinstance(value, torch.Tensor) for value in state.values()
        ):
            raise ModelLoadError(
                f"'{path}' does not hold a state_dict of tensors (found {type(state).__name__}); the aesthetic "
                "predictor needs the MLP's state_dict, keys layers.0/2/4/6/7.weight and .bias."
            )
        return state
    raise ModelLoadError(
        f"aesthetic predictor weights '{path}' must be a .safetensors, .pth or .pt file (got '{path.suffix}')."
    )


def load_aesthetic_mlp(path: Path, input_width: int) -> AestheticMLP:
    """The MLP with the file's weights, refusing missing, extra or mis-shaped tensors with a message naming them."""
    state = read_state_dict(path)
    expected = expected_mlp_shapes(input_width)
    found = {key: tuple(value.shape) for key, value in state.items()}
    if found != expected:
        missing = sorted(set(expected) - set(found))
        unexpected = sorted(set(found) - set(expected))
        wrong = sorted(key for key in set(expected) & set(found) if expected[key] != found[key])
        raise ModelLoadError(
            f"'{path}' is not an aesthetic predictor MLP for CLIP embeddings of width {input_width}: "
            f"missing {missing}, unexpected {unexpected}, wrong shapes "
            f"{[f'{key} {found[key]} (expected {expected[key]})' for key in wrong]}. The real predictor "
            f"(sac+logos+ava1-l14-linearMSE.pth) goes with {AESTHETIC_CLIP_ID} (width 768); tiny weights with the "
            'tiny CLIP (clip_model = "tiny").'
        )
    mlp = AestheticMLP(input_width)
    mlp.load_state_dict({key: value.to(torch.float32) for key, value in state.items()}, strict=True)
    return mlp.eval()


def build_tiny_aesthetic(folder: Path) -> None:
    """Save a tiny CLIPVisionModelWithProjection (+ image processor) in `clip/` and a matching MLP beside it."""
    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        image_size=TINY_AESTHETIC_IMAGE_SIZE,
        patch_size=8,
        projection_dim=TINY_AESTHETIC_PROJECTION_DIM,
    )
    torch.manual_seed(0)
    vision = CLIPVisionModelWithProjection(config).eval()
    mlp = AestheticMLP(TINY_AESTHETIC_PROJECTION_DIM)
    image_processor = clip_image_processor(TINY_AESTHETIC_IMAGE_SIZE)
    vision.save_pretrained(folder / "clip", safe_serialization=True)
    image_processor.save_pretrained(folder / "clip")
    safetensors.torch.save_file(
        {key: value.contiguous() for key, value in mlp.state_dict().items()}, folder / TINY_MLP_FILENAME
    )


def tiny_aesthetic_dir() -> Path:
    return publish_directory(build_tiny_aesthetic, cache_dir() / "tiny" / "aesthetic-v1")


TINY_AESTHETIC_CLIP_BUILDERS = {"tiny": lambda: tiny_aesthetic_dir() / "clip"}


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
        source = resolve_model(params.clip_model, TINY_AESTHETIC_CLIP_BUILDERS)
        self.vision = load_pretrained(CLIPVisionModelWithProjection, source, dtype=dtype).to(device).eval()
        self.processor = load_pretrained(CLIPImageProcessor, source)
        weights = (
            tiny_aesthetic_dir() / TINY_MLP_FILENAME if params.weights == "tiny" else Path(params.weights)
        )
        self.mlp = load_aesthetic_mlp(expand_user(weights), self.vision.config.projection_dim).to(device)

    @torch.inference_mode()
    def normalised_embeds(self, images: Sequence) -> torch.Tensor:
        """L2-normalised CLIP image_embeds in float32, [B, projection_dim], on the metric's device."""
        pixels = self.processor(images=[image.convert("RGB") for image in images], return_tensors="pt")
        embeds = self.vision(pixel_values=pixels["pixel_values"].to(self.device, self.dtype)).image_embeds
        embeds = embeds.to(torch.float32)
        return embeds / embeds.norm(dim=-1, keepdim=True)

    @torch.inference_mode()
    def score(self, batch: Sequence[ScoreInput]) -> list[ScoreRow]:
        if not batch:
            return []
        ratings = self.mlp(self.normalised_embeds([item.image for item in batch])).cpu().tolist()
        return [ScoreRow(score=value, reason=f"aesthetic {value:.2f}") for value in ratings]
