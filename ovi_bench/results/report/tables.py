"""The report's tables as plain data for the template: the official-metric summary and the full leaderboard."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ovi_bench.results.generalisation import Generalisation
from ovi_bench.results.records import LEADERBOARD_COLUMNS, metric_directions
from ovi_bench.results.report.plots import format_value
from ovi_bench.results.summary import official_summary

AUDIT_OK = ("", "ok")


def as_float(value: Any) -> float:
    """NaN for anything that is not a number (results.json stores missing values as null)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def interval_text(low: float, high: float) -> str:
    """The interval as "[low, high]"; empty when there is none (set-level metrics)."""
    if not math.isfinite(low) or not math.isfinite(high):
        return ""
    return f"[{format_value(low)}, {format_value(high)}]"


# ---------------------------------------------------------------------------------------------------------------------
# Summary: priors × categories, each category's official metric.


@dataclass(frozen=True)
class SummaryCell:
    category: str
    metric: str
    mean: float
    ci_low: float
    ci_high: float
    best: bool = False

    @property
    def value(self) -> str:
        return format_value(self.mean)

    @property
    def interval(self) -> str:
        return interval_text(self.ci_low, self.ci_high)

    @property
    def text(self) -> str:
        return f"{self.value} {self.interval}".strip()


@dataclass(frozen=True)
class SummaryColumn:
    category: str
    metric: str
    higher_is_better: bool


@dataclass
class SummaryTable:
    columns: list[SummaryColumn]
    rows: list[tuple[str, list[SummaryCell | None]]]
    """(prior, one cell per column; None where the prior has no official row for that category)."""


def summary_table(
    board: pd.DataFrame,
    priors: Sequence[str],
    categories: Sequence[str],
) -> SummaryTable:
    """Each category's official metric per prior (`ovi_bench.results.summary.official_summary`, which marks the best of each
    column by the rows' `higher_is_better`), as cells for the template: a row for every prior, None where a prior has
    no official row."""
    summary = official_summary(board)
    by_prior = {str(record["prior"]): record for record in summary.to_dict("records")}
    directions = metric_directions(board[board["official"].astype(bool)]) if not summary.empty else {}
    metrics = {
        category: str(summary[f"{category}.metric"].dropna().iloc[0])
        for category in categories
        if f"{category}.mean" in summary
    }
    columns = [SummaryColumn(category, metric, directions[metric]) for category, metric in metrics.items()]
    official = board[board["official"].astype(bool)] if "official" in board else board.iloc[0:0]
    present = set(zip(official["prior"].astype(str), official["category"], strict=True))
    rows = []
    for prior in priors:
        record = by_prior.get(prior, {})
        cells: list[SummaryCell | None] = []
        for column in columns:
            mean = as_float(record.get(f"{column.category}.mean"))
            cells.append(
                None
                if (prior, column.category) not in present
                else SummaryCell(
                    column.category,
                    column.metric,
                    mean,
                    as_float(record.get(f"{column.category}.ci_low")),
                    as_float(record.get(f"{column.category}.ci_high")),
                    best=bool(record.get(f"{column.category}.best")),
                )
            )
        rows.append((prior, cells))
    return SummaryTable(columns, rows)


# ---------------------------------------------------------------------------------------------------------------------
# The full leaderboard.


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    numeric: bool
    help: str = ""


@dataclass(frozen=True)
class Cell:
    text: str
    sort_value: str
    """What the page sorts by: the number itself for numeric columns ("" when missing, sorted last)."""
    flagged: bool = False
    """An audit finding: shown as badges, one per finding."""


@dataclass
class LeaderboardRow:
    prior: str
    category: str
    metric: str
    cells: list[Cell] = field(default_factory=list)
    official: bool = False
    """The category's T2I-CompBench++ metric (marked by a badge next to the metric's name)."""
    flagged: bool = False


BASE_COLUMNS = [
    Column("prior", "prior", False),
    Column("category", "category", False),
    Column("metric", "metric", False, "per-image or set-level metric; 'official' marks the category's own"),
    Column("mean", "mean", True, "mean over images (set-level metrics: the set's value)"),
    Column("ci", "95% interval", True, "bootstrap interval over prompts; sorts by width"),
    Column("std", "std", True, "standard deviation over images"),
    Column("n_prompts", "prompts", True),
    Column("n", "images", True),
]
KNOWN_COLUMNS = tuple(LEADERBOARD_COLUMNS)
EXTRA_LABELS = {"text_cosine": "text cos", "mahalanobis": "mahal.", "nn_cosine": "nn cos"}
"""Short headers for the embedding diagnostics, so that the leaderboard fits a 1280-pixel screen."""


def extra_columns(board: pd.DataFrame) -> list[str]:
    """Numeric columns beyond the standard ones: the embedding diagnostics (text_cosine, norm, ...), whichever a
    run has. Found in the table itself, so the report never needs the diagnostics code (and torch) to list them."""
    return [
        name
        for name in board.columns
        if name not in KNOWN_COLUMNS
        and name != "audit"
        and pd.api.types.is_numeric_dtype(board[name])
        and board[name].notna().any()
    ]


def leaderboard_columns(board: pd.DataFrame) -> list[Column]:
    columns = list(BASE_COLUMNS)
    if (
        "decoder" in board.columns and board["decoder"].nunique() > 1
    ):  # one decoder's board reads as it always did
        columns.insert(
            1, Column("decoder", "decoder", False, "the decoder that rendered the prior's embeddings")
        )
    if "run" in board.columns:  # a merged leaderboard: which run each row comes from
        columns.insert(1, Column("run", "run", False, "the run folder the row comes from"))
    columns += [
        Column(
            name,
            EXTRA_LABELS.get(name, name),
            True,
            f"embedding diagnostic: mean {name} per prior × category",
        )
        for name in extra_columns(board)
    ]
    if "audit" in board.columns:
        columns.append(Column("audit", "audit", False, "metric audits: prompt-shuffle gap and canaries"))
    return columns


def _number_cell(value: Any, decimals: int | None = None) -> Cell:
    number = as_float(value)
    if not math.isfinite(number):
        return Cell("–", "")
    text = f"{number:.{decimals}f}" if decimals is not None else format_value(number)
    return Cell(text, repr(number))


def _count_cell(value: Any) -> Cell:
    number = as_float(value)
    return Cell(f"{number:.0f}", repr(number)) if math.isfinite(number) else Cell("–", "")


def _audit_cell(value: Any) -> Cell:
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    return Cell(text, text, flagged=text not in AUDIT_OK)


def leaderboard_rows(board: pd.DataFrame, columns: Sequence[Column]) -> list[LeaderboardRow]:
    rows = []
    for record in board.to_dict(orient="records"):
        official = bool(record.get("official"))
        low, high = as_float(record.get("ci_low")), as_float(record.get("ci_high"))
        cells: dict[str, Cell] = {
            "prior": Cell(str(record["prior"]), str(record["prior"])),
            "category": Cell(str(record["category"]), str(record["category"])),
            "metric": Cell(str(record["metric"]), str(record["metric"])),
            "mean": _number_cell(record.get("mean")),
            # Sorted by width: the narrowest intervals are the most certain.
            "ci": Cell(interval_text(low, high) or "–", repr(high - low) if interval_text(low, high) else ""),
            "std": _number_cell(record.get("std")),
            "n_prompts": _count_cell(record.get("n_prompts")),
            "n": _count_cell(record.get("n")),
            "audit": _audit_cell(record.get("audit")),
            "run": Cell(str(record.get("run", "")), str(record.get("run", ""))),
            "decoder": Cell(str(record.get("decoder", "")), str(record.get("decoder", ""))),
        }
        for column in columns:  # the extra (diagnostic) columns
            if column.key not in cells:
                cells[column.key] = _number_cell(record.get(column.key))
        rows.append(
            LeaderboardRow(
                str(record["prior"]),
                str(record["category"]),
                str(record["metric"]),
                [cells[column.key] for column in columns],
                official=official,
                flagged=cells["audit"].flagged,
            )
        )
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# audit.csv


@dataclass
class AuditTable:
    columns: list[str]
    rows: list[tuple[dict[str, str], list[str], bool]]
    """(filter attributes, cell texts, flagged)."""


AUDIT_HIDDEN_COLUMNS = ("spec_fingerprint",)


def audit_table(audits: pd.DataFrame) -> AuditTable | None:
    if audits.empty:
        return None
    columns = [column for column in audits.columns if column not in AUDIT_HIDDEN_COLUMNS]
    rows = []
    for record in audits.to_dict(orient="records"):
        flagged = str(record.get("flagged", "")).strip().lower() in ("true", "1")
        attributes = {key: str(record[key]) for key in ("category", "metric") if key in record}
        rows.append((attributes, [_audit_text(record[column]) for column in columns], flagged))
    return AuditTable(columns, rows)


def _audit_text(value: Any) -> str:
    if isinstance(value, float):
        return format_value(value) if math.isfinite(value) else "–"
    return str(value)


# ---------------------------------------------------------------------------------------------------------------------
# The generalisation view (results.json's `generalisation`).


@dataclass
class GeneralisationSection:
    """One pair of decoders of one space: the rank agreement per category × metric, then each prior's change."""

    title: str
    agreement_columns: list[str]
    agreement_rows: list[list[str]]
    change_columns: list[str]
    change_rows: list[list[str]]


def generalisation_sections(view: Generalisation) -> list[GeneralisationSection]:
    """The view as text tables for the template, one section per decoder pair (none when the view is empty)."""
    sections = []
    for (space, decoder_a, decoder_b), rows in view.agreement.groupby(
        ["space", "decoder_a", "decoder_b"], sort=False
    ):
        changes = view.changes[
            (view.changes["space"] == space)
            & (view.changes["decoder_a"] == decoder_a)
            & (view.changes["decoder_b"] == decoder_b)
        ]
        sections.append(
            GeneralisationSection(
                f"{decoder_a} vs {decoder_b} ({space})",
                ["category", "metric", "priors", "prompts", "Kendall τ", "95% interval"],
                [
                    [
                        str(row.category),
                        str(row.metric),
                        str(row.n_priors),
                        str(row.n_prompts),
                        format_value(as_float(row.tau)) if math.isfinite(as_float(row.tau)) else "–",
                        interval_text(as_float(row.ci_low), as_float(row.ci_high)) or "–",
                    ]
                    for row in rows.itertuples(index=False)
                ],
                [
                    "prior",
                    "category",
                    "metric",
                    f"mean {decoder_a}",
                    f"mean {decoder_b}",
                    "change",
                    "rank a → b",
                ],
                [
                    [
                        str(row.prior),
                        str(row.category),
                        str(row.metric),
                        format_value(as_float(row.mean_a)),
                        format_value(as_float(row.mean_b)),
                        f"{as_float(row.change):+.4f}",
                        f"{row.rank_a} → {row.rank_b}",
                    ]
                    for row in changes.itertuples(index=False)
                ],
            )
        )
    return sections
