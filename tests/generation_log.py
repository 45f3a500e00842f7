"""What a run generates, logged from inside its process, for the kill-and-resume test (tests/test_crash_safety.py).

`python -c "import generation_log; generation_log.run_cli()" run SPEC ...` runs `python -m ovi_bench run SPEC ...`
with the store's writes wrapped: each embedding, image, score line and result file is logged to the file named by
$OVI_BENCH_GENERATION_LOG *before* it is written, as "<pid> <monotonic seconds> <kind> <key>". Each line is one
`write` to a file opened with O_APPEND, so a line is whole even when SIGKILL comes right after it; the test reads the
log to kill the run at a chosen point and to count what every run generated.
"""

from __future__ import annotations

import functools
import os
import runpy
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOG_ENVIRONMENT_VARIABLE = "OVI_BENCH_GENERATION_LOG"
KINDS = ("embedding", "image", "score", "result")


@dataclass(frozen=True)
class Event:
    pid: int
    seconds: float
    """time.monotonic() of the process that logged it (CLOCK_MONOTONIC: comparable across processes)."""
    kind: str
    key: str


def read_events(path: Path, offset: int = 0) -> list[Event]:
    """The whole lines of the log from byte `offset` on."""
    if not path.is_file():
        return []
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
    events = []
    for line in data[: data.rfind(b"\n") + 1].decode().splitlines():
        pid, seconds, kind, key = line.split(" ", 3)
        events.append(Event(int(pid), float(seconds), kind, key))
    return events


def _install(log_path: str) -> None:
    from ovi_bench import caches, provenance, store
    from ovi_bench.results import leaderboard

    descriptor = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    pid = os.getpid()

    def log(kind: str, key: str) -> None:
        os.write(descriptor, f"{pid} {time.monotonic():.6f} {kind} {key}\n".encode())

    def before(function: Callable[..., Any], note: Callable[..., None]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            note(*args, **kwargs)
            return function(*args, **kwargs)

        return wrapped

    def note_embedding(_store: Any, key: str, *args: Any, **kwargs: Any) -> None:
        log("embedding", key)

    def note_images(_store: Any, entries: list[tuple[str, bytes, dict[str, Any]]]) -> None:
        for key, _, _ in entries:
            log("image", key)

    def note_scores(cache: Any, rows: list[dict[str, Any]]) -> None:
        if cache.path.parent.name == "scores":
            for row in rows:
                log("score", row["key"])

    def note_result(_content: Any, path: Path, *args: Any, **kwargs: Any) -> None:
        log("result", Path(path).name)

    def note_text_result(path: Path, _text: str) -> None:
        log("result", Path(path).name)

    store.RunStore.put_embedding = before(store.RunStore.put_embedding, note_embedding)
    store.RunStore.put_images = before(store.RunStore.put_images, note_images)
    caches.RowCache.add = before(caches.RowCache.add, note_scores)
    # Every result file: both modules that write them bound the helpers by name at import, so each is wrapped there.
    for module in (provenance, leaderboard):
        module.write_csv = before(module.write_csv, note_result)
        module.atomic_write_text = before(module.atomic_write_text, note_text_result)


def run_cli() -> None:
    """`python -m ovi_bench` with the arguments after -c, the store's writes logged."""
    _install(os.environ[LOG_ENVIRONMENT_VARIABLE])
    sys.argv = ["ovi_bench", *sys.argv[1:]]
    runpy.run_module("ovi_bench", run_name="__main__", alter_sys=True)
