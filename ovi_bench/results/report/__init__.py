"""The HTML report of a finished run: one self-contained page that opens from disk.

`write_report(run_dir)` reads the run's result files (never the models) and writes `run_dir/report/index.html`:
provenance, the official-metric summary, the sortable leaderboard, interval plots per category, image grids of a
bounded sample with every image's scores and reasons, the metric audits, and the human judgements when the run
has them (`ovi-bench human`). CSS, script, plots and thumbnails are
inlined, so the page needs no network; filters and sort order live in the URL hash, so a view can be shared as a link.

It also accepts the folder `ovi-bench leaderboard RUN_DIR... --out DIR` writes: leaderboard.json holds every run's
rows and provenance but no images, so the image grids come from the source run folders where they still exist (and
still hold the run that was merged); the others are left out with a note.

Every text that comes from a run (prompts, prior labels, reasons, parameters) reaches the page through Jinja2's
autoescaping or, for the script's data, through JSON with `<`, `>` and `&` escaped.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup

from ovi_bench.errors import DataError
from ovi_bench.io import atomic_write_text
from ovi_bench.results.generalisation import generalisation_from_records
from ovi_bench.results.records import (
    RESULTS_FILE,
    SCORE_COLUMNS,
    RunRecord,
    load_run,
    metric_directions,
    recorded_directions,
    with_directions,
)
from ovi_bench.results.report.grids import sample_grids
from ovi_bench.results.report.human import human_section
from ovi_bench.results.report.plots import IntervalRow, interval_plot
from ovi_bench.results.report.tables import (
    as_float,
    audit_table,
    generalisation_sections,
    leaderboard_columns,
    leaderboard_rows,
    summary_table,
)

__all__ = ["DEFAULT_PROMPTS_PER_CATEGORY", "DEFAULT_SEEDS_PER_PROMPT", "DEFAULT_THUMBNAIL_PX", "write_report"]

DEFAULT_PROMPTS_PER_CATEGORY = 8
DEFAULT_SEEDS_PER_PROMPT = 2
DEFAULT_THUMBNAIL_PX = 96
REPORT_FOLDER = "report"
REPORT_FILE = "index.html"
LEADERBOARD_COLUMNS = ("prior", "category", "metric", "mean", "ci_low", "ci_high")
"""What the report needs from every leaderboard row (results.json stores missing values as null)."""
ALL_IMAGES_CATEGORY = "all"
"""Set-level metrics also score all of a prior's images together, under this category name."""
MERGED_LEADERBOARD_FILE = "leaderboard.json"
"""What `ovi-bench leaderboard RUN_DIR... --out DIR` writes, with every merged run's provenance."""


def write_report(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    prompts_per_category: int = DEFAULT_PROMPTS_PER_CATEGORY,
    seeds_per_prompt: int = DEFAULT_SEEDS_PER_PROMPT,
    thumbnail_px: int = DEFAULT_THUMBNAIL_PX,
) -> Path:
    """Write the report of the run in `run_dir` to `out_dir/index.html` (default `run_dir/report/`); its path.

    `run_dir` may also be a merged leaderboard folder (`ovi-bench leaderboard RUN_DIR... --out DIR`): the report
    then covers every merged run, with the images of those source runs whose folders still exist.

    The image grids show the first `prompts_per_category` prompts of each category (by prompt id) × every prior ×
    the first `seeds_per_prompt` seeds, as thumbnails of at most `thumbnail_px` pixels a side. Images missing from
    the run folder get a placeholder and are counted in a warning.
    """
    for name, value, least in (
        ("prompts_per_category", prompts_per_category, 0),
        ("seeds_per_prompt", seeds_per_prompt, 1),
        ("thumbnail_px", thumbnail_px, 16),
    ):
        if value < least:
            raise DataError(f"{name} is {value}; give at least {least}.")
    folder = Path(run_dir).expanduser()
    merged = is_merged_leaderboard(folder)
    record, notes = load_merged_leaderboard(folder) if merged else (load_run(folder), [])
    report_dir = Path(out_dir).expanduser() if out_dir is not None else record.path / REPORT_FOLDER
    page = render_report(
        record,
        report_dir,
        prompts_per_category=prompts_per_category,
        seeds_per_prompt=seeds_per_prompt,
        thumbnail_px=thumbnail_px,
        notes=notes,
        merged=merged,
    )
    path = report_dir / REPORT_FILE
    atomic_write_text(path, page.html)
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    if page.missing_images:
        where = "the source run folders" if merged else str(record.path)
        warnings.warn(
            f"{page.missing_images} of the report's {page.missing_images + page.thumbnails} sampled image(s) are "
            f"missing from {where} and show a placeholder; run `ovi-bench run` into that folder again to "
            "regenerate them.",
            UserWarning,
            stacklevel=2,
        )
    return path


# ---------------------------------------------------------------------------------------------------------------------
# A merged leaderboard folder.


def is_merged_leaderboard(folder: Path) -> bool:
    """A folder with leaderboard.json but no results.json: what `ovi-bench leaderboard --out` writes."""
    return (
        folder.is_dir()
        and not (folder / RESULTS_FILE).is_file()
        and (folder / MERGED_LEADERBOARD_FILE).is_file()
    )


def load_merged_leaderboard(folder: Path) -> tuple[RunRecord, list[str]]:
    """The merged leaderboard as one record the report can render, and notes on what it could not show.

    Provenance (prompts, seeds, decoder, dtype) is the first run's, which `ovi-bench leaderboard` checked every
    other run against; priors and metrics are every run's, under their names on the merged board. Per-image scores
    (and so the image grids) are read from each source run folder that still exists and still holds the run that
    was merged (same spec fingerprint); the others are named in the notes.
    """
    path = folder / MERGED_LEADERBOARD_FILE
    remedy = f"write it again with `ovi-bench leaderboard RUN_DIR... --out {folder}`"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path} is not readable JSON ({error}); {remedy}.") from error
    runs = document.get("runs") if isinstance(document, dict) else None
    board = document.get("leaderboard") if isinstance(document, dict) else None
    if (
        not isinstance(runs, list)
        or not runs
        or not isinstance(board, list)
        or not all(isinstance(run, dict) and isinstance(run.get("provenance"), dict) for run in runs)
    ):
        raise DataError(
            f"{folder} has no {RESULTS_FILE} and its {MERGED_LEADERBOARD_FILE} is not a merged leaderboard (no "
            f"runs with their provenance): give a run folder (`ovi-bench run`) or a folder from `ovi-bench "
            f"leaderboard RUN_DIR... --out DIR`."
        )
    board_frame = pd.DataFrame(board)
    if "run" not in board_frame.columns:
        board_frame["run"] = pd.Series(dtype=str)
    first = runs[0]["provenance"]
    priors: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    directions: dict[str, bool] = {}
    score_frames: list[pd.DataFrame] = []
    notes: list[str] = []
    for run in runs:
        provenance = run["provenance"]
        name = str(run.get("name") or provenance.get("spec", {}).get("name") or "?")
        names = _merged_prior_names(provenance, name, board_frame)
        priors.update({shown: provenance.get("priors", {})[prior] for prior, shown in names.items()})
        for metric, entry in provenance.get("metrics", {}).items():
            metrics.setdefault(metric, entry)
        directions.update(recorded_directions(provenance))
        scores, note = _source_run_scores(
            folder, run, name, names, board_frame[board_frame["run"].astype(str) == name]
        )
        if note:
            notes.append(note)
        if scores is not None:
            score_frames.append(scores)
    merged_provenance = {
        **first,
        "spec": {**first.get("spec", {}), "name": f"leaderboard of {len(runs)} run(s)"},
        "spec_fingerprint": "",
        "priors": priors,
        "metrics": metrics,
        # Older merged files lack the rows' direction: every run's provenance knows its own metrics' direction.
        "leaderboard": with_directions(pd.DataFrame(board), directions, path).to_dict("records"),
        "merged_runs": [
            (
                str(run.get("name", "?")),
                str(run["provenance"].get("spec_fingerprint", "")),
                str(run.get("path", "")),
            )
            for run in runs
        ],
        "protocol_differences": [str(line) for line in document.get("protocol_differences") or []],
        "generalisation": None,  # a run's own view, not the merged runs'
    }
    scores = (
        pd.concat(score_frames, ignore_index=True)
        if score_frames
        else pd.DataFrame({column: pd.Series(dtype=str) for column in SCORE_COLUMNS})
    )
    return RunRecord(folder, merged_provenance, scores), notes


def _merged_prior_names(provenance: dict[str, Any], run_name: str, board: pd.DataFrame) -> dict[str, str]:
    """A run's prior -> its name on the merged board: itself, or `prior @ run` where protocols differed; priors
    the merge left out (repeats of another run's) are absent."""
    if "prior" not in board.columns:
        return {}
    on_board = set(board.loc[board["run"].astype(str) == run_name, "prior"].astype(str))
    names = {}
    for prior in provenance.get("priors", {}):
        for shown in (prior, f"{prior} @ {run_name}"):
            if shown in on_board:
                names[prior] = shown
                break
    return names


def _source_run_scores(
    folder: Path, run: dict[str, Any], name: str, names: dict[str, str], board: pd.DataFrame | None = None
) -> tuple[pd.DataFrame | None, str]:
    """The source run's per-image scores under the merged prior names, with the folder their image paths are
    relative to; or None and a note saying why its images are left out. `board`: the merged board's rows from this
    run, whose (prior, decoder) pairs the scores are kept to."""
    recorded = str(run.get("path", ""))
    candidates = [Path(recorded).expanduser()] if recorded else []
    if candidates and not candidates[0].is_absolute():
        # Relative to the directory `ovi-bench leaderboard` ran in, unknown here: most often the one the --out
        # folder was given relative to too, so an ancestor of this folder. The fingerprint check below guards
        # against a wrong match.
        candidates += [ancestor / candidates[0] for ancestor in Path(os.path.abspath(folder)).parents]
    source = next((path for path in candidates if (path / RESULTS_FILE).is_file()), None)
    if source is None:
        return (
            None,
            f"images of run '{name}' left out: its folder {recorded or '(not recorded)'} no longer exists.",
        )
    try:
        record = load_run(source)
        if record.fingerprint != str(run["provenance"].get("spec_fingerprint", "")):
            return None, (
                f"images of run '{name}' left out: {source} now holds another run (spec "
                f"{record.fingerprint[:12]}) than the one merged."
            )
        scores = record.scores
    except DataError as error:
        return None, f"images of run '{name}' left out: {error}"
    scores = scores[scores["prior"].astype(str).isin(names)]
    scores = scores.assign(prior=scores["prior"].astype(str).map(names), run_root=str(source.resolve()))
    if board is not None and "decoder" in board.columns:
        # A prior the merge took from this run for one decoder and from another run for another.
        on_board = set(zip(board["prior"].astype(str), board["decoder"].astype(str), strict=True))
        scores = scores[[pair in on_board for pair in zip(scores["prior"], scores["decoder"], strict=True)]]
    return scores, ""


@dataclass(frozen=True)
class RenderedReport:
    html: str
    thumbnails: int
    missing_images: int


def render_report(
    record: RunRecord,
    report_dir: Path,
    *,
    prompts_per_category: int,
    seeds_per_prompt: int,
    thumbnail_px: int,
    notes: list[str] | None = None,
    merged: bool = False,
) -> RenderedReport:
    """The page as text, with the counts of embedded thumbnails and of sampled images missing from the run.

    `notes` are shown above the summary; `merged` marks a record made from a merged leaderboard folder."""
    board = checked_leaderboard(record)
    scores = record.scores
    several_decoders = "decoder" in board.columns and board["decoder"].nunique() > 1
    if several_decoders:
        # Each prior × decoder is one entry of the summary, the plots and the image grids: `prior · decoder`.
        board, scores = decoder_faceted(board), decoder_faceted(scores)
    priors = _ordered(board["prior"]) if several_decoders else _ordered([*record.priors, *board["prior"]])
    categories = _ordered([*(c for c in board["category"] if c != ALL_IMAGES_CATEGORY), *board["category"]])
    metrics = _ordered(board["metric"])
    grids = sample_grids(
        scores,
        run_dir=record.path,
        report_dir=report_dir,
        priors=priors,
        categories=categories,
        prompts_per_category=prompts_per_category,
        seeds_per_prompt=seeds_per_prompt,
        thumbnail_px=thumbnail_px,
    )
    columns = leaderboard_columns(board)
    context = {
        "title": record.name,
        "fingerprint": record.fingerprint,
        "header": merged_header_fields(record) if merged else header_fields(record),
        "notes": [*_protocol_notes(record), *(notes or [])],
        "merged": merged,
        "provenance": provenance_details(record),
        "priors": priors,
        "categories": categories,
        "metrics": metrics,
        "summary": summary_table(board, priors, categories),
        "columns": columns,
        "rows": leaderboard_rows(board, columns),
        "plots": category_plots(board, priors, categories, metrics),
        "grids": grids,
        "audits": audit_table(record.audits),
        "human": None if merged else human_section(record.path, record.fingerprint, faceted=several_decoders),
        "generalisation": generalisation_sections(
            generalisation_from_records(record.provenance.get("generalisation"))
        ),
        "options": {
            "prompts_per_category": prompts_per_category,
            "seeds_per_prompt": seeds_per_prompt,
            "thumbnail_px": thumbnail_px,
        },
        "page_data": script_json({"images": {image.key: image.detail() for image in grids.images}}),
        "css": Markup(_package_text("report.css")),
        "script": Markup(_package_text("report.js")),
    }
    html = _environment().get_template("template.html.j2").render(context)
    thumbnails = sum(1 for image in grids.images if image.thumbnail)
    return RenderedReport(html, thumbnails, grids.missing)


def decoder_faceted(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` (leaderboard or scores) with each prior named with its decoder, `prior · decoder`."""
    return frame.assign(prior=frame["prior"].astype(str) + " · " + frame["decoder"].astype(str))


def checked_leaderboard(record: RunRecord) -> pd.DataFrame:
    """The run's leaderboard, with the columns the report needs and its names as text."""
    board = record.leaderboard
    if board.empty:
        raise DataError(
            f"{record.path} has an empty leaderboard: the run scored nothing. Run `ovi-bench run` again."
        )
    missing = [column for column in LEADERBOARD_COLUMNS if column not in board.columns]
    if missing:
        raise DataError(
            f"the leaderboard in {record.path / 'results.json'} lacks the column(s) {', '.join(missing)}; run "
            "`ovi-bench run` again to rewrite it."
        )
    for column in ("prior", "category", "metric"):
        board[column] = board[column].astype(str)
    return board


def _ordered(values: Any) -> list[str]:
    return list(dict.fromkeys(str(value) for value in values))


def _package_text(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def _environment() -> jinja2.Environment:
    # Autoescaping for every template, whatever its file name: the page is full of prompt text.
    return jinja2.Environment(
        loader=jinja2.PackageLoader(__name__, "."),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def script_json(value: Any) -> Markup:
    """JSON safe inside `<script type="application/json">`: `</script>` or `<!--` in a prompt cannot end the
    element, because `<`, `>` and `&` are written as \\u escapes (JSON.parse reads them back unchanged)."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    for character, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(character, escaped)
    return Markup(text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


# ---------------------------------------------------------------------------------------------------------------------
# Provenance.


def header_fields(record: RunRecord) -> list[tuple[str, str]]:
    """The facts a reader needs to know what the numbers mean, in reading order."""
    provenance = record.provenance
    spec = provenance.get("spec", {})
    prompts = provenance.get("prompts", {})
    decoder = spec.get("decoder", {})
    fields = [
        ("spec fingerprint", record.fingerprint),
        ("prompts", f"{prompts.get('source', '?')} · digest {str(prompts.get('digest', ''))[:12]}"),
        ("prompt count", str(prompts.get("n_prompts", "?"))),
        ("images per prompt", str(spec.get("images_per_prompt", "?"))),
        ("seeds", seed_text(provenance.get("seeds", []))),
        (
            "decoder",
            f"{decoder.get('name', '?')} · {decoder.get('steps', '?')} steps · guidance {decoder.get('guidance', '?')}"
            f" · {decoder.get('width', '?')}×{decoder.get('height', '?')}",
        ),
        ("device", str(provenance.get("device", "?"))),
        ("dtype", str(provenance.get("dtype", "?"))),
        ("created", str(provenance.get("created", "?"))),
    ]
    return fields


def merged_header_fields(record: RunRecord) -> list[tuple[str, str]]:
    """The header of a merged leaderboard: its runs (name, spec fingerprint, folder), then the shared protocol."""
    runs = [
        (f"run {name}", f"spec {fingerprint[:12]} · {path}")
        for name, fingerprint, path in record.provenance.get("merged_runs", [])
    ]
    return runs + [
        field for field in header_fields(record) if field[0] not in ("spec fingerprint", "created")
    ]


def _protocol_notes(record: RunRecord) -> list[str]:
    differences = record.provenance.get("protocol_differences") or []
    if not differences:
        return []
    return ["The merged runs' protocols differ (merged on request): " + "; ".join(differences)]


def seed_text(seeds: list[Any]) -> str:
    """A run of consecutive seeds as "42–51 (10)", other seeds as a list."""
    numbers = [int(seed) for seed in seeds if isinstance(seed, (int, float)) and math.isfinite(seed)]
    if not numbers:
        return "?"
    if numbers == list(range(numbers[0], numbers[0] + len(numbers))) and len(numbers) > 2:
        return f"{numbers[0]}–{numbers[-1]} ({len(numbers)})"
    return ", ".join(str(seed) for seed in numbers)


def _json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def provenance_details(record: RunRecord) -> dict[str, list[tuple[str, str]]]:
    """Collapsed sections: components with their parameters and fingerprints, package versions, models."""
    provenance = record.provenance
    decoder = provenance.get("decoder", {})
    return {
        "priors": [
            (label, f"{entry.get('name', '?')} {_json_text(entry.get('params', {}))}")
            for label, entry in provenance.get("priors", {}).items()
        ],
        "decoder": [(str(decoder.get("name", "?")), _json_text(decoder.get("params", {})))],
        "metrics": [
            (
                name,
                f"version {entry.get('version', '?')} · "
                f"{'higher' if entry.get('higher_is_better', True) else 'lower'} is better · "
                f"{_json_text(entry.get('params', {}))}",
            )
            for name, entry in provenance.get("metrics", {}).items()
        ],
        "packages": [(name, str(version)) for name, version in provenance.get("packages", {}).items()],
        "models": [(name, str(revision)) for name, revision in provenance.get("models", {}).items()],
    }


# ---------------------------------------------------------------------------------------------------------------------
# Plots.


@dataclass(frozen=True)
class MetricPlot:
    metric: str
    higher_is_better: bool
    svg: Markup


def category_plots(
    board: pd.DataFrame, priors: list[str], categories: list[str], metrics: list[str]
) -> list[tuple[str, list[MetricPlot]]]:
    """Per category, one interval plot per metric with intervals (set-level rows have none and are skipped)."""
    directions = metric_directions(board)
    plots = []
    for category in categories:
        in_category = board[board["category"] == category]
        figures = []
        for metric in metrics:
            rows = in_category[in_category["metric"] == metric]
            figure = _metric_plot(rows, priors, metric, directions[metric])
            if figure is not None:
                figures.append(figure)
        if figures:
            plots.append((category, figures))
    return plots


def _metric_plot(
    rows: pd.DataFrame, priors: list[str], metric: str, higher_is_better: bool
) -> MetricPlot | None:
    by_prior = {str(row.prior): row for row in rows.itertuples(index=False)}
    interval_rows = [
        IntervalRow(
            prior,
            as_float(by_prior[prior].mean),
            as_float(by_prior[prior].ci_low),
            as_float(by_prior[prior].ci_high),
            int(as_float(by_prior[prior].n)) if math.isfinite(as_float(by_prior[prior].n)) else 0,
        )
        for prior in priors
        if prior in by_prior
    ]
    interval_rows = [row for row in interval_rows if math.isfinite(row.ci_low) and math.isfinite(row.ci_high)]
    if not interval_rows:
        return None
    means = [row.mean for row in interval_rows]
    best = max(means) if higher_is_better else min(means)
    interval_rows = [
        IntervalRow(row.prior, row.mean, row.ci_low, row.ci_high, row.n, row.mean == best)
        for row in interval_rows
    ]
    direction = "higher is better →" if higher_is_better else "← lower is better"
    return MetricPlot(
        metric, higher_is_better, interval_plot(interval_rows, axis_label=f"{metric} · {direction}")
    )
