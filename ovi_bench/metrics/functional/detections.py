"""Detector outputs and box geometry shared by the T2I-CompBench detection rules (2D, 3D, numeracy).

Pure functions, no model. Boxes are `(x1, y1, x2, y2)` in pixels of the frame a rule works in, y pointing down.

The official evaluator runs UniDet (detectron2) on the image after torchvision's
`Resize(size=479, max_size=480)`, so its boxes, its depth crops and its 150-pixel "near" distance all live in that
resized frame; `detector_frame` computes it so that other detectors' boxes can be brought there with `rescale_box`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

Box = tuple[float, float, float, float]
Size = tuple[int, int]
"""(width, height) in pixels."""

UNIDET_SHORT_SIDE = 479
UNIDET_LONG_SIDE_CAP = 480


@dataclass(frozen=True)
class Detection:
    """One detected object: its label string, its confidence and its box (x1, y1, x2, y2) in pixels."""

    label: str
    score: float
    box: Box

    def __post_init__(self) -> None:
        if len(self.box) != 4:
            raise ValueError(f"a box is (x1, y1, x2, y2), got {self.box!r}")
        # Coerce numpy/torch scalars to plain floats so that results and reasons never carry tensor types.
        object.__setattr__(self, "box", tuple(float(value) for value in self.box))
        object.__setattr__(self, "score", float(self.score))


def box_center(box: Box) -> tuple[float, float]:
    x1, y1, x2, y2 = box
    return (x1 + x2) / 2, (y1 + y2) / 2


def iou(a: Box, b: Box) -> float:
    """Continuous intersection over union, as the official 2D and 3D `determine_position` computes it.

    The official code divides by the union unguarded (two zero-area boxes raise ZeroDivisionError there); here an
    empty union gives 0.
    """
    x_overlap = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    y_overlap = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = x_overlap * y_overlap
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union if union > 0 else 0.0


def _intersection_and_areas_plus_one(a: Box, b: Box) -> tuple[float, float, float]:
    """Intersection and both areas with the "+1 pixel" convention of the official numeracy `calculate_iou`: a box
    from x1 to x2 is taken to cover x2 - x1 + 1 pixels (inclusive integer coordinates, the Pascal-VOC habit)."""
    intersection = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1) * max(
        0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1
    )
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return intersection, area_a, area_b


def iou_plus_one(a: Box, b: Box) -> float:
    """IoU with the +1-pixel convention that numeracy's duplicate merging uses (official `calculate_iou`)."""
    intersection, area_a, area_b = _intersection_and_areas_plus_one(a, b)
    union = area_a + area_b - intersection
    return intersection / union if union > 0 else 0.0


def inside_fraction_plus_one(inner: Box, outer: Box) -> float:
    """Share of `inner`'s area (+1 convention) that lies inside `outer`."""
    intersection, area_inner, _ = _intersection_and_areas_plus_one(inner, outer)
    return intersection / area_inner if area_inner > 0 else 0.0


def rescale_box(box: Box, from_size: Size, to_size: Size) -> Box:
    """The same box in another frame of the same image: x scaled by the width ratio, y by the height ratio."""
    from_width, from_height = from_size
    to_width, to_height = to_size
    if min(from_width, from_height, to_width, to_height) <= 0:
        raise ValueError(f"frame sizes must be positive, got {from_size} -> {to_size}")
    scale_x = to_width / from_width
    scale_y = to_height / from_height
    x1, y1, x2, y2 = box
    return (x1 * scale_x, y1 * scale_y, x2 * scale_x, y2 * scale_y)


def detector_frame(
    width: int, height: int, short: int = UNIDET_SHORT_SIDE, long_cap: int = UNIDET_LONG_SIDE_CAP
) -> Size:
    """(width, height) of UniDet's input frame for an image of `width` × `height`.

    Reproduces torchvision's `Resize(size=short, max_size=long_cap)` output size, which the official evaluator
    applies before detection: the short side becomes `short`, the long side `int(short * long / short_side)`, and
    when that exceeds `long_cap` the long side becomes `long_cap` and the short side `int(long_cap * short / long)`.
    Any square image becomes 479 × 479; a 512 × 768 portrait becomes 320 × 480.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width} x {height}")
    if long_cap <= short:
        raise ValueError(f"long_cap ({long_cap}) must exceed short ({short}), as torchvision requires")
    short_side, long_side = (width, height) if width <= height else (height, width)
    new_short, new_long = short, int(short * long_side / short_side)
    if new_long > long_cap:
        new_short, new_long = int(long_cap * new_short / new_long), long_cap
    return (new_short, new_long) if width <= height else (new_long, new_short)


def in_detector_frame(detections: Iterable[Detection], image_size: Size) -> list[Detection]:
    """The detections of an image of `image_size` (width, height), their boxes mapped into the image's detector
    frame (`detector_frame`) per axis, as the official pipeline sees them: it detects on the resized image, so x
    scales by the width ratio and y by the height ratio. Those ratios differ slightly whenever the resize rounds a
    side (1000 × 667 becomes 480 × 320: 0.48 across, 0.4798 down), and every pixel constant of the official rules
    (2D's 150-px "near" distance, numeracy's +1-pixel IoU, 3D's truncated depth crop) is meant in this frame.
    """
    frame = detector_frame(*image_size)
    if frame == tuple(image_size):
        return list(detections)
    return [
        Detection(label=item.label, score=item.score, box=rescale_box(item.box, image_size, frame))
        for item in detections
    ]


def in_detector_order(detections: Iterable[Detection]) -> list[Detection]:
    """Detections by descending confidence, ties kept in their given order.

    detectron2 returns detections sorted this way (class-wise NMS keeps them by decreasing score), and every
    official rule that takes "the first detection with this label" or merges "in detection order" relies on it.
    Sorting is stable, so detections already in detector order are returned unchanged.
    """
    return sorted(detections, key=lambda detection: -detection.score)
