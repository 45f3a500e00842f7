"""Agreement around pairwise human judgements: between the raters (Krippendorff's α, each rater against the majority
of the others) and between each per-image metric and the raters (the metric–human agreement table).

Pure: judgement tables (the columns of `ovi_bench.rate.judgements.JUDGEMENT_COLUMNS`) and per-image scores in,
tables out; `ovi_bench.results.human` chooses which judgements count and writes the files.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Mapping
from typing import Any

import krippendorff
import numpy as np
import pandas as pd

from ovi_bench.results.statistics import prompt_bootstrap_interval

ALL_DECODERS = "all"
"""The decoder of the metric-agreement rows that pool every decoder's judgements."""
METRIC_AGREEMENT_COLUMNS = [
    "metric",
    "decoder",
    "agreement",
    "ci_low",
    "ci_high",
    "n",
    "metric_ties",
    "missing",
    "kendall_tau",
    "n_priors",
    "higher_is_better",
]


def seed_key(value: Any) -> str:
    """A seed as text that matches across sources: 42, 42.0 and "42" are all "42"."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(int(number)) if math.isfinite(number) and number == int(number) else str(value)


def unit_outcomes(pairs: pd.DataFrame) -> pd.DataFrame:
    """One row per rater × item (the first answer of each rater): `unit` is (decoder, prompt_id, seed, the two priors
    in sorted order) and `value` which of the sorted pair won (0: the first, 1: the second) or 2 for a tie, so the
    value does not depend on the side each image was shown on. Skips carry no answer and are dropped."""
    answered = pairs[pairs["choice"].isin(("left", "right", "tie"))]
    units, values = [], []
    for decoder, prompt, seed, left, right, choice in zip(
        answered["decoder"],
        answered["prompt_id"].astype(str),
        answered["seed"],
        answered["left_prior"],
        answered["right_prior"],
        answered["choice"],
        strict=True,
    ):
        first, second = sorted((str(left), str(right)))
        units.append((str(decoder), prompt, seed_key(seed), first, second))
        winner = {"left": str(left), "right": str(right)}.get(choice)
        values.append(2 if winner is None else 0 if winner == first else 1)
    table = pd.DataFrame({"rater": answered["rater"].astype(str).to_numpy(), "unit": units, "value": values})
    return table.drop_duplicates(["rater", "unit"], keep="first")


def rater_agreement(pairs: pd.DataFrame) -> tuple[dict[str, Any], pd.DataFrame]:
    """(Krippendorff's α at the nominal level over the items judged by two raters or more, with the number of items
    and raters and, when α is NaN, the reason; per rater: items shared with another rater and the share of those
    where the rater gave the answer of the majority of the other raters, items without a strict majority left out).
    """
    outcomes = unit_outcomes(pairs)
    raters_per_unit = outcomes.groupby("unit")["rater"].nunique()
    shared_units = set(raters_per_unit[raters_per_unit >= 2].index)
    shared = outcomes[outcomes["unit"].isin(shared_units)]
    summary: dict[str, Any] = {
        "krippendorff_alpha": float("nan"),
        "items": len(shared_units),
        "raters": int(shared["rater"].nunique()),
        "reason": "",
    }
    if not shared_units:
        summary["reason"] = "no item (prompt, seed, decoder and prior pair) was judged by two raters or more"
    else:
        matrix = shared.pivot(index="rater", columns="unit", values="value").to_numpy(dtype=np.float64)
        try:
            summary["krippendorff_alpha"] = float(
                krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
            )
        except ValueError:
            summary["reason"] = "every shared item got the same answer from every rater: α is undefined"
    return summary, _majority_agreement(outcomes, shared)


def _majority_agreement(outcomes: pd.DataFrame, shared: pd.DataFrame) -> pd.DataFrame:
    answers: dict[Any, dict[str, int]] = {}
    for rater, unit, value in zip(shared["rater"], shared["unit"], shared["value"], strict=True):
        answers.setdefault(unit, {})[rater] = value
    rows = []
    for rater in dict.fromkeys(outcomes["rater"]):
        agreed = compared = 0
        items = 0
        for unit_answers in answers.values():
            if rater not in unit_answers:
                continue
            items += 1
            ranked = Counter(value for other, value in unit_answers.items() if other != rater).most_common()
            if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
                continue  # the others are split evenly: no majority to agree with
            compared += 1
            agreed += ranked[0][0] == unit_answers[rater]
        rows.append(
            {
                "rater": rater,
                "shared_items": items,
                "majority_agreement": agreed / compared if compared else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=["rater", "shared_items", "majority_agreement"])


def metric_agreement(
    pairs: pd.DataFrame,
    scores: pd.DataFrame,
    higher_is_better: Mapping[str, bool],
    strengths: pd.DataFrame,
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """The metric–human agreement table (`METRIC_AGREEMENT_COLUMNS`): per per-image metric of `scores` and per
    decoder (and pooled over decoders, decoder `ALL_DECODERS`), over the decisive judgements in `pairs`:

    - `agreement`: the share of judgements whose preferred image the metric scores better (in its direction), with
      a 95% percentile bootstrap interval over prompts (`ci_low`, `ci_high`; a prompt's judgements share its
      images, so prompts are resampled, as for every other interval of ovi-bench);
    - `metric_ties`: judgements where both images score the same (left out of the share), `missing`: judgements
      with an image the metric did not score;
    - `kendall_tau`: Kendall's τ-b between the metric's ranking of the priors (mean score per prior over the judged
      prompts of that decoder) and their Bradley–Terry ranking (`strengths`: decoder, prior, strength of the
      overall scope), over `n_priors` priors; NaN for the pooled rows and for fewer than two priors.
    """
    decisive = pairs[pairs["choice"].isin(("left", "right"))]
    rows = []
    if decisive.empty or scores.empty:
        return pd.DataFrame(rows, columns=METRIC_AGREEMENT_COLUMNS)
    keyed = scores.assign(
        seed=[seed_key(value) for value in scores["seed"]], prompt_id=scores["prompt_id"].astype(str)
    )
    table = keyed.pivot_table(
        index=["decoder", "prior", "prompt_id", "seed"], columns="metric", values="score", aggfunc="mean"
    )
    seeds = [seed_key(value) for value in decisive["seed"]]
    prompts = decisive["prompt_id"].astype(str).tolist()
    decoders = decisive["decoder"].astype(str).tolist()

    def scores_of(side: str) -> pd.DataFrame:
        index = pd.MultiIndex.from_arrays([decoders, decisive[side].astype(str).tolist(), prompts, seeds])
        return table.reindex(index)

    left, right = scores_of("left_prior"), scores_of("right_prior")
    left_won = (decisive["choice"] == "left").to_numpy()
    decoder_array = np.asarray(decoders)
    for metric in table.columns:
        if metric not in higher_is_better:
            continue
        sign = 1.0 if higher_is_better[metric] else -1.0
        difference = sign * (left[metric].to_numpy() - right[metric].to_numpy())
        for decoder in [*dict.fromkeys(decoders), ALL_DECODERS]:
            chosen = (
                decoder_array == decoder if decoder != ALL_DECODERS else np.ones(len(decoders), dtype=bool)
            )
            if decoder == ALL_DECODERS and len(set(decoders)) == 1:
                continue  # one decoder: the pooled row would repeat it
            rows.append(
                _agreement_row(
                    metric, decoder, difference[chosen], left_won[chosen], np.asarray(prompts)[chosen]
                )
                | {"higher_is_better": higher_is_better[metric]}
                | _rank_agreement(metric, decoder, keyed, decisive, strengths, sign)
            )
            rows[-1]["ci_low"], rows[-1]["ci_high"] = _interval(rows[-1].pop("_agrees"), resamples, seed)
    return pd.DataFrame(rows, columns=METRIC_AGREEMENT_COLUMNS)


def _agreement_row(
    metric: str, decoder: str, difference: np.ndarray, left_won: np.ndarray, prompts: np.ndarray
) -> dict[str, Any]:
    scored = np.isfinite(difference)
    untied = scored & (difference != 0)
    agrees = (difference[untied] > 0) == left_won[untied]
    return {
        "metric": metric,
        "decoder": decoder,
        "agreement": float(agrees.mean()) if agrees.size else float("nan"),
        "n": int(untied.sum()),
        "metric_ties": int((scored & (difference == 0)).sum()),
        "missing": int((~scored).sum()),
        "_agrees": (list(prompts[untied]), list(agrees.astype(np.float64))),
    }


def _interval(agrees: tuple[list[str], list[float]], resamples: int, seed: int) -> tuple[float, float]:
    prompts, values = agrees
    if not values or resamples <= 0:
        return float("nan"), float("nan")
    _, low, high = prompt_bootstrap_interval(prompts, values, resamples=resamples, seed=seed)
    return low, high


def _rank_agreement(
    metric: str,
    decoder: str,
    scores: pd.DataFrame,
    decisive: pd.DataFrame,
    strengths: pd.DataFrame,
    sign: float,
) -> dict[str, Any]:
    if decoder == ALL_DECODERS:
        return {"kendall_tau": float("nan"), "n_priors": 0}
    judged_prompts = set(decisive.loc[decisive["decoder"].astype(str) == decoder, "prompt_id"].astype(str))
    rows = scores[
        (scores["decoder"].astype(str) == decoder)
        & (scores["metric"] == metric)
        & scores["prompt_id"].isin(judged_prompts)
    ]
    metric_means = rows.groupby("prior")["score"].mean() * sign
    human = strengths[strengths["decoder"] == decoder].set_index("prior")["strength"].dropna()
    priors = [
        prior for prior in human.index if prior in metric_means.index and math.isfinite(metric_means[prior])
    ]
    tau = float("nan")
    if len(priors) >= 2:
        # Imported here: scipy.stats takes a second to load, and writing a leaderboard never needs it.
        from scipy.stats import kendalltau

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a metric that scores every prior the same: τ is NaN, said once
            tau = float(kendalltau(metric_means[priors].to_numpy(), human[priors].to_numpy()).statistic)
    return {"kendall_tau": tau, "n_priors": len(priors)}
