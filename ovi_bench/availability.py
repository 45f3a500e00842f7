"""Where the models and data files a run needs would come from, decided without loading any of them.

A model: a tiny name (built in code), a local folder holding the files loading reads, a snapshot in the Hugging Face
cache holding them, or a repository on a reachable hub. An official T2I-CompBench file: the run's folder of them, the
verified download cache, or GitHub. Whether a server can be used is decided once, by one HEAD request with a short
timeout (`probe`), so that an offline machine fails at once. `ovi_bench.preflight` checks a whole run with these.
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
from typing import Literal

from huggingface_hub import constants

from ovi_bench.components import FileNeed
from ovi_bench.errors import OviBenchError
from ovi_bench.models.hub import hub_offline, is_tiny_name, looks_like_path, offline_switch
from ovi_bench.paths import expand_user
from ovi_bench.prompts import COMPBENCH_DIR_ENV, compbench_file
from ovi_bench.prompts.base import COMPBENCH_SOURCE, resolve_categories
from ovi_bench.prompts.compbench import compbench_cache_dir, compbench_url, offline_setting
from ovi_bench.spec import RunSpec

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


class GitHub:
    """GitHub's reachability, probed at most once per preflight and only if an official file must be downloaded."""

    def __init__(self) -> None:
        self._state: Reachability | None = None

    def state(self, name: str) -> Reachability:
        if self._state is None:
            self._state = probe(compbench_url(name))
        return self._state


def resolve_file(
    need: FileNeed, data_dir: str | Path | None, github: GitHub
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
            forbidden = offline_setting()
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
