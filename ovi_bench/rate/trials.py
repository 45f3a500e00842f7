"""A trial: what the rating app shows a rater before they answer. The sampler makes trials, the store keeps the
pending ones (so a restarted server shows a rater the same trial again) and turns an answered trial into a judgement
row whose `judgement_id` is the trial's id: a trial answered twice (a double click, a resent request) is stored once.

A canary's broken side carries `CANARY_PRIOR` as its prior and, as its image, the run-relative path of the real
image the broken copy is made from; the broken copy itself is never written to disk (the app makes it in memory).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Final

from ovi_bench.rate.judgements import CANARY_PRIOR

TRIAL_COLUMNS: Final = (
    "trial_id",
    "rater",
    "question",
    "kind",
    "decoder",
    "category",
    "prompt_id",
    "prompt",
    "seed",
    "left_prior",
    "right_prior",
    "left_image",
    "right_image",
    "expected",
    "repeat_of",
)
"""The fields of a trial, in the order the store keeps them; each but `trial_id` is a judgement column too."""

SIDES: Final = ("left", "right")


@dataclass(frozen=True)
class Trial:
    """One pair shown to one rater. `trial_id` becomes the judgement's `judgement_id` once answered."""

    trial_id: str
    rater: str
    question: str
    kind: str
    decoder: str
    category: str
    prompt_id: str
    prompt: str
    seed: int
    left_prior: str
    right_prior: str
    left_image: str
    right_image: str
    expected: str = ""
    repeat_of: str = ""

    def prior(self, side: str) -> str:
        return self.left_prior if side == "left" else self.right_prior

    def image(self, side: str) -> str:
        return self.left_image if side == "left" else self.right_image

    def is_broken(self, side: str) -> bool:
        """Whether `side` shows a canary's broken copy (made in memory from `image(side)`)."""
        return self.kind == "canary" and self.prior(side) == CANARY_PRIOR

    def as_row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_row(cls, row: Any) -> Trial:
        """A trial from a mapping (a database row) with at least the TRIAL_COLUMNS."""
        values = {column: row[column] for column in TRIAL_COLUMNS}
        values["seed"] = int(values["seed"])
        values["expected"] = values["expected"] or ""
        values["repeat_of"] = values["repeat_of"] or ""
        return cls(**values)
