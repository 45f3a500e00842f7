"""Regression checks: `check`, which says whether a new run got worse than a baseline file of per-image scores.

`ovi-bench baseline RUN_DIR --out FILE` (`ovi_bench.results.baseline`) stores a finished run's protocol and every image's score (per prior, category
and metric: `[prompt_id, seed, score]`). `ovi-bench check RUN_DIR --baseline FILE` re-reads a later run of the same
protocol and gives each prior × category × metric a verdict: `ok`, `improved`, `regressed`, `incomplete` (the run
lacks some of the baseline's images of the row: more than `allow_missing`, a fraction, default 0), `missing` (the run
lacks all of them) or `new` (the run has scores the baseline lacks). It exits 0 when nothing regressed, went missing or
is incomplete, 1 when something did, and 2 when the input is unusable: an unreadable or malformed baseline (one with
no scores, or a score that is not a finite number), a baseline of another format version, or a run whose protocol
differs from the baseline's (the error names the fields), since numbers under two protocols say nothing about a
regression.

Missing images fail a check because the paired test sees only what both sides have: a run that lost the images a
change broke (a crash on some prompts, a metric that returned no score) would otherwise pass on the images that
survived.

Why this test. The same prompt and seed give the same image up to float rounding, so each of the run's images is
paired with the baseline's image of the same prompt and seed, and the question is whether the paired differences
(run − baseline, sign flipped for lower-is-better metrics so that positive is better) are systematically negative.
Pairing removes the prompt-to-prompt spread, which is far larger than any change worth catching. The interval is a
95% percentile bootstrap that resamples prompts with their images (`ovi_bench.results.statistics.paired_difference`), because
the images of one prompt share its difficulty and are not independent. A row regresses only when both hold:

* the mean difference is below −tolerance: the change is large enough to matter (in the metric's own units), and
* the interval's upper end is below 0: it is not one or two images flipping, which the bootstrap sees as noise.

The tolerance takes care of what must not fail a check: float rounding across machines, thread counts and library
versions, which moves a tiny model's pixels by a grey level and, through a detector's threshold, can flip a discrete
score on an image or two. The interval takes care of the other side: a mean pulled past the tolerance by a single
image of a small prompt set still has an interval reaching 0 whenever enough resamples leave that prompt out.

Limits. A per-image pairing needs the same prompts and seeds (the protocol check enforces them), so a baseline checks
reproducibility and regressions of one protocol, not a comparison across protocols. The bootstrap over a handful of
prompts is coarse: with n prompts an interval can exclude 0 only when the change shows on many of them, and with one
prompt the interval has zero width, so the tolerance alone decides. Many rows are tested at once without a multiplicity
correction; the tolerance, not the 5% level, is what keeps false alarms rare, so set it (per metric with
`tolerances`) above the run-to-run noise of your setup and below the change you care about. Tolerances are absolute,
in each metric's units: 0.01 suits T2I-CompBench's 0–1 scores, not a 1–10 aesthetic rating.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ovi_bench.errors import DataError
from ovi_bench.io import atomic_write_text, write_csv
from ovi_bench.results.baseline import SCORE_KEYS, Baseline, load_baseline
from ovi_bench.results.records import (
    ProtocolMismatchError,
    RunRecord,
    in_board_order,
    load_run,
    protocol,
    protocol_differences,
)
from ovi_bench.results.statistics import paired_difference
from ovi_bench.text import did_you_mean, short_repr

DEFAULT_TOLERANCE = 0.01

OK, IMPROVED, REGRESSED, INCOMPLETE, MISSING, NEW = (
    "ok",
    "improved",
    "regressed",
    "incomplete",
    "missing",
    "new",
)
FAILING_STATUSES = (REGRESSED, INCOMPLETE, MISSING)
ALL_STATUSES = (OK, IMPROVED, REGRESSED, INCOMPLETE, MISSING, NEW)

VERDICT_COLUMNS = [
    "prior",
    "decoder",
    "category",
    "metric",
    "status",
    "n_pairs",
    "n_prompts",
    "n_missing",
    "baseline_mean",
    "run_mean",
    "difference",
    "ci_low",
    "ci_high",
    "max_abs_difference",
    "tolerance",
    "higher_is_better",
]
"""`difference`, `ci_low`, `ci_high`: mean of run − baseline over paired images and its 95% interval, sign flipped for
lower-is-better metrics (positive = better); `baseline_mean`/`run_mean` are raw means over the pairs; `n_missing`
counts baseline images the run has no score for (more than `allow_missing` of them make the row `incomplete`);
`max_abs_difference` is the largest change of a single image."""

# ---------------------------------------------------------------------------------------------------------------------
# The verdicts: pure computation on two score frames.


def verdict_table(
    baseline_scores: pd.DataFrame,
    run_scores: pd.DataFrame,
    *,
    higher_is_better: Callable[[str], bool],
    tolerance_for: Callable[[str], float],
    allow_missing: float = 0.0,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per prior × decoder × category × metric of either frame (VERDICT_COLUMNS), paired on (prompt_id,
    seed).

    Both frames have the columns prior, category, metric, prompt_id, seed, score, and `decoder` (where one lacks it,
    every row of both is taken as one decoder's); images without a score are not used.
    """
    if "decoder" not in baseline_scores.columns or "decoder" not in run_scores.columns:
        baseline_scores, run_scores = baseline_scores.assign(decoder=""), run_scores.assign(decoder="")
    baseline = baseline_scores.loc[baseline_scores["score"].notna(), [*SCORE_KEYS, "score"]]
    run = run_scores.loc[run_scores["score"].notna(), [*SCORE_KEYS, "score"]]
    run = run.assign(seed=run["seed"].astype(int), prompt_id=run["prompt_id"].astype(str))
    baseline = baseline.assign(seed=baseline["seed"].astype(int), prompt_id=baseline["prompt_id"].astype(str))
    joined = baseline.merge(run, on=SCORE_KEYS, how="outer", suffixes=("_baseline", "_run"))
    rows = []
    for (prior, decoder, category, metric), group in joined.groupby(
        ["prior", "decoder", "category", "metric"], sort=False
    ):
        row = {"prior": prior, "decoder": decoder, "category": category, "metric": metric}
        rows.append(
            row
            | row_verdict(
                group,
                higher_is_better(metric),
                tolerance_for(metric),
                allow_missing=allow_missing,
                resamples=resamples,
                confidence=confidence,
                seed=seed,
            )
        )
    # Priors in the baseline's order (new ones after), categories in the benchmark's order, metrics by name.
    return in_board_order(
        pd.DataFrame(rows, columns=VERDICT_COLUMNS), list(dict.fromkeys(baseline_scores["prior"]))
    )


def row_verdict(
    images: pd.DataFrame,
    higher_is_better: bool,
    tolerance: float,
    *,
    allow_missing: float = 0.0,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """The verdict of one prior × category × metric from its joined images (score_baseline, score_run).

    `incomplete` when more than `allow_missing` (a fraction) of the baseline's images have no score in the run,
    unless the paired images regressed, which is said first.
    """
    in_baseline = int(images["score_baseline"].notna().sum())
    paired = images.dropna(subset=["score_baseline", "score_run"]).sort_values(["prompt_id", "seed"])
    facts: dict[str, Any] = {
        "n_pairs": len(paired),
        "n_prompts": paired["prompt_id"].nunique(),
        "n_missing": in_baseline - len(paired),
        "tolerance": tolerance,
        "higher_is_better": higher_is_better,
    }
    if paired.empty:
        return facts | {"status": MISSING if in_baseline else NEW}
    sign = 1.0 if higher_is_better else -1.0
    change = paired_difference(
        list(paired["prompt_id"]),
        list(sign * paired["score_baseline"]),
        list(sign * paired["score_run"]),
        resamples=resamples,
        confidence=confidence,
        seed=seed,
    )
    verdict = status(change.estimate, change.low, change.high, tolerance)
    if verdict != REGRESSED and facts["n_missing"] > allow_missing * in_baseline:
        verdict = INCOMPLETE
    return facts | {
        "status": verdict,
        "baseline_mean": paired["score_baseline"].mean(),
        "run_mean": paired["score_run"].mean(),
        "difference": change.estimate,
        "ci_low": change.low,
        "ci_high": change.high,
        "max_abs_difference": float(np.abs(paired["score_run"] - paired["score_baseline"]).max()),
    }


def status(difference: float, low: float, high: float, tolerance: float) -> str:
    """`regressed` / `improved` when the (oriented) change exceeds the tolerance and its interval excludes 0."""
    if difference < -tolerance and high < 0:
        return REGRESSED
    if difference > tolerance and low > 0:
        return IMPROVED
    return OK


# ---------------------------------------------------------------------------------------------------------------------
# Checking a run against a baseline.


@dataclass(frozen=True)
class CheckReport:
    """The verdicts of one run against one baseline."""

    verdicts: pd.DataFrame
    """VERDICT_COLUMNS, one row per prior × category × metric."""
    tolerance: float
    tolerances: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """Differences that do not invalidate the check but may explain a verdict (prior fingerprints, packages)."""
    allow_missing: float = 0.0
    """The fraction of a row's baseline images the run may lack."""

    def rows(self, status_name: str) -> pd.DataFrame:
        """The verdicts of that status; with several decoders, each names its decoder (`decoder_shown`)."""
        rows = self.verdicts[self.verdicts["status"] == status_name]
        if self.verdicts["decoder"].nunique() > 1:
            rows = rows.assign(decoder_shown=rows["decoder"])
        return rows

    @property
    def failed(self) -> bool:
        return bool(self.verdicts["status"].isin(FAILING_STATUSES).any())

    @property
    def exit_code(self) -> int:
        """0: nothing regressed, went missing or is incomplete; 1: something did."""
        return 1 if self.failed else 0

    @property
    def regressed_categories(self) -> list[str]:
        return list(dict.fromkeys(self.rows(REGRESSED)["category"]))

    def summary(self) -> str:
        """One line: the verdict, the regressed categories with what regressed in them, and the counts."""
        counts = self.verdicts["status"].value_counts()
        tally = ", ".join(f"{int(counts.get(name, 0))} {name}" for name in ALL_STATUSES if counts.get(name))
        if not self.failed:
            return f"check passed: {tally or 'nothing to compare'}"
        parts = []
        regressed = self.rows(REGRESSED)
        if not regressed.empty:
            parts.append(
                "regressed in "
                + "; ".join(_what_in(regressed, category) for category in self.regressed_categories)
            )
        incomplete = self.rows(INCOMPLETE)
        if not incomplete.empty:
            parts.append(
                f"images missing from the run in {len(incomplete)} row(s): "
                + _first_few(
                    f"{_where(row)} {row.n_missing} of {row.n_missing + row.n_pairs}"
                    for row in incomplete.itertuples()
                )
            )
        missing = self.rows(MISSING)
        if not missing.empty:
            parts.append("missing from the run: " + ", ".join(_where(row) for row in missing.itertuples()))
        return f"check FAILED: {'; '.join(parts)} ({tally})"


def _what_in(rows: pd.DataFrame, category: str) -> str:
    """`spatial (ovi spatial-2d)`, or for many rows `spatial (24 rows: metrics …; priors …)`."""
    items = rows[rows["category"] == category]
    if len(items) <= 3:
        return (
            f"{category} ("
            + ", ".join(f"{_prior_shown(row)} {row.metric}" for row in items.itertuples())
            + ")"
        )
    metrics = ", ".join(dict.fromkeys(items["metric"]))
    priors = ", ".join(dict.fromkeys(items["prior"]))
    return f"{category} ({len(items)} rows: metrics {metrics}; priors {priors})"


def _where(row: Any) -> str:
    return f"{_prior_shown(row)} {row.category} {row.metric}"


def _prior_shown(row: Any) -> str:
    """`ovi`, or `ovi (sdxl-ip-adapter)` in a check of several decoders (`CheckReport.summary` marks those rows)."""
    decoder = getattr(row, "decoder_shown", "")
    return f"{row.prior} ({decoder})" if decoder else str(row.prior)


def _first_few(items: Iterable[str], shown: int = 3) -> str:
    """The first `shown` items and how many more: the summary stays one readable line when every row is hit."""
    items = list(items)
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def check_run(
    run: RunRecord | str | Path,
    baseline: Baseline | str | Path,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    tolerances: Mapping[str, float] | None = None,
    allow_missing: float = 0.0,
    resamples: int = 1000,
    seed: int = 0,
) -> CheckReport:
    """Verdicts of `run` against `baseline` (see the module docstring for the test and its limits).

    `allow_missing` is the fraction of each row's baseline images the run may lack (0 ≤ allow_missing < 1).
    Raises ProtocolMismatchError (naming the differing fields) when the protocols differ, and DataError when the
    baseline is unusable, `tolerances` names a metric neither side has or `allow_missing` is out of range.
    """
    if not 0.0 <= allow_missing < 1.0:  # also refuses NaN
        raise DataError(
            f"--allow-missing {allow_missing}: give the fraction of each row's images the run may lack, "
            "0 ≤ FRACTION < 1 (a row with no image left is always missing)."
        )
    record = run if isinstance(run, RunRecord) else load_run(run)
    reference = baseline if isinstance(baseline, Baseline) else load_baseline(baseline)
    _require_same_protocol(reference, record)
    overrides = dict(tolerances or {})
    _check_tolerances(overrides, tolerance, [*reference.scores["metric"], *record.scores["metric"]])
    verdicts = verdict_table(
        reference.scores,
        record.scores,
        # The baseline's record first: a metric the run lacks (every row `missing`) has no direction in the run.
        higher_is_better=lambda metric: (
            reference.higher_is_better[metric]
            if metric in reference.higher_is_better
            else record.higher_is_better(metric)
        ),
        tolerance_for=lambda metric: overrides.get(metric, tolerance),
        allow_missing=allow_missing,
        resamples=resamples,
        seed=seed,
    )
    return CheckReport(verdicts, tolerance, overrides, _notes(reference, record), allow_missing)


def _require_same_protocol(baseline: Baseline, run: RunRecord) -> None:
    differences = protocol_differences(
        baseline.protocol, protocol(run.provenance), ("the baseline", "the run")
    )
    if differences:
        where = f" {baseline.path}" if baseline.path else ""
        raise ProtocolMismatchError(
            f"the run {run.path} was made under another protocol than the baseline{where}, so its scores cannot "
            "show a regression:\n  "
            + "\n  ".join(differences)
            + "\nRun it with the baseline's settings, or, if the "
            "protocol changed on purpose, write a new baseline with `ovi-bench baseline RUN_DIR --out FILE`.",
            differences,
        )


def _check_tolerances(overrides: Mapping[str, float], tolerance: float, metrics: list[str]) -> None:
    known = list(dict.fromkeys(metrics))
    for option, value in [
        ("--tolerance", tolerance),
        *((f"--tolerance-for {m}", v) for m, v in overrides.items()),
    ]:
        if not np.isfinite(value) or value < 0:
            raise DataError(f"{option}: a tolerance is a number ≥ 0 (in the metric's units), not {value}.")
    for metric in overrides:
        if metric not in known:
            raise DataError(
                f"--tolerance-for {short_repr(metric)}: neither the baseline nor the run has per-image scores of it "
                f"(they have {', '.join(known)})." + did_you_mean(metric, known)
            )


def _notes(baseline: Baseline, run: RunRecord) -> list[str]:
    notes = []
    run_priors = {
        prior: str(entry.get("fingerprint")) for prior, entry in run.provenance.get("priors", {}).items()
    }
    for prior, fingerprint in baseline.prior_fingerprints.items():
        if prior in run_priors and run_priors[prior] != fingerprint:
            notes.append(
                f"prior '{prior}' changed since the baseline (fingerprint {fingerprint[:12]} → {run_priors[prior][:12]})"
            )
    packages = run.provenance.get("packages", {})
    changed = [
        f"{name} {version} → {packages[name]}"
        for name, version in baseline.packages.items()
        if name in packages and packages[name] != version
    ]
    if changed:
        notes.append("package versions differ from the baseline's: " + ", ".join(changed))
    return notes


def parse_tolerance_overrides(items: list[str]) -> dict[str, float]:
    """`METRIC=VALUE` strings (the CLI's --tolerance-for) to a dict; a malformed one is a DataError."""
    overrides: dict[str, float] = {}
    for item in items:
        metric, separator, value = item.partition("=")
        try:
            if not separator or not metric.strip():
                raise ValueError
            overrides[metric.strip()] = float(value)
        except ValueError:
            raise DataError(
                f"--tolerance-for {short_repr(item)}: write METRIC=VALUE, for example spatial-2d=0.05."
            ) from None
    return overrides


def verdict_display(report: CheckReport) -> pd.DataFrame:
    """The verdict table as people read it: the interval in one cell, statuses that need attention in capitals."""
    table = report.verdicts
    return pd.DataFrame(
        {
            "prior": table["prior"],
            "decoder": table["decoder"],
            "category": table["category"],
            "metric": table["metric"],
            "status": table["status"].map(lambda name: name.upper() if name in FAILING_STATUSES else name),
            "pairs": table["n_pairs"],
            "baseline": table["baseline_mean"],
            "run": table["run_mean"],
            "change": table["difference"],
            "95% interval": [
                "" if pd.isna(low) else f"[{low:+.4f}, {high:+.4f}]"
                for low, high in zip(table["ci_low"], table["ci_high"], strict=True)
            ],
            "max |Δ|": table["max_abs_difference"],
            "tolerance": table["tolerance"],
        }
    )


def write_verdicts(report: CheckReport, path: str | Path) -> None:
    """`.csv`: the verdict table; `.json`: the table plus the summary, tolerances and notes."""
    target = Path(path).expanduser()
    if target.suffix.lower() == ".csv":
        write_csv(report.verdicts, target)
    elif target.suffix.lower() == ".json":
        document = {
            "summary": report.summary(),
            "failed": report.failed,
            "tolerance": report.tolerance,
            "tolerances": report.tolerances,
            "allow_missing": report.allow_missing,
            "notes": report.notes,
            "verdicts": json.loads(report.verdicts.to_json(orient="records")),
        }
        atomic_write_text(target, json.dumps(document, indent=2) + "\n")
    else:
        raise DataError(f"--out {target}: give a .csv or .json file name.")
