"""Crash-safe file primitives of the run folder, shared by the artifact store (`ovi_bench.store`) and the row and
feature caches (`ovi_bench.caches`): JSON-lines files appended to by one process each, hidden temporary files that
are synced as a group and then renamed into place, and `GroupedCommits`, the timer that commits a group of writes
once it is due. The commit policy itself (when a group is due) belongs to each store.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ovi_bench.interrupts import stop_signals_deferred
from ovi_bench.io import canonical_json, explain_os_errors

TEMPORARY_SUFFIX = ".tmp"
"""Every file ovi-bench writes is first a hidden `.<name>.<...>.tmp` beside its real name (see `write_temporary`)."""


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSON-lines file, skipping a line that a crash left half-written."""
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                yield value


def writer_file(path: Path, writer: str) -> Path:
    """The file one process appends to: `x.jsonl` for the main or only process, `x.rank3.jsonl` for shard 3.

    Processes of one launch never append to the same file, so no locking is needed (appends from several processes
    to one file can interleave, on network file systems in particular)."""
    return path if not writer else path.with_name(f"{path.stem}.{writer}{path.suffix}")


def _all_writer_files(path: Path) -> list[Path]:
    """`x.jsonl` and every `x.rank<N>.jsonl` beside it: what all processes of all launches appended."""
    return [path, *sorted(path.parent.glob(f"{path.stem}.rank*{path.suffix}"))]


def read_all_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    for file in _all_writer_files(path):
        yield from _read_jsonl(file)


def append_jsonl(path: Path, rows: Iterable[dict[str, Any]], *, sync: bool = True) -> None:
    """Append rows as JSON lines. Without `sync` the lines survive a killed process (they are in the kernel once
    `write` returns) but not a power cut; `fsync_path` later makes them durable."""
    text = "".join(canonical_json(row) + "\n" for row in rows)
    if not text:
        return
    with explain_os_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            # A previous crash may have left a line without its newline; start on a fresh line so both stay parseable.
            if handle.tell() > 0:
                with open(path, "rb") as reader:
                    reader.seek(-1, os.SEEK_END)
                    if reader.read(1) != b"\n":
                        handle.write("\n")
            handle.write(text)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())


def fsync_path(path: Path) -> None:
    if path.is_file():
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def temporary_tag(writer: str) -> str:
    """The part of a store temporary's name that says which process wrote it: "main" or "rank3"."""
    return writer or "main"


def write_temporary(path: Path, data: bytes, writer: str = "") -> Path:
    """Write `data` to a new hidden file beside `path` (`.name.<writer tag>.XXXX.tmp`, never read as an artifact),
    unsynced. The tag lets each process of a sharded launch remove its own orphans (`remove_temporaries`)."""
    prefix = f".{path.name}.{temporary_tag(writer)}."
    with explain_os_errors(path):
        try:
            descriptor, temporary = tempfile.mkstemp(prefix=prefix, suffix=TEMPORARY_SUFFIX, dir=path.parent)
        except FileNotFoundError:  # the folder's first file: make the folder only then, not before every file
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(prefix=prefix, suffix=TEMPORARY_SUFFIX, dir=path.parent)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
    return Path(temporary)


def _load_syncfs() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


_SYNCFS = _load_syncfs()


def sync_data(paths: list[Path]) -> None:
    """Make the data of `paths` durable: on Linux one syncfs per file system they are on (one flush for the whole
    group), elsewhere (or if syncfs fails) an fsync per file."""
    if _SYNCFS is not None:
        done: set[int] = set()
        failed = False
        for path in paths:
            device = path.stat().st_dev
            if device in done:
                continue
            descriptor = os.open(path, os.O_RDONLY)
            try:
                failed = _SYNCFS(descriptor) != 0
            finally:
                os.close(descriptor)
            if failed:
                break
            done.add(device)
        if not failed:
            return
    for path in paths:
        fsync_path(path)


class GroupedCommits:
    """`grouped_commits()`: inside the block, writes wait for `commit` in groups rather than being committed one call
    at a time (see `ovi_bench.store`); at its end, also when it raises, the rest are committed, so finished work is kept.

    While a block is open, a timer thread commits a group as soon as it is due (`_due_at`), so that a group never
    waits for the next write: a batch that takes minutes would otherwise keep the previous batch uncommitted that
    long. One lock orders the writer's calls and the timer's commits: a call's writes are never split by a commit."""

    def _init_grouping(self) -> None:
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._grouping = 0
        """How many `grouped_commits` blocks are open."""
        self._timer: threading.Thread | None = None
        self._timer_error: BaseException | None = None

    def commit(self) -> None:
        raise NotImplementedError

    def _due_at(self) -> float | None:
        """The `time.monotonic()` at which the waiting writes must be committed; None when nothing waits."""
        raise NotImplementedError

    def _commit_on_time(self) -> None:
        """The timer thread: commit each group when it is due, until the last block closes."""
        with self._lock:
            while self._grouping:
                due = self._due_at()
                now = time.monotonic()
                if due is not None and now >= due:
                    try:
                        self.commit()
                    except BaseException as error:  # a full disk: the writer raises it at its next call
                        self._timer_error = error
                        return
                    continue
                # At most a minute at a time: `wait` refuses an infinite timeout (tests set the bounds to infinity).
                self._wake.wait(None if due is None else min(due - now, 60.0))

    def _raise_timer_error(self) -> None:
        error, self._timer_error = self._timer_error, None
        if error is not None:
            raise error

    @contextlib.contextmanager
    def grouped_commits(self) -> Iterator[None]:
        with self._lock:
            self._grouping += 1
            if self._timer is None:
                self._timer = threading.Thread(
                    target=self._commit_on_time, name="ovi-bench-commit-timer", daemon=True
                )
                self._timer.start()
        try:
            yield
        finally:
            # A stop signal now would cut the final commit short: it is raised once the commit is done.
            with stop_signals_deferred():
                with self._lock:
                    self._grouping -= 1
                    timer = self._timer if not self._grouping else None
                    if timer is not None:
                        self._timer = None
                        self._wake.notify_all()
                if timer is not None:
                    timer.join()
                self.commit()
                self._raise_timer_error()
