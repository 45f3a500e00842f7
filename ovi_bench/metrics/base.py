"""The metric seam: a thin model wrapper around a pure scoring rule in `metrics/functional/`."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from PIL import Image

from ovi_bench.components import Component, Params


@dataclass(frozen=True)
class ScoreInput:
    image: Image.Image
    prompt: str
    category: str


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
