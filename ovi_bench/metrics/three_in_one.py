"""`3-in-1`: T2I-CompBench's complex-composition metric, a per-prompt mean of B-VQA, 2D spatial and CLIP."""

from __future__ import annotations

from ovi_bench.metrics.base import DerivedMetric, ScoreRow
from ovi_bench.metrics.functional.three_in_one import three_in_one_score


class ThreeInOneMetric(DerivedMetric):
    """Routed by the prompt's official sub-list: spatial → mean(2D, B-VQA); action → mean(CLIP, B-VQA); else all three.

    The inputs are the run's own `b-vqa`, `spatial-2d` (complex-mode nouns) and `clip` (adjectives removed) scores of
    the same image, exactly the three files the official script combines. A prompt without a known sub-type (not from
    the official complex lists) takes the official "otherwise" branch: the mean of all three.
    """

    version = "1"
    categories = ("complex",)
    inputs = ("b-vqa", "spatial-2d", "clip")

    def combine(self, category: str, subset: str | None, scores: dict[str, float]) -> ScoreRow:
        score, reason = three_in_one_score(
            subset or "spatialaction", scores["b-vqa"], scores["spatial-2d"], scores["clip"]
        )
        return ScoreRow(score=score, reason=reason)
