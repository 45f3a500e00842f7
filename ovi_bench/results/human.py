"""`ovi-bench human RUN_DIR`: what people's pairwise judgements of a run's images say, and which metric agrees.

From the judgements (`ovi_bench.rate.judgements`) and the run's per-image scores:

1. **Attention checks** per rater: canaries (pass: the intact image was chosen; a skip fails) and repeats (pass: the
   same prior chosen again, or a tie both times; a repeat whose original is missing or skipped is not scored). A
   rater with at least `MIN_CHECKS` scored checks and a pass rate below `DEFAULT_MIN_PASS_RATE` is excluded: none
   of their judgements enters anything below, and they are counted.
2. **Strengths**: Bradley–Terry per decoder (priors are only ever compared on one decoder's images), overall and per
   category, ties as half wins, with 95% bootstrap intervals over prompts (`ovi_bench.results.bradley_terry`); and
   the win rate of every prior pair.
3. **Agreement** between raters and between each metric and the raters (`ovi_bench.results.human_agreement`).
4. **Planning**: the judgements a target interval width needs, extrapolated from the current widths (width ∝ 1/√n).

Only the ordinary `pair` judgements of the kept raters for one question are estimated from; repeats (a rater's second
answer to the same pair) and canaries only check attention. Results go to human.csv (one row per decoder × prior ×
scope), human.json (everything) and the "Human judgements" section of leaderboard.md (`human_markdown`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ovi_bench.errors import DataError
from ovi_bench.io import atomic_write_text, write_csv
from ovi_bench.rate.judgements import JUDGEMENT_COLUMNS, QUESTIONS, RATINGS_FILE, chosen_prior
from ovi_bench.results.bradley_terry import (
    CONFIDENCE,
    DEFAULT_ALPHA,
    DEFAULT_RESAMPLES,
    fit_bradley_terry,
    judgements_needed,
)
from ovi_bench.results.human_agreement import metric_agreement, rater_agreement
from ovi_bench.results.records import load_run
from ovi_bench.results.summary import markdown_table
from ovi_bench.text import markdown_text

HUMAN_CSV = "human.csv"
HUMAN_JSON = "human.json"
SECTION_TITLE = "## Human judgements"
OVERALL = "overall"
"""The scope of the strengths over every category."""
MIN_CHECKS = 2
"""Attention checks a rater must have answered before the pass rate can exclude them (one miss is a slip)."""
DEFAULT_MIN_PASS_RATE = 0.75
DEFAULT_TARGET_WIDTH = 0.5
"""Target width of the strengths' 95% intervals for the study plan: ±0.25 on the log-odds scale."""
STRENGTH_COLUMNS = [
    "decoder",
    "prior",
    "scope",
    "strength",
    "ci_low",
    "ci_high",
    "wins",
    "losses",
    "ties",
    "n",
]
SIMULATED = "simulated"
PAYLOAD_KEYS = ("counts", "strengths", "agreement", "metric_agreement", "raters", "notes", "plan")
"""What every human.json holds (and what the leaderboard and report sections read)."""


def attention_checks(judgements: pd.DataFrame, min_pass_rate: float = DEFAULT_MIN_PASS_RATE) -> pd.DataFrame:
    """Per rater: judgements, canaries and repeats answered and passed, pass rate, and `excluded` (module docstring:
    at least `MIN_CHECKS` scored checks and a pass rate below `min_pass_rate`)."""
    by_id = judgements.set_index("judgement_id", drop=False)
    by_id = by_id[~by_id.index.duplicated()]
    rows = []
    for rater, own in judgements.groupby(judgements["rater"].astype(str), sort=False):
        canaries = own[own["kind"] == "canary"]
        canaries_passed = int((canaries["choice"] == canaries["expected"]).sum())
        repeats_scored = repeats_passed = 0
        for repeat in own[own["kind"] == "repeat"].itertuples(index=False):
            if repeat.repeat_of not in by_id.index:
                continue
            original = by_id.loc[repeat.repeat_of]
            if "skip" in (repeat.choice, original["choice"]):
                continue
            repeats_scored += 1
            repeats_passed += chosen_prior(
                repeat.left_prior, repeat.right_prior, repeat.choice
            ) == chosen_prior(original["left_prior"], original["right_prior"], original["choice"])
        checks = len(canaries) + repeats_scored
        passed = canaries_passed + repeats_passed
        pass_rate = passed / checks if checks else float("nan")
        rows.append(
            {
                "rater": rater,
                "judgements": len(own),
                "canaries": len(canaries),
                "canaries_passed": canaries_passed,
                "repeats": repeats_scored,
                "repeats_passed": repeats_passed,
                "pass_rate": pass_rate,
                "excluded": bool(checks >= MIN_CHECKS and pass_rate < min_pass_rate),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "rater",
            "judgements",
            "canaries",
            "canaries_passed",
            "repeats",
            "repeats_passed",
            "pass_rate",
            "excluded",
        ],
    )


def strength_table(
    pairs: pd.DataFrame,
    prior_order: list[str] | None = None,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """(`STRENGTH_COLUMNS` rows per decoder × prior × scope, the fits' notes: decoder, scope and note). Scopes: `OVERALL`, then each category
    in order of appearance; priors in `prior_order` (the run's), then any other prior judged."""
    frames, notes = [], []
    for decoder, judged in pairs.groupby(pairs["decoder"].astype(str), sort=False):
        seen = dict.fromkeys([*judged["left_prior"].astype(str), *judged["right_prior"].astype(str)])
        priors = [prior for prior in prior_order or [] if prior in seen] + [
            prior for prior in seen if prior not in (prior_order or [])
        ]
        scopes = [(OVERALL, judged), *judged.groupby(judged["category"].astype(str), sort=False)]
        for scope, subset in scopes:
            fit = fit_bradley_terry(subset, priors, resamples=resamples, seed=seed)
            if fit.note:
                notes.append({"decoder": decoder, "scope": scope, "note": fit.note})
            frames.append(fit.frame().assign(decoder=decoder, scope=scope))
    if not frames:
        return pd.DataFrame(columns=STRENGTH_COLUMNS), notes
    table = pd.concat(frames, ignore_index=True)[STRENGTH_COLUMNS]
    return table[table["n"] > 0].reset_index(drop=True), notes


def win_rates(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per decoder and unordered prior pair (in sorted order): judgements, wins of each, ties, and `win_rate`, the
    first prior's share with ties counted half."""
    answered = pairs[pairs["choice"].isin(("left", "right", "tie"))]
    tally: dict[tuple[str, str, str], list[int]] = {}
    for decoder, left, right, choice in zip(
        answered["decoder"].astype(str),
        answered["left_prior"].astype(str),
        answered["right_prior"].astype(str),
        answered["choice"],
        strict=True,
    ):
        first, second = sorted((left, right))
        counts = tally.setdefault((decoder, first, second), [0, 0, 0])
        winner = chosen_prior(left, right, choice)
        counts[2 if winner is None else 0 if winner == first else 1] += 1
    rows = [
        {
            "decoder": decoder,
            "prior_a": first,
            "prior_b": second,
            "n": sum(counts),
            "a_wins": counts[0],
            "b_wins": counts[1],
            "ties": counts[2],
            "win_rate": (counts[0] + counts[2] / 2) / sum(counts),
        }
        for (decoder, first, second), counts in tally.items()
    ]
    return pd.DataFrame(
        rows, columns=["decoder", "prior_a", "prior_b", "n", "a_wins", "b_wins", "ties", "win_rate"]
    )


def study_plan(strengths: pd.DataFrame, target_width: float = DEFAULT_TARGET_WIDTH) -> pd.DataFrame:
    """Per decoder (overall scope): the judgements used, the widest 95% interval of its strengths now, and the
    judgements that interval needs to shrink to `target_width` (width ∝ 1/√n, so n × (width / target)²), and how
    many more that is. A decoder without a finite interval gets no row (there is nothing to extrapolate from)."""
    rows = []
    overall = strengths[strengths["scope"] == OVERALL]
    for decoder, fit in overall.groupby("decoder", sort=False):
        widths = (fit["ci_high"] - fit["ci_low"]).to_numpy(dtype=np.float64)
        widths = widths[np.isfinite(widths)]
        if not widths.size:
            continue
        used = int(fit["n"].sum() // 2)  # every judgement counts for both of its priors
        needed = judgements_needed(used, float(widths.max()), target_width)
        rows.append(
            {
                "decoder": decoder,
                "judgements": used,
                "widest_interval": float(widths.max()),
                "target_width": target_width,
                "judgements_needed": needed,
                "more_judgements": max(0, needed - used),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "decoder",
            "judgements",
            "widest_interval",
            "target_width",
            "judgements_needed",
            "more_judgements",
        ],
    )


def analyse_judgements(
    judgements: pd.DataFrame,
    scores: pd.DataFrame,
    higher_is_better: Mapping[str, bool],
    *,
    prior_order: list[str] | None = None,
    question: str | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    min_pass_rate: float = DEFAULT_MIN_PASS_RATE,
    target_width: float = DEFAULT_TARGET_WIDTH,
) -> dict[str, Any]:
    """The whole analysis (module docstring) as the human.json payload. `question` defaults to the question most
    judgements answer; judgements of other questions are counted and left out."""
    if judgements.empty:
        raise DataError("there are no judgements to analyse.")
    for name, value, valid, expected in (
        ("bootstrap resamples", resamples, resamples >= 0, "0 or more"),
        ("minimum pass rate", min_pass_rate, 0 <= min_pass_rate <= 1, "between 0 and 1"),
        ("target width", target_width, target_width > 0, "a positive number"),
    ):
        if not valid:
            raise DataError(f"the {name} is {value}; give {expected}.")
    missing = [column for column in JUDGEMENT_COLUMNS if column not in judgements.columns]
    if missing:
        raise DataError(
            f"the judgements lack the column(s) {', '.join(missing)}; see ovi_bench.rate.judgements."
        )
    asked = judgements["question"].astype(str).value_counts()
    if question is None:
        question = str(asked.index[0])
    elif question not in asked.index:
        raise DataError(
            f"no judgement answers the question {question!r}; the judgements answer "
            f"{', '.join(repr(key) for key in asked.index)}."
        )
    checks = attention_checks(judgements, min_pass_rate)
    excluded = set(checks.loc[checks["excluded"], "rater"])
    raters = judgements["rater"].astype(str)
    of_question = judgements["question"].astype(str) == question
    is_pair = judgements["kind"] == "pair"
    kept_pairs = judgements[of_question & is_pair & ~raters.isin(excluded)]
    used = kept_pairs[kept_pairs["choice"] != "skip"]
    strengths, notes = strength_table(used, prior_order, resamples=resamples, seed=seed)
    agreement, majority = rater_agreement(used)
    checks = checks.merge(majority, on="rater", how="left")
    simulated = int((used["source"].astype(str) == SIMULATED).sum())
    return {
        "question": question,
        "question_text": dict[str, str](QUESTIONS).get(question, question),
        "simulated": simulated > 0,
        "counts": {
            "judgements": len(judgements),
            "other_questions": int((~of_question).sum()),
            "attention_checks": int((of_question & ~is_pair).sum()),
            "excluded_raters": len(excluded),
            "excluded_judgements": int((of_question & is_pair & raters.isin(excluded)).sum()),
            "skipped": int((kept_pairs["choice"] == "skip").sum()),
            "used": len(used),
            "simulated": simulated,
            "raters": int(raters.nunique()),
        },
        "settings": {
            "resamples": resamples,
            "seed": seed,
            "confidence": CONFIDENCE,
            "alpha": DEFAULT_ALPHA,
            "min_pass_rate": min_pass_rate,
            "min_checks": MIN_CHECKS,
            "ties": "half a win for each side (decisive judgements weigh 2, a tie is one win each way)",
        },
        "notes": notes,
        "strengths": _records(strengths),
        "win_rates": _records(win_rates(used)),
        "raters": _records(checks),
        "agreement": _clean(agreement),
        "metric_agreement": _records(
            metric_agreement(
                used,
                scores,
                higher_is_better,
                strengths[strengths["scope"] == OVERALL],
                resamples=resamples,
                seed=seed,
            )
        ),
        "plan": _records(study_plan(strengths, target_width)),
    }


def _clean(value: Any) -> Any:
    """JSON-ready: NaN and infinities become null, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(key): _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [_clean(row) for row in frame.to_dict("records")]


# ---------------------------------------------------------------------------------------------------------------------
# Files: human.csv, human.json and the leaderboard.md section.


def write_human(
    run_dir: str | Path,
    *,
    question: str | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    min_pass_rate: float = DEFAULT_MIN_PASS_RATE,
    target_width: float = DEFAULT_TARGET_WIDTH,
    judgements: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Analyse the judgements stored in the run folder (or `judgements`, a table of that shape) and write human.csv,
    human.json and the "Human judgements" section of leaderboard.md; the payload."""
    run = load_run(run_dir)
    if judgements is None:
        judgements = _stored_judgements(run.path)
    scores = run.scores
    directions = {metric: run.higher_is_better(metric) for metric in scores["metric"].dropna().unique()}
    payload = {
        "spec_fingerprint": run.fingerprint,
        **analyse_judgements(
            judgements,
            scores,
            directions,
            prior_order=run.priors,
            question=question,
            resamples=resamples,
            seed=seed,
            min_pass_rate=min_pass_rate,
            target_width=target_width,
        ),
    }
    write_csv(pd.DataFrame(payload["strengths"], columns=STRENGTH_COLUMNS), run.path / HUMAN_CSV)
    atomic_write_text(run.path / HUMAN_JSON, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    board = run.path / "leaderboard.md"
    if board.is_file():
        text = board.read_text(encoding="utf-8")
        atomic_write_text(board, with_human_section(text, human_markdown(payload)))
    return payload


def _stored_judgements(run_dir: Path) -> pd.DataFrame:
    no_judgements = (
        f"{run_dir} has no judgements: collect some with `ovi-bench rate {run_dir}`, or merge a study collected "
        f"elsewhere with `ovi-bench ratings import {run_dir} FILE`."
    )
    if not (run_dir / RATINGS_FILE).is_file():
        raise DataError(no_judgements)
    try:
        from ovi_bench.rate.storage import read_judgements
    except ModuleNotFoundError as error:
        if error.name != "ovi_bench.rate.storage":
            raise
        raise DataError(
            "this installation of ovi-bench has no rating store (ovi_bench.rate.storage) to read "
            f"{run_dir / RATINGS_FILE}; install the full ovi-bench."
        ) from error
    judgements = read_judgements(run_dir)
    if judgements.empty:
        raise DataError(no_judgements)
    return judgements


def read_human_payload(run_dir: str | Path, fingerprint: str | None = None) -> dict[str, Any] | None:
    """human.json of the run folder, or None where there is none, it is unreadable, or it was written for another
    run (`fingerprint` given and different): a stale analysis is never shown beside new results."""
    path = Path(run_dir) / HUMAN_JSON
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(payload, dict) or not all(key in payload for key in PAYLOAD_KEYS):
        return None
    if fingerprint is not None and payload.get("spec_fingerprint") != fingerprint:
        return None
    return payload


def with_human_section(markdown: str, section: str) -> str:
    """`markdown` (a leaderboard.md) with its "Human judgements" section replaced by `section`, or `section` put
    where `write_leaderboard` puts it: before "## Every metric" (at the end when there is no such heading)."""
    lines = markdown.split("\n")
    if SECTION_TITLE in lines:
        start = lines.index(SECTION_TITLE)
        end = next(
            (index for index in range(start + 1, len(lines)) if lines[index].startswith("## ")), len(lines)
        )
        lines = lines[:start] + lines[end:]
    new = [*section.rstrip("\n").split("\n"), ""]
    where = lines.index("## Every metric") if "## Every metric" in lines else len(lines)
    return "\n".join(lines[:where] + new + lines[where:])


def signed_text(value: float | None) -> str:
    """A strength or τ as text: two decimals with its sign; "–" for a missing value (null in human.json)."""
    return "–" if value is None else f"{value:+.2f}"


def share_text(value: float | None) -> str:
    """A share in [0, 1] as text: two decimals; "–" for a missing value."""
    return "–" if value is None else f"{value:.2f}"


def interval_text(low: float | None, high: float | None, text: Callable[[float | None], str]) -> str:
    """[low, high] with each bound through `text`; "–" when the interval is missing."""
    return "–" if low is None or high is None else f"[{text(low)}, {text(high)}]"


def _table(rows: list[dict[str, Any]], cells: Mapping[str, Callable[[dict[str, Any]], Any]]) -> str:
    return markdown_table(
        pd.DataFrame({header: [cell(row) for row in rows] for header, cell in cells.items()})
    )


def human_markdown(payload: Mapping[str, Any]) -> str:
    """The "Human judgements" section of leaderboard.md from a human.json payload (pure)."""
    counts = payload["counts"]
    lines = [SECTION_TITLE, ""]
    if payload.get("simulated"):
        lines += [
            f"**Simulated judgements**: {counts['simulated']} of the {counts['used']} judgements used come from "
            "simulated raters (source `simulated`), not from people.",
            "",
        ]
    lines += [
        f"Question: {markdown_text(payload['question_text'])} · {counts['used']} judgements used from "
        f"{counts['raters'] - counts['excluded_raters']} rater(s); {counts['excluded_raters']} rater(s) excluded by "
        f"the attention checks ({counts['excluded_judgements']} judgements), {counts['skipped']} skipped, "
        f"{counts['attention_checks']} attention checks. Bradley–Terry strengths (log odds, mean 0, ties half a win) "
        "with 95% bootstrap intervals over prompts; every category's in human.csv.",
        "",
    ]
    overall = [row for row in payload["strengths"] if row["scope"] == OVERALL]
    if overall:
        strength_cells: dict[str, Callable[[dict[str, Any]], Any]] = {
            "decoder": lambda row: row["decoder"],
            "prior": lambda row: row["prior"],
            "strength": lambda row: signed_text(row["strength"]),
            "95% interval": lambda row: interval_text(row["ci_low"], row["ci_high"], signed_text),
            **{column: (lambda row, column=column: row[column]) for column in ("wins", "losses", "ties")},
        }
        lines += [_table(overall, strength_cells), ""]
    notes = payload.get("notes", [])
    lines += [
        f"- {markdown_text(note['decoder'])}: {markdown_text(note['note'])}"
        for note in notes
        if note["scope"] == OVERALL
    ]
    if any(note["scope"] != OVERALL for note in notes):
        lines.append(
            f"- {sum(note['scope'] != OVERALL for note in notes)} category fit(s) have no interval: too few "
            "judgements (human.json's `notes` say which and why)."
        )
    lines += [
        "",
        f"Inter-rater agreement: Krippendorff's α (nominal) {markdown_text(alpha_text(payload['agreement']))}.",
        "",
    ]
    if payload["metric_agreement"]:
        agreement_cells: dict[str, Callable[[dict[str, Any]], Any]] = {
            "metric": lambda row: row["metric"],
            "decoder": lambda row: row["decoder"],
            "agrees with people": lambda row: share_text(row["agreement"]),
            "95% interval": lambda row: interval_text(row["ci_low"], row["ci_high"], share_text),
            "judgements": lambda row: row["n"],
            "metric ties": lambda row: row["metric_ties"],
            "Kendall τ-b": lambda row: signed_text(row["kendall_tau"]),
        }
        lines += [
            "Metric–human agreement: the share of decisive judgements whose preferred image the metric also scores "
            "better (metric ties left out and counted), and Kendall's τ-b between the metric's prior ranking and "
            "the strengths.",
            "",
            _table(payload["metric_agreement"], agreement_cells),
            "",
        ]
    return "\n".join(lines)


def alpha_text(agreement: Mapping[str, Any]) -> str:
    """Krippendorff's α with the items it covers, or why there is none."""
    alpha = agreement["krippendorff_alpha"]
    if alpha is None:
        return f"not available ({agreement['reason']})"
    return f"{alpha:.2f} over {agreement['items']} items judged by two raters or more"
