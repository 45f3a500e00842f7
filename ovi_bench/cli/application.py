"""The `ovi-bench` application: its consoles, the options shared by its commands, the table printers, and the
commands that list registered components. The other commands live beside it, one module per area."""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ovi_bench.progress import make_console, silence_library_notices
from ovi_bench.registry import DECODERS, METRICS, PRIORS, Registry, load_plugins

app = typer.Typer(
    name="ovi-bench",
    help="Benchmark text-to-image diffusion priors on T2I-CompBench++.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Lines stay whole in pipes and log files: rich would otherwise wrap every message at 80 columns there.
console: Console = make_console()
errors: Console = make_console(stderr=True)

VERSIONED_LIBRARIES = ("torch", "diffusers", "transformers")
"""The libraries whose versions change results; `ovi-bench --version` prints each beside ovi-bench's own."""


def _print_version(value: bool) -> None:
    if not value:
        return
    from ovi_bench.version import __version__

    # Plain print, "name version" per line: easy to paste into a bug report and to parse.
    print(f"ovi-bench {__version__}")
    print(f"python {sys.version.split()[0]}")
    for library in VERSIONED_LIBRARIES:
        try:
            print(f"{library} {version(library)}")  # the installed metadata: no import of torch needed
        except PackageNotFoundError:
            print(f"{library} not installed")
    raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print the versions of ovi-bench, Python, torch, diffusers and transformers, and exit.",
        ),
    ] = False,
) -> None:
    # The options of `ovi-bench` itself, before the command; no docstring, so the help keeps the app's text.
    pass


PluginsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--plugins",
        metavar="MODULE[,MODULE...]",
        help="Import these modules first: plugins that register priors, decoders or metrics with the decorator "
        "(dotted module names on PYTHONPATH; repeatable). Installed entry points need no option.",
    ),
]


def comma_separated(values: list[str] | None) -> list[str] | None:
    """`--priors a,b --priors c` as ["a", "b", "c"] (order kept, repeats and empty items dropped)."""
    if values is None:
        return None
    return list(dict.fromkeys(item.strip() for value in values for item in value.split(",") if item.strip()))


def show_results(board, title: str, every_row: bool) -> None:
    """The official-metric table (priors × categories), the paper's view; every row on request or when there is no
    official metric in the run."""
    from ovi_bench.results.summary import official_summary, summary_cells

    summary = official_summary(board)
    if every_row or summary.empty:
        show_leaderboard(board, title)
        return
    show_leaderboard(
        summary_cells(summary, bold=lambda cell: f"*{cell}"), f"{title} · official metric per category"
    )
    console.print(
        f"(* best of its column; {len(board)} rows for every metric in leaderboard.md, or --every-row)"
    )


def show_leaderboard(board, title: str) -> None:
    show_table(board, title, text_columns=("run", "prior", "decoder", "category", "metric", "audit"))


def check_device_option(device: str) -> None:
    """A --device value that names no device ovi-bench runs on, or one this machine lacks, as an error before
    anything is read or written (the model libraries would fail later, with a traceback)."""
    from ovi_bench.components import resolve_device

    resolve_device(device)


def quiet_libraries() -> None:
    """ovi-bench draws its own progress bars; the libraries' per-load bars and notices would bury them."""
    silence_library_notices()
    import diffusers
    import transformers

    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.disable_progress_bar()


def list_registry(registry: Registry, *, spaces: bool = False) -> None:
    """One line per registered name: the name, with `spaces` the image-embedding space it produces or consumes
    (`space_column`), and the first line of its class docstring. The docstring is the one fact that needs the
    class, so this imports every entry of `registry` (and nothing of the other registries)."""
    for name in registry.names():
        component = registry.get(name)
        doc = (component.__doc__ or "").strip().splitlines()
        space = f"{space_column(component)}\t" if spaces else ""
        # Plain print: tab-separated columns stay machine-readable (rich would expand the tabs).
        print(f"{name}\t{space}{doc[0] if doc else ''}")


def space_column(component: type) -> str:
    """The space of a component with its default parameters, followed by "|params.<name>" when a parameter chooses
    the space (the training-free priors' `space`, stable-unclip's `variant`); "any" when it declares none."""
    params = getattr(component, "Params", None)
    declared = getattr(component, "embedding_space", None)
    if params is None or declared is None:
        return "any"
    try:
        space = declared(params())
    except Exception:  # parameters without defaults (a plugin's): nothing to show without a spec
        return "per params"
    if space is None:
        return "any"
    chooser = getattr(component, "space_parameter", None)
    return f"{space}|params.{chooser}" if chooser else space


@app.command()
def priors(plugins: PluginsOption = None) -> None:
    """List registered priors, one per line: name, the embedding space it produces, description."""
    load_plugins(plugins or [])
    silence_library_notices()  # importing the classes imports the model libraries
    list_registry(PRIORS, spaces=True)


@app.command()
def decoders(plugins: PluginsOption = None) -> None:
    """List registered decoders, one per line: name, the embedding space it renders, description."""
    load_plugins(plugins or [])
    silence_library_notices()  # importing the classes imports the model libraries
    list_registry(DECODERS, spaces=True)


@app.command()
def metrics(plugins: PluginsOption = None) -> None:
    """List registered metrics, one per line."""
    load_plugins(plugins or [])
    silence_library_notices()  # importing the classes imports the model libraries
    list_registry(METRICS)


spaces_app = typer.Typer(
    name="spaces",
    help="List the image-embedding spaces (`ovi-bench spaces`), or check that two saved vision towers claiming one "
    "space are the same (`ovi-bench spaces check A B`).",
)
app.add_typer(spaces_app, name="spaces")


@spaces_app.callback(invoke_without_command=True)
def spaces(context: typer.Context) -> None:
    """List the image-embedding spaces, one per line: name, encoder, width, default towers, models that live there."""
    if context.invoked_subcommand is not None:
        return
    from ovi_bench.spaces import SPACES

    # Plain print: tab-separated columns stay machine-readable, as the other listings.
    print("name\tencoder\twidth\ttowers\tmodels")
    for space in SPACES.values():
        print(f"{space.name}\t{space.encoder}\t{space.width}\t{space.towers}\t{'; '.join(space.models)}")


@spaces_app.command("check")
def spaces_check(
    first: Annotated[
        str,
        typer.Argument(
            help="A vision tower: folder, Kandinsky 2.2 prior folder, or cached hub "
            "OWNER/NAME[/SUBFOLDER] (e.g. h94/IP-Adapter/sdxl_models/image_encoder)."
        ),
    ],
    second: Annotated[str, typer.Argument(help="The other vision tower, given the same way.")],
) -> None:
    """Compare two saved CLIP vision towers from their weights (the projection and a few layers, read with
    safetensors): exit 0 when they are the same, 1 when they differ, 2 when one cannot be read."""
    from ovi_bench.models.towers import compare_vision_towers

    comparisons = compare_vision_towers(first, second)
    for comparison in comparisons:
        digests = " ".join(digest[:12] or "-" for digest in comparison.digests)
        print(f"{comparison.name}\t{comparison.verdict}\t{digests}")
    different = [comparison.name for comparison in comparisons if not comparison.same]
    if different:
        print(
            f"verdict: different towers ({len(different)} of {len(comparisons)} tensors differ): their embeddings "
            "live in different spaces"
        )
        raise typer.Exit(1)
    print(f"verdict: the same tower ({len(comparisons)} tensors equal): one embedding space")


def show_table(frame, title: str, text_columns: tuple[str, ...]) -> None:
    """A rich table on a terminal (user text escaped: a label like "[red]" is no markup); the Markdown table
    (readable in logs, pastable) anywhere else."""
    if not console.is_terminal:
        from ovi_bench.results.summary import markdown_table, markdown_text

        print(f"{markdown_text(title)}\n\n{markdown_table(frame, floatfmt='.4f')}\n")
        return
    table = Table(title=escape(title))
    for column in frame.columns:
        text = column in text_columns
        table.add_column(escape(column), justify="left" if text else "right", no_wrap=text)
    for record in frame.itertuples(index=False):
        table.add_row(
            *(f"{value:.4f}" if isinstance(value, float) else escape(str(value)) for value in record)
        )
    console.print(table)
