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
re-run on a machine without the weights computes nothing, and passes).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal, Protocol

import pandas as pd
import torch
from huggingface_hub import constants
from rich.console import Console
from rich.markup import escape

from ovi_bench.bank import bank_needs
from ovi_bench.components import FileNeed, ModelNeed, build_component
from ovi_bench.diagnostics import diagnostics_cache_path
from ovi_bench.errors import OviBenchError, PreflightError
from ovi_bench.metrics.base import MetricKind
from ovi_bench.models.hub import hub_offline, is_tiny_name, looks_like_path, offline_switch
from ovi_bench.models.kandinsky import PRIOR_TEXT_SIDE_FILES
from ovi_bench.paths import expand_user
from ovi_bench.plan import WorkItem, load_run_prompts, metric_applies, plan, run_data
from ovi_bench.prompts import COMPBENCH_DIR_ENV, COMPBENCH_REPO, PromptSet, compbench_file
from ovi_bench.prompts.base import BUILTIN_SOURCE, COMPBENCH_SOURCE, resolve_categories
from ovi_bench.prompts.compbench import COMPBENCH_COMMIT, OFFLINE_ENVS, compbench_cache_dir, compbench_url
from ovi_bench.registry import DECODERS, METRICS, PRIORS
from ovi_bench.scoring import metric_kind, score_cache_path
from ovi_bench.spec import RunSpec
from ovi_bench.store import FeatureCache, RowCache, RunStore


class Runner(Protocol):
    """What the preflight reads of the run it checks (an `ovi_bench.runner.Runner`)."""

    spec: RunSpec
    output_dir: Path
    data_dir: str | Path | None
    store: RunStore
    device: torch.device
    dtype: torch.dtype
    show_progress: bool
    console: Console


REACHABILITY_TIMEOUT_S = 3.0
"""The longest the hub (or GitHub, for the prompt files) may take to answer one HEAD request before it counts as
unreachable. Generous for any working connection; short enough that an offline machine fails at once."""

_COMMIT = re.compile(r"[0-9a-f]{40}")


# ---------------------------------------------------------------------------------------------------------------------
# Reachability


@dataclass(frozen=True)
class Reachability:
    """Whether a server can be used now, decided once by a HEAD request."""

    state: Literal["off", "reachable", "unreachable", "unused"]
    detail: str
    """The endpoint and the answer ("https://huggingface.co answered in 0.2 s"), the error, or why it is off."""

    @property
    def usable(self) -> bool:
        return self.state == "reachable"

    def describe(self) -> str:
        return self.state + (f" ({self.detail})" if self.detail else "")


def probe(url: str, timeout: float = REACHABILITY_TIMEOUT_S) -> Reachability:
    """One HEAD request to `url`; any answer below HTTP 500 counts as reachable.

    The request runs in a daemon thread, so that the timeout also bounds name resolution, which the socket timeout
    does not cover (a resolver that never answers would otherwise block for far longer).
    """
    outcome: list[Reachability] = []
    started = time.perf_counter()

    def attempt() -> None:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
                pass
        except urllib.error.HTTPError as error:
            if error.code >= 500:
                outcome.append(Reachability("unreachable", f"{url} answered HTTP {error.code}"))
                return
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or error
            outcome.append(Reachability("unreachable", f"{url}: {reason}"))
            return
        outcome.append(Reachability("reachable", f"{url} answered in {time.perf_counter() - started:.1f} s"))

    thread = threading.Thread(target=attempt, name="ovi-bench-reachability", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        return Reachability("unreachable", f"{url}: no answer within {timeout:g} s")
    return outcome[0]


def hub_reachability(timeout: float = REACHABILITY_TIMEOUT_S) -> Reachability:
    """The Hugging Face hub ($HF_ENDPOINT): "off" when HF_HUB_OFFLINE=1 (no request), else probed."""
    if hub_offline() or constants.HF_HUB_OFFLINE:
        return Reachability("off", "HF_HUB_OFFLINE=1")
    return probe(constants.ENDPOINT, timeout)


@contextlib.contextmanager
def hub_offline_mode() -> Iterator[None]:
    """Offline within the block: for ovi-bench's model loading (its own switch, `models.hub.hub_offline`), and for
    huggingface_hub and transformers (which read HF_HUB_OFFLINE once, at import, into `constants.HF_HUB_OFFLINE`).
    The environment is left alone: it belongs to the user, and to the processes this one starts."""
    saved_constant = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        with offline_switch(True):
            yield
    finally:
        constants.HF_HUB_OFFLINE = saved_constant


# ---------------------------------------------------------------------------------------------------------------------
# Models


def _lacking(listing: Callable[[str], bool], patterns: Sequence[str]) -> list[str]:
    """The patterns (each "a|b": either) that no file satisfies; `listing(pattern)` says whether one matches."""
    return [pattern for pattern in patterns if not any(listing(part) for part in pattern.split("|"))]


def _files(patterns: Sequence[str]) -> str:
    """Patterns for a message: "tokenizer/vocab.json or tokenizer/tokenizer.json, text_encoder/config.json"."""
    return ", ".join(pattern.replace("|", " or ") for pattern in patterns)


def _in_folder(folder: Path) -> Callable[[str], bool]:
    return lambda pattern: any(path.is_file() for path in folder.glob(pattern))


def _in_names(names: Sequence[str]) -> Callable[[str], bool]:
    """Matching relative names part by part, so that "*" never crosses a "/" (as in a folder's glob)."""
    split_names = [name.split("/") for name in names]

    def matches(pattern: str) -> bool:
        parts = pattern.split("/")
        return any(
            len(name) == len(parts) and all(fnmatchcase(n, p) for n, p in zip(name, parts, strict=True))
            for name in split_names
        )

    return matches


def hub_cache() -> Path:
    """The Hugging Face cache that `from_pretrained` reads ($HF_HUB_CACHE, else $HF_HOME/hub)."""
    return Path(constants.HF_HUB_CACHE)


def cached_snapshot(ref: str, revision: str | None) -> Path | None:
    """The cache's snapshot folder of a hub model at `revision` (default "main"), or None when there is none."""
    repository = hub_cache() / f"models--{ref.replace('/', '--')}"
    revision = revision or "main"
    if _COMMIT.fullmatch(revision):
        commit = revision
    else:
        try:
            commit = (repository / "refs" / revision).read_text().strip()
        except OSError:
            return None
    snapshot = repository / "snapshots" / commit
    return snapshot if snapshot.is_dir() else None


Status = Literal["tiny", "folder", "cached", "download", "missing", "not needed"]


@dataclass
class ModelCheck:
    """One model (a reference at a revision), with every component that loads it."""

    ref: str
    revision: str | None
    files: list[str]
    users: list[str] = field(default_factory=list)
    """The components that load it: "prior 'ovi'", "metric 'clip'", "diagnostics"."""
    purposes: list[str] = field(default_factory=list)
    """What each of `users` loads it for."""
    pending: bool = False
    """Some component that loads it has work left (else everything it would make is already stored)."""
    status: Status = "missing"
    detail: str = ""

    @property
    def blocking(self) -> bool:
        return self.status == "missing" and self.pending

    def describe_users(self, separator: str = "; ") -> str:
        return separator.join(
            f"{user} ({purpose})" for user, purpose in zip(self.users, self.purposes, strict=True)
        )

    def fetch_command(self) -> str:
        return f"hf download {self.ref}" + (f" --revision {self.revision}" if self.revision else "")


def _check_on_hub(check: ModelCheck) -> tuple[Status, str]:
    """A model the cache lacks, on a reachable hub: does the repository exist, with the files loading reads?"""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        info = HfApi().model_info(check.ref, revision=check.revision, timeout=REACHABILITY_TIMEOUT_S * 2)
    except GatedRepoError:
        return "missing", (
            f"{check.ref} is gated on the hub: accept its terms on https://huggingface.co/{check.ref} and log in "
            "(`hf auth login`)"
        )
    except RevisionNotFoundError:
        return "missing", f"{check.ref} has no revision '{check.revision}' on the hub"
    except RepositoryNotFoundError:
        return "missing", (
            f"there is no model '{check.ref}' on the hub (or it is private: log in with `hf auth login`); "
            "a local folder must be written as a path (./folder, /data/folder)"
        )
    except HFValidationError as error:
        return "missing", f"'{check.ref}' is neither a local folder nor a valid Hugging Face id ({error})"
    except Exception as error:  # any network trouble: loading will try again, and explain it
        return "download", f"not cached; to be downloaded (the hub could not confirm it now: {error})"
    names = [sibling.rfilename for sibling in info.siblings or []]
    lacking = _lacking(_in_names(names), check.files) if names else []
    if lacking:
        return "missing", f"the hub repository {check.ref} has no {_files(lacking)}"
    return "download", "not cached; to be downloaded from the hub"


def is_hub_id(ref: str) -> bool:
    """Neither a tiny name nor a local folder (existing, or written as a path)."""
    return not (is_tiny_name(ref) or looks_like_path(ref) or expand_user(ref).is_dir())


def resolve_model(check: ModelCheck, hub: Reachability) -> tuple[Status, str]:
    """Where the model will come from, or why it cannot."""
    ref = check.ref
    if is_tiny_name(ref):
        return "tiny", "built in code"
    folder = expand_user(ref)
    if folder.is_dir():
        lacking = _lacking(_in_folder(folder), check.files)
        if lacking:
            return "missing", f"the local folder {folder} has no {_files(lacking)}"
        return "folder", f"local folder {folder.resolve()}"
    if looks_like_path(ref):
        return "missing", f"the local folder {folder} does not exist"
    snapshot = cached_snapshot(ref, check.revision)
    lacking = _lacking(_in_folder(snapshot), check.files) if snapshot else check.files
    if snapshot is not None and not lacking:
        return "cached", f"in the Hugging Face cache (commit {snapshot.name[:12]})"
    if hub.usable:
        return _check_on_hub(check)
    where = (
        f"not in the Hugging Face cache ({hub_cache()})"
        if snapshot is None
        else f"incomplete in the Hugging Face cache ({hub_cache()}: no {_files(lacking)})"
    )
    if hub.state == "off":
        return "missing", f"{where}, and HF_HUB_OFFLINE=1 forbids downloading it"
    return "missing", f"{where}, and the hub is unreachable ({hub.detail})"


# ---------------------------------------------------------------------------------------------------------------------
# Data files


@dataclass
class FileCheck:
    """One data file or folder, with every component that reads it."""

    need: FileNeed
    users: list[str] = field(default_factory=list)
    pending: bool = False
    status: Literal["ok", "missing", "not needed"] = "missing"
    detail: str = ""

    @property
    def blocking(self) -> bool:
        return self.status == "missing" and self.pending

    @property
    def name(self) -> str:
        return self.need.official or self.need.path or self.need.what


class _GitHub:
    """GitHub's reachability, probed at most once per preflight and only if an official file must be downloaded."""

    def __init__(self) -> None:
        self._state: Reachability | None = None

    def state(self, name: str) -> Reachability:
        if self._state is None:
            self._state = probe(compbench_url(name))
        return self._state


def _official_downloads_forbidden() -> str:
    """'NAME=value' of the variable that forbids downloading the official files (as the prompt loader reads it)."""
    for name in OFFLINE_ENVS:
        if os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}:
            return f"{name}={os.environ[name]}"
    return ""


def resolve_file(
    need: FileNeed, data_dir: str | Path | None, github: _GitHub
) -> tuple[Literal["ok", "missing"], str]:
    """("ok" | "missing", detail) for one data file or folder. An official file that is neither in a local folder
    nor in the download cache is downloaded (verified) now, unless offline: GitHub is probed first, so that an
    unreachable network fails at once instead of after the download's timeout."""
    if need.official is not None:
        name = need.official
        local = data_dir if data_dir is not None else os.environ.get(COMPBENCH_DIR_ENV)
        if local is not None and not (expand_user(local) / name).is_file():
            return "missing", f"not in {expand_user(local)}"
        if local is None and not (compbench_cache_dir() / name).is_file():
            forbidden = _official_downloads_forbidden()
            if forbidden:
                return (
                    "missing",
                    f"not in the download cache ({compbench_cache_dir()}), and {forbidden} forbids downloading",
                )
            reachability = github.state(name)
            if not reachability.usable:
                return "missing", (
                    f"not in the download cache ({compbench_cache_dir()}), and GitHub is unreachable "
                    f"({reachability.detail})"
                )
        try:
            return "ok", str(compbench_file(name, data_dir))  # verified against its pinned hash
        except OviBenchError as error:
            return "missing", str(error)
    assert need.path is not None, "a FileNeed names a path or an official file"
    path = expand_user(need.path)
    if need.folder:
        if not path.is_dir():
            return "missing", f"the folder {path} does not exist"
        if need.contains and not (path / need.contains).is_file():
            return "missing", f"the folder {path} has no {need.contains}"
        return "ok", str(path)
    if not path.is_file():
        return "missing", f"the file {path} does not exist"
    return "ok", str(path)


def prompt_file_needs(spec: RunSpec) -> list[FileNeed]:
    """The official prompt files of the spec's categories and split (a prompt file of the user's own is read, and
    its errors reported, when the prompts are loaded)."""
    prompts = spec.prompts
    if prompts.source != COMPBENCH_SOURCE:
        return []
    categories = resolve_categories(prompts.categories)
    names = [f"{category}_{prompts.split}.txt" for category in categories]
    if "complex" in categories:
        names += [f"complex_{prompts.split}_{subset}.txt" for subset in ("spatial", "action")]
    return [FileNeed("official prompt file", official=name) for name in names]


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
    """(who, registered component, validated params) for every prior, the decoder and every metric, in run order."""
    entries = [
        (f"prior '{prior.display_name}'", PRIORS.get(prior.name), prior.params) for prior in spec.priors
    ]
    entries.append((f"decoder '{spec.decoder.name}'", DECODERS.get(spec.decoder.name), spec.decoder.params))
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


def _mark_pending(runner: Runner, report: PreflightReport, users_pending: dict[str, bool]) -> None:
    """Which components still have work, from what the run folder's store holds; fills `report.metrics`."""
    spec, store, items = runner.spec, runner.store, report.items
    if items is None:  # no plan: every component counts as needed
        return
    report.stored = {item.image_key for item in items if store.has_image(item.image_key)}
    missing = [item for item in items if item.image_key not in report.stored]
    users_pending[f"decoder '{spec.decoder.name}'"] = bool(missing)
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
            pending = any(item.embedding_key not in rows for item in items)
        users_pending["diagnostics"] = pending


def _holds_work(output_dir: Path) -> bool:
    """The run folder exists and is not empty: some of the work may be done already."""
    return output_dir.is_dir() and any(output_dir.iterdir())


def preflight(runner: Runner, *, with_plan: bool = False) -> PreflightReport:
    """Check everything `runner.run()` will need; never loads a model, never generates, never writes.

    When something is missing and the run folder already holds work, or `with_plan` asks for it, the run is planned
    and the store read to tell which components still have work: a model or file that only finished components
    would use is "not needed". (Planning the official protocol takes seconds, so a run whose needs are all met, or
    whose folder is empty, skips it: the runner plans anyway.)
    """
    started = time.perf_counter()
    spec = runner.spec
    data_dir = runner.data_dir or spec.prompts.data_dir
    github = _GitHub()
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
def checked_run(runner: Runner) -> Iterator[PreflightReport]:
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
