"""`spatial-2d` and `spatial-3d`: T2I-CompBench++'s object-relationship metrics, with a substitute detector.

The official evaluators detect with UniDet (detectron2), which does not install with pip; ovi-bench queries an
open-vocabulary detector with the prompt's two nouns instead and keeps the official geometry, weights, gate and depth
rule exactly (see `metrics/functional/spatial.py`), in the official detector frame: the detector's boxes (and the 3D
depth map) are mapped from the image into the frame UniDet sees, `Resize(479, max_size=480)` of the image, per axis,
so the official pixel thresholds hold at any image size and aspect ratio. Scores are therefore "CompBench-style":
comparable between priors run here, not with published 2D/3D numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field

from ovi_bench.components import ModelNeed, model_files
from ovi_bench.metrics.base import ScoreInput, ScoreRow
from ovi_bench.metrics.common import (
    DetectorParams,
    TextAnalyzingMetric,
    as_detections,
    build_detector,
    detection_queries,
    detector_need,
)
from ovi_bench.metrics.functional.detections import in_detector_frame
from ovi_bench.metrics.functional.spatial import (
    depth_in_detector_frame,
    objects_2d,
    objects_3d,
    relation_2d,
    relation_3d,
    spatial_2d_score,
    spatial_3d_score,
)
from ovi_bench.models.evaluators import DPT_HYBRID_MIDAS_ID, DepthEstimator


class Spatial2DParams(DetectorParams):
    on_top_of_scores_zero: bool = True
    """Official quirk: "on top of" (without "the") has no rule and scores 0 (33 complex prompts use it). False
    scores it as "on the top of"."""


class Spatial2DMetric(TextAnalyzingMetric):
    """Detector boxes of the two nouns, the official left/right/top/bottom/near rule, weights and 0.5 gate."""

    Params = Spatial2DParams
    version = "2"  # 2: boxes mapped into the detector frame per axis (was: the 150 px threshold scaled to the image)
    categories = ("spatial", "complex")
    params: Spatial2DParams

    @classmethod
    def required_models(cls, params: Spatial2DParams) -> list[ModelNeed]:
        return [detector_need(params)]

    def __init__(self, params: Spatial2DParams, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(params, device=device, dtype=dtype)
        self.detector = build_detector(params, device, dtype)

    def score(self, batch: Sequence[ScoreInput]) -> list[ScoreRow]:
        # Complex prompts use the official `--complex` noun selection around the preposition.
        objects = [
            objects_2d(self.analyzer.tokens(item.prompt), complex_mode=item.category == "complex")
            for item in batch
        ]
        detections = self.detector.detect(
            [item.image for item in batch], [detection_queries(*pair) for pair in objects]
        )
        rows = []
        for item, (object_1, object_2), raw in zip(batch, objects, detections, strict=True):
            score, reason = spatial_2d_score(
                as_detections(raw),
                object_1,
                object_2,
                relation_2d(item.prompt),
                frame_size=item.image.size,
                on_top_of_scores_zero=self.params.on_top_of_scores_zero,
                label_match="exact",  # the detector answers with the query text itself
            )
            rows.append(ScoreRow(score=score, reason=reason))
        return rows


class Spatial3DParams(DetectorParams):
    depth_model: str = DPT_HYBRID_MIDAS_ID
    """Relative depth model (official: DPT-Hybrid MiDaS); `depth-anything/Depth-Anything-V2-Small-hf` is a stronger
    alternative with the same convention (larger = nearer); "tiny" for tests."""
    depth_input_size: int | None = Field(None, ge=16)
    """Square side images are resized to for the depth model; None: the model family's reference (480 for DPT, as
    the official pipeline; Depth Anything's own processor resizing)."""
    transposed_crop: bool = True
    """Official quirk: the box's depth is averaged over `depth[x1:x2, y1:y2]` (rows by x), a transposed region.
    False averages over the box itself."""
    label_match: Literal["substring", "exact"] = "substring"
    """Official quirk: an object matches any detection whose label contains it ("cat" matches "cattle")."""
    detection_choice: Literal["official", "first"] = "official"
    """Official quirk: the matching loop keeps overwriting the first object's detection until the second object is
    seen; "first" takes each object's first detection."""
    quantise_depth_8bit: bool = True
    """Official: depth maps pass through an 8-bit PNG (min–max normalised, 256 levels)."""


class Spatial3DMetric(TextAnalyzingMetric):
    """Detector boxes plus relative depth: the official front/behind/hidden rule with overlap, no gate."""

    Params = Spatial3DParams
    version = "2"  # 2: boxes and depth map in the detector frame (was: the image's frame)
    categories = ("3d_spatial",)
    params: Spatial3DParams

    @classmethod
    def required_models(cls, params: Spatial3DParams) -> list[ModelNeed]:
        return [detector_need(params), ModelNeed(params.depth_model, "depth model", model_files(""))]

    def __init__(self, params: Spatial3DParams, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(params, device=device, dtype=dtype)
        self.detector = build_detector(params, device, dtype)
        self.depth = DepthEstimator(
            params.depth_model,
            device=device,
            dtype=dtype,
            input_size=params.depth_input_size,
            quantise_8bit=params.quantise_depth_8bit,
        )

    def score(self, batch: Sequence[ScoreInput]) -> list[ScoreRow]:
        images = [item.image for item in batch]
        objects = [objects_3d(self.analyzer.tokens(item.prompt)) for item in batch]
        detections = self.detector.detect(images, [detection_queries(*pair) for pair in objects])
        depths = self.depth.depth(images)
        rows = []
        for item, (object_1, object_2), raw, depth in zip(batch, objects, detections, depths, strict=True):
            # The official crop truncates box coordinates to pixels of the detector frame, on the depth PNG
            # resized there.
            score, reason = spatial_3d_score(
                in_detector_frame(as_detections(raw), item.image.size),
                depth_in_detector_frame(depth, eight_bit=self.params.quantise_depth_8bit),
                object_1,
                object_2,
                relation_3d(item.prompt),
                transposed_crop=self.params.transposed_crop,
                label_match=self.params.label_match,
                detection_choice=self.params.detection_choice,
            )
            rows.append(ScoreRow(score=score, reason=reason))
        return rows
