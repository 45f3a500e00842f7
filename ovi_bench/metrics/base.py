"""The metric seam: a thin model wrapper around a pure scoring rule in `metrics/functional/`."""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from PIL import Image

from ovi_bench.components import Component, Params
from ovi_bench.errors import OviBenchError


@dataclass(frozen=True)
class ScoreInput:
    image: Image.Image
    prompt: str
    category: str
    subset: str | None = None
    """The prompt's sub-type where the benchmark defines one (complex prompts: the 3-in-1 routing)."""


@dataclass(frozen=True)
class ScoreRow:
    score: float
    reason: str
    """A short human explanation of this image's score."""
    extras: dict[str, Any] = field(default_factory=dict)


class Metric(Component, abc.ABC):
    """Scores images against their prompts. Subclasses set the class attributes below."""

    categories: ClassVar[tuple[str, ...] | None] = None
    """Categories the metric applies to; None means every category."""
    higher_is_better: ClassVar[bool] = True

    def __init__(self, params: Params, *, device: torch.device, dtype: torch.dtype) -> None:
        self.params = params
        self.device = device
        self.dtype = dtype

    def applies_to(self, category: str) -> bool:
        return self.categories is None or category in self.categories

    @abc.abstractmethod
    def score(self, batch: Sequence[ScoreInput]) -> list[ScoreRow]:
        """One row per input, in order. A row's score must not depend on the rest of the batch."""


class DerivedMetric(Metric):
    """A metric computed from other metrics' scores of the same image, with no model of its own.

    The runner scores the `inputs` metrics first (they must be in the run spec) and calls `combine` per image.
    """

    inputs: ClassVar[tuple[str, ...]] = ()

    def score(self, batch: Sequence[ScoreInput]) -> list[ScoreRow]:
        raise TypeError(
            f"{type(self).__name__} is derived from {self.inputs}: the runner calls `combine` instead."
        )

    @abc.abstractmethod
    def combine(self, category: str, subset: str | None, scores: dict[str, float]) -> ScoreRow:
        """The derived score of one image from its `inputs` scores (metric name -> score)."""


def check_metric_output(name: str, batch: Sequence[ScoreInput], rows: Sequence[ScoreRow]) -> list[ScoreRow]:
    """Refuse a metric result that would silently corrupt a leaderboard: a missing row or a non-finite score.

    The runner applies this to every metric, built-in or plugin, before anything is cached.
    """
    if len(rows) != len(batch):
        raise OviBenchError(
            f"metric '{name}' returned {len(rows)} rows for {len(batch)} images; it must return one each."
        )
    for index, row in enumerate(rows):
        if not math.isfinite(row.score):
            raise OviBenchError(
                f"metric '{name}' scored the image of prompt {batch[index].prompt!r} as {row.score}; scores must be "
                "finite numbers. The metric's model may be corrupt or overflowing in its dtype."
            )
    return list(rows)
