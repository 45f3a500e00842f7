"""The run folder as a whole: what may become one, one run at a time in it, and what a killed run left behind.

* A folder that exists, is not empty and holds no ovi-bench run is refused (`output_dir = "~"` would otherwise write a
  run among someone's files), and so are a path that names a file and a folder that cannot be created.
* Each process of a run holds a lock in the folder (`filelock`): `.ovi-bench.lock` for the main or only process,
  `.ovi-bench.rank3.lock` for shard 3 of a multi-process launch, each with a `.json` beside it naming the holder
  (pid, host, start time). A second `ovi-bench run` into the folder is refused, naming the holder. A single process
  also needs every shard's lock free: it is then alone in the folder.
* Temporary files that a killed process left are removed on start: all of them by a process alone in the folder,
  only its own (tagged with its writer, see `ovi_bench.durable.temporary_tag`) by a shard of a launch, whose siblings
  write theirs at the same time.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from ovi_bench.durable import TEMPORARY_SUFFIX, temporary_tag
from ovi_bench.errors import OviBenchError
from ovi_bench.io import atomic_write_text, explain_os_errors
from ovi_bench.store import RunStore, VerifyReport

LOCK_PREFIX = ".ovi-bench"
"""`.ovi-bench.lock` (main or only process), `.ovi-bench.rank3.lock` (shard 3)."""
LOCK_WAIT_SECONDS = 5.0
"""How long a run waits for a held lock before refusing: a killed run's processes release theirs only as they end."""
RUN_FOLDER_FILES = ("run.json", "results.json")
"""Files whose presence makes a folder an ovi-bench run folder (besides the locks and manifests)."""
STORE_FOLDERS = ("embeddings", "images", "scores", "diagnostics", "features", "shards")
"""Where a run writes temporary files (besides the run folder itself); `report/` belongs to `ovi-bench report`."""


def lock_path(folder: Path, writer: str = "") -> Path:
    return folder / (f"{LOCK_PREFIX}.{writer}.lock" if writer else f"{LOCK_PREFIX}.lock")


def _holder_path(lock: Path) -> Path:
    return lock.with_name(lock.name + ".json")


def is_run_folder(folder: Path) -> bool:
    """Whether `folder` holds something only ovi-bench writes: run.json, results.json, a manifest or a lock."""
    for entry in folder.iterdir():
        name = entry.name
        if (
            name in RUN_FOLDER_FILES
            or (name.startswith("manifest") and name.endswith(".jsonl"))
            or (name.startswith(LOCK_PREFIX + ".") and name.endswith(".lock"))
        ):
            return True
    return False


def prepare_output_folder(folder: Path) -> bool:
    """Create the run folder, or check that an existing one may be written: a run folder already, or empty. Returns
    whether it was created.

    Raises OviBenchError (one line, with the fix) for a file, a foreign non-empty folder or an uncreatable path."""
    fix = "Give a new or empty folder (--out, or output_dir in the spec)"
    if folder.exists() and not folder.is_dir():
        raise OviBenchError(f"the run folder {folder} is a file, not a folder. {fix}.")
    if folder.is_dir():
        try:
            empty = next(folder.iterdir(), None) is None
            if empty or is_run_folder(folder):
                return False
        except OSError as error:
            raise OviBenchError(
                f"cannot read the run folder {folder}: {error.strerror or error}. {fix}."
            ) from None
        raise OviBenchError(
            f"the run folder {folder} already holds other files and is not an ovi-bench run folder (no run.json, "
            f"manifest or lock): ovi-bench will not write a run among them. {fix}."
        )
    try:
        with explain_os_errors(folder):
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a missing or read-only parent such as /proc, a parent that is a file, ...
        raise OviBenchError(
            f"cannot create the run folder {folder}: {error.strerror or error}. {fix}, in a place you can write to."
        ) from None
    return True


def remove_if_untouched(folder: Path) -> None:
    """Remove a run folder that holds nothing but its locks: a run that stopped before its first write (the
    preflight found a model missing, say) leaves no folder behind. Best effort: anything else in it keeps it."""
    with contextlib.suppress(OSError):
        entries = list(folder.iterdir())
        if all(entry.name.startswith(LOCK_PREFIX + ".") and entry.is_file() for entry in entries):
            for entry in entries:
                entry.unlink()
            folder.rmdir()


def _describe_holder(lock: Path) -> str:
    try:
        holder = json.loads(_holder_path(lock).read_text(encoding="utf-8"))
        return (
            f"pid {int(holder['pid'])} on host {str(holder['host'])[:100]}, "
            f"started {str(holder['started'])[:40]}, {str(holder['command'])[:200]!r}"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that left no holder file"


def _refuse(folder: Path, lock: Path) -> OviBenchError:
    return OviBenchError(
        f"the run folder {folder} is in use by another ovi-bench run ({_describe_holder(lock)}; lock {lock.name}). "
        "Two runs into one folder would both do all the work and overwrite each other's results: wait for it to "
        "finish, or give another folder (--out)."
    )


def _try_lock(folder: Path, path: Path) -> FileLock:
    lock = FileLock(path, timeout=LOCK_WAIT_SECONDS)
    try:
        with explain_os_errors(path):
            lock.acquire()
    except Timeout:
        raise _refuse(folder, path) from None
    return lock


@contextlib.contextmanager
def claim_run_folder(folder: Path, writer: str = "", *, alone: bool = True) -> Iterator[None]:
    """Hold this process's lock on `folder` (which must exist) for the block, then remove the temporary files a
    killed run left: all of them when `alone` (every shard's lock was free too), else this writer's own.

    `writer`: this process's writer in a multi-process launch ("" for the main or only process); `alone`: whether
    this process is the launch's only one. Raises OviBenchError naming the holder when another process holds it."""
    lock = _try_lock(folder, lock_path(folder, writer))
    try:
        if alone:
            # A shard of an earlier launch that still runs: check each shard lock, and hold none of them.
            for shard_lock in sorted(folder.glob(f"{LOCK_PREFIX}.rank*.lock")):
                _try_lock(folder, shard_lock).release()
        # Best effort: the holder only makes the refusal clearer; a folder that cannot take it fails, naming the
        # file, at the run's first write (run.json).
        with contextlib.suppress(OSError, OviBenchError):
            _write_holder(lock_path(folder, writer))
        remove_temporaries(folder, None if alone else writer)
        yield
    finally:
        lock.release()


def _write_holder(lock: Path) -> None:
    atomic_write_text(
        _holder_path(lock),
        json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "command": " ".join(sys.argv)[:500],
            }
        )
        + "\n",
    )


def _temporaries_in(folder: Path, tag: str | None) -> Iterator[Path]:
    with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if not (name.startswith(".") and name.endswith(TEMPORARY_SUFFIX)):
                continue
            if (tag is None or f".{tag}." in name) and entry.is_file(follow_symlinks=False):
                yield Path(entry.path)


def remove_temporaries(folder: Path, writer: str | None = None) -> int:
    """Delete the hidden temporary files in the run folder and its store folders: all of them (`writer` None), or
    those that one writer's store made. Returns how many."""
    tag = None if writer is None else temporary_tag(writer)
    folders = [folder]
    for name in STORE_FOLDERS:
        for root, _, _ in os.walk(folder / name):
            folders.append(Path(root))
    removed = 0
    for place in folders:
        for temporary in list(_temporaries_in(place, tag)):
            temporary.unlink(missing_ok=True)
            removed += 1
    return removed


def verify_run_folder(folder: Path) -> VerifyReport:
    """`ovi-bench verify`: hold the run folder (no run may write meanwhile), re-hash every image against the
    manifest, read back every embedding, and remove what is damaged (`RunStore.verify`)."""
    if not folder.is_dir() or not is_run_folder(folder):
        raise OviBenchError(f"{folder} is not an ovi-bench run folder (no run.json, manifest or lock in it).")
    with claim_run_folder(folder):
        return RunStore(folder).verify()


class RunFolderHold:
    """A process's hold on its run folder, re-entrant: prepared, claimed (`claim_run_folder`) on the outermost
    entry and released on its exit, when a folder this hold created and nothing wrote to is taken away again. The
    command holds it over the run and the writing of the result files."""

    def __init__(self, folder: Path, writer: str = "", *, alone: bool = True) -> None:
        self.folder = folder
        self.writer = writer
        self.alone = alone
        self._claims = contextlib.ExitStack()
        self._depth = 0

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if not self._depth:
            if prepare_output_folder(self.folder):
                # Runs after the lock is released: a folder this run made and never wrote to is taken away again.
                self._claims.callback(remove_if_untouched, self.folder)
            self._claims.enter_context(claim_run_folder(self.folder, self.writer, alone=self.alone))
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth:
                self._claims.close()
