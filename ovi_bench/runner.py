"""Plan a run into work items, then embed, decode and score whatever the store does not already hold.

Each stage reads what the previous one stored, so a killed run resumes where it stopped, and a finished run
re-run into the same folder computes nothing.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import io
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from PIL import Image, UnidentifiedImageError
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from ovi_bench.audits import run_audits
from ovi_bench.bank.folder import EmbeddingBank
from ovi_bench.bank.tiny import resolve_bank
from ovi_bench.caches import FeatureCache, RowCache
from ovi_bench.components import DTYPES, resolve_device
from ovi_bench.decoders.base import Decoder
from ovi_bench.diagnostics import EmbeddingDiagnostics
from ovi_bench.errors import DataError, OviBenchError
from ovi_bench.interrupts import stop_signals_raise
from ovi_bench.io import atomic_write_text, canonical_json, sha256_bytes
from ovi_bench.metrics.base import DerivedMetric, Metric, ScoreInput, SetMetric, check_metric_output
from ovi_bench.models.hub import remote_code_policy
from ovi_bench.paths import expand_user
from ovi_bench.plan import (
    WorkItem,
    load_run_prompts,
    metric_fingerprint,
    plan,
)
from ovi_bench.priors.base import Prior, check_prior_output
from ovi_bench.progress import progress_bar
from ovi_bench.prompts import COMPBENCH_DIR_ENV
from ovi_bench.provenance import RunCounts, RunResult
from ovi_bench.registry import DECODERS, METRICS, PRIORS
from ovi_bench.run_folder import claim_run_folder, prepare_output_folder, remove_if_untouched
from ovi_bench.sharding import Shard
from ovi_bench.spec import MetricSpec, RunSpec
from ovi_bench.store import RunStore, item_key

T = TypeVar("T")


def batched(values: Sequence[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def seeded_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per sample: results do not depend on the batch, the device or the batch size."""
    return [torch.Generator("cpu").manual_seed(seed) for seed in seeds]


def free_memory() -> None:
    """Return a released model's memory now, before the next model is loaded (callers `del` their reference)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Runner:
    """Executes one run spec into one output folder."""

    def __init__(
        self,
        spec: RunSpec,
        output_dir: str | Path | None = None,
        *,
        data_dir: str | Path | None = None,
        console: Console | None = None,
        show_progress: bool = True,
        shard: Shard | None = None,
        verify: bool = False,
    ) -> None:
        """`shard`: this process's share of a multi-process launch (default: from the launcher's environment, see
        `Shard.from_environment`; a single process does everything). `verify`: re-hash every stored artifact first
        and make again what differs (`RunStore.verify`)."""
        self.spec = spec
        self.output_dir = expand_user(output_dir or spec.output_dir)
        self.data_dir = data_dir
        self.console = console or Console(stderr=True)
        device = spec.device
        if shard is None:
            shard, device = Shard.from_environment(spec.device)
        self.shard = shard
        # One set of progress bars per launch: the other processes' bars would overwrite the main one's.
        self.show_progress = show_progress and shard.is_main
        self.quiet = not show_progress
        self.device = resolve_device(device)
        self.dtype = DTYPES[spec.dtype]
        if self.device.type == "cpu" and self.dtype != torch.float32:
            raise OviBenchError(
                f'dtype {spec.dtype} on the CPU is very slow and poorly supported; set dtype = "float32" '
                'or run on a GPU (device = "cuda").'
            )
        self.store = RunStore(self.output_dir, shard.writer)
        self.verify = verify
        self._folder_claims = contextlib.ExitStack()
        self._folder_claim_depth = 0
        self.counts = RunCounts()
        official_data = data_dir or spec.prompts.data_dir
        if official_data:
            # Metrics read other official data files (the numeracy lexicon) through the same lookup as the prompts.
            os.environ[COMPBENCH_DIR_ENV] = str(expand_user(official_data))

    # -- progress -----------------------------------------------------------------------------------------------

    def _progress(self) -> Progress:
        return progress_bar(self.console, show=self.show_progress)

    def _say(self, message: str) -> None:
        if self.show_progress:
            self.console.print(message, soft_wrap=True)

    def _tell(self, message: str) -> None:
        """A line from every process of a launch (shard progress), unless quiet."""
        if not self.quiet:
            self.console.print(message, soft_wrap=True, highlight=False)

    # -- stages -------------------------------------------------------------------------------------------------

    def run(self) -> RunResult | None:
        """Everything the spec asks for; in a multi-process launch, this process's share first, and then (main
        process only, once every share is done) the results over all items. Other processes return None.

        Models may run code from their repositories only when the spec says `trust_remote_code = true`. First the
        preflight (`ovi_bench.preflight`): a model or file the run needs and cannot get fails here, before any work."""
        from ovi_bench.preflight import checked_run  # it plans with this module's functions

        with (
            remote_code_policy(self.spec.trust_remote_code),
            stop_signals_raise(),
            self.folder_lock(),
            checked_run(self),
        ):
            return self._run()

    @contextlib.contextmanager
    def folder_lock(self) -> Iterator[None]:
        """Hold the run folder for this process (`ovi_bench.run_folder`): created or checked, locked against a
        second run, cleared of the temporary files a killed run left. Re-entrant: the command holds it over `run`
        and the writing of the result files."""
        if not self._folder_claim_depth:
            if prepare_output_folder(self.output_dir):
                # Runs after the lock is released: a folder this run made and never wrote to is taken away again.
                self._folder_claims.callback(remove_if_untouched, self.output_dir)
            self._folder_claims.enter_context(
                claim_run_folder(self.output_dir, self.shard.writer, alone=self.shard.count == 1)
            )
        self._folder_claim_depth += 1
        try:
            yield
        finally:
            self._folder_claim_depth -= 1
            if not self._folder_claim_depth:
                self._folder_claims.close()

    def _run(self) -> RunResult | None:
        started = time.perf_counter()
        prompt_set = load_run_prompts(self.spec, self.data_dir)
        items = plan(self.spec, prompt_set)
        if self.verify and self.shard.is_main:  # one process re-hashes the shared store
            for line in self.store.verify().lines():
                self._tell(line)
        fingerprint = self.spec.fingerprint()
        if self.shard.is_main:
            atomic_write_text(
                self.output_dir / "run.json",
                canonical_json({"fingerprint": fingerprint, "spec": self.spec.model_dump(mode="json")}),
            )
        self._say(
            f"[bold]{escape(self.spec.name)}[/]: {len(self.spec.priors)} prior(s) × {len(prompt_set.prompts)} prompts × "
            f"{self.spec.images_per_prompt} seed(s) = {len(items)} images → {escape(str(self.output_dir))}"
        )
        if self.shard.count > 1:
            self.run_share(items)
            if not self.shard.is_main:
                return None
            self.shard.wait_for_others(self.output_dir, fingerprint, say=self._say)
            self.store.reload()  # the other processes' images
        rows = self.generate_and_score(items)
        set_rows, set_metrics = self.score_sets(items)
        audit_rows = run_audits(self, items, rows)
        embedding_rows = self.describe_embeddings(items)
        self.counts.images_reused = len(items) - self.counts.images_generated
        # Derived scores (3-in-1) are recomputed from the others on every run; only model scores are cached.
        derived = {
            spec.name for spec in self.spec.metrics if issubclass(METRICS.get(spec.name), DerivedMetric)
        }
        model_rows = sum(row["metric"] not in derived for row in rows)
        self.counts.scores_reused = model_rows - self.counts.scores_computed
        self._say(
            f"generated {self.counts.images_generated} image(s) ({self.counts.images_reused} already in the store), "
            f"computed {self.counts.scores_computed} score(s) ({self.counts.scores_reused} cached) "
            f"in {time.perf_counter() - started:.1f} s"
        )
        return RunResult(
            self.output_dir,
            self.spec,
            prompt_set,
            items,
            rows,
            embedding_rows,
            self.counts,
            str(self.device),
            set_rows,
            set_metrics,
            audit_rows,
        )

    def run_share(self, items: Sequence[WorkItem]) -> None:
        """This process's share of a multi-process launch: its images, their per-image scores, set-metric features
        and diagnostics, all into the shared store; then the marker that says so. Audits and set-metric values need
        every image: the main process computes them after the merge."""
        shard = self.shard
        mine = [item for item in items if shard.owns(item.prior, item.prompt.id, item.seed)]
        self.console.print(
            f"shard {shard.index} of {shard.count}: {len(mine)} of {len(items)} images", soft_wrap=True
        )
        self.generate_and_score(mine)
        for metric_spec in self.spec.metrics:
            if _is_set_metric(metric_spec):
                metric = self._set_metric(metric_spec)
                self._extract_features(metric_spec, metric, self._set_metric_items(metric_spec, mine))
                del metric
        self.describe_embeddings(mine)
        shard.mark_done(self.output_dir, self.spec.fingerprint(), len(mine))
        self._tell(
            f"shard {shard.index} of {shard.count} done: generated {self.counts.images_generated} image(s), "
            f"computed {self.counts.scores_computed} score(s)"
        )

    def generate_and_score(self, items: Sequence[WorkItem]) -> list[dict[str, Any]]:
        """Make the images the store lacks, then score every image; corrupt images found on the way are made again."""
        # An image found corrupt while scoring is dropped and made again; twice in a row means something is wrong.
        for _attempt in range(3):
            missing = [item for item in items if not self.store.has_image(item.image_key)]
            if missing:
                self.embed(missing)
                self.decode(missing)
                if not all(self.store.has_image(item.image_key) for item in missing):
                    continue  # an embedding read back corrupt and was removed: the next pass makes it again
            rows, corrupt = self.score(items)
            if not corrupt:
                return rows
            self.counts.images_regenerated_corrupt += len(corrupt)
            self._say(f"[yellow]{len(corrupt)} stored image(s) were corrupt and will be generated again[/]")
        raise DataError(f"images in {self.output_dir / 'images'} keep reading back corrupt; check the disk.")

    def embed(self, items: Sequence[WorkItem]) -> None:
        """Compute the embeddings the missing images need, loading each prior once and only when needed."""
        for prior_spec in self.spec.priors:
            todo = [
                item
                for item in items
                if item.prior == prior_spec.display_name
                and not self.store.embedding_path(item.embedding_key).is_file()
            ]
            if not todo:
                continue
            self._say(f"loading prior [bold]{escape(prior_spec.display_name)}[/] ({escape(prior_spec.name)})")
            prior_class = PRIORS.get(prior_spec.name)
            prior: Prior = prior_class(
                prior_class.Params.model_validate(prior_spec.params), device=self.device, dtype=self.dtype
            )
            # Finished embeddings are committed in groups, and the last group even when a batch fails.
            with self._progress() as progress, self.store.grouped_commits():
                task = progress.add_task(f"embed {escape(prior_spec.display_name)}", total=len(todo))
                for batch in batched(todo, self.spec.prior_batch_size):
                    texts = [item.prompt.text for item in batch]
                    output = check_prior_output(
                        prior_spec.name, texts, prior.embed(texts, seeded_generators([i.seed for i in batch]))
                    )
                    for row, item in enumerate(batch):
                        self.store.put_embedding(
                            item.embedding_key,
                            output.image_embeds[row],
                            output.negative_image_embeds[row],
                            output.per_prompt[row] if output.per_prompt else {},
                        )
                    self.counts.embeddings_computed += len(batch)
                    progress.advance(task, len(batch))
            del prior
            free_memory()

    def decode(self, items: Sequence[WorkItem]) -> None:
        decoder_spec = self.spec.decoder
        self._say(f"loading decoder [bold]{decoder_spec.name}[/]")
        decoder_class = DECODERS.get(decoder_spec.name)
        decoder: Decoder = decoder_class(
            decoder_class.Params.model_validate(decoder_spec.params), device=self.device, dtype=self.dtype
        )
        with self._progress() as progress, self.store.grouped_commits():
            task = progress.add_task("decode", total=len(items))
            for batch in batched(items, self.spec.decoder_batch_size):
                pairs = [self.store.get_embedding(item.embedding_key) for item in batch]
                # An unreadable embedding was removed by the store; the next generation pass recomputes it.
                ready = [(item, pair) for item, pair in zip(batch, pairs, strict=True) if pair is not None]
                if ready:
                    images = decoder.decode(
                        torch.stack([pair[0] for _, pair in ready]),
                        torch.stack([pair[1] for _, pair in ready]),
                        seeded_generators([item.seed for item, _ in ready]),
                        height=decoder_spec.height,
                        width=decoder_spec.width,
                        steps=decoder_spec.steps,
                        guidance=decoder_spec.guidance,
                    )
                    self.store.put_images(
                        [
                            (item.image_key, _png_bytes(image), _image_metadata(item))
                            for (item, _), image in zip(ready, images, strict=True)
                        ]
                    )
                    self.counts.images_generated += len(ready)
                progress.advance(task, len(batch))
        del decoder
        free_memory()

    def describe_embeddings(self, items: Sequence[WorkItem]) -> list[dict[str, Any]]:
        """Per embedding: the prior's facts (e.g. optimisation steps) and the diagnostics, cached like scores."""
        # An embedding file deleted (or removed as damaged) after its image was made: its facts are computed again,
        # never left out of embeddings.csv.
        unreadable = [item for item in items if self.store.embedding_facts(item.embedding_key) is None]
        if unreadable:
            self._say(
                f"{len(unreadable)} embedding(s) missing from the store: computing them again for their facts"
            )
            for item in unreadable:
                self.store.embedding_path(item.embedding_key).unlink(missing_ok=True)
            self.embed(unreadable)
        diagnostics = self.spec.diagnostics
        cache = None
        if diagnostics is not None:
            bank_digest = (
                EmbeddingBank.load(resolve_bank(diagnostics.bank)).info.digest if diagnostics.bank else None
            )
            key = item_key("diagnostics", diagnostics.model, bank_digest, self.spec.dtype)
            cache = RowCache(self.output_dir / "diagnostics" / f"{key}.jsonl", self.shard.writer)
            self._diagnose([item for item in items if item.embedding_key not in cache.rows], cache)
        rows = []
        for item in items:
            row: dict[str, Any] = {
                "prior": item.prior,
                "category": item.prompt.category,
                "prompt_id": item.prompt.id,
                "prompt": item.prompt.text,
                "seed": item.seed,
            }
            if cache is not None:
                row |= {
                    name: value
                    for name, value in cache.rows.get(item.embedding_key, {}).items()
                    if name != "key"
                }
            facts = self.store.embedding_facts(item.embedding_key)
            if facts is None:
                raise DataError(
                    f"the embedding of {item.prior} for prompt {item.prompt.id} seed {item.seed} cannot be read back "
                    f"from {self.store.embedding_path(item.embedding_key)} after it was computed again; check the disk."
                )
            row |= {f"prior_{name}": value for name, value in facts.items()}
            rows.append(row)
        return rows

    def _diagnose(self, items: Sequence[WorkItem], cache: RowCache) -> None:
        available = [item for item in items if self.store.embedding_path(item.embedding_key).is_file()]
        if not available:
            return
        diagnostics = self.spec.diagnostics
        assert diagnostics is not None
        self._say("computing embedding diagnostics")
        diagnose = EmbeddingDiagnostics(
            diagnostics.model, diagnostics.bank, device=self.device, dtype=self.dtype
        )
        with self._progress() as progress, cache.grouped_commits():
            task = progress.add_task("diagnose", total=len(available))
            for batch in batched(available, self.spec.prior_batch_size):
                pairs = [(item, self.store.get_embedding(item.embedding_key)) for item in batch]
                readable = [(item, pair[0]) for item, pair in pairs if pair is not None]
                if readable:
                    values = diagnose(
                        torch.stack([embeds for _, embeds in readable]),
                        [item.prompt.text for item, _ in readable],
                    )
                    cache.add(
                        [
                            {"key": item.embedding_key, **row}
                            for (item, _), row in zip(readable, values, strict=True)
                        ]
                    )
                    self.counts.diagnostics_computed += len(readable)
                progress.advance(task, len(batch))
        del diagnose
        free_memory()

    def score(self, items: Sequence[WorkItem]) -> tuple[list[dict[str, Any]], set[str]]:
        """Score every image with every applicable metric; return the rows and the keys of corrupt images.

        Metrics with a model come first; derived metrics (3-in-1) then combine their scores per image.
        """
        rows: list[dict[str, Any]] = []
        corrupt: set[str] = set()
        derived = [spec for spec in self.spec.metrics if issubclass(METRICS.get(spec.name), DerivedMetric)]
        for metric_spec in self.spec.metrics:
            if metric_spec not in derived and not _is_set_metric(metric_spec):
                rows += self._score_metric(metric_spec, items, corrupt)
        for metric_spec in derived:
            rows += self._derive_metric(metric_spec, items, rows, corrupt)
        return rows, corrupt

    def _applies(self, metric_spec: MetricSpec, item: WorkItem) -> bool:
        categories = METRICS.get(metric_spec.name).categories
        return (categories is None or item.prompt.category in categories) and (
            metric_spec.categories is None or item.prompt.category in metric_spec.categories
        )

    def _derive_metric(
        self,
        metric_spec: MetricSpec,
        items: Sequence[WorkItem],
        rows: list[dict[str, Any]],
        corrupt: set[str],
    ) -> list[dict[str, Any]]:
        metric_class = METRICS.get(metric_spec.name)
        metric: DerivedMetric = metric_class(
            metric_class.Params.model_validate(metric_spec.params), device=self.device, dtype=self.dtype
        )
        scores: dict[tuple[str, str], float] = {(row["image"], row["metric"]): row["score"] for row in rows}
        derived = []
        for item in items:
            record = self.store.manifest.get(item.image_key)
            if record is None or item.image_key in corrupt or not self._applies(metric_spec, item):
                continue
            inputs = {name: scores.get((record.path, name)) for name in metric.inputs}
            missing = [name for name, value in inputs.items() if value is None]
            if missing:
                raise OviBenchError(
                    f"metric '{metric_spec.name}' needs the {', '.join(missing)} score(s) of {item.prompt.category} "
                    f"images; add those metrics to [[metrics]] without excluding the '{item.prompt.category}' category."
                )
            row = metric.combine(item.prompt.category, item.prompt.subset, inputs)
            derived.append(self._result_row(metric_spec.name, item, row.score, row.reason, record.path))
        return derived

    @functools.cached_property
    def spec_fingerprint(self) -> str:
        """The spec's fingerprint, computed once: every result row carries it, and a 24,000-image run has
        hundreds of thousands of rows."""
        return self.spec.fingerprint()

    def _result_row(
        self, metric: str, item: WorkItem, score: float, reason: str, image: str
    ) -> dict[str, Any]:
        return {
            "prior": item.prior,
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

    def _score_metric(
        self, metric_spec: MetricSpec, items: Sequence[WorkItem], corrupt: set[str]
    ) -> list[dict[str, Any]]:
        """Score the images this metric applies to, loading it only if some score is not cached yet."""
        metric_class = METRICS.get(metric_spec.name)
        cache = RowCache(
            self.output_dir / "scores" / f"{metric_fingerprint(self.spec, metric_spec)}.jsonl",
            self.shard.writer,
        )
        records = self.store.manifest
        # Scores are cached by image content, so a regenerated (different) image is never served an old score.
        score_keys = {
            item.image_key: RowCache.score_key(
                records[item.image_key].sha256, item.prompt.text, item.prompt.category
            )
            for item in items
            if item.image_key in records
            and item.image_key not in corrupt
            and self._applies(metric_spec, item)
        }
        applicable = [item for item in items if item.image_key in score_keys]
        todo = [item for item in applicable if score_keys[item.image_key] not in cache.rows]
        if todo:
            self._say(f"loading metric [bold]{escape(metric_spec.name)}[/]")
            metric: Metric = metric_class(
                metric_class.Params.model_validate(metric_spec.params), device=self.device, dtype=self.dtype
            )
            with self._progress() as progress, cache.grouped_commits():
                task = progress.add_task(f"score {escape(metric_spec.name)}", total=len(todo))
                for batch in batched(todo, self.spec.metric_batch_size):
                    loaded = [(item, self.load_image(item)) for item in batch]
                    corrupt.update(item.image_key for item, image in loaded if image is None)
                    valid = [(item, image) for item, image in loaded if image is not None]
                    inputs = [
                        ScoreInput(image, item.prompt.text, item.prompt.category) for item, image in valid
                    ]
                    scored = check_metric_output(metric_spec.name, inputs, metric.score(inputs))
                    cache.add(
                        [
                            {
                                "key": score_keys[item.image_key],
                                "score": row.score,
                                "reason": row.reason,
                                **row.extras,
                            }
                            for (item, _), row in zip(valid, scored, strict=True)
                        ]
                    )
                    self.counts.scores_computed += len(valid)
                    progress.advance(task, len(batch))
            del metric
            free_memory()
        return [
            self._result_row(
                metric_spec.name,
                item,
                cache.rows[score_keys[item.image_key]]["score"],
                cache.rows[score_keys[item.image_key]]["reason"],
                records[item.image_key].path,
            )
            for item in applicable
            if item.image_key not in corrupt
        ]

    def score_sets(self, items: Sequence[WorkItem]) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        """Set-level metrics, after the per-image ones: one value per prior × category and per prior ("all")."""
        rows: list[dict[str, Any]] = []
        provenance: dict[str, dict[str, Any]] = {}
        for metric_spec in self.spec.metrics:
            if _is_set_metric(metric_spec):
                metric_rows, provenance[metric_spec.name] = self._score_set_metric(metric_spec, items)
                rows += metric_rows
        return rows, provenance

    def _set_metric(self, metric_spec: MetricSpec) -> SetMetric:
        metric_class = METRICS.get(metric_spec.name)
        # Cheap: the extractor is loaded on the first `features` call, so a fully cached run never loads it.
        return metric_class(
            metric_class.Params.model_validate(metric_spec.params), device=self.device, dtype=self.dtype
        )

    def _set_metric_items(self, metric_spec: MetricSpec, items: Sequence[WorkItem]) -> list[WorkItem]:
        records = self.store.manifest
        return [item for item in items if item.image_key in records and self._applies(metric_spec, item)]

    def _extract_features(
        self, metric_spec: MetricSpec, metric: SetMetric, applicable: Sequence[WorkItem]
    ) -> FeatureCache:
        """The per-image features of `applicable`, computing only those the cache lacks."""
        records = self.store.manifest
        cache = FeatureCache(self.output_dir / "features" / metric.extractor_fingerprint())
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
            self._say(
                f"extracting [bold]{escape(metric_spec.name)}[/] features ({escape(metric.feature_space)})"
            )
            with self._progress() as progress:
                task = progress.add_task(f"features {escape(metric_spec.name)}", total=len(todo))
                for batch in batched(todo, self.spec.metric_batch_size):
                    loaded = [(item, self.load_image(item)) for item in batch]
                    valid = [(item, image) for item, image in loaded if image is not None]
                    if valid:
                        features = metric.features([image for _, image in valid])
                        cache.add([records[item.image_key].sha256 for item, _ in valid], features)
                        self.counts.features_computed += len(valid)
                    progress.advance(task, len(batch))
        return cache

    def _score_set_metric(
        self, metric_spec: MetricSpec, items: Sequence[WorkItem]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        metric = self._set_metric(metric_spec)
        records = self.store.manifest
        applicable = self._set_metric_items(metric_spec, items)
        cache = self._extract_features(metric_spec, metric, applicable)
        reference = metric.reference_features()
        name = f"{metric_spec.name}[{metric.feature_space}]"
        groups: dict[tuple[str, str], list[WorkItem]] = {}
        for item in applicable:
            if item.image_key in records and records[item.image_key].sha256 in cache.features:
                groups.setdefault((item.prior, item.prompt.category), []).append(item)
                groups.setdefault((item.prior, "all"), []).append(item)
        rows = []
        for (prior, category), members in groups.items():
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
        provenance = {
            "leaderboard_name": name,
            "feature_space": metric.feature_space,
            "extractor_fingerprint": metric.extractor_fingerprint(),
            "resize": metric_spec.params.get("resize"),
            "reference": metric_spec.params.get("reference"),
            "reference_identity": metric.reference_identity(),
            "n_reference": int(reference.shape[0]),
            "higher_is_better": metric.higher_is_better,
        }
        del metric
        free_memory()
        return rows, provenance

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


def _is_set_metric(metric_spec: MetricSpec) -> bool:
    return issubclass(METRICS.get(metric_spec.name), SetMetric)


def _png_bytes(image: Image.Image) -> bytes:
    # zlib level 1, not PIL's default 6: lossless either way, about 20% larger, and 5× faster to encode (16 ms
    # against 83 ms for a 512×512 image on the 2-core development VM, where a GPU renders one in ~100 ms).
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _image_metadata(item: WorkItem) -> dict[str, Any]:
    return {
        "prior": item.prior,
        "prompt_id": item.prompt.id,
        "category": item.prompt.category,
        "prompt": item.prompt.text,
        "seed": item.seed,
    }
