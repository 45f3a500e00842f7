"""`ovi-bench rate` (the local pairwise-rating web app) and `ovi-bench ratings` (export and import of judgements)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, get_args

import typer
from rich.markup import escape

from ovi_bench.cli.application import app, console
from ovi_bench.errors import OviBenchError
from ovi_bench.spec import Question
from ovi_bench.text import did_you_mean, short_repr

QUESTION_KEYS: tuple[str, ...] = get_args(Question)


def _question(given: str | None, default: Question) -> Question:
    if given is None:
        return default
    if given not in QUESTION_KEYS:
        raise OviBenchError(
            f"--question {short_repr(given)} is not one of {', '.join(QUESTION_KEYS)}."
            + did_you_mean(given, QUESTION_KEYS)
        )
    return given  # type: ignore[return-value]


@app.command()
def rate(
    run_dir: Annotated[Path, typer.Argument(help="Finished run folder written by `ovi-bench run`.")],
    question: Annotated[
        str | None,
        typer.Option(
            "--question",
            help="overall (which do you prefer), text (which matches the text better) or realism (which looks more "
            "realistic); default: the spec's [rating] question, else overall.",
        ),
    ] = None,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to listen on; anything but loopback (e.g. 0.0.0.0) requires an access token.",
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8765,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="Access token every request must carry (?token=...); generated and printed when serving beyond "
            "loopback without one.",
        ),
    ] = None,
    no_token: Annotated[
        bool,
        typer.Option(
            "--no-token", help="Serve without a token: allowed on loopback only, refused otherwise."
        ),
    ] = False,
    active: Annotated[
        bool | None,
        typer.Option(
            "--active/--balanced",
            help="Prefer the most uncertain prior pairs, or balance prior pairs and categories; default: the spec's "
            "[rating] active, else balanced.",
        ),
    ] = None,
    attention_every: Annotated[
        int | None,
        typer.Option(
            "--attention-every",
            min=0,
            help="One attention check (repeat or canary) every N trials, 0 for none; default: the spec's, else 10.",
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option("--seed", min=0, help="Seed of the pair sampling (default: the spec's, else 0)."),
    ] = None,
) -> None:
    """Serve the blind pairwise-rating web app for a run's images; each vote is stored in RUN_DIR/ratings.sqlite
    as it is cast, so the study can be stopped and resumed at any moment."""
    from ovi_bench.rate.serve import ServeSettings, rating_defaults, serve

    if no_token and token:
        raise OviBenchError("give either --token or --no-token, not both.")
    defaults = rating_defaults(run_dir)
    settings = ServeSettings(
        question=_question(question, defaults.question),
        attention_every=defaults.attention_every if attention_every is None else attention_every,
        active=defaults.active if active is None else active,
        seed=defaults.seed if seed is None else seed,
        host=host,
        port=port,
        token=token,
        require_token=not no_token,
    )
    serve(
        run_dir, settings, announce=lambda line: console.print(escape(line), soft_wrap=True, highlight=False)
    )


# ---------------------------------------------------------------------------------------------------------------------
# ovi-bench ratings: the judgements of a run as files, and simulated raters.

ratings_app = typer.Typer(
    name="ratings",
    help="Export, import and simulate the pairwise judgements of a run (RUN_DIR/ratings.sqlite).",
    no_args_is_help=True,
)
app.add_typer(ratings_app, name="ratings")


@ratings_app.command("export")
def ratings_export(
    run_dir: Annotated[Path, typer.Argument(help="Run folder with a ratings database.")],
    file: Annotated[Path, typer.Argument(help="File to write: .csv or .jsonl.")],
) -> None:
    """Write every judgement of the run to a CSV or JSONL file (one row per judgement)."""
    from ovi_bench.rate.storage import export_judgements

    rows = export_judgements(run_dir, file)
    console.print(f"{rows} judgement(s) written to {escape(str(file))}", soft_wrap=True, highlight=False)


@ratings_app.command("import")
def ratings_import(
    run_dir: Annotated[
        Path, typer.Argument(help="Run folder whose ratings database receives the judgements.")
    ],
    file: Annotated[Path, typer.Argument(help="A .csv or .jsonl file in the shape `ratings export` writes.")],
) -> None:
    """Merge judgements collected elsewhere (a crowd study); every row is checked first, known ids are skipped."""
    from ovi_bench.rate.storage import import_judgements

    added, skipped = import_judgements(run_dir, file)
    console.print(
        f"{added} judgement(s) added, {skipped} already stored (skipped), from {escape(str(file))}",
        soft_wrap=True,
        highlight=False,
    )


@ratings_app.command("simulate")
def ratings_simulate(
    run_dir: Annotated[Path, typer.Argument(help="Finished run folder written by `ovi-bench run`.")],
    raters: Annotated[
        int | None, typer.Option("--raters", min=1, help="Simulated raters (default: the spec's, else 3).")
    ] = None,
    judgements: Annotated[
        int | None,
        typer.Option("--judgements", min=1, help="Trials per rater (default: the spec's, else 30)."),
    ] = None,
    utility: Annotated[
        str | None,
        typer.Option(
            "--utility", help="Per-image metric the raters prefer (default: the spec's, else clip)."
        ),
    ] = None,
    question: Annotated[
        str | None, typer.Option("--question", help="overall, text or realism (default: the spec's).")
    ] = None,
) -> None:
    """Let simulated Bradley–Terry raters vote through the app's HTTP API; their rows are marked "simulated"."""
    from ovi_bench.rate.serve import rating_defaults
    from ovi_bench.rate.simulate import simulate_ratings
    from ovi_bench.spec import RatingSimulationSpec

    defaults = rating_defaults(run_dir)
    base = defaults.simulation or RatingSimulationSpec()
    overrides = {
        name: value
        for name, value in (("raters", raters), ("judgements_per_rater", judgements), ("utility", utility))
        if value is not None
    }
    simulation = RatingSimulationSpec.model_validate(base.model_dump() | overrides)
    stored = simulate_ratings(
        run_dir,
        simulation,
        question=_question(question, defaults.question),
        attention_every=defaults.attention_every,
        seed=defaults.seed,
    )
    console.print(
        f"{stored} simulated judgement(s) stored in {escape(str(run_dir))} ({simulation.raters} rater(s))",
        soft_wrap=True,
        highlight=False,
    )
