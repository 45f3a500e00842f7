"""Bradley–Terry strengths from pairwise judgements, with bootstrap intervals over prompts (pure: tables in, numbers
out; `ovi_bench.results.human` reads the files).

**Model.** Prior *i* beats prior *j* with probability exp(s_i) / (exp(s_i) + exp(s_j)); the strengths s are on the
log scale and centred to mean 0, so a difference of 1 means odds of e ≈ 2.7 to 1, and strengths from different
bootstrap resamples are comparable.

**Ties** count as half a win for each side (the Rao–Kupper and Davidson models add a tie parameter; half a win keeps
one parameter per prior and is what a "win rate" with ties counted half already means). Counts must stay whole for
the fit, so every decisive judgement enters with weight 2 (its winner beats its loser twice) and a tie with one win
each way: the likelihood is exactly that of ties as half wins, doubled, which has the same maximum.

**Fit.** `choix.ilsr_pairwise_dense` (iterative Luce spectral ranking: the maximum-likelihood estimate) on the
matrix of win counts. `alpha` = `DEFAULT_ALPHA` is choix's regularisation for this estimator: a rate of 0.01 added
to every transition of the spectral-ranking Markov chain, the equivalent of a tiny pseudo-comparison between every
two priors. It keeps a prior that won (or lost) every comparison at a finite strength, and the estimate defined on a
comparison graph that is not connected; it moves the strengths of a study with tens of judgements per pair by far
less than their interval.

**Intervals.** Percentile bootstrap over prompts (a cluster bootstrap: a resampled prompt brings all its judgements,
because judgements of one prompt share its images and are not independent), seeded. A resample whose comparison
graph falls apart leaves its strengths out; where the full data's graph is not connected, strengths of different
parts are not comparable at all, so every interval is NaN and `note` says why.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

DEFAULT_ALPHA = 0.01
"""choix's regularisation of the spectral-ranking chain (module docstring)."""
DEFAULT_RESAMPLES = 1000
CONFIDENCE = 0.95
DECISIVE_WEIGHT = 2
"""A decisive judgement counts as two wins of its winner; a tie as one win each way (module docstring)."""
FIT_TOLERANCE = 1e-5
"""Largest L1 change of the strengths between iterations at convergence: far below any interval's width."""
MIN_RESAMPLES_USED = 0.5
"""Below this share of resamples with a connected graph the intervals are NaN: too few to trust their tails."""


@dataclass(frozen=True)
class BradleyTerryFit:
    """Strengths of `priors` (same order in every array) and their outcome counts."""

    priors: list[str]
    strength: np.ndarray
    """Log-scale strengths centred to mean 0; NaN for a prior without any judgement."""
    ci_low: np.ndarray
    ci_high: np.ndarray
    wins: np.ndarray
    losses: np.ndarray
    ties: np.ndarray
    n_judgements: int
    """Judgements fitted (decisive and ties; skips are never counted)."""
    n_prompts: int
    resamples: int
    """Bootstrap resamples whose comparison graph was connected (those the intervals come from)."""
    note: str = ""
    """Why intervals are missing, when they are."""
    counts: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)
    """Weighted win matrix: counts[i, j] is how often prior i beat prior j (decisive twice, ties once)."""

    @property
    def n(self) -> np.ndarray:
        return self.wins + self.losses + self.ties

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "prior": self.priors,
                "strength": self.strength,
                "ci_low": self.ci_low,
                "ci_high": self.ci_high,
                "wins": self.wins,
                "losses": self.losses,
                "ties": self.ties,
                "n": self.n,
            }
        )


def outcome_matrices(
    judgements: pd.DataFrame, priors: Sequence[str]
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(per-prompt weighted win matrices, shape prompts × priors × priors; the prompt ids; per-prior wins, losses,
    ties) of the decisive and tied judgements (columns prompt_id, left_prior, right_prior, choice); skips and
    judgements of priors outside `priors` are ignored."""
    index = {prior: position for position, prior in enumerate(priors)}
    usable = judgements[
        judgements["choice"].isin(("left", "right", "tie"))
        & judgements["left_prior"].isin(index)
        & judgements["right_prior"].isin(index)
        & (judgements["left_prior"] != judgements["right_prior"])
    ]
    prompts = list(dict.fromkeys(usable["prompt_id"].astype(str)))
    prompt_index = {prompt: position for position, prompt in enumerate(prompts)}
    matrices = np.zeros((len(prompts), len(priors), len(priors)))
    tallies = np.zeros((3, len(priors)), dtype=np.int64)  # wins, losses, ties
    for prompt, left, right, choice in zip(
        usable["prompt_id"].astype(str),
        usable["left_prior"],
        usable["right_prior"],
        usable["choice"],
        strict=True,
    ):
        first, second = index[left], index[right]
        if choice == "tie":
            matrices[prompt_index[prompt], first, second] += 1
            matrices[prompt_index[prompt], second, first] += 1
            tallies[2, [first, second]] += 1
            continue
        winner, loser = (first, second) if choice == "left" else (second, first)
        matrices[prompt_index[prompt], winner, loser] += DECISIVE_WEIGHT
        tallies[0, winner] += 1
        tallies[1, loser] += 1
    return matrices, prompts, tallies


def is_connected(counts: np.ndarray, present: np.ndarray) -> bool:
    """Whether the priors in `present` form one connected comparison graph (any judgement links two priors)."""
    linked = (counts + counts.T)[np.ix_(present, present)] > 0
    if len(linked) <= 1:
        return len(linked) == 1
    reached = np.zeros(len(linked), dtype=bool)
    reached[0] = True
    for _ in range(len(linked)):  # breadth-first: a graph of a dozen priors, cheaper than a sparse-graph call
        grown = reached | linked[reached].any(axis=0)
        if (grown == reached).all():
            break
        reached = grown
    return bool(reached.all())


def strengths(
    counts: np.ndarray, *, alpha: float = DEFAULT_ALPHA, initial: np.ndarray | None = None
) -> np.ndarray:
    """Centred log strengths of the priors that appear in `counts` (the weighted win matrix); NaN for the others."""
    present = (counts.sum(axis=0) + counts.sum(axis=1)) > 0
    result = np.full(len(counts), np.nan)
    if present.sum() < 2:
        result[present] = 0.0
        return result
    sub = counts[np.ix_(present, present)]
    # Imported here: choix loads scipy.stats (a second), and writing a leaderboard never needs it.
    import choix

    start = None if initial is None or not np.all(np.isfinite(initial[present])) else initial[present]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # choix warns while it iterates towards a flat chain
        fitted = choix.ilsr_pairwise_dense(sub, alpha=alpha, initial_params=start, tol=FIT_TOLERANCE)
    result[present] = fitted - fitted.mean()
    return result


def fit_bradley_terry(
    judgements: pd.DataFrame,
    priors: Sequence[str] | None = None,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    alpha: float = DEFAULT_ALPHA,
    confidence: float = CONFIDENCE,
) -> BradleyTerryFit:
    """Bradley–Terry strengths of the priors in `judgements` (columns prompt_id, left_prior, right_prior, choice),
    ties as half wins, with percentile bootstrap intervals over prompts (`resamples` draws, `seed`); see the module
    docstring. `priors` fixes the order (default: order of first appearance); a listed prior without judgements gets
    NaN. `resamples=0` gives the strengths without intervals."""
    if priors is None:
        priors = list(dict.fromkeys([*judgements["left_prior"], *judgements["right_prior"]]))
    priors = [str(prior) for prior in priors]
    matrices, prompts, tallies = outcome_matrices(judgements, priors)
    counts = matrices.sum(axis=0)
    present = (counts.sum(axis=0) + counts.sum(axis=1)) > 0
    estimate = strengths(counts, alpha=alpha)
    low = np.full(len(priors), np.nan)
    high = np.full(len(priors), np.nan)
    note, used = "", 0
    if not present.any():
        note = "no decisive or tied judgement"
    elif not is_connected(counts, present):
        note = (
            "the comparison graph is not connected: some priors were never compared, directly or through others, "
            "so their strengths are not on one scale; collect judgements between the groups"
        )
    elif resamples > 0 and len(prompts) > 1:
        draws = np.random.default_rng(seed).integers(0, len(prompts), size=(resamples, len(prompts)))
        samples = []
        for draw in draws:
            resampled = np.tensordot(np.bincount(draw, minlength=len(prompts)), matrices, axes=1)
            if is_connected(resampled, present):
                samples.append(strengths(resampled, alpha=alpha, initial=estimate)[present])
        used = len(samples)
        if used >= MIN_RESAMPLES_USED * resamples:
            tail = (1 - confidence) / 2 * 100
            low[present], high[present] = np.percentile(np.array(samples), [tail, 100 - tail], axis=0)
        else:
            note = f"only {used} of {resamples} resamples kept every prior connected: too few for an interval"
    elif resamples > 0:
        note = "judgements of a single prompt: nothing to resample"
    return BradleyTerryFit(
        priors=priors,
        strength=estimate,
        ci_low=low,
        ci_high=high,
        wins=tallies[0],
        losses=tallies[1],
        ties=tallies[2],
        n_judgements=int(tallies[0].sum() + tallies[2].sum() // 2),
        n_prompts=len(prompts),
        resamples=used,
        note=note,
        counts=counts,
    )


def judgements_needed(n_judgements: int, width: float, target_width: float) -> int:
    """Judgements needed for an interval of `width` (from `n_judgements`) to shrink to `target_width`: interval
    widths fall as 1/√n, so n × (width / target)². NaN widths give 0 (nothing to extrapolate from)."""
    if target_width <= 0:
        raise ValueError(f"target width must be positive, not {target_width}")
    if not math.isfinite(width) or n_judgements <= 0:
        return 0
    return math.ceil(n_judgements * (width / target_width) ** 2)
