"""Relative depth maps for T2I-CompBench's 3D-spatial evaluator.

The official evaluator (`UniDet_eval/3D_spatial_eval.py` with prismer's DPT expert) runs MiDaS DPT-hybrid
(`dpt_hybrid-midas-501f0c75.pt`, the checkpoint behind transformers' `Intel/dpt-hybrid-midas`) on the image resized
to 480×480 (torchvision `Resize([480, 480])`: bilinear) and normalised with mean = std = 0.5. Its output is relative
inverse depth (larger = nearer). Per image it is min–max normalised to [0, 1] at the model's resolution, resized to
the original size (bilinear, align_corners=True), saved as an 8-bit PNG (`Image.fromarray(255 * depth)
.convert('L')`, which truncates) and read back /255 by the scoring code.

`DepthEstimator` does the same up to the PNG: float32 maps at the original size, and with `quantise_8bit=True` the
PNG round trip too (values become multiples of 1/255). Depth Anything V2 is offered as a stronger alternative with
the same sign convention; it is not the official model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    DepthAnythingConfig,
    DepthAnythingForDepthEstimation,
    Dinov2Config,
    DPTConfig,
    DPTForDepthEstimation,
    DPTImageProcessorPil,
)
from transformers.image_utils import PILImageResampling

from ovi_bench.errors import ModelLoadError
from ovi_bench.io import publish_directory
from ovi_bench.models.dinov2 import IMAGENET_MEAN, IMAGENET_STD
from ovi_bench.models.evaluators.common import indices_by_size, rgb_images
from ovi_bench.models.hub import load_pretrained, resolve_model
from ovi_bench.paths import cache_dir

DPT_HYBRID_MIDAS_ID = "Intel/dpt-hybrid-midas"
"""The official 3D-spatial depth model (MiDaS v3 DPT-hybrid) in transformers."""

DEPTH_ANYTHING_V2_SMALL_ID = "depth-anything/Depth-Anything-V2-Small-hf"

OFFICIAL_DEPTH_INPUT_SIZE = 480
"""The official depth transform resizes every image to 480×480."""

_MODEL_CLASSES = {"dpt": DPTForDepthEstimation, "depth_anything": DepthAnythingForDepthEstimation}


def quantise_like_png(depth: np.ndarray) -> np.ndarray:
    """The official 8-bit PNG round trip of a [0, 1] map: `Image.fromarray(255 * depth).convert('L')` (which
    truncates), read back and divided by 255."""
    as_png = Image.fromarray(np.ascontiguousarray(255.0 * depth, dtype=np.float32)).convert("L")
    return np.asarray(as_png, dtype=np.float32) / np.float32(255.0)


class DepthEstimator:
    """Relative inverse depth (larger = nearer), min–max normalised per image, at each image's original size."""

    def __init__(
        self,
        model: str = DPT_HYBRID_MIDAS_ID,
        *,
        device: torch.device,
        dtype: torch.dtype,
        input_size: int | None = None,
        quantise_8bit: bool = False,
    ) -> None:
        """`model`: a hub id, a local folder, "tiny" (DPT hybrid) or "tiny-depth-anything".

        `input_size`: the side of the square every image is resized to (bilinear, the checkpoint's normalisation).
        Unset, it is the model family's reference: 480 for DPT (the official 3D pipeline), and for Depth Anything
        its processor's own resizing (518 px, aspect ratio kept); `self.input_size` records what is used (None: the
        processor's). `quantise_8bit`: reproduce the official 8-bit PNG round trip.
        """
        self.device = device
        self.dtype = dtype
        self.quantise_8bit = quantise_8bit
        source = resolve_model(model, TINY_DEPTH_BUILDERS)
        config = load_pretrained(AutoConfig, source)
        model_class = _MODEL_CLASSES.get(config.model_type)
        if model_class is None:
            raise ModelLoadError(
                f"'{model}' is a {config.model_type} model; DepthEstimator supports DPT (e.g. {DPT_HYBRID_MIDAS_ID}) "
                f"and Depth Anything (e.g. {DEPTH_ANYTHING_V2_SMALL_ID})."
            )
        self.model = load_pretrained(model_class, source, dtype=dtype).to(device).eval()
        self.processor = load_pretrained(AutoImageProcessor, source)

        if input_size is None and config.model_type == "dpt":
            input_size = OFFICIAL_DEPTH_INPUT_SIZE
        if input_size is not None:
            patch_size = config.patch_size
            if input_size <= 0 or input_size % patch_size:
                raise ValueError(
                    f"input_size must be a positive multiple of the patch size {patch_size}, got {input_size}"
                )
            if getattr(config, "is_hybrid", False):
                # transformers' DPT-hybrid embeddings always resize their position table to the input's patch grid
                # (bilinear, as the original DPT's `_resize_pos_embed` does), but refuse inputs other than
                # config.image_size unless `interpolate_pos_encoding` is passed, which DPTModel.forward (5.24) does
                # not pass on. Accepting `input_size` there runs the official 480 px pipeline.
                self.model.dpt.embeddings.image_size = (input_size, input_size)
        self.input_size = input_size

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The model's input for images of one size (any sizes when `input_size` is set)."""
        if self.input_size is None:
            inputs = self.processor(images=list(images), return_tensors="pt")
        else:
            inputs = self.processor(
                images=list(images),
                size={"height": self.input_size, "width": self.input_size},
                keep_aspect_ratio=False,
                ensure_multiple_of=1,
                resample=PILImageResampling.BILINEAR,
                do_pad=False,
                return_tensors="pt",
            )
        return inputs["pixel_values"].to(self.device, self.dtype)

    @torch.inference_mode()
    def depth(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """One float32 (height, width) map per image, in [0, 1] (multiples of 1/255 with `quantise_8bit`)."""
        images = rgb_images(images)
        maps: list[np.ndarray | None] = [None] * len(images)
        # With a fixed input size every image becomes the same tensor; otherwise the processor keeps each aspect
        # ratio, and only same-size images can share a batch.
        groups = [list(range(len(images)))] if self.input_size is not None else indices_by_size(images)
        for group in groups:
            if not group:
                continue
            predicted = self.model(
                pixel_values=self.pixel_values([images[index] for index in group])
            ).predicted_depth
            for index, prediction in zip(group, predicted, strict=True):
                maps[index] = self._normalise_and_resize(prediction.float(), images[index].size)
        missing = [index for index, depth_map in enumerate(maps) if depth_map is None]
        if missing:
            raise RuntimeError(f"no depth map was computed for images {missing}")
        return [depth_map for depth_map in maps if depth_map is not None]

    def _normalise_and_resize(self, prediction: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        """Min–max normalise at the model's resolution, then resize to `size` (width, height), as the official code."""
        low, high = prediction.min(), prediction.max()
        # A constant map has no depth order (the official code would divide 0 by 0): it becomes all zeros.
        normalised = (prediction - low) / (high - low) if high > low else torch.zeros_like(prediction)
        width, height = size
        resized = torch.nn.functional.interpolate(
            normalised[None, None], size=(height, width), mode="bilinear", align_corners=True
        )[0, 0]
        # Bilinear weights are convex, so only rounding could step outside [0, 1].
        depth_map = resized.clamp(0.0, 1.0).cpu().numpy().astype(np.float32)
        return quantise_like_png(depth_map) if self.quantise_8bit else depth_map


# ---------------------------------------------------------------------------------------------------------------------
# Tiny random-weight depth estimators (DPT hybrid, Depth Anything), built in code, saved with `save_pretrained` into `cache_dir()/tiny/<name>-v1/` and
# loaded back through the same `from_pretrained` code as the real checkpoints. Every builder seeds torch with 0, so
# the saved weights (and the tests' golden values) are the same on every machine; bump a folder's version whenever
# its builder's output changes. The configs follow shared/reference/metrics-stack.md §4.


TINY_DPT_IMAGE_SIZE = 384
"""Mirrors `Intel/dpt-hybrid-midas` (384 px, 16 px patches), so running it at the official 480 px resizes its
position table exactly as the real model's is resized."""


def build_tiny_dpt_hybrid(folder: Path) -> None:
    """Save a tiny hybrid (BiT + ViT) DPTForDepthEstimation, the MiDaS-hybrid architecture, and its processor."""
    config = DPTConfig(
        image_size=TINY_DPT_IMAGE_SIZE,
        patch_size=16,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=37,
        is_hybrid=True,
        backbone_out_indices=[0, 1, 2, 3],
        backbone_config={
            "global_padding": "same",
            "layer_type": "bottleneck",
            "depths": [1, 1, 2],
            "hidden_sizes": [4, 8, 16, 32],
            "num_groups": 2,
            "out_features": ["stage1", "stage2", "stage3"],
        },
        # This BiT's three stages give 8, 8 and 16 channels: the last feeds the ViT (featmap channels), the first
        # two are the hybrid's residual features (the first two neck sizes).
        backbone_featmap_shape=[1, 16, TINY_DPT_IMAGE_SIZE // 16, TINY_DPT_IMAGE_SIZE // 16],
        neck_hidden_sizes=[8, 8, 32, 32],
        fusion_hidden_size=16,
        readout_type="project",
    )
    torch.manual_seed(0)
    model = DPTForDepthEstimation(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    # The real processor's settings: 384 px square, bicubic, mean = std = 0.5.
    DPTImageProcessorPil(
        size={"height": TINY_DPT_IMAGE_SIZE, "width": TINY_DPT_IMAGE_SIZE},
        keep_aspect_ratio=False,
        ensure_multiple_of=1,
        resample=3,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    ).save_pretrained(folder)


def build_tiny_depth_anything(folder: Path) -> None:
    """Save a tiny DepthAnythingForDepthEstimation (DINOv2 backbone, relative depth) and its processor."""
    config = DepthAnythingConfig(
        backbone_config=Dinov2Config(
            image_size=32,
            patch_size=16,
            hidden_size=8,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=16,
            out_indices=[1, 2],
            reshape_hidden_states=False,
        ),
        patch_size=16,
        reassemble_hidden_size=8,
        reassemble_factors=[2, 1],
        neck_hidden_sizes=[4, 8],
        fusion_hidden_size=6,
        head_hidden_size=4,
        depth_estimation_type="relative",
    )
    torch.manual_seed(0)
    model = DepthAnythingForDepthEstimation(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    # The real processor's kind of resizing (keep the aspect ratio, sides multiples of the patch size, bicubic,
    # ImageNet mean/std), at 64 px instead of 518.
    DPTImageProcessorPil(
        size={"height": 64, "width": 64},
        keep_aspect_ratio=True,
        ensure_multiple_of=16,
        resample=3,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
    ).save_pretrained(folder)


def tiny_dpt_hybrid_dir() -> Path:
    return publish_directory(build_tiny_dpt_hybrid, cache_dir() / "tiny" / "dpt-hybrid-v1")


def tiny_depth_anything_dir() -> Path:
    return publish_directory(build_tiny_depth_anything, cache_dir() / "tiny" / "depth-anything-v1")


TINY_DEPTH_BUILDERS = {"tiny": tiny_dpt_hybrid_dir, "tiny-depth-anything": tiny_depth_anything_dir}
"""Tiny references accepted wherever a depth checkpoint is expected: "tiny" is DPT hybrid (the official model's
architecture), "tiny-depth-anything" the Depth Anything alternative."""
