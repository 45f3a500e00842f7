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

import numpy as np
import torch
from PIL import Image
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    DepthAnythingForDepthEstimation,
    DPTForDepthEstimation,
)
from transformers.image_utils import PILImageResampling

from ovi_bench.errors import ModelLoadError
from ovi_bench.models.evaluators.common import indices_by_size, rgb_images
from ovi_bench.models.evaluators.tiny import TINY_DEPTH_BUILDERS
from ovi_bench.models.hub import load_pretrained, resolve_model

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
