"""The LAION improved aesthetic predictor v2: the MLP, reading its weights safely, the CLIP tower it reads, the tiny one.

The predictor is Christoph Schuhmann's "improved aesthetic predictor"
(https://github.com/christophschuhmann/improved-aesthetic-predictor): an MLP 768→1024→128→64→16→1 with dropouts
between the first layers, applied to the L2-normalised `image_embeds` of OpenAI CLIP ViT-L/14 (see
`ovi_bench.metrics.aesthetic` for the metric, the weights to download and the faithfulness notes).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import safetensors.torch
import torch
from PIL import Image
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from ovi_bench.errors import ModelLoadError
from ovi_bench.io import publish_directory
from ovi_bench.models.clip import ClipImageEncoder, clip_image_processor, load_clip_image_encoder
from ovi_bench.models.hub import resolve_model
from ovi_bench.models.tensor_files import read_tensor_file
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
    return read_tensor_file(
        path,
        what="aesthetic predictor weights",
        expected="Only a plain state_dict of tensors, such as the released sac+logos+ava1-l14-linearMSE.pth (keys "
        "layers.0/2/4/6/7.weight and .bias), is accepted",
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


class AestheticPredictor:
    """The CLIP image tower and the MLP: images -> ratings. The embedding is normalised in float32 and the MLP always
    runs in float32, whatever `dtype` (the tower's)."""

    def __init__(self, clip_model: str, weights: str, device: torch.device, dtype: torch.dtype) -> None:
        # The checkpoint's own image processor class (transformers' default backend), as it has always been loaded.
        self.clip: ClipImageEncoder = load_clip_image_encoder(
            resolve_model(clip_model, TINY_AESTHETIC_CLIP_BUILDERS),
            device,
            dtype,
            whole_model=False,
            backend="checkpoint",
        )
        path = tiny_aesthetic_dir() / TINY_MLP_FILENAME if weights == "tiny" else Path(weights)
        self.mlp = load_aesthetic_mlp(expand_user(path), self.clip.projection_dim).to(device)

    def normalised_embeds(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """L2-normalised CLIP image_embeds in float32, [B, projection_dim], on the tower's device."""
        embeds = self.clip.image_embeds(images)
        return embeds / embeds.norm(dim=-1, keepdim=True)

    @torch.inference_mode()
    def ratings(self, images: Sequence[Image.Image]) -> list[float]:
        return self.mlp(self.normalised_embeds(images)).cpu().tolist()
