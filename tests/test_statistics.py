"""Bootstrap intervals over prompts: estimates, nesting, and coverage at about the nominal rate."""

from __future__ import annotations

import numpy as np
import pytest

from ovi_bench.results.statistics import paired_difference, prompt_bootstrap_interval


def test_estimate_is_the_mean_over_images_or_over_prompts() -> None:
    prompt_ids = ["a", "a", "a", "b"]
    values = [1.0, 1.0, 1.0, 0.0]
    assert prompt_bootstrap_interval(prompt_ids, values)[0] == pytest.approx(0.75)
    assert prompt_bootstrap_interval(prompt_ids, values, weight_by_images=False)[0] == pytest.approx(0.5)


def test_one_prompt_has_a_zero_width_interval_and_empty_input_is_nan() -> None:
    estimate, low, high = prompt_bootstrap_interval(["a", "a"], [0.2, 0.4])
    assert estimate == low == high == pytest.approx(0.3)
    assert all(np.isnan(prompt_bootstrap_interval([], [])))
    with pytest.raises(ValueError, match="prompt ids"):
        prompt_bootstrap_interval(["a"], [1.0, 2.0])


def test_interval_covers_the_true_mean_at_about_its_nominal_rate() -> None:
    # Prompts differ in difficulty (a prompt effect) and images vary within a prompt: the nested case the
    # interval is built for. An interval that treated images as independent would cover far less often.
    rng = np.random.default_rng(0)
    true_mean, trials, covered = 0.5, 300, 0
    for trial in range(trials):
        prompt_effects = rng.normal(0, 0.2, size=40)
        prompt_ids = [f"p{index}" for index in range(40) for _ in range(5)]
        values = [
            true_mean + prompt_effects[index] + rng.normal(0, 0.05) for index in range(40) for _ in range(5)
        ]
        _, low, high = prompt_bootstrap_interval(prompt_ids, values, resamples=500, seed=trial)
        covered += low <= true_mean <= high
    assert 0.90 <= covered / trials <= 0.98


def test_paired_difference_counts_wins_and_ties_exactly() -> None:
    result = paired_difference(["a", "a", "b", "b"], [0.1, 0.5, 0.3, 0.3], [0.2, 0.4, 0.3, 0.6])
    assert result.estimate == pytest.approx((0.1 - 0.1 + 0.0 + 0.3) / 4)
    assert (result.wins, result.ties, result.losses, result.n_pairs, result.n_prompts) == (2, 1, 1, 4, 2)
    assert result.win_rate == pytest.approx(2.5 / 4)
    with pytest.raises(ValueError, match="prompt ids"):
        paired_difference(["a"], [1.0], [1.0, 2.0])


def test_paired_interval_covers_the_true_difference_and_is_narrower_than_unpaired() -> None:
    # Both priors share each prompt's difficulty; the second is better by 0.03 on average. Pairing removes the
    # shared prompt effect, so its interval is far narrower than either prior's own interval, and still covers.
    rng = np.random.default_rng(1)
    true_difference, trials, covered, paired_widths, unpaired_widths = 0.03, 200, 0, [], []
    for trial in range(trials):
        difficulty = rng.normal(0.5, 0.2, size=30)
        prompt_ids = [f"p{index}" for index in range(30) for _ in range(4)]
        first = [difficulty[index] + rng.normal(0, 0.05) for index in range(30) for _ in range(4)]
        shift = rng.normal(true_difference, 0.02, size=30)  # the effect varies from prompt to prompt
        second = [
            value + shift[index] + rng.normal(0, 0.02)
            for value, index in zip(first, (i for i in range(30) for _ in range(4)), strict=True)
        ]
        result = paired_difference(prompt_ids, first, second, resamples=500, seed=trial)
        covered += result.low <= true_difference <= result.high
        paired_widths.append(result.high - result.low)
        _, low, high = prompt_bootstrap_interval(prompt_ids, second, resamples=500, seed=trial)
        unpaired_widths.append(high - low)
    assert 0.89 <= covered / trials <= 0.99
    assert np.median(paired_widths) < 0.2 * np.median(unpaired_widths)
