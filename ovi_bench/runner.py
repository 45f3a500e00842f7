"""Execute a run spec: plan, then embed, decode and score whatever the store does not already hold.

`Runner.run` reads top to bottom: plan the work items (`ovi_bench.plan`), make the images the store lacks (each
prior, then the decoder, loaded only when needed), score them (`ovi_bench.scoring`: per-image, derived and set
metrics), audit the metrics (`ovi_bench.audits`), describe the embeddings (`ovi_bench.diagnostics`), and return the
rows that `ovi_bench.provenance` and the result files are made from. Each stage reads what the previous one stored,
so a killed run resumes where it stopped, and a finished run re-run into the same folder computes nothing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from ovi_bench.audits import run_audits
from ovi_bench.caches import RowCache
from ovi_bench.components import resolve_device, resolve_dtype
from ovi_bench.diagnostics import diagnose, diagnostics_cache_path, embedding_rows
from ovi_bench.errors import DataError
from ovi_bench.generation import ImageMaker
from ovi_bench.generation import seeded_generators as seeded_generators
from ovi_bench.interrupts import stop_signals_raise
from ovi_bench.io import atomic_write_text, canonical_json
from ovi_bench.models.hub import remote_code_policy
from ovi_bench.paths import expand_user
from ovi_bench.plan import WorkItem, distinct_embeddings, load_run_prompts, plan, run_data
from ovi_bench.preflight import checked_run
from ovi_bench.progress import Reporter
from ovi_bench.provenance import RunCounts, RunResult
from ovi_bench.run_folder import RunFolderHold
from ovi_bench.scoring import Scorer, metric_kind
from ovi_bench.sharding import Shard
from ovi_bench.spec import RunSpec
from ovi_bench.store import RunStore


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
        """`data_dir`: the official T2I-CompBench files' folder (default: the spec's `prompts.data_dir`).
        `shard`: this process's share of a multi-process launch (default: from the launcher's environment, see
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
        self.report = Reporter(self.console, show=self.show_progress, quiet=not show_progress)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(spec.dtype, self.device)
        self.store = RunStore(self.output_dir, shard.writer)
        self.verify = verify
        self.hold = RunFolderHold(self.output_dir, shard.writer, alone=shard.count == 1)
        self.counts = RunCounts()
        self.maker = ImageMaker(spec, self.store, self.device, self.dtype, self.report, self.counts)
        self.scorer = Scorer(
            spec,
            self.store,
            device=self.device,
            dtype=self.dtype,
            run_data=run_data(spec, data_dir),
            counts=self.counts,
            writer=shard.writer,
            report=self.report,
        )

    def folder_lock(self) -> contextlib.AbstractContextManager[None]:
        """Hold the run folder for this process (`ovi_bench.run_folder`); re-entrant."""
        return self.hold.held()

    def run(self) -> RunResult | None:
        """Everything the spec asks for; in a multi-process launch, this process's share first, and then (main
        process only, once every share is done) the results over all items. Other processes return None.

        Models may run code from their repositories only when the spec says `trust_remote_code = true`. First the
        preflight (`ovi_bench.preflight`): a model or file the run needs and cannot get fails here, before any work."""
        with (
            remote_code_policy(self.spec.trust_remote_code),
            stop_signals_raise(),
            self.folder_lock(),
            checked_run(self),
        ):
            return self._run()

    def _run(self) -> RunResult | None:
        started = time.perf_counter()
        prompt_set = load_run_prompts(self.spec, self.data_dir)
        items = plan(self.spec, prompt_set)
        if self.verify and self.shard.is_main:  # one process re-hashes the shared store
            for line in self.store.verify().lines():
                self.report.tell(line)
        fingerprint = self.spec.fingerprint()
        if self.shard.is_main:
            run_record = {"fingerprint": fingerprint, "spec": self.spec.model_dump(mode="json")}
            atomic_write_text(self.output_dir / "run.json", canonical_json(run_record))
        decoders = (
            f" × {len(self.spec.decoders)} decoders (of each prior's space)" if self.spec.decoders else ""
        )
        self.report.say(
            f"[bold]{escape(self.spec.name)}[/]: {len(self.spec.priors)} prior(s) × {len(prompt_set.prompts)} prompts × "
            f"{self.spec.images_per_prompt} seed(s){decoders} = {len(items)} images → {escape(str(self.output_dir))}"
        )
        if self.shard.count > 1:
            self.run_share(items)
            if not self.shard.is_main:
                return None
            self.shard.wait_for_others(self.output_dir, fingerprint, say=self.report.say)
            self.store.reload()  # the other processes' images
        rows = self.generate_and_score(items)
        set_rows, set_metrics = self.scorer.score_sets(items)
        audit_rows = run_audits(self.scorer, items, rows)
        embeddings = self.describe_embeddings(items)
        counts = self.counts
        counts.images_reused = len(items) - counts.images_generated
        # Derived scores (3-in-1) are recomputed from the others on every run; only model scores are cached.
        derived = {spec.name for spec in self.spec.metrics if metric_kind(spec) == "derived"}
        counts.scores_reused = sum(row["metric"] not in derived for row in rows) - counts.scores_computed
        regenerated = counts.images_regenerated_corrupt
        self.report.say(
            f"generated {counts.images_generated} image(s) ({counts.images_reused} already in the store"
            f"{f', {regenerated} made again as corrupt' if regenerated else ''}), "
            f"computed {counts.scores_computed} score(s) ({counts.scores_reused} cached) "
            f"in {time.perf_counter() - started:.1f} s"
        )
        return RunResult(
            self.output_dir,
            self.spec,
            prompt_set,
            items,
            rows,
            embeddings,
            self.counts,
            str(self.device),
            set_rows,
            set_metrics,
            audit_rows,
            self.scorer.run_data,
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
        self.scorer.extract_set_features(mine)
        self.describe_embeddings(mine)
        shard.mark_done(self.output_dir, self.spec.fingerprint(), len(mine))
        self.report.tell(
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
            rows, corrupt = self.scorer.score_per_image(items)
            if not corrupt:
                return rows
            self.counts.images_regenerated_corrupt += len(corrupt)
            self.report.say(
                f"[yellow]{len(corrupt)} stored image(s) were corrupt and will be generated again[/]"
            )
        raise DataError(f"images in {self.output_dir / 'images'} keep reading back corrupt; check the disk.")

    def embed(self, items: Sequence[WorkItem]) -> None:
        """Compute the embeddings the missing images need, each once, loading each prior only when needed."""
        self.maker.embed(items)

    def decode(self, items: Sequence[WorkItem]) -> None:
        """Render the missing images, each decoder loaded once for the images it renders."""
        self.maker.decode(items)

    def describe_embeddings(self, items: Sequence[WorkItem]) -> list[dict[str, Any]]:
        """Per embedding: the prior's facts (e.g. optimisation steps) and the diagnostics, cached like scores. One row
        per embedding, however many decoders render it."""
        items = distinct_embeddings(items)
        # An embedding file deleted (or removed as damaged) after its image was made: its facts are computed again,
        # never left out of embeddings.csv.
        unreadable = [item for item in items if self.store.embedding_facts(item.embedding_key) is None]
        if unreadable:
            self.report.say(
                f"{len(unreadable)} embedding(s) missing from the store: computing them again for their facts"
            )
            for item in unreadable:
                self.store.embedding_path(item.embedding_key).unlink(missing_ok=True)
            self.embed(unreadable)
        cache = None
        if self.spec.diagnostics is not None:
            cache = RowCache(diagnostics_cache_path(self.output_dir, self.spec), self.shard.writer)
            self.counts.diagnostics_computed += diagnose(
                self.spec,
                self.store,
                [item for item in items if item.embedding_key not in cache.rows],
                cache,
                device=self.device,
                dtype=self.dtype,
                report=self.report,
            )
        return embedding_rows(self.store, items, cache)
