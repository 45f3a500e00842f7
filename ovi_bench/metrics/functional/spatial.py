"""The pure 2D and 3D spatial rules of T2I-CompBench++ (UniDet_eval/2D_spatial_eval.py, 3D_spatial_eval.py).

No model: the functions take detector outputs (`Detection`), a depth map and the prompt's tokens, and return the
official per-image score with a short reason. Each known quirk of the official code is reproduced by default and
switchable to a corrected behaviour by a named option; the metric wrappers choose and record the setting.

Every pixel quantity is meant in the official detector frame: UniDet detects on the image after
`Resize(479, max_size=480)` (`detector_frame`), so its boxes and the 3D depth map live there. Boxes found in the image
itself are mapped into that frame per axis (`in_detector_frame`), and the depth map is resized to it as the official
transform does (`depth_in_detector_frame`), before any rule below applies.

2D, per image (in the detector frame):
    obj1, obj2 = first and last NOUN of the prompt (girl/boy/man/woman -> person)
    both found:  0.25·conf1 + 0.25·conf2 + 0.5·pos(relation, box1, box2)
    one found:   0.25·its conf          (so it can never pass the gate below)
    none:        0
    then any score < 0.5 becomes 0 (exactly 0.5 survives).
3D: the same weights with a depth-order `pos` and no gate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from PIL import Image

from ovi_bench.metrics.functional.detections import (
    UNIDET_SHORT_SIDE,
    Box,
    Detection,
    Size,
    box_center,
    detector_frame,
    in_detector_frame,
    in_detector_order,
    iou,
)
from ovi_bench.metrics.text_analysis.tokens import Token, span_text

LabelMatch = Literal["exact", "substring"]
DetectionChoice = Literal["official", "first"]

RELATIONS_2D: tuple[str, ...] = (
    "on side of",
    "next to",
    "near",
    "on the left of",
    "on the right of",
    "on the bottom of",
    "on the top of",
    "on top of",
)
"""The official 2D relation list, in the order it is searched: the first found as a substring wins."""

NEAR_RELATIONS: tuple[str, ...] = ("next to", "on side of", "near")
RELATIONS_3D: tuple[str, ...] = ("in front of", "behind", "hidden")
"""The official 3D relation list ("hidden" also covers "hidden by"), searched in this order."""

COMPLEX_PREPOSITIONS: tuple[str, ...] = (
    "on top of",
    "on bottom of",
    "on the left",
    "on the right",
    "next to",
    "on side of",
    "near",
)
"""The prepositions the official complex mode anchors objects on. It lacks "on the top of" and "on the bottom of"."""

PERSON_WORDS: frozenset[str] = frozenset({"girl", "boy", "man", "woman"})
"""Nouns the official rules rename to UniDet's "person" (exact, case-sensitive, singular only)."""

NEAR_DISTANCE_PX = 150.0
"""The "near" threshold of the official rule, in pixels of the detector frame (479 px on a square image's side)."""
IOU_THRESHOLD_2D = 0.1
IOU_THRESHOLD_3D = 0.5
GATE_2D = 0.5


# ---------------------------------------------------------------------------------------------------------------
# Prompt analysis


def relation_2d(prompt: str) -> str | None:
    """The first official 2D relation that occurs in `prompt` as a case-sensitive substring, else None.

    The order matters: "a cat near the top of a dog" gives "near"; "on top of" is found only when "on the top of" is
    absent.
    """
    return next((relation for relation in RELATIONS_2D if relation in prompt), None)


def relation_3d(prompt: str) -> str | None:
    """ "in front of", "behind" or "hidden" — the first of the official 3D list found in `prompt`, else None."""
    return next((relation for relation in RELATIONS_3D if relation in prompt), None)


def map_person(noun: str | None) -> str | None:
    """girl/boy/man/woman -> "person" (UniDet's label), as both official spatial scripts do; others unchanged."""
    return "person" if noun in PERSON_WORDS else noun


def objects_2d(tokens: Sequence[Token], complex_mode: bool = False) -> tuple[str | None, str | None]:
    """The two object nouns the official 2D (and 3D) rule looks for, person-mapped; None where there is none.

    Simple mode: the first and the last token tagged NOUN (the same token when the prompt has only one NOUN). The
    official code raises IndexError on a prompt with no NOUN; here both objects are None and the score is 0.

    Complex mode (`--complex`): for every position where a preposition of `COMPLEX_PREPOSITIONS` starts (three-,
    then two-, then one-token span text, truncated at the end of the prompt), the nearest NOUN or PROPN before it,
    and the first NOUN after it — or, when no NOUN follows, the first PROPN that is followed by a non-PROPN token.
    Exactly two objects in total are required; otherwise both are None (the official score is then 0).
    """
    if not complex_mode:
        nouns = [token.text for token in tokens if token.pos == "NOUN"]
        if not nouns:
            return None, None
        return map_person(nouns[0]), map_person(nouns[-1])

    objects: list[str] = []
    tokens = list(tokens)
    count = len(tokens)
    for index in range(count):
        width = next(
            (n for n in (3, 2, 1) if span_text(tokens, index, index + n) in COMPLEX_PREPOSITIONS), None
        )
        if width is None:
            continue
        for before in range(index - 1, -1, -1):
            if tokens[before].pos in ("NOUN", "PROPN"):
                objects.append(tokens[before].text)
                break
        noun_found = False
        for after in range(index + width, count):
            if tokens[after].pos == "NOUN":
                objects.append(tokens[after].text)
                noun_found = True
                break
        # The official fallback runs only when the forward scan reached the last token without a NOUN.
        if not noun_found and index + width < count:
            for after in range(index + width, count - 1):
                if tokens[after].pos == "PROPN" and tokens[after + 1].pos != "PROPN":
                    objects.append(tokens[after].text)
                    break
    if len(objects) != 2:
        return None, None
    return map_person(objects[0]), map_person(objects[1])


def objects_3d(tokens: Sequence[Token]) -> tuple[str | None, str | None]:
    """The 3D rule's objects: the first and last NOUN, person-mapped (the simple mode of `objects_2d`)."""
    return objects_2d(tokens, complex_mode=False)


# ---------------------------------------------------------------------------------------------------------------
# 2D


def position_score_2d(
    relation: str | None, box_1: Box, box_2: Box, near_px: float = NEAR_DISTANCE_PX
) -> float:
    """The official `determine_position` for 2D relations: how well box_1 (obj1) stands in `relation` to box_2.

    dx, dy = centre of box_2 − centre of box_1 (image y grows downwards), IoU continuous.
    * next to / on side of / near: 1 if |dx| < near or |dy| < near, else near / max(|dx|, |dy|).
    * on the left of: dx > 0 and |dx| > |dy| required; then 1 if IoU < 0.1 else 0.1 / IoU. Otherwise 0.
    * on the right of: the mirror, dx < 0.
    * on the top of: dy > 0 and |dy| > |dx| (obj2 lower in the image); the same IoU rule.
    * on the bottom of: the mirror, dy < 0.
    * anything else — "on top of" without "the", or no relation — scores 0.
    """
    (x_1, y_1), (x_2, y_2) = box_center(box_1), box_center(box_2)
    dx, dy = x_2 - x_1, y_2 - y_1
    overlap = iou(box_1, box_2)

    def separated(along: float, across: float) -> float:
        if abs(along) <= abs(across):
            return 0.0
        return 1.0 if overlap < IOU_THRESHOLD_2D else IOU_THRESHOLD_2D / overlap

    if relation in NEAR_RELATIONS:
        if abs(dx) < near_px or abs(dy) < near_px:
            return 1.0
        return near_px / max(abs(dx), abs(dy))
    if relation == "on the left of":
        return separated(dx, dy) if dx > 0 else 0.0
    if relation == "on the right of":
        return separated(dx, dy) if dx < 0 else 0.0
    if relation == "on the top of":
        return separated(dy, dx) if dy > 0 else 0.0
    if relation == "on the bottom of":
        return separated(dy, dx) if dy < 0 else 0.0
    return 0.0


def _label_matches(noun: str, label: str, label_match: LabelMatch) -> bool:
    if label_match == "exact":
        return label == noun
    if label_match == "substring":
        return noun in label
    raise ValueError(f"label_match must be 'exact' or 'substring', got {label_match!r}")


def _first_match(
    detections: Sequence[Detection], noun: str | None, label_match: LabelMatch
) -> Detection | None:
    if noun is None:
        return None
    return next((d for d in detections if _label_matches(noun, d.label, label_match)), None)


def spatial_2d_score(
    detections: Sequence[Detection],
    object_1: str | None,
    object_2: str | None,
    relation: str | None,
    frame_size: Size = (UNIDET_SHORT_SIDE, UNIDET_SHORT_SIDE),
    *,
    on_top_of_scores_zero: bool = True,
    label_match: LabelMatch = "exact",
) -> tuple[float, str]:
    """The official 2D per-image score and a reason.

    `detections`: boxes in an image of `frame_size` (width, height); they are mapped into that image's detector
    frame per axis (`in_detector_frame`; a detector frame such as the default 479 × 479 maps onto itself), where
    the official thresholds apply unchanged: 150 px "near", IoU 0.1. They are taken in detector order (descending
    confidence, `in_detector_order`) and each object is the first detection whose label equals the noun
    (`label_match="exact"`, the official `list.index`, which UniDet's multi-name labels such as "table, desk" never
    satisfy) or contains it (`"substring"`). The same noun twice means the same detection for both objects.

    `on_top_of_scores_zero=True` reproduces the official rule, which has no branch for "on top of" (without
    "the") and so scores its relation 0; False treats it as "on the top of".

    Reasons quote dx and dy in pixels of the detector frame.
    """
    if relation == "on top of" and not on_top_of_scores_zero:
        relation = "on the top of"
    ordered = in_detector_order(in_detector_frame(detections, frame_size))
    match_1 = _first_match(ordered, object_1, label_match)
    match_2 = _first_match(ordered, object_2, label_match)
    if object_1 is None and object_2 is None:
        return 0.0, "no object nouns found in the prompt: score 0"

    if match_1 is not None and match_2 is not None:
        position = position_score_2d(relation, match_1.box, match_2.box)
        raw = 0.25 * match_1.score + 0.25 * match_2.score
        raw += position / 2
        (x_1, y_1), (x_2, y_2) = box_center(match_1.box), box_center(match_2.box)
        detail = (
            f"'{object_1}' {match_1.score:.2f} and '{object_2}' {match_2.score:.2f} found; "
            f"dx {x_2 - x_1:+.0f}, dy {y_2 - y_1:+.0f} px, IoU {iou(match_1.box, match_2.box):.2f}"
            f" -> '{relation}' {position:.2f}"
        )
        if relation == "on top of":
            detail += " (the official rule has no 'on top of' branch)"
        elif relation is None:
            detail += " (no relation in the prompt)"
    elif match_1 is not None or match_2 is not None:
        found, name, missing = (
            (match_1, object_1, object_2) if match_1 is not None else (match_2, object_2, object_1)
        )
        assert found is not None
        raw = 0.25 * found.score
        detail = f"only '{name}' found ({found.score:.2f}); '{missing}' missing: 0.25·conf = {raw:.3f}"
    else:
        return 0.0, f"neither '{object_1}' nor '{object_2}' detected: score 0"

    if raw < GATE_2D:
        return 0.0, f"{detail}; {raw:.3f} < 0.5 gate -> 0"
    return raw, f"{detail}; score {raw:.3f}"


# ---------------------------------------------------------------------------------------------------------------
# 3D


def depth_in_detector_frame(depth: np.ndarray, *, eight_bit: bool) -> np.ndarray:
    """An image's (H, W) depth map resized to the image's detector frame, as the official 3D pipeline reads it.

    The official scorer opens the 8-bit depth PNG (saved at the image's size) and passes it through the detector's
    transform, torchvision's `Resize(479, max_size=480)` on a PIL image: PIL's bilinear resampling of the 8-bit
    levels, then / 255. `eight_bit=True` expects such a map (multiples of 1/255, `quantise_like_png`) and does
    exactly that; False resamples the float map bilinearly (PIL mode "F"). A map already at its detector frame's
    size is returned unchanged, as torchvision does.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"the depth map must be (H, W), got shape {depth.shape}")
    height, width = depth.shape
    frame = detector_frame(width, height)
    if frame == (width, height):
        return depth
    if eight_bit:
        levels = Image.fromarray(np.rint(depth * 255.0).clip(0, 255).astype(np.uint8))
        resized = levels.resize(frame, Image.Resampling.BILINEAR)
        return np.asarray(resized, dtype=np.float32) / np.float32(255.0)
    values = Image.fromarray(np.ascontiguousarray(depth, dtype=np.float32))
    return np.asarray(values.resize(frame, Image.Resampling.BILINEAR), dtype=np.float32)


def box_mean_depth(depth: np.ndarray, box: Box, *, transposed_crop: bool = True) -> float:
    """Mean of the (H, W) depth map over a box, NaN for an empty crop.

    `transposed_crop=True` is the official crop `depth[int(x1):int(x2), int(y1):int(y2)]`: rows indexed by the
    x-range and columns by the y-range (transposed, exact only for boxes symmetric about the diagonal), coordinates
    truncated by `int`. False is the corrected `depth[int(y1):int(y2), int(x1):int(x2)]`. Negative coordinates are
    clamped to 0 first (UniDet clips its boxes to the image, so this changes nothing for its outputs, and it keeps
    another detector's slightly outside boxes from wrapping around as negative indices would). The mean is taken in
    float64; the official code averages a float32 tensor.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"the depth map must be (H, W), got shape {depth.shape}")
    x_1, y_1, x_2, y_2 = (max(0, int(value)) for value in box)
    crop = depth[x_1:x_2, y_1:y_2] if transposed_crop else depth[y_1:y_2, x_1:x_2]
    if crop.size == 0:
        return float("nan")
    return float(crop.mean(dtype=np.float64))


def position_score_3d(relation: str | None, overlap: float, depth_1: float, depth_2: float) -> float:
    """The official 3D `determine_position` given IoU and the two mean depths (larger = nearer, MiDaS disparity).

    "in front of" needs depth_1 − depth_2 > 0, "behind"/"hidden" < 0 (a NaN depth never satisfies either).
    With the right order: IoU > 0.5 -> 1; 0 < IoU < 0.5 -> IoU / 0.5; IoU == 0 -> 0 and IoU exactly 0.5 -> 0
    (neither official branch fires). A wrong order, or an unknown relation, gives 0.
    """
    difference = depth_1 - depth_2
    if relation == "in front of":
        ordered = difference > 0
    elif relation in ("behind", "hidden", "hidden by"):
        ordered = difference < 0
    else:
        return 0.0
    if not ordered:
        return 0.0
    if overlap > IOU_THRESHOLD_3D:
        return 1.0
    if 0 < overlap < IOU_THRESHOLD_3D:
        return overlap / IOU_THRESHOLD_3D
    return 0.0


def _official_3d_pair(
    detections: Sequence[Detection], object_1: str, object_2: str, label_match: LabelMatch
) -> tuple[Detection, Detection]:
    """The official 3D matching loop: walk the detections, overwriting obj1's and obj2's choice at every match,
    and stop as soon as both have been seen. So with labels [cat, cat, dog], obj1 "cat" is the second cat; a label
    containing both nouns sets both at once."""
    chosen_1: Detection | None = None
    chosen_2: Detection | None = None
    for detection in detections:
        if _label_matches(object_1, detection.label, label_match):
            chosen_1 = detection
        if _label_matches(object_2, detection.label, label_match):
            chosen_2 = detection
        if chosen_1 is not None and chosen_2 is not None:
            return chosen_1, chosen_2
    raise AssertionError("called only when both objects match some detection")


def spatial_3d_score(
    detections: Sequence[Detection],
    depth: np.ndarray,
    object_1: str | None,
    object_2: str | None,
    relation: str | None,
    *,
    transposed_crop: bool = True,
    label_match: LabelMatch = "substring",
    detection_choice: DetectionChoice = "official",
) -> tuple[float, str]:
    """The official 3D per-image score and a reason. `depth` is (H, W) in the detections' frame: the detector
    frame, for the official crop's pixel truncation (`in_detector_frame`, `depth_in_detector_frame`).

    Objects match detections whose label contains the noun (`label_match="substring"`, official: "cat" also
    matches "cattle, cow") or equals it (`"exact"`). With both found, `detection_choice="official"` reproduces the
    overwriting loop (`_official_3d_pair`); `"first"` takes the first match of each. With one found, its first
    match scores 0.25·conf. Score = 0.25·c1 + 0.25·c2 + 0.5·pos, with no gate (unlike 2D).
    """
    if detection_choice not in ("official", "first"):
        raise ValueError(f"detection_choice must be 'official' or 'first', got {detection_choice!r}")
    if relation == "hidden by":
        relation = "hidden"
    ordered = in_detector_order(detections)
    if object_1 is None and object_2 is None:
        return 0.0, "no object nouns found in the prompt: score 0"
    match_1 = _first_match(ordered, object_1, label_match)
    match_2 = _first_match(ordered, object_2, label_match)

    if match_1 is not None and match_2 is not None:
        assert object_1 is not None and object_2 is not None
        if detection_choice == "official":
            match_1, match_2 = _official_3d_pair(ordered, object_1, object_2, label_match)
        overlap = iou(match_1.box, match_2.box)
        depth_1 = box_mean_depth(depth, match_1.box, transposed_crop=transposed_crop)
        depth_2 = box_mean_depth(depth, match_2.box, transposed_crop=transposed_crop)
        position = position_score_3d(relation, overlap, depth_1, depth_2)
        score = 0.25 * match_1.score + 0.25 * match_2.score
        score += position / 2
        note = ""
        if np.isnan(depth_1) or np.isnan(depth_2):
            note = " (empty depth crop)"
        elif position == 0 and overlap == 0:
            note = " (boxes do not overlap)"
        elif position == 0 and overlap == IOU_THRESHOLD_3D:
            note = " (IoU exactly 0.5 fires neither official branch)"
        elif position == 0 and relation in ("in front of", "behind", "hidden"):
            note = " (wrong depth order)"
        reason = (
            f"'{object_1}' {match_1.score:.2f} (depth {depth_1:.3f}) and '{object_2}' {match_2.score:.2f} "
            f"(depth {depth_2:.3f}) found; IoU {overlap:.2f} -> '{relation}' {position:.2f}{note}; "
            f"score {score:.3f}"
        )
        return score, reason
    if match_1 is not None or match_2 is not None:
        found, name, missing = (
            (match_1, object_1, object_2) if match_1 is not None else (match_2, object_2, object_1)
        )
        assert found is not None
        score = 0.25 * found.score
        return score, f"only '{name}' found ({found.score:.2f}); '{missing}' missing: 0.25·conf = {score:.3f}"
    return 0.0, f"neither '{object_1}' nor '{object_2}' detected: score 0"
