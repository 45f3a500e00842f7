"""Bootstrap intervals over prompts: estimates, nesting, and coverage at about the nominal rate."""

from __future__ import annotations

import numpy as np
import pytest

from ovi_bench.statistics import prompt_bootstrap_interval


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
