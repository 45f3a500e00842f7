"""ovi-bench's output: the one progress bar style (description, bar, done/total, elapsed, remaining; on stderr),
consoles that keep lines whole in logs, and the switch that silences the model libraries' own progress bars."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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
        console=console or make_console(stderr=True),
        disable=not show,
    )


class Reporter:
    """What a run shows on its console: progress bars and lines from the main process (`show`), and lines that every
    process of a launch prints unless it is `quiet` (shard progress)."""

    def __init__(self, console: Console, *, show: bool, quiet: bool) -> None:
        self.console = console
        self.show = show
        self.quiet = quiet

    def bars(self) -> Progress:
        return progress_bar(self.console, show=self.show)

    def say(self, message: str) -> None:
        if self.show:
            self.console.print(message, soft_wrap=True)

    def tell(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, soft_wrap=True, highlight=False)


class LogFriendlyConsole(Console):
    """A rich Console that never breaks a line where its output is not a terminal.

    Written to a pipe or a file (a CI log, `| tee`), rich would wrap every message at 80 columns, cutting paths and
    error messages in two: such a line can no longer be searched for or copied. There this console soft-wraps
    (each message stays one line, however long); on a terminal rich wraps at the terminal's width, between words.
    Decided at each print, not once: the stream may be replaced (tests capture it, a notebook redirects it).
    """

    @property
    def soft_wrap(self) -> bool:
        return not self.is_terminal

    @soft_wrap.setter
    def soft_wrap(self, value: bool) -> None:
        pass  # Console's constructor stores a fixed default here; the getter decides instead.


def make_console(*, stderr: bool = False) -> Console:
    """The console for ovi-bench's messages on stdout (or stderr): `LogFriendlyConsole`."""
    return LogFriendlyConsole(stderr=stderr)


def silence_library_progress() -> None:
    """Turn off the model libraries' own progress bars (`--quiet`): transformers' "Loading weights" and "Loading
    checkpoint shards", diffusers' "Loading pipeline components", huggingface_hub's "Fetching N files" and
    downloads (and those of the libraries that draw theirs through huggingface_hub)."""
    import diffusers
    import huggingface_hub.utils
    import transformers

    huggingface_hub.utils.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.disable_progress_bar()


def silence_library_notices() -> None:
    """Only errors from transformers' and diffusers' loggers: their per-load notices would bury ovi-bench's own
    messages. Called by the commands that load models, when they start (importing the libraries takes seconds, which
    `--help` and the table commands should not pay)."""
    import diffusers
    import transformers

    transformers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.set_verbosity_error()


@contextlib.contextmanager
def library_progress_bars_off() -> Iterator[None]:
    """The model libraries' own progress bars off for a block, then back as they were: `evaluate(progress=False)`
    is quiet without changing the rest of a notebook session (`silence_library_progress` is for a whole command)."""
    import diffusers.utils.logging as diffusers_logging
    import huggingface_hub.utils as hub_utils
    import transformers.utils.logging as transformers_logging

    libraries = [
        library for library in (diffusers_logging, transformers_logging) if library.is_progress_bar_enabled()
    ]
    hub_was_on = not hub_utils.are_progress_bars_disabled()
    for library in libraries:
        library.disable_progress_bar()
    hub_utils.disable_progress_bars()
    try:
        yield
    finally:
        for library in libraries:
            library.enable_progress_bar()
        if hub_was_on:
            hub_utils.enable_progress_bars()
