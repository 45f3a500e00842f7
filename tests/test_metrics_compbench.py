"""The T2I-CompBench++ metrics through their tiny evaluator models: wiring, consistency with the pure rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ovi_bench.errors import SpecError
from ovi_bench.metrics.base import ScoreInput
from ovi_bench.metrics.bvqa import BVQAMetric
from ovi_bench.metrics.clip import CLIPMetric
from ovi_bench.metrics.functional.bvqa import bvqa_questions, bvqa_score
from ovi_bench.metrics.functional.three_in_one import three_in_one_score
from ovi_bench.metrics.numeracy import NumeracyMetric
from ovi_bench.metrics.spatial import Spatial2DMetric, Spatial3DMetric
from ovi_bench.metrics.text_analysis.builtin import BuiltinAnalyzer
from ovi_bench.metrics.three_in_one import ThreeInOneMetric
from ovi_bench.models.evaluators import BlipVQA, RawDetection
from ovi_bench.registry import METRICS
from ovi_bench.spec import OFFICIAL_METRICS, parse_spec

CPU, F32 = torch.device("cpu"), torch.float32


def image(seed: int, size: tuple[int, int] = (64, 64)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_every_official_metric_is_registered_and_is_the_default() -> None:
    assert set(OFFICIAL_METRICS.values()) <= set(METRICS.names())
    spec = parse_spec({"priors": [{"name": "text-embedding"}]})
    assert {metric.name for metric in spec.metrics} == set(OFFICIAL_METRICS.values())
    for category, name in OFFICIAL_METRICS.items():
        categories = METRICS.get(name).categories
        assert categories is None or category in categories


def test_derived_metric_needs_its_inputs_in_the_spec() -> None:
    with pytest.raises(SpecError, match="'3-in-1' is computed from b-vqa, spatial-2d"):
        parse_spec(
            {"priors": [{"name": "text-embedding"}], "metrics": [{"name": "3-in-1"}, {"name": "clip"}]}
        )


def test_bvqa_metric_is_the_rule_applied_to_the_models_probabilities() -> None:
    metric = BVQAMetric(
        BVQAMetric.Params(model="tiny", text_analyzer="builtin", image_size=64), device=CPU, dtype=F32
    )
    prompts = ["a red kite and a blue teapot", "a round clock and a square table", "a fluffy cat"]
    images = [image(index) for index in range(3)]
    rows = metric.score([ScoreInput(i, p, "color") for i, p in zip(images, prompts, strict=True)])
    vqa = BlipVQA("tiny", device=CPU, dtype=F32, image_size=64)
    analyzer = BuiltinAnalyzer()
    for row, picture, prompt in zip(rows, images, prompts, strict=True):
        questions = bvqa_questions(analyzer.noun_chunks(prompt))
        expected, reason = bvqa_score(questions, vqa.yes_probabilities([picture], [questions])[0])
        assert row.score == pytest.approx(expected, abs=1e-4)
        assert 0.0 <= row.score <= 1.0 and row.reason == reason
    alone = metric.score([ScoreInput(images[1], prompts[1], "color")])[0]
    assert alone.score == pytest.approx(rows[1].score, abs=1e-4)


def test_spatial_and_numeracy_metrics_score_in_range_with_reasons() -> None:
    detector = {"detector_model": "tiny", "text_analyzer": "builtin"}
    spatial_2d = Spatial2DMetric(Spatial2DMetric.Params(**detector), device=CPU, dtype=F32)
    spatial_3d = Spatial3DMetric(
        Spatial3DMetric.Params(**detector, depth_model="tiny", depth_input_size=32), device=CPU, dtype=F32
    )
    numeracy = NumeracyMetric(NumeracyMetric.Params(**detector, lexicon="builtin"), device=CPU, dtype=F32)
    cases = [
        (spatial_2d, "a cat on the left of a dog", "spatial", "'cat'"),
        (spatial_2d, "The red car is parked next to the tree while a dog sleeps.", "complex", "car"),
        (spatial_3d, "a chair in front of a table", "3d_spatial", "'chair'"),
        (numeracy, "two cats and one dog", "numeracy", "'cat'"),
    ]
    for metric, prompt, category, mentioned in cases:
        rows = metric.score(
            [ScoreInput(image(0), prompt, category), ScoreInput(image(1, (80, 48)), prompt, category)]
        )
        assert len(rows) == 2
        for row in rows:
            assert 0.0 <= row.score <= 1.0
            assert mentioned in row.reason, (prompt, row.reason)


def test_numeracy_refuses_an_unknown_lexicon() -> None:
    with pytest.raises(SpecError, match="lexicon"):
        NumeracyMetric(
            NumeracyMetric.Params(detector_model="tiny", lexicon="/no/such/file"), device=CPU, dtype=F32
        )


def test_clip_removes_adjectives_only_in_complex_prompts() -> None:
    metric = CLIPMetric(CLIPMetric.Params(model="tiny", text_analyzer="builtin"), device=CPU, dtype=F32)
    prompt = "The blue car is parked next to the red fire hydrant."
    assert (
        metric.text_for(ScoreInput(image(0), prompt, "complex"))
        == "The car is parked next to the fire hydrant ."
    )
    assert metric.text_for(ScoreInput(image(0), prompt, "non_spatial")) == prompt
    plain = CLIPMetric(CLIPMetric.Params(model="tiny", remove_adjectives_in=[]), device=CPU, dtype=F32)
    assert plain.text_for(ScoreInput(image(0), prompt, "complex")) == prompt


def test_three_in_one_combines_by_the_prompts_subset() -> None:
    metric = ThreeInOneMetric(ThreeInOneMetric.Params(), device=CPU, dtype=F32)
    scores = {"b-vqa": 0.6, "spatial-2d": 0.2, "clip": 0.3}
    assert metric.combine("complex", "spatial", scores).score == pytest.approx(0.4)
    assert metric.combine("complex", "action", scores).score == pytest.approx(0.45)
    assert metric.combine("complex", "spatialaction", scores).score == pytest.approx((0.6 + 0.2 + 0.3) / 3)
    # Unknown sub-type: the official "otherwise" branch.
    assert metric.combine("complex", None, scores).score == pytest.approx(
        three_in_one_score("spatialaction", 0.6, 0.2, 0.3)[0]
    )


def test_resolved_analyzer_is_part_of_the_fingerprint() -> None:
    builtin = BuiltinAnalyzer().name
    assert BVQAMetric.content_identity({"text_analyzer": "builtin"}) == {"text_analyzer": builtin}
    try:
        import spacy  # noqa: F401
    except ImportError:
        # Without spaCy, "auto" is the built-in analyzer, and the fingerprint says so rather than "auto".
        assert BVQAMetric.content_identity({"text_analyzer": "auto"}) == {"text_analyzer": builtin}
    default = BVQAMetric.Params(text_analyzer="builtin")
    assert BVQAMetric.fingerprint("b-vqa", default, "float32") != BVQAMetric.fingerprint(
        "b-vqa", BVQAMetric.Params(text_analyzer="builtin", official_rounding=False), "float32"
    )


class FixedDetector:
    """Hand-made detector outputs in image pixels, standing in for the loaded detector's answers."""

    def __init__(self, detections: list[RawDetection]) -> None:
        self.detections = detections

    def detect(self, images, queries) -> list[list[RawDetection]]:
        return [list(self.detections) for _ in images]


def test_spatial_2d_and_numeracy_metrics_score_in_the_detector_frame_of_a_non_square_image() -> None:
    detector = {"detector_model": "tiny", "text_analyzer": "builtin"}
    picture = image(0, (1000, 667))  # detector frame 480 × 320
    spatial_2d = Spatial2DMetric(Spatial2DMetric.Params(**detector), device=CPU, dtype=F32)
    # Centres 700 px across and 312.6 px down: 149.97 px down in the detector frame, so "near" holds (pos 1).
    spatial_2d.detector = FixedDetector(
        [
            RawDetection("cat", 0.9, (50.0, 50.0, 150.0, 150.0)),
            RawDetection("dog", 0.9, (750.0, 362.6, 850.0, 462.6)),
        ]
    )
    (row,) = spatial_2d.score([ScoreInput(picture, "a cat near a dog", "spatial")])
    assert row.score == pytest.approx(0.95, abs=1e-12)  # not 0.673, the image-frame threshold's score

    # Two cats 10.15 px apart, 100 px wide, in a 1024 px square image: in image pixels the +1-pixel overlap share is
    # 90.85 / 101 < 0.9 (two cats, the count of "two cats" is right: 1.0); in the 479-px detector frame it is
    # above 0.9, so the official rule merges them into one cat (0.5).
    numeracy = NumeracyMetric(NumeracyMetric.Params(**detector, lexicon="builtin"), device=CPU, dtype=F32)
    numeracy.detector = FixedDetector(
        [
            RawDetection("cat", 0.9, (0.0, 0.0, 100.0, 100.0)),
            RawDetection("cat", 0.8, (10.15, 0.0, 110.15, 100.0)),
        ]
    )
    (row,) = numeracy.score([ScoreInput(image(1, (1024, 1024)), "two cats", "numeracy")])
    assert row.score == pytest.approx(0.5)


def test_detector_frame_metrics_have_a_new_version() -> None:
    # Scores on non-square (2D, 3D) and large (numeracy, 3D) images changed with the detector frame.
    assert Spatial2DMetric.version == "2" and Spatial3DMetric.version == "2" and NumeracyMetric.version == "2"
