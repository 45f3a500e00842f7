"""The pair sampler, in memory (no database, no app): balance over prior pairs and categories, attention checks at
their rate and in their shape, overlap between raters, active sampling, and the same trials from the same seed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from rating_runs import CATEGORIES, HOSTILE_PROMPT, PRIOR_STRENGTHS, make_rating_run, n_items

from ovi_bench.errors import DataError
from ovi_bench.rate.judgements import CANARY_PRIOR, JUDGEMENT_COLUMNS
from ovi_bench.rate.sampling import PairItem, PairSampler, load_items
from ovi_bench.rate.trials import Trial


@pytest.fixture(scope="module")
def items(tmp_path_factory: pytest.TempPathFactory) -> list[PairItem]:
    return load_items(make_rating_run(tmp_path_factory.mktemp("sampling") / "run"))


def answered(trial: Trial, choice: str) -> dict[str, Any]:
    fields = trial.as_row()
    return {
        **{column: fields[column] for column in JUDGEMENT_COLUMNS if column in fields},
        "judgement_id": trial.trial_id,
        "choice": choice,
        "created_at": "2026-01-01T00:00:00+00:00",
        "response_ms": 500,
        "source": "local",
    }


def session(
    sampler: PairSampler, raters: list[str], trials: int, judgements: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Each rater in turn answers `trials` trials ("left" always), as the app would store them."""
    rows: list[dict[str, Any]] = [] if judgements is None else judgements.to_dict(orient="records")
    for _ in range(trials):
        for rater in raters:
            frame = pd.DataFrame(rows, columns=list(JUDGEMENT_COLUMNS))
            trial = sampler.next_trial(rater, "overall", frame)
            if trial is not None:
                rows.append(answered(trial, "left"))
    return pd.DataFrame(rows, columns=list(JUDGEMENT_COLUMNS))


def content(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """The trials without their random ids."""
    columns = [
        "rater",
        "kind",
        "prompt_id",
        "left_prior",
        "right_prior",
        "left_image",
        "right_image",
        "expected",
    ]
    return [tuple(row) for row in frame[columns].itertuples(index=False)]


def test_items_are_two_priors_on_one_prompt_seed_and_decoder(items: list[PairItem]) -> None:
    assert len(items) == n_items()
    assert {item.prompt for item in items} >= {HOSTILE_PROMPT}
    for item in items:
        assert item.prior_a < item.prior_b and item.image_a != item.image_b


def test_a_folder_without_scores_is_named(tmp_path: Path) -> None:
    run = make_rating_run(tmp_path / "run")
    (run / "scores.csv").unlink()
    with pytest.raises(DataError, match=r"scores\.csv is missing"):
        load_items(run)


def test_trials_are_balanced_over_prior_pairs_and_categories(items: list[PairItem]) -> None:
    sampler = PairSampler(items, attention_every=0, overlap=0.0, seed=3)
    cells = len(PRIOR_STRENGTHS) * (len(PRIOR_STRENGTHS) - 1) // 2 * len(CATEGORIES)
    for raters in (["ann"], ["ann", "bob", "cy"]):
        judgements = session(sampler, raters, 2 * cells // len(raters))
        per_cell = Counter(
            (*sorted((left, right)), category)
            for left, right, category in zip(
                judgements["left_prior"], judgements["right_prior"], judgements["category"], strict=True
            )
        )
        assert len(per_cell) == cells
        assert max(per_cell.values()) - min(per_cell.values()) <= 1, per_cell
        sides = Counter(judgements["left_prior"])  # sides are randomised: every prior appears on the left
        assert set(sides) == set(PRIOR_STRENGTHS)


def test_a_rater_never_sees_an_item_twice_and_stops_when_all_are_seen(items: list[PairItem]) -> None:
    sampler = PairSampler(items, attention_every=0, seed=0)
    judgements = session(sampler, ["ann"], n_items() + 3)
    assert len(judgements) == n_items()
    pairs = {(row.prompt_id, *sorted((row.left_prior, row.right_prior))) for row in judgements.itertuples()}
    assert len(pairs) == n_items()
    assert sampler.next_trial("ann", "overall", judgements) is None
    assert sampler.next_trial("ann", "text", judgements) is not None  # another question is another study


def test_attention_checks_come_at_their_rate_and_in_their_shape(items: list[PairItem]) -> None:
    sampler = PairSampler(items, attention_every=4, seed=5)
    judgements = session(sampler, ["ann"], 16)
    kinds = list(judgements["kind"])
    assert [position + 1 for position, kind in enumerate(kinds) if kind != "pair"] == [4, 8, 12, 16]
    assert [kinds[3], kinds[7], kinds[11], kinds[15]] == ["repeat", "canary", "repeat", "canary"]
    by_id = judgements.set_index("judgement_id")
    for repeat in judgements[judgements["kind"] == "repeat"].itertuples():
        original = by_id.loc[repeat.repeat_of]
        assert original["kind"] == "pair" and original["rater"] == "ann"
        assert (repeat.left_prior, repeat.right_prior) == (original["right_prior"], original["left_prior"])
        assert (repeat.left_image, repeat.right_image) == (original["right_image"], original["left_image"])
        assert repeat.expected == ""
    assert len(set(judgements["repeat_of"]) - {""}) == 2  # two different pairs repeated
    for canary in judgements[judgements["kind"] == "canary"].itertuples():
        broken = "left" if canary.left_prior == CANARY_PRIOR else "right"
        intact = "right" if broken == "left" else "left"
        assert canary.expected == intact and getattr(canary, f"{intact}_prior") in PRIOR_STRENGTHS
        assert canary.repeat_of == ""
    assert set(judgements.loc[judgements["kind"] == "pair", "expected"]) == {""}


def test_the_first_check_is_a_canary_when_there_is_nothing_to_repeat(items: list[PairItem]) -> None:
    judgements = session(PairSampler(items, attention_every=1, seed=0), ["ann"], 1)
    assert list(judgements["kind"]) == ["canary"]


def test_the_same_seed_gives_the_same_trials(items: list[PairItem]) -> None:
    first = session(PairSampler(items, attention_every=3, seed=7), ["ann", "bob"], 8)
    again = session(PairSampler(items, attention_every=3, seed=7), ["ann", "bob"], 8)
    other = session(PairSampler(items, attention_every=3, seed=8), ["ann", "bob"], 8)
    assert content(first) == content(again)
    assert content(first) != content(other)
    assert len(set(first["judgement_id"])) == len(first)


def test_raters_overlap_on_a_share_of_items(items: list[PairItem]) -> None:
    first = session(PairSampler(items, attention_every=0, seed=0), ["ann"], 6)
    overlapping = PairSampler(items, attention_every=0, overlap=1.0, seed=0)
    second = session(overlapping, ["bob"], 6, first)
    seen_by_ann = {(row.prompt_id, *sorted((row.left_prior, row.right_prior))) for row in first.itertuples()}
    bob = second[second["rater"] == "bob"]
    assert {
        (row.prompt_id, *sorted((row.left_prior, row.right_prior))) for row in bob.itertuples()
    } == seen_by_ann


def test_active_sampling_asks_for_the_least_certain_prior_pair(items: list[PairItem]) -> None:
    rows = []
    for winner, loser, wins, losses in (
        ("strong", "weak", 10, 0),
        ("strong", "middle", 10, 0),
        ("middle", "weak", 5, 5),
    ):
        template = next(item for item in items if {item.prior_a, item.prior_b} == {winner, loser})
        for number in range(wins + losses):
            trial = Trial(
                f"{len(rows):032x}", "past", "overall", "pair", template.decoder, template.category,
                template.prompt_id, template.prompt, template.seed, winner, loser, template.image_a,
                template.image_b,
            )  # fmt: skip
            rows.append(answered(trial, "left" if number < wins else "right"))
    history = pd.DataFrame(rows, columns=list(JUDGEMENT_COLUMNS))
    active = PairSampler(items, attention_every=0, active=True, overlap=0.0, seed=0)
    assert prior_pairs(session(active, ["ann"], 4, history), "ann") == {frozenset({"middle", "weak"})}
    balanced = PairSampler(items, attention_every=0, overlap=0.0, seed=0)
    assert len(prior_pairs(session(balanced, ["ann"], 4, history), "ann")) > 1


def prior_pairs(judgements: pd.DataFrame, rater: str) -> set[frozenset[str]]:
    own = judgements[judgements["rater"] == rater]
    return {frozenset(pair) for pair in zip(own["left_prior"], own["right_prior"], strict=True)}
