"""The metric seam: a thin model wrapper around a pure scoring rule in `metrics/functional/`.

Each metric class describes itself, so that the code that runs metrics (`ovi_bench.scoring`) never branches on
classes: its `kind` says how it is executed (per image, derived from other scores, or per set of images), its
`run_context` (`Component.run_context`) what it takes from the run besides its parameters, and a set metric's
`provenance` what the result files record about it.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ovi_bench.components import Component, Params
from ovi_bench.errors import OviBenchError
from ovi_bench.io import atomic_write_bytes, canonical_json, sha256_text
from ovi_bench.paths import cache_dir
from ovi_bench.text import short_repr


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


MetricKind = Literal["image", "derived", "set"]


class Metric(Component, abc.ABC):
    """Scores images against their prompts. Subclasses set the class attributes below."""

    categories: ClassVar[tuple[str, ...] | None] = None
    """Categories the metric applies to; None means every category."""
    higher_is_better: ClassVar[bool] = True
    kind: ClassVar[MetricKind] = "image"
    """How a run executes it: "image" (`score`, cached per image), "derived" (`DerivedMetric.combine` of other
    metrics' scores of the same image, recomputed every run) or "set" (`SetMetric.features` per image, cached, then
    `SetMetric.compare` per set of images)."""

    def __init__(self, params: Params, *, device: torch.device, dtype: torch.dtype) -> None:
        self.params = params
        self.device = device
        self.dtype = dtype

    @classmethod
    def applies_to(cls, category: str, narrowed_to: Sequence[str] | None = None) -> bool:
        """Whether the metric scores images of `category`: its own `categories`, narrowed by the run spec's
        `categories` for it (`narrowed_to`, None: not narrowed)."""
        return (cls.categories is None or category in cls.categories) and (
            narrowed_to is None or category in narrowed_to
        )

    @abc.abstractmethod
    def score(self, batch: Sequence[ScoreInput]) -> list[ScoreRow]:
        """One row per input, in order. A row's score must not depend on the rest of the batch."""


class DerivedMetric(Metric):
    """A metric computed from other metrics' scores of the same image, with no model of its own.

    The runner scores the `inputs` metrics first (they must be in the run spec) and calls `combine` per image.
    """

    kind: ClassVar[MetricKind] = "derived"
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
                f"metric '{name}' scored the image of prompt {short_repr(batch[index].prompt)} as {row.score}; scores must be "
                "finite numbers. The metric's model may be corrupt or overflowing in its dtype."
            )
    return list(rows)


# ---------------------------------------------------------------------------------------------------------------------
# Set-level metrics: one number for a whole set of images against a reference set (FID, KID, CMMD).


@dataclass(frozen=True)
class SetScore:
    value: float
    details: dict[str, Any] = field(default_factory=dict)
    """JSON-able facts about the value (e.g. KID's std over subsets), written to set_scores.csv and results.json."""


class SetMetric(Metric):
    """Compares the features of a set of generated images with those of a reference set of real images.

    The runner calls `features` on batches of generated images (and caches them per image content under the run
    folder, keyed by `extractor_fingerprint`), `reference_features` once, and `compare` once per set. Subclasses
    implement `features`, `extractor_fingerprint`, `reference_identity`, `reference_image_paths` and `compare`.
    """

    kind: ClassVar[MetricKind] = "set"
    reference_batch_size: ClassVar[int] = 32

    def __init__(self, params: Params, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(params, device=device, dtype=dtype)
        self.reference_features_computed = 0
        """How many reference images this instance ran through the extractor (0 when the disk cache served them)."""

    def score(self, batch: Sequence[ScoreInput]) -> list[ScoreRow]:
        raise TypeError(
            f"{type(self).__name__} scores a whole set of images, not one image: the runner calls `features` and "
            "`compare` instead."
        )

    @property
    @abc.abstractmethod
    def feature_space(self) -> str:
        """A short label of the feature space (e.g. "clip-vit-l-14"); numbers are comparable only within one."""

    @abc.abstractmethod
    def extractor_fingerprint(self) -> str:
        """Changes whenever `features` could return other values for the same image (model, resize, dtype, version).

        Not the metric's fingerprint: FID and KID on the same extractor share cached features."""

    @abc.abstractmethod
    def features(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """[B, F] float32 CPU features, one row per image; a row must not depend on the rest of the batch."""

    @abc.abstractmethod
    def reference_identity(self) -> str:
        """Changes whenever the reference images do (their names, sizes and mtimes, or a bank's digest)."""

    @abc.abstractmethod
    def reference_image_paths(self) -> list[Path]:
        """The reference images, in a fixed order."""

    @abc.abstractmethod
    def compare(self, generated: torch.Tensor, reference: torch.Tensor) -> SetScore:
        """The metric's value for generated features [N, F] against reference features [M, F]."""

    def leaderboard_name(self, name: str) -> str:
        """The row name of the metric registered as `name`: its feature space in brackets (`fid[clip-vit-l-14]`), as
        numbers are comparable only within one."""
        return f"{name}[{self.feature_space}]"

    def provenance(self, name: str, reference_count: int) -> dict[str, Any]:
        """What the result files record about the metric registered as `name`, compared with `reference_count`
        reference images: its feature space and extractor, the reference set and, where the metric has these
        parameters, its resize policy and reference folder."""
        settings = self.params.model_dump(mode="json")
        return {
            "leaderboard_name": self.leaderboard_name(name),
            "feature_space": self.feature_space,
            "extractor_fingerprint": self.extractor_fingerprint(),
            "resize": settings.get("resize"),
            "reference": settings.get("reference"),
            "reference_identity": self.reference_identity(),
            "n_reference": reference_count,
            "higher_is_better": self.higher_is_better,
        }

    def reference_cache_path(self) -> Path:
        key = sha256_text(canonical_json([self.reference_identity(), self.extractor_fingerprint()]))
        return cache_dir() / "reference-features" / f"{key}.safetensors"

    def reference_features(self) -> torch.Tensor:
        """The reference set's features, computed once per reference set and extractor and kept on disk."""
        path = self.reference_cache_path()
        if path.is_file():
            try:
                cached = load_file(str(path))["features"]
                if cached.ndim == 2 and bool(cached.isfinite().all()):
                    return cached
            except (SafetensorError, KeyError, OSError, ValueError):
                pass  # a corrupt cache file is recomputed and replaced below
        paths = self.reference_image_paths()
        rows = []
        for start in range(0, len(paths), self.reference_batch_size):
            images = []
            for image_path in paths[start : start + self.reference_batch_size]:
                try:
                    with Image.open(image_path) as image:
                        images.append(image.convert("RGB"))
                except (OSError, ValueError) as error:
                    raise OviBenchError(
                        f"cannot read the reference image {image_path}: {error}. Remove it from the reference folder "
                        "or replace it with a readable copy."
                    ) from error
            rows.append(self.features(images).to("cpu", torch.float32))
            self.reference_features_computed += len(images)
        features = torch.cat(rows).contiguous()
        atomic_write_bytes(path, save({"features": features}, metadata={"images": str(len(paths))}))
        return features
