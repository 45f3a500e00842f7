"""The `ovi-bench` command. Thin: every subcommand calls library functions a Python user could call too."""

from __future__ import annotations

import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ovi_bench.errors import OviBenchError
from ovi_bench.interrupts import Terminated, stop_signals_raise
from ovi_bench.io import unwritable_error
from ovi_bench.paths import expand_user
from ovi_bench.progress import make_console, silence_library_notices, silence_library_progress
from ovi_bench.registry import DECODERS, METRICS, PRIORS, Registry, load_plugins
from ovi_bench.text import did_you_mean, short_repr

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
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="No progress bars or messages, the model libraries' included."),
    ] = False,
    every_row: Annotated[
        bool,
        typer.Option("--every-row", help="Print every leaderboard row, not only the official-metric table."),
    ] = False,
    plugins: PluginsOption = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", help="Override prompts.limit: the first N prompts per category."),
    ] = None,
    prior_names: Annotated[
        list[str] | None,
        typer.Option(
            "--priors",
            metavar="NAME[,NAME...]",
            help="Keep only these priors of the spec, by label or registered name (repeatable).",
        ),
    ] = None,
    categories: Annotated[
        list[str] | None,
        typer.Option(
            "--categories",
            metavar="CATEGORY[,CATEGORY...]",
            help="Override prompts.categories (repeatable).",
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help='Override device: "auto", "cpu", "cuda", "cuda:1", ...')
    ] = None,
    dtype: Annotated[
        str | None, typer.Option("--dtype", help="Override dtype: float32, float16 or bfloat16.")
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size", help="Override prior_batch_size, decoder_batch_size and metric_batch_size."
        ),
    ] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify", help="First re-hash every stored image and embedding and make again what differs."
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the plan (images per prior × category and how many are stored, models and whether each is "
            "cached, data files, metrics) after the preflight, and exit without generating anything.",
        ),
    ] = False,
) -> None:
    """Generate, score and rank: everything already in the run folder is reused.

    --limit, --priors, --categories, --device, --dtype and --batch-size replace spec fields and enter the
    fingerprint exactly as those fields would."""
    if quiet:
        silence_library_progress()
    silence_library_notices()
    from ovi_bench.overrides import SpecOverrides
    from ovi_bench.provenance import write_results
    from ovi_bench.runner import Runner
    from ovi_bench.spec import load_spec

    load_plugins(plugins or [])  # before the spec: its component names must resolve
    spec = load_spec(config)
    overrides = SpecOverrides(
        limit=limit,
        priors=_comma_separated(prior_names),
        categories=_comma_separated(categories),
        device=device,
        dtype=dtype,
        batch_size=batch_size,
    )
    overridden = overrides.apply(spec)  # first: a bad value is refused before anything is printed
    for line in overrides.describe(spec) if not quiet else []:
        errors.print(f"override: {escape(line)}", highlight=False, soft_wrap=True)
    spec = overridden
    if spec.trust_remote_code:
        errors.print(
            "[yellow]warning:[/] trust_remote_code = true: components may run Python code from model repositories.",
            highlight=False,
        )
    runner = Runner(
        spec,
        expand_user(out) if out else None,
        data_dir=compbench_dir,
        console=errors,
        show_progress=not quiet,
        verify=verify,
    )
    if dry_run:
        from ovi_bench.preflight import plan_tables, preflight

        report = preflight(runner, with_plan=True)
        lines, tables = plan_tables(report)
        for line in lines:
            console.print(escape(line), soft_wrap=True, highlight=False)
        for title, frame in tables:
            _show_table(frame, title, text_columns=(frame.columns[0], "status", "where", "for", "categories"))
        report.raise_if_blocked()
        return
    with runner.folder_lock():  # held until the result files are written too
        result = runner.run()
        if result is None:  # another process of a multi-process launch: the main process writes the results
            return
        board = write_results(result)
    _show_results(board, f"{spec.name} · spec {spec.fingerprint()[:12]}", every_row)
    console.print(f"results in {result.output_dir}")


def _comma_separated(values: list[str] | None) -> list[str] | None:
    """`--priors a,b --priors c` as ["a", "b", "c"] (order kept, repeats and empty items dropped)."""
    if values is None:
        return None
    return list(dict.fromkeys(item.strip() for value in values for item in value.split(",") if item.strip()))


@app.command()
def verify(
    run_dir: Annotated[Path, typer.Argument(help="Run folder written by `ovi-bench run`.")],
) -> None:
    """Re-hash every stored image against the manifest and read back every embedding; remove what is damaged, so
    that the next `ovi-bench run` makes it again. Exit 0 if everything is intact, 1 if something was damaged."""
    from ovi_bench.run_folder import verify_run_folder

    report = verify_run_folder(expand_user(run_dir))
    for line in report.lines():
        console.print(escape(line), highlight=False, soft_wrap=True)
    raise typer.Exit(1 if report.damaged else 0)


@app.command()
def leaderboard(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run folders written by `ovi-bench run`.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Write leaderboard.{csv,md,tex,json} into this folder (default: print only)."
        ),
    ] = None,
    allow_protocol_mismatch: Annotated[
        bool,
        typer.Option(
            "--allow-protocol-mismatch",
            help="Put runs made under different protocols side by side anyway; the differences are recorded.",
        ),
    ] = False,
    every_row: Annotated[
        bool,
        typer.Option("--every-row", help="Print every leaderboard row, not only the official-metric table."),
    ] = False,
) -> None:
    """One leaderboard from one or more runs; refuses runs whose protocols differ, naming the fields."""
    from ovi_bench.results.leaderboard import merge_runs, write_leaderboard
    from ovi_bench.results.records import load_run

    merged = merge_runs(
        [load_run(path) for path in run_dirs], allow_protocol_mismatch=allow_protocol_mismatch
    )
    for line in merged.protocol_differences:
        errors.print(f"[yellow]protocols differ:[/] {escape(line)}", highlight=False)
    for note in merged.notes:
        errors.print(f"note: {escape(note)}", highlight=False)
    _show_results(merged.board, merged.header().title, every_row)
    if out is not None:
        write_leaderboard(out, merged.board, merged.header(), merged.meta())
        console.print(f"leaderboard.csv, .md, .tex and .json in {out}")


def _show_results(board, title: str, every_row: bool) -> None:
    """The official-metric table (priors × categories), the paper's view; every row on request or when there is no
    official metric in the run."""
    from ovi_bench.results.summary import official_summary, summary_cells

    summary = official_summary(board)
    if every_row or summary.empty:
        _show_leaderboard(board, title)
        return
    _show_leaderboard(
        summary_cells(summary, bold=lambda cell: f"*{cell}"), f"{title} · official metric per category"
    )
    console.print(
        f"(* best of its column; {len(board)} rows for every metric in leaderboard.md, or --every-row)"
    )


def _show_leaderboard(board, title: str) -> None:
    _show_table(board, title, text_columns=("run", "prior", "category", "metric", "audit"))


def _check_device_option(device: str) -> None:
    """A --device value that names no device ovi-bench runs on, or one this machine lacks, as an error before
    anything is read or written (the model libraries would fail later, with a traceback)."""
    from ovi_bench.components import resolve_device

    resolve_device(device)


def _quiet_libraries() -> None:
    """ovi-bench draws its own progress bars; the libraries' per-load bars and notices would bury them."""
    silence_library_notices()
    import diffusers
    import transformers

    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.disable_progress_bar()


def _list(registry: Registry) -> None:
    """One line per registered name: the name and the first line of its class docstring. The docstring is the one
    fact that needs the class, so this imports every entry of `registry` (and nothing of the other registries)."""
    for name in registry.names():
        doc = (registry.get(name).__doc__ or "").strip().splitlines()
        # Plain print: a tab-separated first column stays machine-readable (rich would expand the tab).
        print(f"{name}\t{doc[0] if doc else ''}")


@app.command()
def priors(plugins: PluginsOption = None) -> None:
    """List registered priors, one per line."""
    load_plugins(plugins or [])
    _list(PRIORS)


@app.command()
def decoders(plugins: PluginsOption = None) -> None:
    """List registered decoders, one per line."""
    load_plugins(plugins or [])
    _list(DECODERS)


@app.command()
def metrics(plugins: PluginsOption = None) -> None:
    """List registered metrics, one per line."""
    load_plugins(plugins or [])
    _list(METRICS)


@app.command()
def report(
    run_dir: Annotated[
        Path,
        typer.Argument(
            help="Run folder written by `ovi-bench run`, or a merged leaderboard folder written by "
            "`ovi-bench leaderboard RUN_DIR... --out DIR`."
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for index.html (default: RUN_DIR/report).")
    ] = None,
    prompts_per_category: Annotated[
        int | None,
        typer.Option(
            "--prompts-per-category",
            help="Prompts per category in the image grids: the first N by prompt id (default 8).",
        ),
    ] = None,
    seeds_per_prompt: Annotated[
        int | None,
        typer.Option(
            "--seeds-per-prompt",
            help="Images per prompt and prior in the grids: the first K seeds (default 2).",
        ),
    ] = None,
    thumbnail_px: Annotated[
        int | None,
        typer.Option(
            "--thumbnail-px", help="Largest side of the embedded thumbnails in pixels (default 96)."
        ),
    ] = None,
) -> None:
    """Write a self-contained HTML report of a run or of a merged leaderboard (summary, leaderboard, plots, image
    grids, audits)."""
    import warnings

    from ovi_bench.results.report import write_report

    # Unset options keep write_report's defaults, so the library and the command cannot disagree on them.
    options = {
        name: value
        for name, value in (
            ("prompts_per_category", prompts_per_category),
            ("seeds_per_prompt", seeds_per_prompt),
            ("thumbnail_px", thumbnail_px),
        )
        if value is not None
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        path = write_report(run_dir, out, **options)
    for warning in caught:
        errors.print(f"[yellow]warning:[/] {escape(str(warning.message))}", highlight=False)
    size = path.stat().st_size
    shown = f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.0f} kB"
    console.print(f"report {escape(str(path))} ({shown})", soft_wrap=True, highlight=False)


# ---------------------------------------------------------------------------------------------------------------------
# ovi-bench bank: embedding banks of real images (for the OVI constraints and the diagnostics).

bank_app = typer.Typer(
    name="bank",
    help="Build and inspect embedding banks: real images encoded by a prior's image encoder.",
    no_args_is_help=True,
)
app.add_typer(bank_app, name="bank")


@bank_app.command("build")
def bank_build(
    encoder: Annotated[
        str,
        typer.Option(
            "--encoder",
            help="Prior whose image encoder embeds the images: hub id (kandinsky-community/kandinsky-2-2-prior), "
            'local folder, or "tiny".',
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Bank folder (new, empty, or an unfinished build to resume).")
    ],
    images: Annotated[
        Path | None,
        typer.Argument(help="Folder of .png/.jpg/.jpeg/.webp/.bmp images, searched recursively."),
    ] = None,
    hf_dataset: Annotated[
        str | None,
        typer.Option(
            "--hf-dataset",
            help="Instead of IMAGES: a Hugging Face data set name or a save_to_disk folder (needs `pip install datasets`).",
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Data set split (with --hf-dataset).")] = "train",
    image_column: Annotated[
        str, typer.Option("--image-column", help="Data set image column (with --hf-dataset).")
    ] = "image",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per encoder call.")] = 64,
    device: Annotated[str, typer.Option("--device", help='"auto", "cpu", "cuda", "cuda:1", ...')] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", help="float32, float16 or bfloat16 (GPU).")] = "float32",
    shard_size: Annotated[
        int, typer.Option("--shard-size", help="Images per shard file (the unit of resuming).")
    ] = 4096,
    description: Annotated[
        str | None, typer.Option("--description", help="Short description of the images, kept in bank.json.")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars, the model libraries' included.")
    ] = False,
) -> None:
    """Encode images into an embedding bank; a killed build resumes when the same command runs again."""
    import warnings

    if quiet:
        silence_library_progress()
    from ovi_bench.bank.build import build_bank
    from ovi_bench.bank.sources import HFDatasetImages, ImageFiles, ImageSource

    if (images is None) == (hf_dataset is None):
        raise OviBenchError("give either an IMAGES folder or --hf-dataset NAME_OR_FOLDER (exactly one).")
    _check_device_option(device)  # before the source: listing a large folder or data set takes a while
    # The source first: a wrong images folder is reported before the model libraries load (seconds).
    source: ImageSource = (
        ImageFiles.from_folder(images)
        if images is not None
        else HFDatasetImages(hf_dataset, split=split, image_column=image_column)
    )
    _quiet_libraries()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        bank = build_bank(
            source,
            encoder,
            out,
            batch_size=batch_size,
            device=device,
            dtype=dtype,
            shard_size=shard_size,
            progress=not quiet,
            description=description,
        )
    for warning in caught:  # the unreadable images, as a message rather than Python's warning format
        errors.print(f"[yellow]warning:[/] {warning.message}", highlight=False)
    report = bank.build_report
    console.print(
        f"bank {bank.path}: {bank.info.count} embeddings of width {bank.info.dim}, digest {bank.info.digest[:16]}"
    )
    if report is not None:
        console.print(
            f"encoded {report.shards_encoded} shard(s) ({report.images_encoded} images), "
            f"kept {report.shards_reused} already finished; {len(report.skipped)} unreadable image(s) skipped"
        )


@bank_app.command("info")
def bank_info(
    folder: Annotated[Path, typer.Argument(help="Bank folder made by `ovi-bench bank build`.")],
) -> None:
    """Print what a bank holds: count, width, encoder, digest, sources, and the cached statistics' shrinkage."""
    from ovi_bench.bank.folder import EmbeddingBank

    bank = EmbeddingBank.load(folder)
    info = bank.info
    lines = [
        ("folder", str(bank.path)),
        ("count", str(info.count)),
        ("dim", str(info.dim)),
        ("encoder", info.encoder),
        ("encoder identity", info.encoder_identity),
        ("digest", info.digest),
        ("created", info.created),
        ("sources", "; ".join(info.sources)),
        ("skipped images", str(len(bank.skipped))),
    ]
    for normalised, label in ((False, "shrinkage (raw)"), (True, "shrinkage (normalised)")):
        statistics = bank.cached_statistics(normalised)
        lines.append((label, f"{statistics.shrinkage:.6g}" if statistics else "not computed yet"))
    for key, value in lines:
        # Plain print: "key<TAB>value" lines stay machine-readable.
        print(f"{key}\t{value}")


# ---------------------------------------------------------------------------------------------------------------------
# ovi-bench compare / baseline / check: two priors head to head, and regression checks against a stored baseline.


@app.command()
def compare(
    run_dirs: Annotated[
        list[Path], typer.Argument(help="Run folder(s); several are combined (same protocol).")
    ],
    prior_pair: Annotated[
        str, typer.Option("--priors", help="FIRST,SECOND: the difference is SECOND − FIRST on paired images.")
    ],
    metric: Annotated[
        list[str] | None, typer.Option("--metric", help="Per-image metric to compare (repeat; default: all).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the table: .csv (every column), .json or .md.")
    ] = None,
    allow_protocol_mismatch: Annotated[
        bool,
        typer.Option(
            "--allow-protocol-mismatch",
            help="Combine runs made under different protocols anyway; the differences are printed.",
        ),
    ] = False,
) -> None:
    """Compare two priors per category and metric: paired difference, 95% interval over prompts, wins, verdict."""
    from ovi_bench.results.comparison import (
        combine_run_scores,
        compare_scores,
        comparison_display,
        write_comparison,
    )
    from ovi_bench.results.records import load_run

    names = [name.strip() for name in prior_pair.split(",")]
    if len(names) != 2 or not all(names):
        raise OviBenchError(
            f"--priors {short_repr(prior_pair)}: give two prior names separated by a comma, e.g. ovi,eclipse."
        )
    if out is not None and out.suffix.lower() not in (".csv", ".json", ".md"):
        raise OviBenchError(f"--out {out}: give a .csv, .json or .md file name.")
    runs = [load_run(path) for path in run_dirs]
    combined = combine_run_scores(runs, allow_protocol_mismatch=allow_protocol_mismatch)
    for line in combined.protocol_differences:
        errors.print(f"[yellow]protocols differ:[/] {escape(line)}", highlight=False)
    for note in combined.notes:
        errors.print(f"note: {escape(note)}", highlight=False)
    table = compare_scores(
        combined.scores, names[0], names[1], metrics=metric, higher_is_better=combined.higher_is_better
    )
    title = f"{names[1]} − {names[0]} · " + ", ".join(
        f"{run.name} (spec {run.fingerprint[:12]})" for run in runs
    )
    _show_table(
        comparison_display(table), title, text_columns=("category", "metric", "95% interval", "verdict")
    )
    console.print("(* official metric; a verdict names a prior only when the 95% interval excludes 0)")
    if out is not None:
        meta = {
            "runs": [str(run.path) for run in runs],
            "spec_fingerprints": [run.fingerprint for run in runs],
            "protocol_differences": combined.protocol_differences,
        }
        write_comparison(table, out, meta)
        console.print(f"comparison in {out}")


@app.command()
def baseline(
    run_dir: Annotated[Path, typer.Argument(help="Finished run folder whose scores become the baseline.")],
    out: Annotated[
        Path, typer.Option("--out", help="Baseline JSON file to write, e.g. tests/baselines/smoke.json.")
    ],
) -> None:
    """Store a run's protocol and every image's score as a baseline file for `ovi-bench check`."""
    from ovi_bench.results.baseline import load_baseline, write_baseline

    path = write_baseline(run_dir, out)
    stored = load_baseline(path)
    console.print(
        f"baseline {path}: {len(stored.scores)} image scores of {stored.scores['prior'].nunique()} prior(s), "
        f"spec {stored.spec_fingerprint[:12]} ({path.stat().st_size / 1e3:.0f} kB)",
        soft_wrap=True,
    )


@app.command()
def check(
    run_dir: Annotated[Path, typer.Argument(help="Finished run folder to check.")],
    baseline_file: Annotated[
        Path, typer.Option("--baseline", help="Baseline file from `ovi-bench baseline`.")
    ],
    tolerance: Annotated[
        float, typer.Option("--tolerance", help="Largest mean worsening that still passes, in score units.")
    ] = 0.01,
    tolerance_for: Annotated[
        list[str] | None,
        typer.Option("--tolerance-for", help="METRIC=VALUE: another tolerance for one metric (repeat)."),
    ] = None,
    allow_missing: Annotated[
        float,
        typer.Option(
            "--allow-missing",
            metavar="FRACTION",
            help="Fraction of each row's baseline images the run may lack (default 0: every missing image fails).",
        ),
    ] = 0.0,
    every_row: Annotated[
        bool, typer.Option("--every-row", help="Print every row, not only those that are not ok.")
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the verdicts: .csv or .json.")] = None,
) -> None:
    """Check a run against a baseline: exit 0 if nothing regressed, 1 if something did, 2 if the input is unusable."""
    from ovi_bench.results.regression import (
        OK,
        check_run,
        parse_tolerance_overrides,
        verdict_display,
        write_verdicts,
    )

    if out is not None and out.suffix.lower() not in (".csv", ".json"):
        raise OviBenchError(f"--out {out}: give a .csv or .json file name.")
    report = check_run(
        run_dir,
        baseline_file,
        tolerance=tolerance,
        tolerances=parse_tolerance_overrides(tolerance_for or []),
        allow_missing=allow_missing,
    )
    # Only the rows that need attention by default: a CI log of 200 ok rows hides the one that is not.
    shown = report.verdicts["status"] != OK if not every_row else report.verdicts["status"].notna()
    hidden = int((~shown).sum())
    if shown.any():
        _show_table(
            verdict_display(report)[shown.to_numpy()],
            f"{run_dir} against {baseline_file}",
            ("prior", "category", "metric", "status", "95% interval"),
        )
    if hidden:
        console.print(f"({hidden} ok row(s) not shown; --every-row prints them)", soft_wrap=True)
    for note in report.notes:
        errors.print(f"note: {escape(note)}", highlight=False)
    if out is not None:
        write_verdicts(report, out)
        console.print(f"verdicts in {out}")
    # soft_wrap: the summary stays one line in CI logs, whatever the console width.
    console.print(
        escape(report.summary()),
        style="bold red" if report.failed else "bold green",
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(report.exit_code)


def _show_table(frame, title: str, text_columns: tuple[str, ...]) -> None:
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
