"""The report's "Human judgements" section, present when the run folder holds the run's human.json
(`ovi-bench human`): the Bradley–Terry strengths with their intervals as a table and one interval plot per decoder,
the inter-rater agreement, and the metric–human agreement table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import Markup

from ovi_bench.results.human import (
    OVERALL,
    alpha_text,
    interval_text,
    read_human_payload,
    share_text,
    signed_text,
)
from ovi_bench.results.report.plots import IntervalRow, interval_plot

STRENGTH_HEADERS = ["decoder", "prior", "strength", "95% interval", "wins", "losses", "ties", "judgements"]
AGREEMENT_HEADERS = [
    "metric",
    "decoder",
    "agrees with people",
    "95% interval",
    "judgements",
    "metric ties",
    "missing",
    "Kendall τ-b",
]
RATER_HEADERS = [
    "rater",
    "judgements",
    "canaries passed",
    "repeats passed",
    "pass rate",
    "agrees with majority",
    "",
]


@dataclass
class HumanSection:
    question: str
    simulated: bool
    counts: dict[str, Any]
    strengths: list[tuple[str, list[str]]]
    """(prior as the page's prior filter knows it, cells) per overall strength."""
    plots: list[tuple[str, Markup]]
    """(decoder, interval plot of its priors' strengths)."""
    agreement: list[list[str]]
    raters: list[list[str]]
    alpha: str
    notes: list[str] = field(default_factory=list)
    strength_headers: list[str] = field(default_factory=lambda: STRENGTH_HEADERS)
    agreement_headers: list[str] = field(default_factory=lambda: AGREEMENT_HEADERS)
    rater_headers: list[str] = field(default_factory=lambda: RATER_HEADERS)


def human_section(run_dir: Path, fingerprint: str, *, faceted: bool) -> HumanSection | None:
    """The section from the run folder's human.json, or None when there is none of this run. `faceted`: the page
    names priors `prior · decoder` (several decoders), so the strengths follow its prior filter."""
    payload = read_human_payload(run_dir, fingerprint)
    if payload is None:
        return None
    overall = [row for row in payload["strengths"] if row.get("scope") == OVERALL]

    def shown(row: dict[str, Any]) -> str:
        return f"{row['prior']} · {row['decoder']}" if faceted else str(row["prior"])

    plots = []
    for decoder in dict.fromkeys(row["decoder"] for row in overall):
        rows = [
            IntervalRow(
                shown(row), *(_number(row[key]) for key in ("strength", "ci_low", "ci_high")), row["n"]
            )
            for row in overall
            if row["decoder"] == decoder
        ]
        figure = interval_plot(
            rows, axis_label=f"{decoder} · Bradley–Terry strength (log odds) · higher is preferred"
        )
        if figure:
            plots.append((str(decoder), figure))
    agreement = payload["agreement"]
    return HumanSection(
        question=str(payload.get("question_text", payload.get("question", ""))),
        simulated=bool(payload.get("simulated")),
        counts=payload["counts"],
        strengths=[
            (
                shown(row),
                [
                    str(row["decoder"]),
                    str(row["prior"]),
                    signed_text(row["strength"]),
                    interval_text(row["ci_low"], row["ci_high"], signed_text),
                    str(row["wins"]),
                    str(row["losses"]),
                    str(row["ties"]),
                    str(row["n"]),
                ],
            )
            for row in overall
        ],
        plots=plots,
        agreement=[
            [
                str(row["metric"]),
                str(row["decoder"]),
                share_text(row["agreement"]),
                interval_text(row["ci_low"], row["ci_high"], share_text),
                str(row["n"]),
                str(row["metric_ties"]),
                str(row["missing"]),
                signed_text(row["kendall_tau"]),
            ]
            for row in payload["metric_agreement"]
        ],
        raters=[
            [
                str(row["rater"]),
                str(row["judgements"]),
                f"{row['canaries_passed']} of {row['canaries']}",
                f"{row['repeats_passed']} of {row['repeats']}",
                share_text(row["pass_rate"]),
                share_text(row.get("majority_agreement")),
                "excluded" if row["excluded"] else "",
            ]
            for row in payload["raters"]
        ],
        alpha=alpha_text(agreement),
        notes=_notes(payload.get("notes", [])),
    )


def _notes(notes: list[dict[str, str]]) -> list[str]:
    """The overall fits' notes in full; the categories' counted (human.json has them all)."""
    shown = [f"{note['decoder']}: {note['note']}" for note in notes if note["scope"] == OVERALL]
    in_categories = sum(note["scope"] != OVERALL for note in notes)
    if in_categories:
        shown.append(
            f"{in_categories} category fit(s) have no interval: too few judgements (see human.json)."
        )
    return shown


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)
