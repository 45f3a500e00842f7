"""Stop signals (SIGINT, SIGTERM) as exceptions in the main thread, held back while the store commits.

Kept free of heavy imports: the command line installs the handlers before it knows which command runs.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class Terminated(BaseException):
    """SIGTERM (Slurm preemption, Kubernetes, `timeout`), raised in the main thread like Ctrl-C's KeyboardInterrupt,
    so that the same clean-up runs: open groups commit their finished writes, half-done calls are dropped. A
    BaseException, like KeyboardInterrupt, so that no `except Exception` swallows it."""


class _StopSignals:
    """SIGINT/SIGTERM arriving while the main thread commits wait until the commit is done: a commit cut short would
    delete finished files that are already synced."""

    committing = 0
    """Commits in progress in the main thread."""
    pending: int | None = None
    """A stop signal that arrived during one."""


def _raise_for(signum: int) -> None:
    if signum == signal.SIGTERM:
        raise Terminated(f"terminated by signal {signum} (SIGTERM)")
    raise KeyboardInterrupt


def _on_stop_signal(signum: int, frame: Any) -> None:
    if _StopSignals.committing:
        _StopSignals.pending = signum
        return
    _raise_for(signum)


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` and SIGINT raises KeyboardInterrupt in the main thread, each
    only once a commit in progress is done. Outside the main thread (where no handler can be set) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    for number in previous:
        signal.signal(number, _on_stop_signal)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def stop_signals_deferred() -> Iterator[None]:
    """Hold back a stop signal until the block is done (main thread only: signal handlers run there alone)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _StopSignals.committing += 1
    try:
        yield
    finally:
        _StopSignals.committing -= 1
    if not _StopSignals.committing and _StopSignals.pending is not None:
        signum, _StopSignals.pending = _StopSignals.pending, None
        _raise_for(signum)
