"""The generalisation view: does a ranking of priors made with one decoder hold with another decoder of its space?

For each pair of decoders of one embedding space and each category × per-image metric, the priors' mean scores under
the two decoders are ranked and compared with Kendall's τ-b (1: the same order, −1: reversed; ties handled), with a
percentile bootstrap interval that resamples prompts (each with all its images, under both decoders at once, so that a
hard prompt stays hard for both). Beside it, each prior's change from the first decoder to the second and its rank
under each.

Pure tables in, tables out (`generalisation`); `generalisation_markdown` renders them for leaderboard.md, and the
report shows the same tables. Absent (empty tables) when no space has two decoders.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from ovi_bench.results.summary import markdown_table
from ovi_bench.spec import OFFICIAL_METRICS

AGREEMENT_COLUMNS = [
    "space",
    "decoder_a",
    "decoder_b",
    "category",
    "metric",
    "official",
    "n_priors",
    "n_prompts",
    "tau",
    "ci_low",
    "ci_high",
]
"""`tau`: Kendall's τ-b between the priors' means under `decoder_a` and under `decoder_b`; `ci_low`/`ci_high`: its
95% bootstrap interval over prompts (NaN when τ is undefined: fewer than two priors, or all means equal)."""
CHANGE_COLUMNS = [
    "space",
    "decoder_a",
    "decoder_b",
    "prior",
    "category",
    "metric",
    "official",
    "mean_a",
    "mean_b",
    "change",
    "rank_a",
    "rank_b",
    "higher_is_better",
]
"""`change` = mean_b − mean_a (raw score units); `rank_a`/`rank_b`: the prior's place under each decoder (1 = best,
by the metric's direction; ties share the better place)."""

UNDECLARED_SPACE = "undeclared"
"""The group of decoders that declare no embedding space (plugins written before spaces existed)."""


@dataclass(frozen=True)
class Generalisation:
    """The view's two tables; both empty when no space has two decoders."""

    agreement: pd.DataFrame
    changes: pd.DataFrame

    @property
    def empty(self) -> bool:
        return self.agreement.empty and self.changes.empty


def kendall_tau(first: np.ndarray, second: np.ndarray) -> np.ndarray | float:
    """Kendall's τ-b of two equally long score vectors, or row by row of two (resamples × values) matrices; NaN
    where undefined (fewer than 2 values, or one side constant).

    τ-b = Σ sign(Δa)·sign(Δb) / sqrt(Σ sign(Δa)² · Σ sign(Δb)²) over the pairs of values: a pair tied on one side
    counts in neither the numerator nor that side's count, as in `scipy.stats.kendalltau` (variant "b"), which the
    tests check it against. Written with arrays so that a bootstrap's thousand resamples are one call."""
    rows_a, rows_b = (
        np.atleast_2d(np.asarray(first, np.float64)),
        np.atleast_2d(np.asarray(second, np.float64)),
    )
    upper = np.triu_indices(rows_a.shape[1], k=1)
    signs_a = np.sign(rows_a[:, :, None] - rows_a[:, None, :])[:, upper[0], upper[1]]
    signs_b = np.sign(rows_b[:, :, None] - rows_b[:, None, :])[:, upper[0], upper[1]]
    with np.errstate(invalid="ignore", divide="ignore"):
        taus = (signs_a * signs_b).sum(axis=1) / np.sqrt((signs_a**2).sum(axis=1) * (signs_b**2).sum(axis=1))
    # Rounding can put a perfect agreement a hair outside [-1, 1].
    taus = np.clip(taus, -1.0, 1.0)
    return float(taus[0]) if np.ndim(first) == 1 else taus


def tau_interval(
    sums_a: np.ndarray,
    counts_a: np.ndarray,
    sums_b: np.ndarray,
    counts_b: np.ndarray,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(τ, low, high) between the priors' image-weighted means under two decoders, the interval resampling prompts.

    Each argument is a priors × prompts matrix: the sum and the count of a prior's scores on a prompt's images under
    decoder a or b. Resamples where τ is undefined (a constant vector) are left out; when all are, the interval is
    NaN. One prompt, or prompts that all agree, give a zero-width interval.
    """
    tau = float(
        kendall_tau(sums_a.sum(axis=1) / counts_a.sum(axis=1), sums_b.sum(axis=1) / counts_b.sum(axis=1))
    )
    n_prompts = sums_a.shape[1]
    if np.isnan(tau) or n_prompts == 0:
        return tau, float("nan"), float("nan")
    draws = np.random.default_rng(seed).integers(0, n_prompts, size=(resamples, n_prompts))
    # resamples × priors: each resample's image-weighted means.
    means_a = sums_a[:, draws].sum(axis=2).T / counts_a[:, draws].sum(axis=2).T
    means_b = sums_b[:, draws].sum(axis=2).T / counts_b[:, draws].sum(axis=2).T
    taus = kendall_tau(means_a, means_b)
    taus = taus[~np.isnan(taus)]
    if not len(taus):
        return tau, float("nan"), float("nan")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(taus, [tail, 100 - tail])
    return tau, float(low), float(high)


def decoder_pairs(decoder_spaces: Mapping[str, str | None]) -> list[tuple[str, str, str]]:
    """(space, decoder a, decoder b) for every pair of decoders of one space, in the run's decoder order."""
    by_space: dict[str, list[str]] = {}
    for decoder, space in decoder_spaces.items():
        by_space.setdefault(space or UNDECLARED_SPACE, []).append(decoder)
    return [(space, a, b) for space, decoders in by_space.items() for a, b in combinations(decoders, 2)]


def _prompt_matrices(
    images: pd.DataFrame, priors: list[str], prompts: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """priors × prompts sums and counts of `images`' scores."""
    grouped = images.groupby(["prior", "prompt_id"])["score"].agg(["sum", "count"])
    index = pd.MultiIndex.from_product([priors, prompts], names=["prior", "prompt_id"])
    full = grouped.reindex(index, fill_value=0)
    shape = (len(priors), len(prompts))
    return (
        full["sum"].to_numpy(np.float64).reshape(shape),
        full["count"].to_numpy(np.float64).reshape(shape),
    )


def _ranks(means: np.ndarray, higher_is_better: bool) -> list[int]:
    """1 = best; ties share the better place."""
    ordered = -means if higher_is_better else means
    return [int((ordered < value).sum()) + 1 for value in ordered]


def generalisation(
    scores: pd.DataFrame,
    decoder_spaces: Mapping[str, str | None],
    higher_is_better: Mapping[str, bool],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Generalisation:
    """The view from per-image scores (the columns of scores.csv, with `decoder`) and each decoder's space.

    Per pair of decoders of one space and per category × metric, the priors compared are those scored under both,
    on the prompts where each of them has images under both (a prior or prompt seen by one decoder only cannot say
    whether the ranking holds).
    """
    agreement, changes = [], []
    usable = scores[scores["score"].notna()] if not scores.empty else scores
    for space, decoder_a, decoder_b in decoder_pairs(decoder_spaces):
        pair = usable[usable["decoder"].isin([decoder_a, decoder_b])]
        for (category, metric), group in pair.groupby(["category", "metric"], sort=False):
            under_a, under_b = group[group["decoder"] == decoder_a], group[group["decoder"] == decoder_b]
            priors = [prior for prior in dict.fromkeys(under_a["prior"]) if prior in set(under_b["prior"])]
            if not priors:
                continue
            seen = [
                set(under.loc[under["prior"] == prior, "prompt_id"])
                for under in (under_a, under_b)
                for prior in priors
            ]
            prompts = sorted(set.intersection(*seen))
            if not prompts:
                continue
            sums_a, counts_a = _prompt_matrices(under_a, priors, prompts)
            sums_b, counts_b = _prompt_matrices(under_b, priors, prompts)
            tau, low, high = tau_interval(
                sums_a, counts_a, sums_b, counts_b, resamples=resamples, confidence=confidence, seed=seed
            )
            official = OFFICIAL_METRICS.get(str(category)) == metric
            agreement.append(
                [
                    space,
                    decoder_a,
                    decoder_b,
                    category,
                    metric,
                    official,
                    len(priors),
                    len(prompts),
                    tau,
                    low,
                    high,
                ]
            )
            direction = bool(higher_is_better.get(str(metric), True))
            means_a, means_b = (
                sums_a.sum(axis=1) / counts_a.sum(axis=1),
                sums_b.sum(axis=1) / counts_b.sum(axis=1),
            )
            ranks_a, ranks_b = _ranks(means_a, direction), _ranks(means_b, direction)
            for index, prior in enumerate(priors):
                changes.append(
                    [
                        space,
                        decoder_a,
                        decoder_b,
                        prior,
                        category,
                        metric,
                        official,
                        float(means_a[index]),
                        float(means_b[index]),
                        float(means_b[index] - means_a[index]),
                        ranks_a[index],
                        ranks_b[index],
                        direction,
                    ]
                )
    return Generalisation(
        pd.DataFrame(agreement, columns=AGREEMENT_COLUMNS), pd.DataFrame(changes, columns=CHANGE_COLUMNS)
    )


def generalisation_records(view: Generalisation) -> dict[str, Any]:
    """The view as JSON-ready records (NaN as null): what leaderboard.json and results.json hold."""
    return {
        "agreement": json.loads(view.agreement.to_json(orient="records")),
        "changes": json.loads(view.changes.to_json(orient="records")),
    }


def generalisation_from_records(records: Mapping[str, Any] | None) -> Generalisation:
    """The view read back from `generalisation_records` (an empty view from None)."""
    records = records or {}
    return Generalisation(
        pd.DataFrame(records.get("agreement") or [], columns=AGREEMENT_COLUMNS),
        pd.DataFrame(records.get("changes") or [], columns=CHANGE_COLUMNS),
    )


def _shown_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The official metric's rows where the table has any (the paper's view), else every row."""
    official = table[table["official"].astype(bool)]
    return official if not official.empty else table


def generalisation_markdown(view: Generalisation) -> str:
    """The view as Markdown sections (a heading per decoder pair): rank agreement per category, then each prior's
    change; "" when the view is empty."""
    if view.empty:
        return ""
    lines = [
        "## Generalisation across decoders",
        "",
        "Kendall τ-b between the priors' rankings under two decoders of one embedding space (1: same order, "
        "−1: reversed), with a 95% bootstrap interval over prompts; then each prior's change (b − a) and its rank "
        "under a → b.",
        "",
    ]
    agreement = _shown_rows(view.agreement)
    changes = _shown_rows(view.changes)
    for (space, decoder_a, decoder_b), rows in agreement.groupby(
        ["space", "decoder_a", "decoder_b"], sort=False
    ):
        lines += [f"### {decoder_a} vs {decoder_b} ({space})", ""]
        table = pd.DataFrame(
            {
                "category": rows["category"],
                "metric": rows["metric"],
                "priors": rows["n_priors"],
                "prompts": rows["n_prompts"],
                "τ": [_number(tau) for tau in rows["tau"]],
                "95% interval": [
                    _interval(low, high) for low, high in zip(rows["ci_low"], rows["ci_high"], strict=True)
                ],
            }
        )
        # Signed texts as written ("+1.000"): tabulate would read them back as numbers.
        lines += [markdown_table(table, disable_numparse=True), ""]
        pair_changes = changes[
            (changes["space"] == space)
            & (changes["decoder_a"] == decoder_a)
            & (changes["decoder_b"] == decoder_b)
        ]
        if not pair_changes.empty:
            cells = pair_changes.assign(
                column=pair_changes["category"] + " (" + pair_changes["metric"] + ")",
                cell=[
                    f"{change:+.4f} ({rank_a}→{rank_b})"
                    for change, rank_a, rank_b in zip(
                        pair_changes["change"], pair_changes["rank_a"], pair_changes["rank_b"], strict=True
                    )
                ],
            )
            pivot = cells.pivot(index="prior", columns="column", values="cell")
            pivot = pivot.reindex(
                index=list(dict.fromkeys(cells["prior"])), columns=list(dict.fromkeys(cells["column"]))
            ).fillna("–")
            lines += [markdown_table(pivot.reset_index()), ""]
    return "\n".join(lines)


def _number(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:+.3f}"


def _interval(low: float, high: float) -> str:
    return "" if pd.isna(low) else f"[{low:+.3f}, {high:+.3f}]"
