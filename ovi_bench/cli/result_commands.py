"""`ovi-bench leaderboard`, `report`, `compare`, `baseline` and `check`: the commands that read finished run folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ovi_bench.cli.application import app, console, errors, show_results, show_table
from ovi_bench.errors import OviBenchError
from ovi_bench.text import short_repr


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
    show_results(merged.board, merged.header().title, every_row)
    if out is not None:
        write_leaderboard(out, merged.board, merged.header(), merged.meta())
        console.print(f"leaderboard.csv, .md, .tex and .json in {out}")


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
    show_table(
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
        show_table(
            verdict_display(report)[shown.to_numpy()],
            f"{run_dir} against {baseline_file}",
            ("prior", "decoder", "category", "metric", "status", "95% interval"),
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


# ---------------------------------------------------------------------------------------------------------------------
# ovi-bench human: what the pairwise judgements of a run's images say.


@app.command()
def human(
    run_dir: Annotated[
        Path,
        typer.Argument(help="Run folder with judgements (`ovi-bench rate`, `ovi-bench ratings import`)."),
    ],
    bootstrap: Annotated[
        int | None,
        typer.Option(
            "--bootstrap",
            metavar="N",
            help="Bootstrap resamples of the prompts for every interval (default: the spec's [rating] bootstrap, "
            "else 1000).",
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option("--seed", help="Seed of the bootstrap (default: the spec's [rating] seed, else 0)."),
    ] = None,
    min_pass_rate: Annotated[
        float | None,
        typer.Option(
            "--min-pass-rate",
            help="Raters with at least 2 attention checks and a lower pass rate are excluded (default 0.75).",
        ),
    ] = None,
    target_width: Annotated[
        float | None,
        typer.Option(
            "--target-width",
            metavar="W",
            help="Study plan: the judgements needed for every strength's 95% interval to be W wide (default 0.5).",
        ),
    ] = None,
    question: Annotated[
        str | None,
        typer.Option("--question", help="Analyse this question (default: the one most judgements answer)."),
    ] = None,
) -> None:
    """Bradley–Terry strengths per prior, rater agreement and the metric–human agreement table from pairwise
    judgements; writes human.csv, human.json and the leaderboard.md section."""
    import pandas as pd

    from ovi_bench.rate.serve import rating_defaults
    from ovi_bench.results.human import OVERALL, write_human

    # The bootstrap as the run's [rating] table sets it (RatingSpec's defaults are write_human's); the other unset
    # options keep write_human's defaults, so the library and the command cannot disagree on them.
    study = rating_defaults(run_dir)
    options = {
        name: value
        for name, value in (
            ("resamples", study.bootstrap if bootstrap is None else bootstrap),
            ("seed", study.seed if seed is None else seed),
            ("min_pass_rate", min_pass_rate),
            ("target_width", target_width),
        )
        if value is not None
    }
    payload = write_human(run_dir, question=question, **options)
    counts = payload["counts"]
    if payload["simulated"]:
        errors.print(
            f"[yellow]note:[/] {counts['simulated']} of the {counts['used']} judgements used are simulated.",
            highlight=False,
        )
    strengths = pd.DataFrame(payload["strengths"])
    show_table(
        strengths[strengths["scope"] == OVERALL].drop(columns="scope"),
        f"Bradley–Terry strengths, {counts['used']} judgements ({counts['excluded_raters']} rater(s) excluded)",
        ("decoder", "prior"),
    )
    if payload["metric_agreement"]:
        columns = ["metric", "decoder", "agreement", "ci_low", "ci_high", "n", "metric_ties", "kendall_tau"]
        show_table(
            pd.DataFrame(payload["metric_agreement"])[columns],
            "Metric–human agreement",
            ("metric", "decoder"),
        )
    alpha = payload["agreement"]["krippendorff_alpha"]
    console.print(
        "Krippendorff's α "
        + (
            f"{alpha:.3f}"
            if alpha is not None
            else f"not available ({escape(payload['agreement']['reason'])})"
        ),
        soft_wrap=True,
        highlight=False,
    )
    for row in payload["plan"]:
        console.print(
            f"{escape(row['decoder'])}: {row['judgements_needed']} judgements for intervals "
            f"{row['target_width']} wide ({row['more_judgements']} more than the {row['judgements']} used)",
            soft_wrap=True,
            highlight=False,
        )
    for note in payload["notes"]:
        errors.print(
            f"note: {escape(note['decoder'])} · {escape(note['scope'])}: {escape(note['note'])}",
            highlight=False,
        )
    console.print(f"human.csv and human.json in {escape(str(run_dir))}", soft_wrap=True, highlight=False)
