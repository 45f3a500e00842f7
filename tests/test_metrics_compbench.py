"""The T2I-CompBench++ metrics through their tiny evaluator models: wiring, consistency with the pure rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ovi_bench.backbones.evaluators import BlipVQA
from ovi_bench.errors import SpecError
from ovi_bench.metrics.base import ScoreInput
from ovi_bench.metrics.bvqa import BVQAMetric
from ovi_bench.metrics.clip import CLIPMetric
from ovi_bench.metrics.functional.bvqa import bvqa_questions, bvqa_score
from ovi_bench.metrics.functional.text import BuiltinAnalyzer
from ovi_bench.metrics.functional.three_in_one import three_in_one_score
from ovi_bench.metrics.numeracy import NumeracyMetric
from ovi_bench.metrics.spatial import Spatial2DMetric, Spatial3DMetric
from ovi_bench.metrics.three_in_one import ThreeInOneMetric
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
