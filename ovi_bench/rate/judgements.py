"""One pairwise judgement: the record the rating app stores, `ovi-bench ratings export` writes and
`ovi-bench ratings import` reads, and `ovi-bench human` analyses.

A trial shows one prompt and two images of it rendered by the same decoder from the same seed, made by two priors;
the rater answers left, right, tie or skip. Every stored judgement is one row with the columns below, in this order;
the CSV export has exactly these columns, so a crowd study collected elsewhere is merged by writing the same shape.

Attention checks are judgements too, told apart by `kind`:

- `pair`: an ordinary trial between two priors.
- `repeat`: a pair the rater already judged, shown again with its sides swapped; `repeat_of` names the judgement it
  repeats. It passes when the rater picks the same prior again (or ties both times).
- `canary`: a real image next to a deliberately broken copy of an image; the broken side's prior is `CANARY_PRIOR`
  and `expected` names the intact side ("left" or "right"). It passes when the rater picks the intact side.
"""

from __future__ import annotations

from typing import Final, Literal

from ovi_bench.spec import Question

RATINGS_FILE: Final = "ratings.sqlite"
"""The ratings database in the run folder (SQLite, WAL mode)."""

JUDGEMENT_COLUMNS: Final = (
    "judgement_id",  # unique id (32 hex digits); a re-imported row with a known id is skipped, never doubled
    "rater",  # the name the rater gave
    "question",  # a Question key: overall, text, realism
    "kind",  # pair, repeat or canary
    "decoder",  # the decoder (display name) that rendered both images
    "category",
    "prompt_id",
    "prompt",
    "seed",  # the seed of both images
    "left_prior",  # prior display names, as in the run's result files; CANARY_PRIOR on a canary's broken side
    "right_prior",
    "left_image",  # run-relative image paths, as in scores.csv's `image` column
    "right_image",
    "choice",  # left, right, tie or skip
    "expected",  # a canary's intact side (left or right); empty otherwise
    "repeat_of",  # the judgement_id a repeat repeats; empty otherwise
    "created_at",  # ISO 8601, UTC, when the vote was stored
    "response_ms",  # milliseconds from the images being shown to the vote
    "source",  # "local" (this app), "simulated" (simulated raters) or the name of the imported file
)

Choice = Literal["left", "right", "tie", "skip"]
CHOICES: Final = ("left", "right", "tie", "skip")
Kind = Literal["pair", "repeat", "canary"]
KINDS: Final = ("pair", "repeat", "canary")
CANARY_PRIOR: Final = "(broken image)"

QUESTIONS: Final[dict[Question, str]] = {
    "overall": "Which image do you prefer overall?",
    "text": "Which image matches the text better?",
    "realism": "Which image looks more realistic?",
}
"""Each question key with the wording the raters see."""


def chosen_prior(left_prior: str, right_prior: str, choice: str) -> str | None:
    """The prior the rater picked; None for a tie or a skip."""
    return {"left": left_prior, "right": right_prior}.get(choice)
