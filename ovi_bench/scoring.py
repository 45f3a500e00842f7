"""Running metrics, in one place for every caller (the runner, the audits, the preflight's view of the caches).

A metric's `kind` says how it runs: an "image" metric scores (image, prompt) pairs into its score cache, keyed by
image content, prompt and category, so that a score is computed once whoever asks for it (the run, or an audit
scoring an image against another prompt); a "derived" metric combines other metrics' scores of each image; a "set"
metric extracts per-image features into a cache shared by every metric on the same extractor, then compares each
set of images with its reference set.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from PIL import Image, UnidentifiedImageError
from rich.markup import escape

from ovi_bench.caches import FeatureCache, RowCache
from ovi_bench.components import RunData, build_component, free_memory
from ovi_bench.errors import OviBenchError
from ovi_bench.io import sha256_bytes
from ovi_bench.metrics.base import (
    DerivedMetric,
    Metric,
    MetricKind,
    ScoreInput,
    SetMetric,
    check_metric_output,
)
from ovi_bench.plan import WorkItem, metric_applies, metric_fingerprint
from ovi_bench.progress import Reporter
from ovi_bench.registry import METRICS
from ovi_bench.spec import MetricSpec, RunSpec
from ovi_bench.store import RunStore

T = TypeVar("T")


def batched(values: Sequence[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def metric_kind(metric_spec: MetricSpec) -> MetricKind:
    """ "image", "derived" or "set": how the metric runs (`Metric.kind`)."""
    return METRICS.get(metric_spec.name).kind


def score_cache_path(output_dir: Path, spec: RunSpec, metric_spec: MetricSpec, run_data: RunData) -> Path:
    """The file of an image metric's cached scores in a run folder: one per metric fingerprint."""
    return output_dir / "scores" / f"{metric_fingerprint(spec, metric_spec, run_data)}.jsonl"


@dataclass(frozen=True)
class ScoreRequest:
    """One (image, prompt) pair for an image metric: an image of the run, or an audit's shuffled or canary pair."""

    cache_key: str
    """`RowCache.score_key` of the image's content, the prompt and the category."""
    image: Callable[[], Image.Image | None]
    """Reads the image; None when it is corrupt (the store has dropped it)."""
    prompt: str
    category: str
    subset: str | None


class ScoringCounts(Protocol):
    """Where a `Scorer` counts what it computed and found cached (the run's `RunCounts`)."""

    scores_computed: int
    """Per-image scores of the run's own images (not the audits' pairs)."""
    features_computed: int
    features_reused: int


class Scorer:
    """Runs the spec's metrics on the images of one run folder's store."""

    def __init__(
        self,
        spec: RunSpec,
        store: RunStore,
        *,
        device: torch.device,
        dtype: torch.dtype,
        run_data: RunData,
        counts: ScoringCounts,
        writer: str = "",
        report: Reporter,
    ) -> None:
        """`writer`: this process's suffix for the files it appends to (`Shard.writer`); `report` shows the
        progress bars and lines as the caller wants them (or not)."""
        self.spec = spec
        self.store = store
        self.device = device
        self.dtype = dtype
        self.run_data = run_data
        self.writer = writer
        self.report = report
        self.counts = counts

    @functools.cached_property
    def spec_fingerprint(self) -> str:
        """Computed once: every result row carries it, and a 24,000-image run has hundreds of thousands of rows."""
        return self.spec.fingerprint()

    def build(self, metric_spec: MetricSpec) -> Any:
        return build_component(
            METRICS.get(metric_spec.name),
            metric_spec.params,
            device=self.device,
            dtype=self.dtype,
            run_data=self.run_data,
        )

    def score_cache(self, metric_spec: MetricSpec) -> RowCache:
        return RowCache(score_cache_path(self.store.root, self.spec, metric_spec, self.run_data), self.writer)

    def applicable(self, metric_spec: MetricSpec, items: Sequence[WorkItem]) -> list[WorkItem]:
        """The stored images of `items` that the metric scores."""
        records = self.store.manifest
        return [
            item
            for item in items
            if item.image_key in records and metric_applies(metric_spec, item.prompt.category)
        ]

    def load_image(self, item: WorkItem) -> Image.Image | None:
        """Read an image and check it against its manifest hash; a corrupt one is dropped from the store."""
        record = self.store.manifest[item.image_key]
        try:
            data = self.store.read_image_bytes(item.image_key)
            if sha256_bytes(data) != record.sha256:
                raise ValueError("content hash differs from the manifest")
            image = Image.open(io.BytesIO(data))
            image.load()
            return image.convert("RGB")
        except (OSError, ValueError, UnidentifiedImageError):
            self.store.forget_image(item.image_key)
            return None

    def result_row(
        self, metric: str, item: WorkItem, score: float, reason: str, image: str
    ) -> dict[str, Any]:
        return {
            "prior": item.prior,
            "decoder": item.decoder,
            "category": item.prompt.category,
            "metric": metric,
            "prompt_id": item.prompt.id,
            "prompt": item.prompt.text,
            "seed": item.seed,
            "score": score,
            "reason": reason,
            "image": image,
            "spec_fingerprint": self.spec_fingerprint,
        }

    # -- per-image metrics --------------------------------------------------------------------------------------

    def score_requests(
        self, metric_spec: MetricSpec, requests: Sequence[ScoreRequest], cache: RowCache, *, task: str
    ) -> tuple[int, list[ScoreRequest]]:
        """Score the requests `cache` lacks with the metric's model, loaded only if there are some; return how many
        were scored and the requests whose image could not be read. `task` labels the progress bar."""
        todo = [request for request in requests if request.cache_key not in cache.rows]
        unreadable: list[ScoreRequest] = []
        if not todo:
            return 0, unreadable
        self.report.say(f"loading metric [bold]{escape(metric_spec.name)}[/]")
        metric: Metric = self.build(metric_spec)
        computed = 0
        with self.report.bars() as progress, cache.grouped_commits():
            bar = progress.add_task(f"{task} {escape(metric_spec.name)}", total=len(todo))
            for batch in batched(todo, self.spec.metric_batch_size):
                loaded = [(request, request.image()) for request in batch]
                unreadable += [request for request, image in loaded if image is None]
                valid = [(request, image) for request, image in loaded if image is not None]
                inputs = [
                    ScoreInput(image, request.prompt, request.category, request.subset)
                    for request, image in valid
                ]
                scored = check_metric_output(metric_spec.name, inputs, metric.score(inputs))
                cache.add(
                    [
                        {"key": request.cache_key, "score": row.score, "reason": row.reason, **row.extras}
                        for (request, _), row in zip(valid, scored, strict=True)
                    ]
                )
                computed += len(valid)
                progress.advance(bar, len(batch))
        del metric
        free_memory()
        return computed, unreadable

    def score_images(
        self, metric_spec: MetricSpec, items: Sequence[WorkItem], corrupt: set[str]
    ) -> list[dict[str, Any]]:
        """The metric's score rows of the run's images it applies to, computing those its cache lacks; adds the
        keys of the corrupt images found to `corrupt`."""
        cache = self.score_cache(metric_spec)
        records = self.store.manifest
        # Scores are cached by image content, so a regenerated (different) image is never served an old score.
        requests = [
            (
                item,
                ScoreRequest(
                    RowCache.score_key(
                        records[item.image_key].sha256, item.prompt.text, item.prompt.category
                    ),
                    functools.partial(self.load_image, item),
                    item.prompt.text,
                    item.prompt.category,
                    item.prompt.subset,
                ),
            )
            for item in self.applicable(metric_spec, items)
            if item.image_key not in corrupt
        ]
        computed, unreadable = self.score_requests(
            metric_spec, [request for _, request in requests], cache, task="score"
        )
        self.counts.scores_computed += computed
        unreadable_requests = {id(request) for request in unreadable}
        corrupt.update(item.image_key for item, request in requests if id(request) in unreadable_requests)
        return [
            self.result_row(
                metric_spec.name,
                item,
                cache.rows[request.cache_key]["score"],
                cache.rows[request.cache_key]["reason"],
                records[item.image_key].path,
            )
            for item, request in requests
            if item.image_key not in corrupt
        ]

    # -- derived metrics ----------------------------------------------------------------------------------------

    def derive(
        self,
        metric_spec: MetricSpec,
        items: Sequence[WorkItem],
        rows: Sequence[dict[str, Any]],
        corrupt: set[str],
    ) -> list[dict[str, Any]]:
        """The derived metric's rows, combined per image from `rows` (the other metrics' score rows)."""
        metric: DerivedMetric = self.build(metric_spec)
        scores: dict[tuple[str, str], float] = {(row["image"], row["metric"]): row["score"] for row in rows}
        derived = []
        for item in self.applicable(metric_spec, items):
            if item.image_key in corrupt:
                continue
            image = self.store.manifest[item.image_key].path
            inputs = {name: scores.get((image, name)) for name in metric.inputs}
            missing = [name for name, value in inputs.items() if value is None]
            if missing:
                raise OviBenchError(
                    f"metric '{metric_spec.name}' needs the {', '.join(missing)} score(s) of {item.prompt.category} "
                    f"images; add those metrics to [[metrics]] without excluding the '{item.prompt.category}' category."
                )
            row = metric.combine(item.prompt.category, item.prompt.subset, inputs)  # type: ignore[arg-type]
            derived.append(self.result_row(metric_spec.name, item, row.score, row.reason, image))
        return derived

    def score_per_image(self, items: Sequence[WorkItem]) -> tuple[list[dict[str, Any]], set[str]]:
        """Every image scored by every applicable image metric, then the derived metrics (3-in-1) combined from
        those scores; returns the rows and the keys of corrupt images."""
        rows: list[dict[str, Any]] = []
        corrupt: set[str] = set()
        for metric_spec in self.spec.metrics:
            if metric_kind(metric_spec) == "image":
                rows += self.score_images(metric_spec, items, corrupt)
        for metric_spec in self.spec.metrics:
            if metric_kind(metric_spec) == "derived":
                rows += self.derive(metric_spec, items, rows, corrupt)
        return rows, corrupt

    # -- set metrics --------------------------------------------------------------------------------------------

    def extract_features(
        self, metric_spec: MetricSpec, metric: SetMetric, items: Sequence[WorkItem]
    ) -> FeatureCache:
        """The per-image features of the stored images of `items` that the metric applies to, computing only those
        the cache lacks. The metric loads its extractor on the first `features` call: a cached run never does."""
        applicable = self.applicable(metric_spec, items)
        records = self.store.manifest
        cache = FeatureCache(self.store.root / "features" / metric.extractor_fingerprint())
        # Features are cached by image content: a regenerated (different) image is never served old features.
        todo = list(
            {
                records[item.image_key].sha256: item
                for item in applicable
                if records[item.image_key].sha256 not in cache.features
            }.values()
        )
        self.counts.features_reused += len(applicable) - len(todo)
        if todo:
            self.report.say(
                f"extracting [bold]{escape(metric_spec.name)}[/] features ({escape(metric.feature_space)})"
            )
            with self.report.bars() as progress:
                bar = progress.add_task(f"features {escape(metric_spec.name)}", total=len(todo))
                for batch in batched(todo, self.spec.metric_batch_size):
                    loaded = [(item, self.load_image(item)) for item in batch]
                    valid = [(item, image) for item, image in loaded if image is not None]
                    if valid:
                        features = metric.features([image for _, image in valid])
                        cache.add([records[item.image_key].sha256 for item, _ in valid], features)
                        self.counts.features_computed += len(valid)
                    progress.advance(bar, len(batch))
        return cache

    def extract_set_features(self, items: Sequence[WorkItem]) -> None:
        """The features of every set metric for `items` into the shared cache (a shard's share of a launch)."""
        for metric_spec in self.spec.metrics:
            if metric_kind(metric_spec) == "set":
                metric: SetMetric = self.build(metric_spec)
                self.extract_features(metric_spec, metric, items)
                del metric

    def score_sets(self, items: Sequence[WorkItem]) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        """Set-level metrics, after the per-image ones: one value per prior × decoder × category and per prior ×
        decoder ("all"), and each metric's provenance for the result files."""
        rows: list[dict[str, Any]] = []
        provenance: dict[str, dict[str, Any]] = {}
        for metric_spec in self.spec.metrics:
            if metric_kind(metric_spec) == "set":
                metric_rows, provenance[metric_spec.name] = self.score_set(metric_spec, items)
                rows += metric_rows
        return rows, provenance

    def score_set(
        self, metric_spec: MetricSpec, items: Sequence[WorkItem]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        metric: SetMetric = self.build(metric_spec)
        records = self.store.manifest
        cache = self.extract_features(metric_spec, metric, items)
        reference = metric.reference_features()
        name = metric.leaderboard_name(metric_spec.name)
        groups: dict[tuple[str, str, str], list[WorkItem]] = {}
        for item in self.applicable(metric_spec, items):  # without the images found corrupt meanwhile
            if records[item.image_key].sha256 in cache.features:
                groups.setdefault((item.prior, item.decoder, item.prompt.category), []).append(item)
                groups.setdefault((item.prior, item.decoder, "all"), []).append(item)
        rows = []
        for (prior, decoder, category), members in groups.items():
            details: dict[str, Any] = {}
            value: float | None = None
            if len(members) < 2:
                details["warning"] = (
                    f"{len(members)} image(s): a set distance needs at least 2 (the covariance of one sample is "
                    "undefined); generate more images per prompt"
                )
            else:
                generated = torch.stack([cache.features[records[item.image_key].sha256] for item in members])
                score = metric.compare(generated, reference)
                value, details = score.value, dict(score.details)
            rows.append(
                {
                    "prior": prior,
                    "decoder": decoder,
                    "category": category,
                    "metric": name,
                    "value": value,
                    "n_generated": len(members),
                    "n_prompts": len({item.prompt.id for item in members}),
                    "n_reference": int(reference.shape[0]),
                    "feature_space": metric.feature_space,
                    "details": details,
                }
            )
        provenance = metric.provenance(metric_spec.name, int(reference.shape[0]))
        del metric
        free_memory()
        return rows, provenance
