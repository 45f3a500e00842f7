"""The `ovi-bench` command. Thin: every subcommand calls library functions a Python user could call too."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.table import Table

from ovi_bench.errors import OviBenchError
from ovi_bench.registry import DECODERS, METRICS, PRIORS, Registry

app = typer.Typer(
    name="ovi-bench",
    help="Benchmark text-to-image diffusion priors on T2I-CompBench++.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="TOML run spec, e.g. configs/smoke.toml.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Run folder (default: the spec's output_dir).")
    ] = None,
    compbench_dir: Annotated[
        Path | None,
        typer.Option(
            "--compbench-dir",
            help="Folder with the official T2I-CompBench++ prompt files (else $OVI_BENCH_COMPBENCH_DIR, "
            "else a verified download).",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or messages.")] = False,
) -> None:
    """Generate, score and rank: everything already in the run folder is reused."""
    from ovi_bench.leaderboard import write_results
    from ovi_bench.runner import Runner
    from ovi_bench.spec import load_spec

    _quiet_libraries()
    spec = load_spec(config)
    result = Runner(spec, out, data_dir=compbench_dir, console=errors, show_progress=not quiet).run()
    board = write_results(result)
    table = Table(title=f"{spec.name} · spec {spec.fingerprint()[:12]}")
    for column in board.columns:
        table.add_column(column, justify="right" if column not in ("prior", "category", "metric") else "left")
    for record in board.itertuples(index=False):
        table.add_row(*(f"{value:.4f}" if isinstance(value, float) else str(value) for value in record))
    console.print(table)
    console.print(f"results in {result.output_dir}")


def _quiet_libraries() -> None:
    """ovi-bench draws its own progress bars; the libraries' per-load bars and notices would bury them."""
    import diffusers
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()


def _list(registry: Registry) -> None:
    for name in registry.names():
        doc = (registry.get(name).__doc__ or "").strip().splitlines()
        # Plain print: a tab-separated first column stays machine-readable (rich would expand the tab).
        print(f"{name}\t{doc[0] if doc else ''}")


@app.command()
def priors() -> None:
    """List registered priors, one per line."""
    _list(PRIORS)


@app.command()
def decoders() -> None:
    """List registered decoders, one per line."""
    _list(DECODERS)


@app.command()
def metrics() -> None:
    """List registered metrics, one per line."""
    _list(METRICS)


def main() -> None:
    try:
        result = app(standalone_mode=False)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        errors.print(
            "interrupted: everything finished so far is stored; run the same command again to resume."
        )
        sys.exit(130)
    except OviBenchError as error:
        errors.print(f"[bold red]error:[/] {error}", highlight=False)
        sys.exit(2)
    if isinstance(result, int):  # --help and similar return an exit code instead of raising
        sys.exit(result)
