"""Preflight: everything a run needs, checked in seconds before anything is generated.

A run loads each model only when it reaches that model's stage, so without a check up front a missing evaluator, a
missing lexicon or an unreachable hub surfaces after every image is made (hours on the official protocol). The
preflight resolves, before any work:

* every model the spec's components declare (`Component.required_models`): a tiny name, a local folder holding the
  declared files, a snapshot in the Hugging Face cache holding them, or a repository on a reachable hub;
* every data file they declare (`Component.required_files`: lexicon, bank, reference images) and the prompt files;
* that each metric applies to at least one of the run's categories, and that a derived metric's inputs are there.

Whether the hub can be used is decided once, by one HEAD request with a short timeout (skipped when
HF_HUB_OFFLINE=1): offline failures are then immediate and say so, and a run whose models are all cached proceeds
offline instead of retrying the hub for minutes. Whatever is missing is reported in one error, with the commands that
fetch it. A model or file whose every output is already in the run folder's store is not needed (a finished run
re-run on a machine without the weights computes nothing, and passes). Where each model and file would come from is
decided by `ovi_bench.availability`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import torch
from rich.console import Console
from rich.markup import escape

from ovi_bench.availability import (
    FileCheck,
    GitHub,
    ModelCheck,
    Reachability,
    hub_cache,
    hub_offline_mode,
    hub_reachability,
    is_hub_id,
    prompt_file_needs,
    resolve_file,
    resolve_model,
)
from ovi_bench.bank.tiny import bank_needs
from ovi_bench.caches import FeatureCache, RowCache
from ovi_bench.components import FileNeed, ModelNeed, build_component
from ovi_bench.diagnostics import diagnosable, diagnostics_cache_path
from ovi_bench.errors import OviBenchError, PreflightError
from ovi_bench.metrics.base import MetricKind
from ovi_bench.models.clip import CLIP_TOKENIZER_FILES
from ovi_bench.models.kandinsky import PRIOR_TEXT_SIDE_FILES
from ovi_bench.plan import WorkItem, load_run_prompts, metric_applies, plan, run_data
from ovi_bench.prompts import COMPBENCH_DIR_ENV, COMPBENCH_REPO, PromptSet
from ovi_bench.prompts.base import BUILTIN_SOURCE, COMPBENCH_SOURCE, resolve_categories
from ovi_bench.prompts.compbench import COMPBENCH_COMMIT, compbench_cache_dir
from ovi_bench.registry import DECODERS, METRICS, PRIORS
from ovi_bench.scoring import metric_kind, score_cache_path
from ovi_bench.spec import RunSpec
from ovi_bench.store import RunStore


class CheckedRun(Protocol):
    """What the preflight reads of the run it checks (an `ovi_bench.runner.Runner`)."""

    spec: RunSpec
    output_dir: Path
    data_dir: str | Path | None
    store: RunStore
    device: torch.device
    dtype: torch.dtype
    show_progress: bool
    console: Console


# ---------------------------------------------------------------------------------------------------------------------
# What is already done


@dataclass
class MetricPlan:
    name: str
    categories: list[str]
    """The run's categories it applies to."""
    images: int
    cached: int | None
    """Images whose score (or features, for a set metric) the store already holds; None when unknown."""
    kind: MetricKind
    """Scored per image, over sets of images (FID), or combined from other metrics' scores (3-in-1)."""


@dataclass
class PreflightReport:
    """What a run needs, where each thing comes from, and what its folder already holds."""

    spec: RunSpec
    output_dir: Path
    hub: Reachability
    models: list[ModelCheck]
    files: list[FileCheck]
    problems: list[str]
    """Other reasons the run cannot work: a metric for none of the categories, a missing derived input, a plan error."""
    prompt_set: PromptSet | None = None
    items: list[WorkItem] | None = None
    stored: set[str] = field(default_factory=set)
    """Image keys of `items` already in the store, intact."""
    metrics: list[MetricPlan] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def blocking(self) -> bool:
        return (
            bool(self.problems) or any(c.blocking for c in self.models) or any(c.blocking for c in self.files)
        )

    def error(self) -> PreflightError | None:
        """One error naming everything missing and how to get it; None when the run can start."""
        if not self.blocking:
            return None
        models = [check for check in self.models if check.blocking]
        files = [check for check in self.files if check.blocking]
        lines = [f"  - {problem}" for problem in self.problems]
        lines += [f"  - model {check.ref} for {check.describe_users()}: {check.detail}" for check in models]
        # Files that lack for the same reason share a line (eight official prompt files "not in" one folder).
        groups: dict[tuple[str, str, str], list[str]] = {}
        for check in files:
            groups.setdefault((check.need.what, "; ".join(check.users), check.detail), []).append(check.name)
        lines += [
            f"  - {what}{'s' if len(names) > 1 else ''} {', '.join(names)} for {users}: {detail}"
            for (what, users, detail), names in groups.items()
        ]
        lines.insert(
            0, f"the run cannot start ({len(lines)} problem(s), found before anything was generated):"
        )
        # With the hub usable, a model still missing is missing from the hub itself (its line says why).
        hub_models = [check for check in models if is_hub_id(check.ref)] if not self.hub.usable else []
        if hub_models:
            lines.append("Fetch the models on a machine with internet:")
            lines += [
                f"  {command}" for command in dict.fromkeys(check.fetch_command() for check in hub_models)
            ]
            lines.append(
                f"then copy that Hugging Face cache into {hub_cache()} (or set HF_HOME to a copy) and set "
                "HF_HUB_OFFLINE=1; or download each to a folder (`hf download ID --local-dir DIR`) and write the "
                "folder's path in the spec instead of the id."
            )
        if any(check.need.official for check in files):
            lines.append(
                f"Official T2I-CompBench files: put the files of {COMPBENCH_REPO} at commit {COMPBENCH_COMMIT} "
                "(examples/dataset/*.txt) in a folder and pass it with --compbench-dir (or prompts.data_dir in the "
                f"spec, or ${COMPBENCH_DIR_ENV}); or run once with network access to download them into "
                f"{compbench_cache_dir()}."
            )
        lines += [
            f"{check.need.what.capitalize()} {check.name}: {check.need.fix}."
            for check in files
            if check.need.fix
        ]
        return PreflightError("\n".join(lines))

    def raise_if_blocked(self) -> None:
        error = self.error()
        if error is not None:
            raise error


# ---------------------------------------------------------------------------------------------------------------------
# The preflight


def _components(spec: RunSpec) -> list[tuple[str, Any, Any]]:
    """(who, registered component, validated params) for every prior, every decoder and every metric, in run order."""
    entries = [
        (f"prior '{prior.display_name}'", PRIORS.get(prior.name), prior.params) for prior in spec.priors
    ]
    entries += [
        (f"decoder '{decoder.display_name}'", DECODERS.get(decoder.name), decoder.params)
        for decoder in spec.decoder_specs
    ]
    entries += [
        (f"metric '{metric.name}'", METRICS.get(metric.name), metric.params) for metric in spec.metrics
    ]
    return [(user, component, component.Params.model_validate(params)) for user, component, params in entries]


def _declared(component: Any, declaration: str, params: Any) -> list[Any]:
    """What a component declares it needs; nothing for one that declares nothing (a plugin class that does not
    derive from `Component`, or a Prior instance given to `evaluate`, whose models are loaded already)."""
    declare = getattr(component, declaration, None)
    return list(declare(params)) if callable(declare) else []


def _collect_models(spec: RunSpec) -> list[tuple[str, ModelNeed]]:
    """(who, need) for every model the spec's components declare, in the order they run."""
    needs = [
        (user, need)
        for user, component, params in _components(spec)
        for need in _declared(component, "required_models", params)
    ]
    if spec.diagnostics is not None:
        needs.append(
            ("diagnostics", ModelNeed(spec.diagnostics.model, "text encoder", PRIOR_TEXT_SIDE_FILES))
        )
    if spec.prompt_length is not None:
        tokenizer = ModelNeed(spec.prompt_length.tokenizer, "CLIP tokenizer", CLIP_TOKENIZER_FILES)
        needs.append(("prompt-length view", tokenizer))
    return needs


def _collect_files(spec: RunSpec) -> list[tuple[str, FileNeed]]:
    files: list[tuple[str, FileNeed]] = [("prompts", need) for need in prompt_file_needs(spec)]
    files += [
        (user, need)
        for user, component, params in _components(spec)
        for need in _declared(component, "required_files", params)
    ]
    if spec.diagnostics is not None:
        files += [("diagnostics", need) for need in bank_needs(spec.diagnostics.bank, "embedding bank")]
    return files


def _category_problems(spec: RunSpec, categories: Sequence[str]) -> list[str]:
    """Metrics that would score nothing, and derived metrics whose inputs would be missing."""
    problems = []
    present = {metric_spec.name: metric_spec for metric_spec in spec.metrics}
    for metric_spec in spec.metrics:
        metric = METRICS.get(metric_spec.name)
        applies = [category for category in categories if metric_applies(metric_spec, category)]
        if not applies:
            own = ", ".join(metric.categories) if metric.categories is not None else "every category"
            narrowed = (
                f", narrowed by its spec to {', '.join(metric_spec.categories)}"
                if metric_spec.categories
                else ""
            )
            problems.append(
                f"metric '{metric_spec.name}' applies to none of the run's categories ({', '.join(categories)}): "
                f"it scores {own}{narrowed}. Remove it from [[metrics]], or add one of its categories to "
                "prompts.categories"
            )
            continue
        if metric.kind == "derived":
            for name in metric.inputs:
                lacking = [
                    category
                    for category in applies
                    if name not in present or not metric_applies(present[name], category)
                ]
                if lacking:
                    problems.append(
                        f"metric '{metric_spec.name}' needs the {name} score of {', '.join(lacking)} images: add "
                        f"'{name}' to [[metrics]] without excluding {', '.join(lacking)}"
                    )
    return problems


def _mark_pending(runner: CheckedRun, report: PreflightReport, users_pending: dict[str, bool]) -> None:
    """Which components still have work, from what the run folder's store holds; fills `report.metrics`."""
    spec, store, items = runner.spec, runner.store, report.items
    if items is None:  # no plan: every component counts as needed
        return
    report.stored = {item.image_key for item in items if store.has_image(item.image_key)}
    missing = [item for item in items if item.image_key not in report.stored]
    for decoder in spec.decoder_specs:
        users_pending[f"decoder '{decoder.display_name}'"] = any(
            item.decoder == decoder.display_name for item in missing
        )
    for prior in spec.priors:
        users_pending[f"prior '{prior.display_name}'"] = any(
            item.prior == prior.display_name and not store.embedding_path(item.embedding_key).is_file()
            for item in missing
        )
    records = store.manifest
    data = run_data(spec, runner.data_dir)
    run_categories = dict.fromkeys(item.prompt.category for item in items)
    for metric_spec in spec.metrics:
        metric = METRICS.get(metric_spec.name)
        categories = [category for category in run_categories if metric_applies(metric_spec, category)]
        applicable = [item for item in items if item.prompt.category in categories]
        kind = metric_kind(metric_spec)
        cached: int | None = None
        reference_cached = True
        with contextlib.suppress(OviBenchError):  # a missing lexicon or reference: reported as a missing file
            done = [item for item in applicable if item.image_key in report.stored]
            if kind == "image":
                scores = RowCache(score_cache_path(runner.output_dir, spec, metric_spec, data)).rows
                cached = sum(
                    RowCache.score_key(records[item.image_key].sha256, item.prompt.text, item.prompt.category)
                    in scores
                    for item in done
                )
            elif kind == "set":
                # Built-in set metrics load their extractor on first use only, as the runner relies on too.
                instance = build_component(
                    metric, metric_spec.params, device=runner.device, dtype=runner.dtype, run_data=data
                )
                features = FeatureCache(
                    runner.output_dir / "features" / instance.extractor_fingerprint()
                ).features
                cached = sum(records[item.image_key].sha256 in features for item in done)
                reference_cached = instance.reference_cache_path().is_file()
        # Audits score images against other prompts and canaries with the same models: counted as work to do.
        audited = kind == "image" and spec.audits is not None
        users_pending[f"metric '{metric_spec.name}'"] = kind != "derived" and (
            audited or cached is None or cached < len(applicable) or not reference_cached
        )
        report.metrics.append(MetricPlan(metric_spec.name, categories, len(applicable), cached, kind))
    if spec.diagnostics is not None:
        pending = True
        with contextlib.suppress(OviBenchError):
            rows = RowCache(diagnostics_cache_path(runner.output_dir, spec)).rows
            pending = any(item.embedding_key not in rows for item in diagnosable(spec, items))
        users_pending["diagnostics"] = pending


def _holds_work(output_dir: Path) -> bool:
    """The run folder exists and is not empty: some of the work may be done already."""
    return output_dir.is_dir() and any(output_dir.iterdir())


def preflight(runner: CheckedRun, *, with_plan: bool = False) -> PreflightReport:
    """Check everything `runner.run()` will need; never loads a model, never generates, never writes.

    When something is missing and the run folder already holds work, or `with_plan` asks for it, the run is planned
    and the store read to tell which components still have work: a model or file that only finished components
    would use is "not needed". (Planning the official protocol takes seconds, so a run whose needs are all met, or
    whose folder is empty, skips it: the runner plans anyway.)
    """
    started = time.perf_counter()
    spec = runner.spec
    data_dir = runner.data_dir or spec.prompts.data_dir
    github = GitHub()
    problems: list[str] = []

    files: dict[tuple[str | None, str | None, bool, str | None], FileCheck] = {}
    for user, need in _collect_files(spec):
        check = files.setdefault((need.official, need.path, need.folder, need.contains), FileCheck(need))
        if user not in check.users:
            check.users.append(user)
    for check in files.values():
        check.status, check.detail = resolve_file(check.need, data_dir, github)

    unused = Reachability("unused", "every model is tiny or a local folder")
    report = PreflightReport(spec, runner.output_dir, unused, [], list(files.values()), problems)
    if all(check.status == "ok" for check in files.values() if "prompts" in check.users):
        try:
            report.prompt_set = load_run_prompts(spec, runner.data_dir)
        except OviBenchError as error:
            problems.append(f"prompts: {error}")
    if report.prompt_set is not None:
        categories = list(dict.fromkeys(prompt.category for prompt in report.prompt_set.prompts))
    elif spec.prompts.source in (COMPBENCH_SOURCE, BUILTIN_SOURCE):
        categories = list(resolve_categories(spec.prompts.categories))
    else:
        categories = []  # a prompt file that cannot be read: its categories are unknown
    if categories:
        problems += _category_problems(spec, categories)

    models: dict[tuple[str, str | None], ModelCheck] = {}
    for user, need in _collect_models(spec):
        check = models.setdefault((need.ref, need.revision), ModelCheck(need.ref, need.revision, []))
        check.files += [pattern for pattern in need.files if pattern not in check.files]
        check.users.append(user)
        check.purposes.append(need.what)
    report.models = list(models.values())
    if any(is_hub_id(check.ref) for check in report.models):
        report.hub = hub_reachability()  # asked only when some model may come from the hub
    for check in report.models:
        check.status, check.detail = resolve_model(check, report.hub)

    missing = any(check.status == "missing" for check in [*report.models, *report.files])
    users_pending: dict[str, bool] = {}
    if report.prompt_set is not None and (with_plan or (missing and _holds_work(runner.output_dir))):
        try:
            report.items = plan(spec, report.prompt_set)
        except OviBenchError as error:
            problems.append(f"planning: {error}")
        _mark_pending(runner, report, users_pending)
    for check in report.models:
        check.pending = any(users_pending.get(user, True) for user in check.users)
        if check.status == "missing" and not check.pending:
            check.status = "not needed"
            check.detail += "; not needed: what it makes is already stored"
    for check in report.files:
        check.pending = any(users_pending.get(user, True) for user in check.users)
        if check.status == "missing" and not check.pending:
            check.status = "not needed"
    report.seconds = time.perf_counter() - started
    return report


@contextlib.contextmanager
def checked_run(runner: CheckedRun) -> Iterator[PreflightReport]:
    """The preflight, then the block: PreflightError before any work if something is missing; offline (the hub
    unreachable, every model the run needs on this machine) the block runs with HF_HUB_OFFLINE=1, so that no model
    load waits on the network."""
    report = preflight(runner)
    report.raise_if_blocked()
    if report.hub.state == "unreachable":
        if runner.show_progress:
            runner.console.print(
                f"[yellow]the Hugging Face hub is unreachable[/] ({escape(report.hub.detail)}): running offline "
                "from the local cache",
                soft_wrap=True,
                highlight=False,
            )
        with hub_offline_mode():
            yield report
    else:
        yield report


# ---------------------------------------------------------------------------------------------------------------------
# The plan, for `ovi-bench run --dry-run`


def plan_tables(report: PreflightReport) -> tuple[list[str], list[tuple[str, pd.DataFrame]]]:
    """What the run would do, as header lines and titled tables: images per prior × category (stored / planned),
    models and where each comes from, data files, and metrics with what they would score."""
    spec = report.spec
    lines = [
        f"{spec.name} · spec {spec.fingerprint()[:12]} → {report.output_dir} (dry run: nothing is generated; "
        f"preflight {report.seconds:.1f} s)",
        f"hub: {report.hub.describe()}",
    ]
    if report.prompt_set is not None:
        prompts = report.prompt_set.prompts
        categories = list(dict.fromkeys(prompt.category for prompt in prompts))
        lines.append(f"prompts: {spec.prompts.source}, {len(prompts)} in {len(categories)} categories")
    tables: list[tuple[str, pd.DataFrame]] = []
    if report.items is not None:
        categories = list(dict.fromkeys(item.prompt.category for item in report.items))
        rows = []
        for prior in dict.fromkeys(item.prior for item in report.items):
            mine = [item for item in report.items if item.prior == prior]
            row = {"prior": prior}
            for category in [*categories, "total"]:
                group = [item for item in mine if category == "total" or item.prompt.category == category]
                row[category] = f"{sum(item.image_key in report.stored for item in group)}/{len(group)}"
            rows.append(row)
        tables.append(("images in the store / planned, per prior × category", pd.DataFrame(rows)))
    models = [
        {
            "model": check.ref,
            "status": check.status,
            "where": check.detail,
            "for": ", ".join(dict.fromkeys(check.users)),
        }
        for check in report.models
    ]
    if models:
        tables.append(("models", pd.DataFrame(models)))
    files = [
        {"file": check.name, "status": check.status, "where": check.detail, "for": "; ".join(check.users)}
        for check in report.files
    ]
    if files:
        tables.append(("data files", pd.DataFrame(files)))
    metrics = [
        {
            "metric": metric.name,
            "categories": ", ".join(metric.categories),
            "images": metric.images,
            "already scored": _scored(metric),
        }
        for metric in report.metrics
    ]
    if metrics:
        tables.append(("metrics", pd.DataFrame(metrics)))
    return lines, tables


def _scored(metric: MetricPlan) -> str:
    if metric.kind == "derived":
        return "derived"
    return "?" if metric.cached is None else str(metric.cached)
