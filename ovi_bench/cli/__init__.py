"""The `ovi-bench` command. Thin: every subcommand calls library functions a Python user could call too.

Importing this package registers every command on `app`; `main` runs it with ovi-bench's error handling: one
`error:` line and exit 2 for a usage or input problem, 130 on Ctrl-C, 143 on SIGTERM, never a traceback for those."""

from __future__ import annotations

import re
import sys
from typing import NoReturn

import typer
from rich.markup import escape

from ovi_bench.cli import rating_commands, result_commands, run_commands
from ovi_bench.cli.application import app, console, errors
from ovi_bench.errors import OviBenchError
from ovi_bench.interrupts import Terminated, stop_signals_raise
from ovi_bench.io import unwritable_error
from ovi_bench.text import did_you_mean

__all__ = ["app", "console", "errors", "main", "rating_commands", "result_commands", "run_commands"]

# `--help` lists the commands in the order a user meets them, whatever the order the modules registered them in.
COMMAND_ORDER = (
    "run",
    "verify",
    "leaderboard",
    "report",
    "compare",
    "baseline",
    "check",
    "rate",
    "human",
    "priors",
    "decoders",
    "metrics",
)
app.registered_commands.sort(key=lambda info: COMMAND_ORDER.index(info.name or info.callback.__name__))


def _usage_error_types() -> tuple[type[Exception], ...]:
    """The exceptions typer raises for a command line it cannot parse (unknown command or option, missing argument,
    bad value). Newer typer bundles its own copy of click and raises subclasses of the public `typer.TyperException`;
    older typer, and code written against click, raise `click.ClickException`. Both are caught, so the command
    behaves the same with either typer, and click need not be installed."""
    types: list[type[Exception]] = []
    if isinstance(getattr(typer, "TyperException", None), type):
        types.append(typer.TyperException)
    try:
        import click
    except ImportError:
        pass
    else:
        types.append(click.ClickException)
    return tuple(types)


def _abort_types() -> tuple[type[BaseException], ...]:
    """Ctrl-C as typer and click report it when not in standalone mode (some typer versions return 130 instead)."""
    types: list[type[BaseException]] = [KeyboardInterrupt, typer.Abort]
    try:
        import click
    except ImportError:
        pass
    else:
        types.append(click.exceptions.Abort)
    return tuple(types)


def _show_usage_error(error: Exception) -> NoReturn:
    """One `error:` line (typer's message, with its "Did you mean" for a mistyped command or option), then the usage
    of the command that was meant and where its help is; exit 2."""
    context = getattr(error, "ctx", None)
    if type(error).__name__ == "NoArgsIsHelpError":
        # A group called without a command: typer prints the help as it raises this (its message is then empty),
        # click puts the help into the message.
        help_text = error.format_message() if hasattr(error, "format_message") else ""
        if help_text.strip():
            print(help_text, file=sys.stderr)
        sys.exit(2)
    message = error.format_message() if hasattr(error, "format_message") else str(error)
    unknown = re.match(r"No such command '(.+?)'\.?$", message)
    commands = getattr(getattr(context, "command", None), "commands", None)
    if unknown and commands and "did you mean" not in message.lower():
        message += did_you_mean(unknown.group(1), commands)  # typer without its own suggestion
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    if context is not None:
        usage = context.get_usage().strip().removeprefix("Usage:").strip()
        errors.print(
            f"usage: {escape(usage)}  (see `{escape(context.command_path)} --help`)", highlight=False
        )
    sys.exit(2)


def _interrupted() -> NoReturn:
    errors.print("interrupted: everything finished so far is stored; run the same command again to resume.")
    sys.exit(130)


def main() -> None:
    try:
        # SIGTERM (Slurm preemption, Kubernetes, `timeout`) takes Ctrl-C's path: finished work is committed first.
        with stop_signals_raise():
            result = app(standalone_mode=False, prog_name="ovi-bench")
    except Terminated:
        errors.print(
            "terminated: everything finished so far is stored; run the same command again to resume."
        )
        sys.exit(143)
    except _abort_types():
        _interrupted()
    except OviBenchError as error:
        # Escaped: messages quote user text such as "priors[ovi].params", which rich would read as markup.
        errors.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
        sys.exit(2)
    except _usage_error_types() as error:
        _show_usage_error(error)
    except OSError as error:
        # A full disk or a read-only folder met by a write that no library call explained: still the user's
        # problem to fix, not a bug to show a traceback for. Any other OSError is one.
        explained = unwritable_error(None, error)
        if explained is None:
            raise
        errors.print(f"[bold red]error:[/] {escape(str(explained))}", highlight=False)
        sys.exit(2)
    if result == 130:  # newer typer turns Ctrl-C into exit code 130 (no command of ovi-bench exits with it)
        _interrupted()
    if isinstance(result, int):  # --help, --version and typer.Exit return an exit code instead of raising
        sys.exit(result)
