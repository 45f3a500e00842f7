"""The one progress bar style of ovi-bench: description, bar, done/total, elapsed, remaining; on stderr."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_bar(console: Console | None = None, *, show: bool = True) -> Progress:
    """A rich Progress to use as a context manager (`add_task`, `advance`); draws nothing when `show` is False."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        disable=not show,
    )
