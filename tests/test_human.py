"""`ovi_bench.results.bradley_terry`, `human` and `human_agreement` on simulated judgements: raters who judge images
whose utility is known, so every estimate has a true value to be checked against."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from human_simulation import Study, judgements_of

from ovi_bench.errors import DataError
from ovi_bench.results.bradley_terry import fit_bradley_terry, judgements_needed
from ovi_bench.results.human import (
    OVERALL,
    analyse_judgements,
    attention_checks,
    human_markdown,
    study_plan,
    with_human_section,
)
from ovi_bench.results.human_agreement import metric_agreement, rater_agreement

# Names in an order unrelated to the strengths, so that no answer is the same for every item by construction.
STRENGTHS = {"delta": -1.0, "alpha": -0.3, "charlie": 0.4, "bravo": 0.9}
DIRECTIONS = {"utility": True, "random": True, "constant": True}


def _pairs(*choices: tuple[str, str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"prompt_id": f"p{index}", "left_prior": left, "right_prior": right, "choice": choice}
            for index, (left, right, choice) in enumerate(choices)
        ]
    )


def test_bradley_terry_recovers_the_order_of_known_strengths() -> None:
    study = Study(STRENGTHS, prompts=40, seed=1)
    fit = fit_bradley_terry(study.judge("rater", 800), resamples=100)
    fitted = dict(zip(fit.priors, fit.strength, strict=True))
    assert sorted(fitted, key=fitted.get) == sorted(STRENGTHS, key=STRENGTHS.get)
    assert abs(sum(fitted.values())) < 1e-9  # centred
    truth = np.array([STRENGTHS[prior] for prior in fit.priors])
    assert np.abs(fit.strength - (truth - truth.mean())).max() < 0.35
    assert fit.n_judgements == 800 and fit.resamples == 100 and not fit.note
    assert (fit.ci_low < fit.strength).all() and (fit.strength < fit.ci_high).all()


def test_bootstrap_intervals_cover_the_true_strengths_at_about_their_nominal_rate() -> None:
    strengths = {"low": -0.6, "middle": 0.1, "high": 0.5}
    truth = np.array(list(strengths.values())) - np.mean(list(strengths.values()))
    covered = total = 0
    for simulation in range(40):
        study = Study(strengths, prompts=25, seed=100 + simulation)
        fit = fit_bradley_terry(study.judge("rater", 150), list(strengths), resamples=150, seed=simulation)
        covered += int(((fit.ci_low <= truth) & (truth <= fit.ci_high)).sum())
        total += len(truth)
    assert 0.85 <= covered / total <= 1.0


def test_a_tie_counts_half_a_win_for_each_side_and_skips_count_nothing() -> None:
    # 3 wins of a, 1 of b and 2 ties are 4 wins against 2: odds of 2, a strength difference of log 2.
    fit = fit_bradley_terry(
        _pairs(
            ("a", "b", "left"),
            ("b", "a", "right"),
            ("a", "b", "left"),
            ("a", "b", "right"),
            ("a", "b", "tie"),
            ("b", "a", "tie"),
            ("a", "b", "skip"),
            ("b", "a", "skip"),
        ),
        resamples=0,
    )
    assert fit.strength[0] - fit.strength[1] == pytest.approx(math.log(2), abs=0.02)
    assert list(fit.wins) == [3, 1] and list(fit.losses) == [1, 3] and list(fit.ties) == [2, 2]
    assert fit.n_judgements == 6
    only_ties = fit_bradley_terry(_pairs(("a", "b", "tie"), ("b", "a", "tie")), resamples=0)
    assert only_ties.strength == pytest.approx([0.0, 0.0], abs=1e-6)


def test_a_disconnected_graph_or_an_unbeaten_prior_does_not_crash() -> None:
    groups = _pairs(*[("a", "b", "left"), ("c", "d", "right")] * 5)
    fit = fit_bradley_terry(groups, resamples=50)
    assert "not connected" in fit.note
    assert np.isnan(fit.ci_low).all() and np.isfinite(fit.strength).all()
    # A prior that won every comparison: finite thanks to the regularisation, first in the order.
    unbeaten = fit_bradley_terry(
        _pairs(*[("a", "b", "left"), ("b", "c", "left"), ("a", "c", "tie")] * 4), resamples=50
    )
    assert np.isfinite(unbeaten.strength).all() and unbeaten.strength.argmax() == 0
    nothing = fit_bradley_terry(_pairs(("a", "b", "skip")), ["a", "b", "c"], resamples=50)
    assert np.isnan(nothing.strength).all() and nothing.note
    one_prompt = pd.DataFrame(
        {"prompt_id": "p", "left_prior": ["a", "a"], "right_prior": ["b", "b"], "choice": ["left", "right"]}
    )
    assert "single prompt" in fit_bradley_terry(one_prompt, resamples=50).note


def test_the_metric_agreement_table_is_one_for_the_utility_and_a_coin_flip_for_noise() -> None:
    study = Study(STRENGTHS, prompts=40, image_noise=1.0, seed=2)
    pairs = study.judge("rater", 600, mode="exact")
    strengths = fit_bradley_terry(pairs, resamples=0).frame().assign(decoder=study.decoder)
    table = metric_agreement(pairs, study.scores(), DIRECTIONS, strengths, resamples=200).set_index("metric")
    assert table.loc["utility", "agreement"] == 1.0 and table.loc["utility", "ci_low"] == 1.0
    assert table.loc["utility", "kendall_tau"] == pytest.approx(1.0)
    assert 0.4 <= table.loc["random", "agreement"] <= 0.6
    assert table.loc["random", "ci_low"] < 0.5 < table.loc["random", "ci_high"]
    # A metric that scores every image the same orders no judgement: every one is a counted metric tie.
    assert table.loc["constant", "n"] == 0 and table.loc["constant", "metric_ties"] == 600
    assert math.isnan(table.loc["constant", "agreement"])
    assert (table["missing"] == 0).all() and (table["n_priors"] == len(STRENGTHS)).all()


def test_the_metric_agreement_follows_the_metric_direction_and_counts_unscored_images() -> None:
    study = Study(STRENGTHS, prompts=20, image_noise=1.0, seed=3)
    pairs = study.judge("rater", 200, mode="exact")
    scores = study.scores({"utility": "distance"})
    scores["score"] = -scores["score"]  # lower is better
    scores = scores[~((scores["prior"] == "delta") & (scores["prompt_id"] == "p000"))]
    strengths = fit_bradley_terry(pairs, resamples=0).frame().assign(decoder=study.decoder)
    row = metric_agreement(pairs, scores, {"distance": False}, strengths, resamples=50).iloc[0]
    assert row["agreement"] == 1.0 and row["kendall_tau"] == pytest.approx(1.0)
    unscored = (
        (pairs["prompt_id"] == "p000")
        & ((pairs["left_prior"] == "delta") | (pairs["right_prior"] == "delta"))
    ).sum()
    assert row["missing"] == unscored and row["n"] == 200 - unscored


def test_krippendorff_alpha_is_high_for_agreeing_raters_and_near_zero_for_random_ones() -> None:
    study = Study(STRENGTHS, prompts=10, image_noise=1.0, seed=4)
    agreeing = judgements_of(*(study.judge(f"rater-{index}", 200, mode="exact") for index in range(3)))
    summary, majority = rater_agreement(agreeing)
    assert summary["krippendorff_alpha"] > 0.95 and summary["items"] > 30 and summary["raters"] == 3
    assert (majority["majority_agreement"] == 1.0).all()
    random = judgements_of(*(study.judge(f"rater-{index}", 200, mode="random") for index in range(3)))
    summary, majority = rater_agreement(random)
    assert abs(summary["krippendorff_alpha"]) < 0.15
    assert majority["majority_agreement"].between(0.3, 0.7).all()
    alone, _ = rater_agreement(study.judge("only", 50))
    assert math.isnan(alone["krippendorff_alpha"]) and "two raters" in alone["reason"]


def test_a_rater_who_fails_the_canaries_is_excluded_from_every_estimate() -> None:
    study = Study(STRENGTHS, prompts=20, image_noise=0.5, seed=5)
    good = study.judge("good", 300, mode="exact")
    first = good.iloc[0]
    repeat = study.row(
        "good",
        first["prompt_id"],
        first["right_prior"],
        first["left_prior"],
        {"left": "right", "right": "left", "tie": "tie"}[first["choice"]],
        kind="repeat",
        repeat_of=first["judgement_id"],
    )
    # A contrarian who picks the worse image every time, and fails 2 of 3 canaries.
    contrarian = study.judge("contrarian", 300, mode="exact")
    contrarian["choice"] = contrarian["choice"].map({"left": "right", "right": "left", "tie": "tie"})
    judgements = judgements_of(
        good,
        pd.DataFrame([repeat]),
        study.canaries("good", 2, 0),
        contrarian,
        study.canaries("contrarian", 1, 2),
    )
    checks = attention_checks(judgements).set_index("rater")
    assert checks.loc["good", "pass_rate"] == 1.0 and checks.loc["good", "repeats_passed"] == 1
    assert checks.loc["contrarian", "pass_rate"] == pytest.approx(1 / 3)
    assert list(checks["excluded"]) == [False, True]
    payload = analyse_judgements(judgements, study.scores(), DIRECTIONS, resamples=50)
    assert payload["counts"]["excluded_raters"] == 1 and payload["counts"]["excluded_judgements"] == 300
    assert payload["counts"]["used"] == 300 and payload["counts"]["attention_checks"] == 6
    utility = next(row for row in payload["metric_agreement"] if row["metric"] == "utility")
    assert utility["agreement"] == 1.0  # the contrarian's reversed votes are gone
    overall = {row["prior"]: row["strength"] for row in payload["strengths"] if row["scope"] == OVERALL}
    assert max(overall, key=overall.get) == "bravo"
    # Lenient enough, the same rater is kept and drags the agreement to one half.
    lenient = analyse_judgements(judgements, study.scores(), DIRECTIONS, resamples=0, min_pass_rate=0.3)
    assert lenient["counts"]["excluded_raters"] == 0
    assert next(row for row in lenient["metric_agreement"] if row["metric"] == "utility")["agreement"] == 0.5


def test_a_failed_repeat_and_unscored_checks() -> None:
    study = Study(STRENGTHS, prompts=5, seed=6)
    original = study.row("r", "p001", "alpha", "bravo", "left")
    same_side = study.row(
        "r", "p001", "bravo", "alpha", "left", kind="repeat", repeat_of=original["judgement_id"]
    )
    orphan = study.row("r", "p001", "bravo", "alpha", "left", kind="repeat", repeat_of="0" * 32)
    checks = attention_checks(pd.DataFrame([original, same_side, orphan])).iloc[0]
    assert (checks["repeats"], checks["repeats_passed"], checks["excluded"]) == (
        1,
        0,
        False,
    )  # one check only


def test_the_analysis_of_a_study_per_category_with_win_rates_and_a_plan() -> None:
    study = Study(STRENGTHS, prompts=30, seed=7)
    judgements = judgements_of(study.judge("a", 200), study.judge("b", 200, source="crowd.csv"))
    payload = analyse_judgements(judgements, study.scores(), DIRECTIONS, resamples=100)
    scopes = {row["scope"] for row in payload["strengths"]}
    assert scopes == {OVERALL, "color", "shape"}
    assert len(payload["strengths"]) == 3 * len(STRENGTHS)
    assert payload["counts"]["simulated"] == 200 and payload["simulated"]
    assert len(payload["win_rates"]) == 6
    assert all(0 <= row["win_rate"] <= 1 for row in payload["win_rates"])
    (plan,) = payload["plan"]
    assert plan["judgements"] == 400 and plan["judgements_needed"] > 0
    markdown = human_markdown(payload)
    assert (
        markdown.startswith("## Human judgements") and "**Simulated judgements**: 200 of the 400" in markdown
    )
    assert "| utility" in markdown
    people = analyse_judgements(judgements.assign(source="local"), study.scores(), DIRECTIONS, resamples=0)
    assert not people["simulated"] and "Simulated" not in human_markdown(people)


def test_planning_scales_with_one_over_the_width_squared() -> None:
    assert judgements_needed(100, 0.8, 0.4) == 400
    assert judgements_needed(100, 0.8, 0.2) == 1600
    assert judgements_needed(100, float("nan"), 0.2) == 0
    strengths = pd.DataFrame(
        {
            "decoder": "d",
            "prior": ["a", "b", "c"],
            "scope": OVERALL,
            "strength": [-0.5, 0.0, 0.5],
            "ci_low": [-0.9, -0.3, 0.1],
            "ci_high": [-0.1, 0.3, 0.9],
            "n": [100, 100, 100],  # 150 judgements, each counted for its two priors
        }
    )
    wide, narrow = study_plan(strengths, 0.4).iloc[0], study_plan(strengths, 0.2).iloc[0]
    assert (wide["judgements"], wide["judgements_needed"], wide["more_judgements"]) == (150, 600, 450)
    assert narrow["judgements_needed"] == 4 * wide["judgements_needed"]


def test_bad_settings_and_empty_judgements_are_clear_errors() -> None:
    study = Study(STRENGTHS, prompts=5)
    judgements = study.judge("r", 10)
    with pytest.raises(DataError, match="target width"):
        analyse_judgements(judgements, study.scores(), DIRECTIONS, target_width=0)
    with pytest.raises(DataError, match="no judgements"):
        analyse_judgements(judgements.iloc[:0], study.scores(), DIRECTIONS)
    with pytest.raises(DataError, match="no judgement answers the question 'text'"):
        analyse_judgements(judgements, study.scores(), DIRECTIONS, question="text")
    with pytest.raises(DataError, match="lack the column"):
        analyse_judgements(judgements.drop(columns="source"), study.scores(), DIRECTIONS)


def test_the_leaderboard_section_is_replaced_in_place_before_every_metric() -> None:
    board = "# run\n\n## Official metric per category\n\ntable\n\n## Every metric\n\nrows\n"
    once = with_human_section(board, "## Human judgements\n\nfirst")
    assert once.index("## Human judgements") < once.index("## Every metric")
    twice = with_human_section(once, "## Human judgements\n\nsecond")
    assert twice.count("## Human judgements") == 1 and "second" in twice and "first" not in twice
    assert twice == with_human_section(twice, "## Human judgements\n\nsecond")
    assert with_human_section("# run\n", "## Human judgements\n\nx").endswith("## Human judgements\n\nx\n")
