"""DINOv2 (Oquab et al. 2023): the image tower of the `dinov2` feature space, and its tiny random-weight twin."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from transformers import BitImageProcessorPil, Dinov2Config, Dinov2Model

from ovi_bench.io import publish_directory
from ovi_bench.models.hub import load_pretrained, resolve_model
from ovi_bench.paths import cache_dir

DINOV2_BASE_ID = "facebook/dinov2-base"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

TINY_DINOV2_IMAGE_SIZE = 32


def build_tiny_dinov2(folder: Path) -> None:
    """Save a random-weight Dinov2Model and its PIL image processor into `folder`, loadable like facebook/dinov2-base."""
    config = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        mlp_ratio=2,
        image_size=TINY_DINOV2_IMAGE_SIZE,
        patch_size=8,
    )
    torch.manual_seed(0)
    Dinov2Model(config).eval().save_pretrained(folder, safe_serialization=True)
    BitImageProcessorPil(
        size={"shortest_edge": TINY_DINOV2_IMAGE_SIZE},
        crop_size={"height": TINY_DINOV2_IMAGE_SIZE, "width": TINY_DINOV2_IMAGE_SIZE},
        do_center_crop=True,
        resample=Image.Resampling.BICUBIC,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
    ).save_pretrained(folder)


def tiny_dinov2_dir() -> Path:
    return publish_directory(build_tiny_dinov2, cache_dir() / "tiny" / "dinov2-v1")


TINY_DINOV2_BUILDERS = {"tiny": tiny_dinov2_dir}
"""Tiny references accepted wherever a DINOv2 checkpoint is expected."""


class Dinov2Features:
    """DINOv2's image descriptor: the layer-normed CLS token (`pooler_output`), as FD_DINOv2 (Stein et al. 2023) uses.

    Always transformers' PIL image processor with a bicubic resize: the resize policy is recorded with the features
    and must not depend on whether torchvision is installed.
    """

    def __init__(self, ref: str, device: torch.device, dtype: torch.dtype) -> None:
        source = resolve_model(ref, TINY_DINOV2_BUILDERS)
        self.model = load_pretrained(Dinov2Model, source, dtype=dtype).to(device).eval()
        self.processor = load_pretrained(BitImageProcessorPil, source, resample=Image.Resampling.BICUBIC)

    @torch.inference_mode()
    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """[B, hidden_size] float32 on the CPU."""
        pixels = self.processor(images=[image.convert("RGB") for image in images], return_tensors="pt")[
            "pixel_values"
        ]
        output = self.model(pixel_values=pixels.to(self.model.device, self.model.dtype))
        return output.pooler_output.float().cpu()
