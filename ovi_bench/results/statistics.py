"""Uncertainty over prompts: percentile bootstrap intervals with prompts as the resampling unit.

Images of one prompt are not independent (same text, often the same failure), so intervals resample prompts and keep
each prompt's images together (images nested within prompts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def prompt_bootstrap_interval(
    prompt_ids: Sequence[str],
    values: Sequence[float],
    *,
    weight_by_images: bool = True,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(estimate, low, high): the mean of `values` and its percentile bootstrap interval over prompts.

    `weight_by_images=True`: the mean over images (T2I-CompBench's category score; a resampled prompt brings all its
    images). False: the mean of per-prompt means. A single prompt gives a zero-width interval (nothing to resample).
    """
    if len(prompt_ids) != len(values):
        raise ValueError(f"{len(prompt_ids)} prompt ids for {len(values)} values")
    if not values:
        return float("nan"), float("nan"), float("nan")
    order = {prompt: index for index, prompt in enumerate(dict.fromkeys(prompt_ids))}
    index = np.fromiter((order[prompt] for prompt in prompt_ids), dtype=np.int64, count=len(prompt_ids))
    data = np.asarray(values, dtype=np.float64)
    sums = np.bincount(index, weights=data, minlength=len(order))
    counts = np.bincount(index, minlength=len(order)).astype(np.float64)
    if not weight_by_images:
        sums, counts = sums / counts, np.ones_like(counts)
    estimate = float(sums.sum() / counts.sum())
    draws = np.random.default_rng(seed).integers(0, len(order), size=(resamples, len(order)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return estimate, float(low), float(high)


@dataclass(frozen=True)
class PairedDifference:
    """second − first over paired images (same prompt, same seed), with its bootstrap interval over prompts."""

    estimate: float
    low: float
    high: float
    n_prompts: int
    n_pairs: int
    wins: int
    """Pairs where `second` scored higher."""
    ties: int
    losses: int

    @property
    def win_rate(self) -> float:
        """P(second beats first) over pairs, ties counted half."""
        return (self.wins + 0.5 * self.ties) / self.n_pairs if self.n_pairs else float("nan")


def paired_difference(
    prompt_ids: Sequence[str],
    first: Sequence[float],
    second: Sequence[float],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """Mean of `second − first` over pairs and its percentile bootstrap interval, resampling prompts.

    Pairing removes the prompt effect (a hard prompt is hard for both), so the interval is much narrower than the
    two separate intervals suggest; resampling prompts keeps the images of one prompt together.
    """
    if not len(prompt_ids) == len(first) == len(second):
        raise ValueError(f"{len(prompt_ids)} prompt ids for {len(first)} and {len(second)} values")
    differences = np.asarray(second, dtype=np.float64) - np.asarray(first, dtype=np.float64)
    estimate, low, high = prompt_bootstrap_interval(
        prompt_ids, list(differences), resamples=resamples, confidence=confidence, seed=seed
    )
    return PairedDifference(
        estimate,
        low,
        high,
        n_prompts=len(set(prompt_ids)),
        n_pairs=len(differences),
        wins=int((differences > 0).sum()),
        ties=int((differences == 0).sum()),
        losses=int((differences < 0).sum()),
    )
