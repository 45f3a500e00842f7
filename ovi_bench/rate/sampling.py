"""Which pair a rater sees next: balanced over prior pairs and categories, optionally active, with attention checks
and some overlap between raters.

An **item** is two priors' images of the same prompt, rendered from the same seed by the same decoder: the only
difference a rater can see is the prior's. The sampler is pure: it gets the run's items and every judgement so far
and returns the next trial, so a restarted server (which reads the same judgements) continues where it stopped, and
the same seed gives the same trials. Its randomness is seeded by (seed, rater, question, how many trials the rater
has answered), never by the clock; only the trial's id is random (ids must never collide with imported ones).

- **Balanced** (default): the next trial comes from the (prior pair, category) cell with the fewest judgements among
  the cells that still hold an item this rater has not seen, and within it the least-judged item.
- **Active**: the next trial comes from the prior pair whose comparison is least certain: a running Bradley–Terry-like
  estimate (each prior's strength is the log-odds of its wins, Laplace-smoothed, ties half a win) gives the pair's
  win probability p, and the pair with the largest p(1-p)/(n+1) (close to 0.5 and few judgements) is asked next.
- **Overlap**: a share of trials (`overlap`) re-uses an item other raters judged and this one has not, so that
  inter-rater agreement can be computed.
- **Attention checks** every `attention_every` trials, alternately a repeat (a pair this rater judged, sides
  swapped, `repeat_of` set) and a canary (a real image against a broken copy of the other image; `expected` names
  the intact side, the broken side's prior is CANARY_PRIOR).
"""

from __future__ import annotations

import math
import random
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Final, TypeVar

import pandas as pd

from ovi_bench.errors import DataError
from ovi_bench.rate.judgements import CANARY_PRIOR
from ovi_bench.rate.trials import Trial
from ovi_bench.results.records import load_run

T = TypeVar("T")

DEFAULT_OVERLAP: Final = 0.2
"""Share of ordinary trials that re-use an item another rater judged (inter-rater agreement needs them)."""

ItemKey = tuple[str, str, str, int, str, str]
"""(decoder, category, prompt_id, seed, prior, prior) with the two priors in sorted order."""
Cell = tuple[str, str, str]
"""(prior, prior, category), priors in sorted order: the unit the balanced sampler spreads judgements over."""


@dataclass(frozen=True)
class PairItem:
    """Two priors' images of one prompt, same seed, same decoder; `prior_a` < `prior_b`."""

    decoder: str
    category: str
    prompt_id: str
    prompt: str
    seed: int
    prior_a: str
    prior_b: str
    image_a: str
    image_b: str

    @property
    def key(self) -> ItemKey:
        return (self.decoder, self.category, self.prompt_id, self.seed, self.prior_a, self.prior_b)

    @property
    def cell(self) -> Cell:
        return (self.prior_a, self.prior_b, self.category)


def pair_items(images: pd.DataFrame) -> list[PairItem]:
    """Every item of a frame with one row per image (columns decoder, prior, category, prompt_id, prompt, seed,
    image): each pair of priors that rendered the same prompt with the same seed and decoder."""
    items: list[PairItem] = []
    keys = ["decoder", "category", "prompt_id", "seed"]
    for (decoder, category, prompt_id, seed), group in images.groupby(keys, sort=True):
        by_prior = {str(row.prior): row for row in group.itertuples(index=False)}
        for prior_a, prior_b in combinations(sorted(by_prior), 2):
            first, second = by_prior[prior_a], by_prior[prior_b]
            items.append(
                PairItem(
                    str(decoder),
                    str(category),
                    str(prompt_id),
                    str(first.prompt),
                    int(seed),
                    prior_a,
                    prior_b,
                    str(first.image),
                    str(second.image),
                )
            )
    return items


def load_items(run_dir: str | Path) -> list[PairItem]:
    """The items of a finished run folder, from its scores.csv (unique images per decoder, prior, category, prompt
    and seed). DataError naming the fix when the folder is not a finished run or has fewer than two priors."""
    run = load_run(run_dir)
    scores = run.scores
    if scores.empty or "image" not in scores.columns:
        raise DataError(
            f"{run.path} has no scored images (scores.csv is empty or has no `image` column): rating needs a "
            f"finished run with per-image metrics. Run `ovi-bench run CONFIG --out {run.path}` first."
        )
    columns = ["decoder", "prior", "category", "prompt_id", "prompt", "seed", "image"]
    images = scores.loc[scores["image"].astype(str) != "", columns].drop_duplicates(
        ["decoder", "prior", "category", "prompt_id", "seed"]
    )
    items = pair_items(images)
    if not items:
        raise DataError(
            f"{run.path} has no prompt rendered by two priors with the same seed and decoder: a pairwise rating "
            "needs a run with at least two priors."
        )
    return items


def judgement_keys(judgements: pd.DataFrame) -> list[ItemKey]:
    """The item each judgement row is about, in row order."""
    if judgements.empty:
        return []
    columns = ("decoder", "category", "prompt_id", "seed", "left_prior", "right_prior")
    keys: list[ItemKey] = []
    for decoder, category, prompt_id, seed, left, right in zip(
        *(judgements[c] for c in columns), strict=True
    ):
        prior_a, prior_b = sorted((str(left), str(right)))
        keys.append((str(decoder), str(category), str(prompt_id), int(seed), prior_a, prior_b))
    return keys


def running_strengths(judgements: pd.DataFrame) -> dict[str, float]:
    """Each prior's running strength: log((wins + 1) / (losses + 1)), ties half a win and half a loss. A quick
    Bradley–Terry-like estimate for active sampling (the analysis fits the real model)."""
    wins: Counter[str] = Counter()
    losses: Counter[str] = Counter()
    for row in judgements.itertuples(index=False):
        if row.kind == "canary" or row.choice == "skip":
            continue
        left, right = str(row.left_prior), str(row.right_prior)
        share = {"left": 1.0, "right": 0.0, "tie": 0.5}[str(row.choice)]
        wins[left] += share
        losses[left] += 1 - share
        wins[right] += 1 - share
        losses[right] += share
    return {prior: math.log((wins[prior] + 1) / (losses[prior] + 1)) for prior in set(wins) | set(losses)}


class PairSampler:
    """The next trial for a rater, from the run's items and the judgements so far (see the module docstring)."""

    def __init__(
        self,
        items: list[PairItem],
        *,
        attention_every: int = 10,
        active: bool = False,
        seed: int = 0,
        overlap: float = DEFAULT_OVERLAP,
    ) -> None:
        if not items:
            raise DataError(
                "there are no pairs to rate: the run needs two priors' images of the same prompt."
            )
        self.items = items
        self.by_key = {item.key: item for item in items}
        self.attention_every = attention_every
        self.active = active
        self.seed = seed
        self.overlap = overlap

    def next_trial(self, rater: str, question: str, judgements: pd.DataFrame) -> Trial | None:
        """The trial `rater` answers next for `question`; None when they have seen every item."""
        asked = judgements[judgements["question"] == question] if len(judgements) else judgements
        own = asked[asked["rater"] == rater] if len(asked) else asked
        random_source = random.Random(f"{self.seed}:{rater}:{question}:{len(own)}")
        seen = set(judgement_keys(own[own["kind"] != "canary"])) if len(own) else set()
        unseen = [item for item in self.items if item.key not in seen]
        if not unseen:
            return None
        position = len(own) + 1
        if self.attention_every and position % self.attention_every == 0:
            check = self._attention_check(
                rater, question, own, position // self.attention_every, random_source
            )
            if check is not None:
                return check
        item = self._pick(unseen, asked, rater, random_source)
        return self._pair(item, rater, question, random_source)

    # -----------------------------------------------------------------------------------------------------------------

    def _pick(
        self, unseen: list[PairItem], asked: pd.DataFrame, rater: str, random_source: random.Random
    ) -> PairItem:
        ordinary = asked[asked["kind"] != "canary"] if len(asked) else asked
        judged = judgement_keys(ordinary[ordinary["choice"] != "skip"]) if len(ordinary) else []
        item_counts = Counter(judged)
        if random_source.random() < self.overlap:
            others = set(judgement_keys(ordinary[ordinary["rater"] != rater])) if len(ordinary) else set()
            shared = [item for item in unseen if item.key in others]
            if shared:
                return _least(shared, lambda item: item_counts[item.key], random_source)
        cell_counts = Counter(self.by_key[key].cell for key in judged if key in self.by_key)
        if self.active:
            pair = self._uncertain_pair(unseen, ordinary, cell_counts, random_source)
            unseen = [item for item in unseen if (item.prior_a, item.prior_b) == pair]
        cell = _least(sorted({item.cell for item in unseen}), lambda cell: cell_counts[cell], random_source)
        in_cell = [item for item in unseen if item.cell == cell]
        return _least(in_cell, lambda item: item_counts[item.key], random_source)

    def _uncertain_pair(
        self,
        unseen: list[PairItem],
        judgements: pd.DataFrame,
        cell_counts: Counter[Cell],
        random_source: random.Random,
    ) -> tuple[str, str]:
        strengths = running_strengths(judgements) if len(judgements) else {}
        pair_counts: Counter[tuple[str, str]] = Counter()
        for (prior_a, prior_b, _), count in cell_counts.items():
            pair_counts[(prior_a, prior_b)] += count

        def certainty(pair: tuple[str, str]) -> float:
            difference = strengths.get(pair[0], 0.0) - strengths.get(pair[1], 0.0)
            win = 1 / (1 + math.exp(-difference))
            return -win * (1 - win) / (pair_counts[pair] + 1)

        pairs = sorted({(item.prior_a, item.prior_b) for item in unseen})
        return _least(pairs, certainty, random_source)

    def _attention_check(
        self, rater: str, question: str, own: pd.DataFrame, number: int, random_source: random.Random
    ) -> Trial | None:
        """The `number`-th attention check: odd ones repeat a pair (a canary when there is none to repeat yet),
        even ones are canaries."""
        if number % 2 == 1:
            repeated = set(own["repeat_of"]) if len(own) else set()
            candidates = (
                own[(own["kind"] == "pair") & (own["choice"] != "skip") & ~own["judgement_id"].isin(repeated)]
                if len(own)
                else own
            )
            if len(candidates):
                original = candidates.iloc[random_source.randrange(len(candidates))]
                return _repeat(original, rater)
        return self._canary(rater, question, random_source)

    def _canary(self, rater: str, question: str, random_source: random.Random) -> Trial:
        item = self.items[random_source.randrange(len(self.items))]
        intact_prior, intact_image, broken_image = (
            (item.prior_a, item.image_a, item.image_b)
            if random_source.random() < 0.5
            else (item.prior_b, item.image_b, item.image_a)
        )
        intact_side = "left" if random_source.random() < 0.5 else "right"
        sides = {
            intact_side: (intact_prior, intact_image),
            _other(intact_side): (CANARY_PRIOR, broken_image),
        }
        return _trial(item, rater, question, "canary", sides["left"], sides["right"], expected=intact_side)

    @staticmethod
    def _pair(item: PairItem, rater: str, question: str, random_source: random.Random) -> Trial:
        first, second = (item.prior_a, item.image_a), (item.prior_b, item.image_b)
        left, right = (second, first) if random_source.random() < 0.5 else (first, second)
        return _trial(item, rater, question, "pair", left, right)


def _trial(
    item: PairItem,
    rater: str,
    question: str,
    kind: str,
    left: tuple[str, str],
    right: tuple[str, str],
    *,
    expected: str = "",
) -> Trial:
    """A new trial about `item` showing `left` and `right` ((prior, image) each)."""
    return Trial(
        trial_id=uuid.uuid4().hex,
        rater=rater,
        question=question,
        kind=kind,
        decoder=item.decoder,
        category=item.category,
        prompt_id=item.prompt_id,
        prompt=item.prompt,
        seed=item.seed,
        left_prior=left[0],
        right_prior=right[0],
        left_image=left[1],
        right_image=right[1],
        expected=expected,
    )


def _repeat(original: pd.Series, rater: str) -> Trial:
    """A judged pair shown again with its sides swapped."""
    return Trial(
        trial_id=uuid.uuid4().hex,
        rater=rater,
        question=str(original["question"]),
        kind="repeat",
        decoder=str(original["decoder"]),
        category=str(original["category"]),
        prompt_id=str(original["prompt_id"]),
        prompt=str(original["prompt"]),
        seed=int(original["seed"]),
        left_prior=str(original["right_prior"]),
        right_prior=str(original["left_prior"]),
        left_image=str(original["right_image"]),
        right_image=str(original["left_image"]),
        repeat_of=str(original["judgement_id"]),
    )


def _other(side: str) -> str:
    return "right" if side == "left" else "left"


def _least(candidates: list[T], cost: Callable[[T], float], random_source: random.Random) -> T:
    """The candidate with the lowest `cost(candidate)`, ties broken by `random_source` (so equal cells are visited
    in a seeded random order, not alphabetically)."""
    costs = [cost(candidate) for candidate in candidates]
    lowest = min(costs)
    tied = [candidate for candidate, value in zip(candidates, costs, strict=True) if value == lowest]
    return tied[random_source.randrange(len(tied))]
