"""ovi-bench's output: the one progress bar style (description, bar, done/total, elapsed, remaining; on stderr),
consoles that keep lines whole in logs, and the switch that silences the model libraries' own progress bars."""

from __future__ import annotations

import os

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


def make_console(*, stderr: bool = False) -> Console:
    """A rich Console for stdout (or stderr) that never breaks a line where the output is not a terminal.

    Written to a pipe or a file (a CI log, `| tee`), rich would wrap every message at 80 columns, cutting paths and
    error messages in two: such a line can no longer be searched for or copied. There it soft-wraps instead (each
    message stays one line, however long); on a terminal rich wraps at the terminal's width, between words.
    """
    console = Console(stderr=stderr)
    console.soft_wrap = not console.is_terminal
    return console


LIBRARY_PROGRESS_SWITCHES = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}
"""Environment variables that turn the libraries' bars off: huggingface_hub's ("Fetching 4 files", downloads,
and transformers' "Loading weights", which follows the hub's setting) and every tqdm bar, read by tqdm when it is
first imported. Child processes inherit them."""


def silence_library_progress() -> None:
    """Turn off the model libraries' own progress bars (`--quiet`): transformers' "Loading weights" and "Loading
    checkpoint shards", diffusers' "Loading pipeline components", huggingface_hub's "Fetching N files" and downloads,
    and any other tqdm bar.

    Call it before the libraries are imported, as the commands do: tqdm reads TQDM_DISABLE only then, and diffusers
    turns its bars on when imported whatever the environment says; the explicit calls below cover libraries
    already imported.
    """
    os.environ.update(LIBRARY_PROGRESS_SWITCHES)
    import diffusers
    import huggingface_hub.utils
    import transformers

    huggingface_hub.utils.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.disable_progress_bar()
