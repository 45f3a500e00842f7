"""The pure 2D / 3D spatial rules and the 3-in-1 rule, on hand-made detections and depth maps whose official
scores are worked out by hand in the comments."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovi_bench.metrics.functional.detections import (
    Detection,
    detector_frame,
    in_detector_frame,
    in_detector_order,
    iou,
    iou_plus_one,
    rescale_box,
)
from ovi_bench.metrics.functional.spatial import (
    box_mean_depth,
    depth_in_detector_frame,
    objects_2d,
    objects_3d,
    position_score_2d,
    relation_2d,
    relation_3d,
    spatial_2d_score,
    spatial_3d_score,
)
from ovi_bench.metrics.functional.three_in_one import three_in_one_score
from ovi_bench.metrics.text_analysis.tokens import Token

OFFICIAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "t2i-compbench"
EXACT = 1e-12


def det(label: str, score: float, box: tuple[float, float, float, float]) -> Detection:
    return Detection(label, score, box)


def tagged(*pairs: str) -> list[Token]:
    """Tokens from "text/POS" strings, as spaCy would hand them over."""
    return [Token(*pair.rsplit("/", 1)) for pair in pairs]


# ---------------------------------------------------------------------------------------------------------------
# Geometry helpers


def test_iou_continuous_and_plus_one():
    # Two 10×10 boxes overlapping by half their width: 50 / (100 + 100 − 50) = 1/3.
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3, abs=EXACT)
    # +1 convention: each box covers 11×11 = 121 px, the overlap 6×11 = 66 px: 66 / (242 − 66) = 0.375.
    assert iou_plus_one((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(0.375, abs=EXACT)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert iou((5, 5, 5, 5), (5, 5, 5, 5)) == 0.0  # empty union: 0 instead of the official ZeroDivisionError


def test_detector_frame_reproduces_torchvision_resize_479_max_480():
    assert detector_frame(512, 512) == (479, 479)
    assert detector_frame(1024, 1024) == (479, 479)
    # 768×512: long side int(479·768/512) = int(718.5) = 718 > 480, so long = 480, short = int(480·479/718) = 320.
    assert detector_frame(768, 512) == (480, 320)
    assert detector_frame(512, 768) == (320, 480)
    # 479×480: int(479·480/479) = 480 is not above the cap.
    assert detector_frame(479, 480) == (479, 480)
    # 1024×1000: int(479·1024/1000) = 490 > 480 -> short int(480·479/490) = 469.
    assert detector_frame(1024, 1000) == (480, 469)


def test_rescale_box_between_frames():
    assert rescale_box((10, 20, 30, 40), (512, 512), (479, 479)) == pytest.approx(
        (10 * 479 / 512, 20 * 479 / 512, 30 * 479 / 512, 40 * 479 / 512)
    )
    assert rescale_box((0, 0, 768, 512), (768, 512), (480, 320)) == (0, 0, 480, 320)


def test_detections_are_taken_in_detector_order_stably():
    a, b, c = det("cat", 0.5, (0, 0, 1, 1)), det("cat", 0.9, (0, 0, 2, 2)), det("dog", 0.5, (0, 0, 3, 3))
    assert in_detector_order([a, b, c]) == [b, a, c]


# ---------------------------------------------------------------------------------------------------------------
# 2D: relation and objects


def test_relation_2d_first_of_the_official_list_case_sensitive():
    assert relation_2d("a cat on side of a dog") == "on side of"
    assert relation_2d("a cat on the left of a dog") == "on the left of"
    assert relation_2d("The hat was on top of the rack.") == "on top of"
    assert relation_2d("a cat on the top of a dog") == "on the top of"  # not "on top of"
    # "near" comes before "on the top of" in the official list.
    assert relation_2d("a cat near the box on the top of a dog") == "near"
    assert relation_2d("On the left of a dog sits a cat") is None  # capital O: no match
    assert relation_2d("a cat and a dog") is None


def test_objects_2d_simple_mode_first_and_last_noun_with_person_mapping():
    tokens = tagged("a/DET", "girl/NOUN", "on/ADP", "the/DET", "top/NOUN", "of/ADP", "a/DET", "frog/NOUN")
    assert objects_2d(tokens) == ("person", "frog")
    # A tagger that calls "key" an adjective makes "top" the last NOUN — the official rule follows the tags.
    tokens = tagged("a/DET", "car/NOUN", "on/ADP", "the/DET", "top/NOUN", "of/ADP", "a/DET", "key/ADJ")
    assert objects_2d(tokens) == ("car", "top")
    assert objects_2d(tagged("a/DET", "red/ADJ")) == (None, None)  # official: IndexError
    assert objects_3d(tagged("a/DET", "man/NOUN", "behind/ADP", "a/DET", "woman/NOUN")) == (
        "person",
        "person",
    )


def test_objects_2d_complex_mode():
    hat = tagged(
        "The/DET", "red/ADJ", "hat/NOUN", "was/AUX", "on/ADP", "top/NOUN", "of/ADP", "the/DET", "brown/ADJ",
        "coat/NOUN", "rack/NOUN", "./PUNCT",
    )  # fmt: skip
    # The nearest NOUN before "on top of", and the first NOUN after it.
    assert objects_2d(hat, complex_mode=True) == ("hat", "coat")
    # "on the top of" is not among the complex prepositions: no object at all.
    top = tagged("a/DET", "cat/NOUN", "on/ADP", "the/DET", "top/NOUN", "of/ADP", "a/DET", "dog/NOUN")
    assert objects_2d(top, complex_mode=True) == (None, None)
    # No NOUN after the preposition: the first PROPN followed by a non-PROPN token.
    ben = tagged("The/DET", "cat/NOUN", "sat/VERB", "next/ADV", "to/ADP", "Big/PROPN", "Ben/PROPN", "./PUNCT")
    assert objects_2d(ben, complex_mode=True) == ("cat", "Ben")
    assert objects_2d(ben[:-1], complex_mode=True) == (None, None)  # "Ben" last: the official scan skips it
    # Two prepositions give four objects: not exactly two, so none.
    two = tagged(
        "a/DET", "girl/NOUN", "near/ADP", "a/DET", "cat/NOUN", "and/CCONJ", "a/DET", "dog/NOUN", "next/ADV",
        "to/ADP", "a/DET", "box/NOUN",
    )  # fmt: skip
    assert objects_2d(two, complex_mode=True) == (None, None)
    near = tagged(
        "The/DET", "girl/NOUN", "stood/VERB", "near/ADP", "the/DET", "old/ADJ", "tree/NOUN", "./PUNCT"
    )
    assert objects_2d(near, complex_mode=True) == ("person", "tree")


# ---------------------------------------------------------------------------------------------------------------
# 2D: geometry and score

CAT = (0.0, 0.0, 100.0, 100.0)  # centre (50, 50)


def test_left_of_with_iou_below_and_above_threshold():
    # Dog 200 px to the right (centre (250, 50)), no overlap: dx = 200 > |dy| = 0, IoU 0 < 0.1 -> pos 1.
    # Score = 0.25·0.8 + 0.25·0.6 + 0.5·1 = 0.85.
    score, reason = spatial_2d_score(
        [det("cat", 0.8, CAT), det("dog", 0.6, (200, 0, 300, 100))], "cat", "dog", "on the left of"
    )
    assert score == pytest.approx(0.85, abs=EXACT)
    assert "'on the left of' 1.00" in reason
    # Dog 50 px to the right: IoU = 5000 / 15000 = 1/3 >= 0.1 -> pos = 0.1 / (1/3) = 0.3.
    # Score = 0.25·0.9 + 0.25·0.9 + 0.5·0.3 = 0.6.
    score, _ = spatial_2d_score(
        [det("cat", 0.9, CAT), det("dog", 0.9, (50, 0, 150, 100))], "cat", "dog", "on the left of"
    )
    assert score == pytest.approx(0.6, abs=EXACT)


def test_right_of_on_the_wrong_side_scores_zero_and_is_gated():
    # The dog is to the right, so "cat on the right of dog" fails: pos 0, score 0.25·0.9 + 0.25·0.9 = 0.45 < 0.5.
    score, reason = spatial_2d_score(
        [det("cat", 0.9, CAT), det("dog", 0.9, (200, 0, 300, 100))], "cat", "dog", "on the right of"
    )
    assert score == 0.0
    assert "0.450 < 0.5 gate" in reason


def test_left_needs_the_horizontal_offset_to_dominate():
    # dx = 50, dy = 80: |dx| <= |dy| -> pos 0 although dx > 0.
    assert position_score_2d("on the left of", CAT, (50, 80, 150, 180)) == 0.0


def test_top_and_bottom_with_iou_below_and_above_threshold():
    below = (0.0, 200.0, 100.0, 300.0)  # centre (50, 250): dy = +200, obj2 lower in the image
    assert position_score_2d("on the top of", CAT, below) == 1.0
    assert position_score_2d("on the bottom of", CAT, below) == 0.0
    assert position_score_2d("on the bottom of", below, CAT) == 1.0
    # Overlap: intersection 100×40 = 4000, union 16000, IoU 0.25 -> pos 0.1 / 0.25 = 0.4.
    # Score = 0.25·1 + 0.25·1 + 0.5·0.4 = 0.7.
    score, _ = spatial_2d_score(
        [det("cat", 1.0, CAT), det("dog", 1.0, (0, 60, 100, 160))], "cat", "dog", "on the top of"
    )
    assert score == pytest.approx(0.7, abs=EXACT)


def test_near_inside_and_outside_the_distance_and_frame_scaling():
    small = (0.0, 0.0, 50.0, 50.0)  # centre (25, 25)
    far = (200.0, 300.0, 250.0, 350.0)  # centre (225, 325): dx = 200, dy = 300, both >= 150
    close = (100.0, 300.0, 150.0, 350.0)  # centre (125, 325): dx = 100 < 150
    assert position_score_2d("near", small, close) == 1.0
    assert position_score_2d("next to", small, far) == pytest.approx(150 / 300)  # 150 / max(200, 300) = 0.5
    # Conf 0.5 and 0.5 with pos 0.5: 0.125 + 0.125 + 0.25 = 0.5 exactly -> survives the "< 0.5" gate.
    score, _ = spatial_2d_score([det("cat", 0.5, small), det("dog", 0.5, far)], "cat", "dog", "on side of")
    assert score == 0.5
    # The same boxes in a 958×958 image: halved in the 479-px detector frame, dx = 100 is "near": pos 1.
    score, _ = spatial_2d_score(
        [det("cat", 0.5, small), det("dog", 0.5, far)], "cat", "dog", "near", frame_size=(958, 958)
    )
    assert score == 0.75  # 0.125 + 0.125 + 0.5
    # A square 512 px image: one scale for both axes, so "near" stays 150·512/479 ≈ 160.3 image px, as it always was.
    a, b = (0.0, 0.0, 20.0, 20.0), (170.0, 170.0, 190.0, 190.0)  # dx = dy = 170 image px
    score, _ = spatial_2d_score(
        [det("cat", 1.0, a), det("dog", 1.0, b)], "cat", "dog", "near", frame_size=(512, 512)
    )
    assert score == pytest.approx(0.5 + 0.5 * (150 * 512 / 479) / 170, abs=1e-9)


def test_boxes_map_into_the_detector_frame_per_axis():
    # 1000 × 667 -> Resize(479, max_size=480) -> 480 × 320: x scales by 0.48, y by 320/667 ≈ 0.47976.
    assert detector_frame(1000, 667) == (480, 320)
    (mapped,) = in_detector_frame([det("cat", 0.9, (100.0, 667.0, 1000.0, 333.5))], (1000, 667))
    assert mapped.box == pytest.approx((48.0, 320.0, 480.0, 160.0)) and mapped.score == 0.9
    # A detector frame maps onto itself.
    boxes = [det("cat", 0.9, (1.5, 2.5, 3.5, 4.5))]
    assert in_detector_frame(boxes, (480, 320)) == boxes
    assert in_detector_frame(boxes, (479, 479)) == boxes


def test_near_on_a_non_square_image_is_decided_in_the_detector_frame():
    # 1000 × 667 image, centres 700 px apart across and 312.6 px down. In the 480 × 320 detector frame
    # dy = 312.6 · 320/667 = 149.97 < 150: "near" holds, pos 1, score 0.25·0.9 + 0.25·0.9 + 0.5 = 0.95.
    # (Scaling the threshold to the image instead, 150 · 1000/480 = 312.5 px, misses by 0.1 px and gives
    # 0.45 + 0.5 · 312.5/700 = 0.673.)
    cat = det("cat", 0.9, (50.0, 50.0, 150.0, 150.0))  # centre (100, 100)
    dog = det("dog", 0.9, (750.0, 362.6, 850.0, 462.6))  # centre (800, 412.6)
    score, reason = spatial_2d_score([cat, dog], "cat", "dog", "near", frame_size=(1000, 667))
    assert score == pytest.approx(0.95, abs=EXACT)
    assert "dy +150 px" in reason
    # Which offset dominates is decided there too: dx 300 < dy 300.1 in the image, but 144 > 143.98 in the frame.
    left = det("dog", 0.9, (350.0, 350.1, 450.0, 450.1))  # centre (400, 400.1)
    score, _ = spatial_2d_score([cat, left], "cat", "dog", "on the left of", frame_size=(1000, 667))
    assert score == pytest.approx(0.95, abs=EXACT)


def test_depth_map_resized_to_the_detector_frame_like_the_official_png():
    rng = np.random.default_rng(0)
    levels = rng.integers(0, 256, (667, 1000), dtype=np.uint8)
    depth = levels.astype(np.float32) / np.float32(
        255
    )  # an 8-bit map as DepthEstimator(quantise_8bit=True) makes
    resized = depth_in_detector_frame(depth, eight_bit=True)
    # The official path: the PNG on disk, opened and passed through Resize(479, max_size=480) (PIL bilinear), / 255.
    png = io.BytesIO()
    Image.fromarray(levels).save(png, format="PNG")
    official = (
        Image.open(io.BytesIO(png.getvalue())).convert("L").resize((480, 320), Image.Resampling.BILINEAR)
    )
    assert resized.shape == (320, 480)
    assert np.array_equal(resized, np.asarray(official, dtype=np.float32) / np.float32(255))
    floating = depth_in_detector_frame(np.full((667, 1000), 0.3, dtype=np.float32), eight_bit=False)
    assert floating.shape == (320, 480) and np.allclose(floating, 0.3)
    assert depth_in_detector_frame(FLOOR / 39, eight_bit=False).shape == (479, 479)  # 40 × 40 -> 479 × 479
    already = np.zeros((320, 480), dtype=np.float32)
    assert depth_in_detector_frame(already, eight_bit=True) is already
    with pytest.raises(ValueError, match="depth map"):
        depth_in_detector_frame(np.zeros((4, 4, 3)), eight_bit=True)


def test_only_one_object_found_scores_a_quarter_of_its_confidence_then_the_gate():
    # Only the cat: 0.25·0.9 = 0.225 < 0.5 -> 0, whatever the cat's confidence.
    score, reason = spatial_2d_score([det("cat", 0.9, CAT)], "cat", "dog", "on the left of")
    assert score == 0.0
    assert "only 'cat' found" in reason and "'dog' missing" in reason
    score, reason = spatial_2d_score([det("dog", 1.0, CAT)], "cat", "dog", "near")
    assert score == 0.0 and "only 'dog' found" in reason
    score, reason = spatial_2d_score([], "cat", "dog", "near")
    assert score == 0.0 and "neither" in reason
    assert spatial_2d_score([det("cat", 1.0, CAT)], None, None, "near")[0] == 0.0


def test_gate_boundary():
    # Both found at confidence 1.0, relation unknown to the rule ("on top of"): 0.25 + 0.25 + 0 = 0.5 exactly: kept.
    detections = [det("cat", 1.0, CAT), det("dog", 1.0, (0, 200, 100, 300))]
    score, reason = spatial_2d_score(detections, "cat", "dog", "on top of")
    assert score == 0.5
    assert "no 'on top of' branch" in reason
    # Confidences 0.5 and 0.49, same relation: 0.2475 < 0.5 -> 0.
    detections = [det("cat", 0.5, CAT), det("dog", 0.49, (0, 200, 100, 300))]
    assert spatial_2d_score(detections, "cat", "dog", "on top of")[0] == 0.0


def test_on_top_of_official_zero_versus_corrected():
    # Cat above the dog, no overlap. Officially "on top of" has no branch: pos 0, 0.25·0.8 + 0.25·0.8 = 0.4 -> 0.
    detections = [det("cat", 0.8, CAT), det("dog", 0.8, (0, 200, 100, 300))]
    assert spatial_2d_score(detections, "cat", "dog", "on top of")[0] == 0.0
    # Corrected, as "on the top of": dy = 200 > |dx| = 0, IoU 0 -> pos 1: 0.4 + 0.5 = 0.9.
    score, _ = spatial_2d_score(detections, "cat", "dog", "on top of", on_top_of_scores_zero=False)
    assert score == pytest.approx(0.9, abs=EXACT)


def test_first_detection_per_label_in_descending_score_order_and_same_noun_twice():
    # Given out of order, the 0.9 cat is the one used (detector order); the 0.5 cat is ignored.
    detections = [
        det("cat", 0.5, (400, 0, 450, 50)),
        det("cat", 0.9, CAT),
        det("dog", 0.7, (200, 0, 300, 100)),
    ]
    score, _ = spatial_2d_score(detections, "cat", "dog", "on the left of")
    assert score == pytest.approx(0.25 * 0.9 + 0.25 * 0.7 + 0.5, abs=EXACT)  # 0.9 with the left cat
    # "a cat next to a cat": both objects are the same (first) detection: dx = dy = 0 -> near 1, left 0.
    score, _ = spatial_2d_score(detections, "cat", "cat", "next to")
    assert score == pytest.approx(0.25 * 0.9 * 2 + 0.5, abs=EXACT)  # 0.95
    assert spatial_2d_score(detections, "cat", "cat", "on the left of")[0] == 0.0  # 0.45 gated


def test_2d_label_match_exact_versus_substring():
    detections = [det("table, desk", 0.9, CAT), det("dog", 0.9, (200, 0, 300, 100))]
    # Official exact matching: "desk" never equals "table, desk" -> only the dog: 0.225 -> 0.
    assert spatial_2d_score(detections, "desk", "dog", "on the left of")[0] == 0.0
    score, _ = spatial_2d_score(detections, "desk", "dog", "on the left of", label_match="substring")
    assert score == pytest.approx(0.95, abs=EXACT)


# ---------------------------------------------------------------------------------------------------------------
# 3D

# depth[r, c] = r: nearer (larger disparity) towards the bottom of the image, like a floor. Not symmetric, so the
# official transposed crop and the corrected crop disagree.
FLOOR = np.tile(np.arange(40, dtype=np.float64)[:, None], (1, 40))


def test_relation_3d():
    assert relation_3d("a cat in front of a dog") == "in front of"
    assert relation_3d("a cat behind a dog") == "behind"
    assert relation_3d("a cat hidden by a dog") == "hidden"
    assert relation_3d("a cat on the left of a dog") is None


def test_box_mean_depth_transposed_versus_corrected_and_empty_crop():
    box = (0, 4, 6, 10)  # x 0..6, y 4..10
    assert box_mean_depth(FLOOR, box, transposed_crop=False) == 6.5  # rows 4..9
    assert box_mean_depth(FLOOR, box, transposed_crop=True) == 2.5  # official: rows 0..5 (the x-range)
    assert np.isnan(box_mean_depth(FLOOR, (3.2, 2, 3.9, 8)))  # int(3.2):int(3.9) = 3:3 is empty
    with pytest.raises(ValueError):
        box_mean_depth(np.zeros((2, 2, 3)), box)


def test_3d_transposed_versus_corrected_crop_on_a_non_symmetric_map():
    # A = (0, 4, 6, 10), B = (2, 0, 8, 6): overlap 4×2 = 8, areas 36 each, union 64, IoU 0.125.
    # Corrected crop: depth A = 6.5 (rows 4..9), B = 2.5 (rows 0..5): A nearer -> "in front of" holds,
    #   pos = 0.125 / 0.5 = 0.25, score = 0.25·0.8 + 0.25·0.6 + 0.5·0.25 = 0.475.
    # Official transposed crop: A = rows 0..5 = 2.5, B = rows 2..7 = 4.5: A farther -> pos 0, score 0.35.
    detections = [det("cat", 0.8, (0, 4, 6, 10)), det("dog", 0.6, (2, 0, 8, 6))]
    official, reason = spatial_3d_score(detections, FLOOR, "cat", "dog", "in front of")
    assert official == pytest.approx(0.35, abs=EXACT)
    assert "wrong depth order" in reason
    corrected, _ = spatial_3d_score(detections, FLOOR, "cat", "dog", "in front of", transposed_crop=False)
    assert corrected == pytest.approx(0.475, abs=EXACT)
    # "behind" is the mirror: the official crop satisfies it.
    assert spatial_3d_score(detections, FLOOR, "cat", "dog", "behind")[0] == pytest.approx(0.475, abs=EXACT)


def test_3d_iou_above_half_at_half_and_zero_and_wrong_order():
    corrected = {"transposed_crop": False}
    # A = (0, 2, 10, 10) depth 5.5, B = (0, 0, 10, 8) depth 3.5: overlap 60, union 100, IoU 0.6 > 0.5 -> pos 1.
    detections = [det("cat", 0.8, (0, 2, 10, 10)), det("dog", 0.6, (0, 0, 10, 8))]
    score, _ = spatial_3d_score(detections, FLOOR, "cat", "dog", "in front of", **corrected)
    assert score == pytest.approx(0.2 + 0.15 + 0.5, abs=EXACT)
    # Wrong order ("behind" while A is nearer): 0.35.
    score, reason = spatial_3d_score(detections, FLOOR, "cat", "dog", "behind", **corrected)
    assert score == pytest.approx(0.35, abs=EXACT) and "wrong depth order" in reason
    # IoU exactly 0.5: A = (0, 0, 10, 10) depth 4.5, B = (0, 5, 10, 10) depth 7 -> A behind B, order right,
    # but neither "> 0.5" nor "0 < IoU < 0.5" fires: pos 0, score 0.35.
    detections = [det("cat", 0.8, (0, 0, 10, 10)), det("dog", 0.6, (0, 5, 10, 10))]
    score, reason = spatial_3d_score(detections, FLOOR, "cat", "dog", "hidden", **corrected)
    assert score == pytest.approx(0.35, abs=EXACT) and "exactly 0.5" in reason
    # No overlap with the right order (A depth 7 in front of B depth 1.5): IoU 0 -> pos 0, score 0.35.
    detections = [det("cat", 0.8, (0, 5, 4, 10)), det("dog", 0.6, (6, 0, 10, 4))]
    score, reason = spatial_3d_score(detections, FLOOR, "cat", "dog", "in front of", **corrected)
    assert score == pytest.approx(0.35, abs=EXACT) and "do not overlap" in reason


def test_3d_empty_crop_scores_no_relation():
    # IoU = (0.7·6) / (1·6) = 0.7 > 0.5, but A's crop 3:3 is empty: NaN depth, relation 0: 0.25·0.8 + 0.25·0.6.
    detections = [det("cat", 0.8, (3.2, 2, 3.9, 8)), det("dog", 0.6, (3.0, 2, 4.0, 8))]
    for transposed in (True, False):
        score, reason = spatial_3d_score(
            detections, FLOOR, "cat", "dog", "in front of", transposed_crop=transposed
        )
        assert score == pytest.approx(0.35, abs=EXACT) and "empty depth crop" in reason


def test_3d_overwriting_loop_cat_cat_dog():
    # Labels [cat, cat, dog]: the official loop overwrites obj1 at every cat until the dog is seen: obj1 = second
    # cat Q. Q = (0, 2, 10, 10) depth 5.5, dog R = (0, 0, 10, 6) depth 2.5: IoU 40 / 100 = 0.4, Q in front ->
    # pos 0.8, score 0.25·0.8 + 0.25·0.7 + 0.5·0.8 = 0.775.
    # "first" takes P = (20, 20, 30, 30): no overlap with R -> pos 0, score 0.25·0.9 + 0.25·0.7 = 0.4.
    detections = [
        det("cat", 0.9, (20, 20, 30, 30)),
        det("cat", 0.8, (0, 2, 10, 10)),
        det("dog", 0.7, (0, 0, 10, 6)),
    ]
    corrected = {"transposed_crop": False}
    official, _ = spatial_3d_score(detections, FLOOR, "cat", "dog", "in front of", **corrected)
    assert official == pytest.approx(0.775, abs=EXACT)
    first, _ = spatial_3d_score(
        detections, FLOOR, "cat", "dog", "in front of", detection_choice="first", **corrected
    )
    assert first == pytest.approx(0.4, abs=EXACT)
    # The same overwriting applies to obj2 when it comes first: [dog, dog, cat] with obj2 "dog" -> second dog.
    mirrored = [
        det("dog", 0.9, (20, 20, 30, 30)),
        det("dog", 0.8, (0, 2, 10, 10)),
        det("cat", 0.7, (0, 0, 10, 6)),
    ]
    score, _ = spatial_3d_score(mirrored, FLOOR, "cat", "dog", "behind", **corrected)
    assert score == pytest.approx(0.25 * 0.7 + 0.25 * 0.8 + 0.5 * 0.8, abs=EXACT)


def test_3d_substring_matching_and_one_object_without_gate():
    detections = [det("cattle, cow", 0.9, (0, 2, 10, 10)), det("dog", 0.6, (0, 0, 10, 8))]
    # Official substring matching: "cat" matches "cattle, cow" (IoU 0.6, in front in the corrected crop -> 1).
    score, _ = spatial_3d_score(detections, FLOOR, "cat", "dog", "in front of", transposed_crop=False)
    assert score == pytest.approx(0.225 + 0.15 + 0.5, abs=EXACT)
    # Exact matching: only the dog is found: 0.25·0.6 = 0.15, and 3D has no gate.
    score, reason = spatial_3d_score(detections, FLOOR, "cat", "dog", "in front of", label_match="exact")
    assert score == pytest.approx(0.15, abs=EXACT) and "only 'dog' found" in reason
    assert spatial_3d_score([], FLOOR, "cat", "dog", "behind")[0] == 0.0
    with pytest.raises(ValueError):
        spatial_3d_score(detections, FLOOR, "cat", "dog", "behind", detection_choice="last")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------
# 3-in-1


def test_three_in_one_means_in_the_official_order():
    assert three_in_one_score("spatial", 0.4, 0.6, None)[0] == pytest.approx(0.5)  # (2D + B-VQA) · 0.5
    assert three_in_one_score("action", 0.5, None, 0.3)[0] == pytest.approx(0.4)  # (CLIP + B-VQA) · 0.5
    score, reason = three_in_one_score("spatialaction", 0.5, 0.6, 0.3)
    assert score == (0.5 + 0.6 + 0.3) / 3
    assert "B-VQA 0.500" in reason
    with pytest.raises(ValueError, match="spatial_2d"):
        three_in_one_score("spatial", 0.4, None, 0.3)
    with pytest.raises(ValueError, match="subset"):
        three_in_one_score("attribute", 0.4, 0.5, 0.3)


def test_complex_val_routing_is_58_212_30():
    if not (OFFICIAL_DIR / "complex_val.txt").is_file():
        pytest.skip(
            f"the official T2I-CompBench files are not at {OFFICIAL_DIR} (a checkout without ../shared)"
        )
    from ovi_bench.prompts import complex_subsets, read_prompt_lines

    routing = complex_subsets("val", data_dir=OFFICIAL_DIR)
    prompts = read_prompt_lines(OFFICIAL_DIR / "complex_val.txt")
    from ovi_bench.prompts import normalise_complex_prompt

    counts = Counter(routing[normalise_complex_prompt(prompt)] for prompt in prompts)
    assert counts == {"spatial": 58, "action": 212, "spatialaction": 30}


def test_complex_routing_key_is_the_official_one_without_any_strip():
    from ovi_bench.prompts import normalise_complex_prompt

    # Official: line.split('.')[0].lower(), nothing stripped.
    assert normalise_complex_prompt("A Cat near a dog . Then more") == "a cat near a dog "
    assert normalise_complex_prompt(" A cat near a dog") == " a cat near a dog"
    assert normalise_complex_prompt("A cat near a dog. Then") != normalise_complex_prompt(
        "A cat near a dog . Then"
    )


def test_complex_val_routing_equals_the_official_scripts_on_the_raw_files():
    if not (OFFICIAL_DIR / "complex_val.txt").is_file():
        pytest.skip(
            f"the official T2I-CompBench files are not at {OFFICIAL_DIR} (a checkout without ../shared)"
        )
    from ovi_bench.prompts import complex_subsets, normalise_complex_prompt, read_prompt_lines

    def official_keys(name: str) -> list[str]:
        # The official script: open() in text mode (universal newlines), strip('\n'), split('.')[0], lower().
        with open(OFFICIAL_DIR / name, encoding="utf-8") as lines:
            return [line.strip("\n").split(".")[0].lower() for line in lines.readlines()]

    spatial, action = official_keys("complex_val_spatial.txt"), official_keys("complex_val_action.txt")
    official = [
        "spatial" if key in spatial else "action" if key in action else "spatialaction"
        for key in official_keys("complex_val.txt")
    ]
    routing = complex_subsets("val", data_dir=OFFICIAL_DIR)
    ours = [
        routing[normalise_complex_prompt(line)]
        for line in read_prompt_lines(OFFICIAL_DIR / "complex_val.txt")
    ]
    assert ours == official
