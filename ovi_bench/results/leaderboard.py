"""The leaderboard: per-image scores aggregated per prior × category × metric, set-level values, diagnostics and audit
flags beside them, and the files it is written to (leaderboard.{csv,md,tex,json}).

Pure tables in, tables and files out: `ovi_bench.provenance.write_results` builds a run's leaderboard with these at the
end of a run, and `merge_runs` puts several finished runs into one leaderboard when their protocols agree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ovi_bench.errors import OviBenchError
from ovi_bench.io import atomic_write_text, write_csv
from ovi_bench.results.generalisation import Generalisation, generalisation_markdown, generalisation_records
from ovi_bench.results.human import human_markdown
from ovi_bench.results.prompt_length import PromptLength, prompt_length_markdown, prompt_length_records
from ovi_bench.results.records import (
    LEADERBOARD_COLUMNS,
    RunRecord,
    check_same_protocol,
    contributed_priors,
    contributed_rows,
    in_board_order,
    protocol,
)
from ovi_bench.results.statistics import prompt_bootstrap_interval
from ovi_bench.results.summary import (
    markdown_table,
    official_summary,
    summary_latex,
    summary_markdown,
)
from ovi_bench.spec import OFFICIAL_METRICS
from ovi_bench.text import markdown_text


def leaderboard_frame(
    scores: pd.DataFrame, prior_order: list[str], higher_is_better: Mapping[str, bool]
) -> pd.DataFrame:
    """Mean, standard deviation and counts of per-image scores, per prior × decoder × category × metric.

    The category score is the mean over all images, as T2I-CompBench defines it. Rows follow the spec's prior
    order and the benchmark's category order; there is deliberately no "overall" row. `higher_is_better` maps each
    metric of `scores` to its direction, which every row carries. Scores without a `decoder` column are one
    decoder's (the rows get none either).
    """
    columns = [column for column in LEADERBOARD_COLUMNS if column != "decoder" or "decoder" in scores.columns]
    if scores.empty:
        return pd.DataFrame(columns=columns)
    keys = [column for column in ("prior", "decoder", "category", "metric") if column in columns]
    grouped = scores.groupby(keys, sort=False)
    table = grouped.agg(
        mean=("score", "mean"), std=("score", "std"), n_prompts=("prompt_id", "nunique"), n=("score", "size")
    ).reset_index()
    table["std"] = table["std"].fillna(0.0)
    # 95% interval of the mean, resampling prompts with their images (images are nested within prompts).
    intervals = {
        key: prompt_bootstrap_interval(list(group.prompt_id), list(group.score)) for key, group in grouped
    }
    rows = zip(*(table[key] for key in keys), strict=True)
    table["ci_low"], table["ci_high"] = zip(
        *((intervals[row][1], intervals[row][2]) for row in rows), strict=True
    )
    # Marks the row that is the category's T2I-CompBench++ metric; the others are extra views of the same images.
    table["official"] = [
        OFFICIAL_METRICS.get(category) == metric
        for category, metric in zip(table.category, table.metric, strict=True)
    ]
    table["higher_is_better"] = [higher_is_better[metric] for metric in table.metric]
    return in_board_order(table, prior_order)[columns]


def with_diagnostics(
    board: pd.DataFrame, embeddings: pd.DataFrame, diagnostics: Sequence[str]
) -> pd.DataFrame:
    """Add the mean of each embedding diagnostic (the `diagnostics` columns of `embeddings`) per prior × category as
    extra leaderboard columns."""
    columns = [column for column in diagnostics if column in embeddings.columns]
    if board.empty or not columns:
        return board
    means = embeddings.groupby(["prior", "category"], sort=False)[columns].mean().reset_index()
    return board.merge(means, on=["prior", "category"], how="left")


SET_SCORE_COLUMNS = [
    "prior",
    "decoder",
    "category",
    "metric",
    "value",
    "n_generated",
    "n_prompts",
    "n_reference",
    "feature_space",
    "details",
]


def set_score_frame(set_rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The set-level rows as a table; `details` as JSON text. `metric` carries the feature space: `fid[dinov2]`."""
    if not set_rows:
        return pd.DataFrame(columns=SET_SCORE_COLUMNS)
    table = pd.DataFrame(set_rows)
    table["details"] = [json.dumps(details, sort_keys=True) for details in table["details"]]
    return table[[column for column in SET_SCORE_COLUMNS if column in table.columns]]


def with_set_scores(
    board: pd.DataFrame, set_scores: pd.DataFrame, higher_is_better: Mapping[str, bool]
) -> pd.DataFrame:
    """Append set-level values as leaderboard rows: `mean` is the value, `std` empty (one number per set); each row
    carries its direction (`higher_is_better`, by leaderboard name) and its `feature_space`."""
    if set_scores.empty:
        return board
    decoder = {"decoder": set_scores["decoder"]} if "decoder" in set_scores.columns else {}
    rows = pd.DataFrame(
        {
            "prior": set_scores["prior"],
            **decoder,
            "category": set_scores["category"],
            "metric": set_scores["metric"],
            "official": False,
            "mean": pd.to_numeric(set_scores["value"], errors="coerce"),
            "std": float("nan"),
            "n_prompts": set_scores["n_prompts"],
            "n": set_scores["n_generated"],
            "higher_is_better": [higher_is_better[metric] for metric in set_scores["metric"]],
            "feature_space": set_scores["feature_space"],
        }
    )
    if board.empty:
        return rows.reset_index(drop=True)
    return pd.concat([board, rows], ignore_index=True)


def with_audits(board: pd.DataFrame, audits: pd.DataFrame) -> pd.DataFrame:
    """An `audit` column next to each audited metric × category (× decoder, where both tables have decoders): "ok",
    or what the audits flagged."""
    if board.empty or audits.empty:
        return board
    keys = ["metric", "category"] + (
        ["decoder"] if "decoder" in audits.columns and "decoder" in board.columns else []
    )
    flags = (
        audits[audits.flagged]
        .groupby(keys)["audit"]
        .agg(
            lambda kinds: "; ".join(
                {"prompt-shuffle": "cannot tell prompts apart", "canaries": "canaries score high"}[k]
                for k in kinds
            )
        )
    )
    audited = set(zip(*(audits[key] for key in keys), strict=True))
    board = board.copy()
    board["audit"] = [
        flags.get(row, "ok") if row in audited else ""
        for row in zip(*(board[key] for key in keys), strict=True)
    ]
    return board


# ---------------------------------------------------------------------------------------------------------------------
# leaderboard.{csv,md,tex,json}: the long table, and the paper table of each category's official metric.


@dataclass(frozen=True)
class LeaderboardHeader:
    """What heads the Markdown file and captions the LaTeX table."""

    title: str
    lines: list[str]
    """Markdown lines under the title: fingerprints, prompts, seeds."""
    caption: str
    """Plain text for the LaTeX caption (escaped when written)."""


def write_leaderboard(
    out: Path,
    board: pd.DataFrame,
    header: LeaderboardHeader,
    meta: dict[str, Any],
    view: Generalisation | None = None,
    lengths: PromptLength | None = None,
    human: Mapping[str, Any] | None = None,
) -> None:
    """leaderboard.csv (every row), .md (the official table, the generalisation view, the prompt-length view and the
    human judgements (a human.json payload, `ovi_bench.results.human`) when there are, then every row), .tex (the
    official table) and .json (every row plus `meta`: the provenance; and the views' tables)."""
    out.mkdir(parents=True, exist_ok=True)
    summary = official_summary(board)
    write_csv(board, out / "leaderboard.csv")
    long_table = board.drop(columns=["spec_fingerprint"], errors="ignore")
    markdown = [f"# {markdown_text(header.title)}", "", *header.lines, ""]
    if not summary.empty:
        markdown += ["## Official metric per category", "", summary_markdown(summary), ""]
    if view is not None and not view.empty:
        markdown += [generalisation_markdown(view), ""]
    if lengths is not None:
        markdown += ["## Prompt length", "", prompt_length_markdown(lengths.view, lengths.summary), ""]
    if human is not None:
        markdown += [human_markdown(human), ""]
    markdown += [
        "## Every metric",
        "",
        markdown_table(long_table, floatfmt=".4f") if not board.empty else "(no scores)",
        "",
    ]
    atomic_write_text(out / "leaderboard.md", "\n".join(markdown))
    if not summary.empty:
        atomic_write_text(out / "leaderboard.tex", summary_latex(summary, header.caption))
    else:
        (out / "leaderboard.tex").unlink(missing_ok=True)  # never leave a stale table next to fresh results
    payload = {**meta, "leaderboard": json.loads(board.to_json(orient="records"))}
    if view is not None and not view.empty:
        payload["generalisation"] = generalisation_records(view)
    if lengths is not None:
        payload["prompt_length"] = prompt_length_records(lengths)
    atomic_write_text(out / "leaderboard.json", json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------------------------------------
# Several runs in one table (`ovi-bench leaderboard RUN_DIR ...`).


@dataclass
class MergedLeaderboard:
    board: pd.DataFrame
    """Every run's leaderboard rows, with a `run` column; priors in order of first appearance."""
    runs: list[RunRecord]
    protocol_differences: list[str]
    """Empty unless the runs' protocols differ and that was allowed."""
    notes: list[str] = field(default_factory=list)
    """Rows left out as exact repeats (the same prior, with the same fingerprint, in two runs)."""

    def header(self) -> LeaderboardHeader:
        lines = [
            f"- {markdown_text(run.name)} ({markdown_text(run.path)}): spec `{run.fingerprint[:12]}`"
            for run in self.runs
        ]
        if self.protocol_differences:
            lines += ["", "**Protocols differ** (merged on request):", ""]
            lines += [f"- {markdown_text(line)}" for line in self.protocol_differences]
        shared = protocol(self.runs[0].provenance)
        return LeaderboardHeader(
            title=f"leaderboard of {len(self.runs)} run(s)",
            lines=lines,
            caption=f"{shared['prompts.source']} prompts, {shared['images_per_prompt']} image(s) per prompt; "
            + ", ".join(f"{run.name} {run.fingerprint[:12]}" for run in self.runs),
        )

    def meta(self) -> dict[str, Any]:
        return {
            "runs": [
                {"path": str(run.path), "name": run.name, "provenance": _without_leaderboard(run.provenance)}
                for run in self.runs
            ],
            "protocol": protocol(self.runs[0].provenance),
            "protocol_differences": self.protocol_differences,
            "notes": self.notes,
        }


def _without_leaderboard(results: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value for key, value in results.items() if key not in ("leaderboard", "set_scores", "audits")
    }


def merge_runs(runs: list[RunRecord], *, allow_protocol_mismatch: bool = False) -> MergedLeaderboard:
    """The runs' leaderboards side by side, refused when their protocols differ (unless allowed); each prior once
    (see `contributed_priors`)."""
    if not runs:
        raise OviBenchError("give at least one run folder.")
    differences = check_same_protocol(runs, allow_mismatch=allow_protocol_mismatch)
    contributions, notes = contributed_priors(runs, protocols_differ=bool(differences))
    frames = []
    for run, names in zip(runs, contributions, strict=True):
        board = run.leaderboard
        if not board.empty:
            frames.append(contributed_rows(board, names).assign(run=run.name))
    board = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=[*LEADERBOARD_COLUMNS, "run"])
    )
    board = in_board_order(
        board, list(dict.fromkeys(name for names in contributions for name in names.values()))
    )
    columns = ["run", *[column for column in board.columns if column != "run"]]
    return MergedLeaderboard(board[columns], runs, differences, notes)
