"""The `clip` metric: the pure cosine rule, and the wrapper on a tiny CLIP saved and loaded like the real one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPModel, CLIPProcessor

from ovi_bench.metrics.base import ScoreInput
from ovi_bench.metrics.clip import CLIPMetric, CLIPParams
from ovi_bench.metrics.functional.clip import clip_cosine
from ovi_bench.models.clip import tiny_clip_dir


def test_cosine_rule_exact_values() -> None:
    image = torch.tensor([[1.0, 0.0], [3.0, 4.0], [1.0, 1.0], [2.0, 0.0]])
    text = torch.tensor([[0.0, 5.0], [6.0, 8.0], [-1.0, -1.0], [1.0, 1.0]])
    expected = torch.tensor([0.0, 1.0, -1.0, 2**-0.5], dtype=torch.float64)
    torch.testing.assert_close(clip_cosine(image, text), expected)


def test_cosine_rule_is_raw_not_scaled_or_clamped() -> None:
    negative = clip_cosine(torch.tensor([[1.0, 0.0]]), torch.tensor([[-1.0, 0.1]]))
    assert -1.0 < negative.item() < -0.99  # no clamp at 0, no ×100


def test_cosine_rule_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="equal shape"):
        clip_cosine(torch.zeros(2, 3), torch.zeros(2, 4))


def _images(count: int) -> list[Image.Image]:
    return [
        Image.fromarray(np.random.default_rng(index).integers(0, 256, (48, 48, 3), dtype=np.uint8))
        for index in range(count)
    ]


@pytest.fixture(scope="module")
def metric() -> CLIPMetric:
    return CLIPMetric(CLIPParams(model="tiny"), device=torch.device("cpu"), dtype=torch.float32)


def test_wrapper_matches_clipmodel_forward(metric: CLIPMetric) -> None:
    images = _images(3)
    prompts = ["a red cube", "two cats and a dog", "a man's hat on a café table"]
    rows = metric.score(
        [ScoreInput(image, prompt, "color") for image, prompt in zip(images, prompts, strict=True)]
    )
    folder = tiny_clip_dir()
    model = CLIPModel.from_pretrained(folder, local_files_only=True).eval()
    processor = CLIPProcessor.from_pretrained(folder, local_files_only=True)
    inputs = processor(text=prompts, images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        output = model(**inputs)
    # CLIPModel's forward normalises both embeddings; its diagonal is exactly the per-pair cosine.
    expected = (output.image_embeds * output.text_embeds).sum(-1)
    np.testing.assert_allclose([row.score for row in rows], expected.numpy(), atol=1e-6)


def test_golden_value_from_saved_tiny_clip(metric: CLIPMetric) -> None:
    row = metric.score([ScoreInput(_images(1)[0], "a red cube", "color")])[0]
    assert row.score == pytest.approx(GOLDEN_TINY_CLIP_SCORE, abs=1e-5)
    assert row.reason == f"CLIP cosine {row.score:.4f}"


def test_score_does_not_depend_on_batch(metric: CLIPMetric) -> None:
    images = _images(4)
    prompts = ["a red cube", "a blue sphere", "a red cube", "three green bananas behind a table"]
    together = metric.score([ScoreInput(i, p, "color") for i, p in zip(images, prompts, strict=True)])
    alone = [metric.score([ScoreInput(i, p, "color")])[0] for i, p in zip(images, prompts, strict=True)]
    # Padding to the batch's longest prompt changes float rounding only.
    np.testing.assert_allclose([r.score for r in together], [r.score for r in alone], atol=1e-6)


def test_empty_batch(metric: CLIPMetric) -> None:
    assert metric.score([]) == []


# Measured once from the tiny CLIP saved by `tiny_clip_dir()` (torch.manual_seed(0) build) and its 48×48 image.
GOLDEN_TINY_CLIP_SCORE = 0.0942840


def test_metric_output_guard() -> None:
    from ovi_bench.errors import OviBenchError
    from ovi_bench.metrics.base import ScoreRow, check_metric_output

    batch = [ScoreInput(_images(1)[0], "a red cube", "color")] * 2
    good = [ScoreRow(0.5, "ok"), ScoreRow(0.25, "ok")]
    assert check_metric_output("m", batch, good) == good
    with pytest.raises(OviBenchError, match="returned 1 rows for 2 images"):
        check_metric_output("m", batch, good[:1])
    with pytest.raises(OviBenchError, match="'a red cube' as nan"):
        check_metric_output("m", batch, [ScoreRow(0.5, "ok"), ScoreRow(float("nan"), "?")])
