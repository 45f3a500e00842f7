"""Simulated pairwise judgements for the human-analysis tests: priors with known strengths, images whose utility is
the prior's strength plus optional image noise, and raters who judge by that utility (numpy and pandas only)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ovi_bench.rate.judgements import CANARY_PRIOR, JUDGEMENT_COLUMNS

DECODER = "tiny-decoder"


@dataclass
class Study:
    """Per-image utilities and the judgements and scores made from them."""

    strengths: Mapping[str, float]
    prompts: int = 20
    categories: Sequence[str] = ("color", "shape")
    image_noise: float = 0.0
    seed: int = 0
    decoder: str = DECODER
    rng: np.random.Generator = field(init=False)
    utility: dict[tuple[str, str], float] = field(init=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.utility = {
            (prior, self.prompt(index)): strength + self.image_noise * float(self.rng.normal())
            for index in range(self.prompts)
            for prior, strength in self.strengths.items()
        }

    def prompt(self, index: int) -> str:
        return f"p{index:03d}"

    def category(self, prompt: str) -> str:
        return self.categories[int(prompt[1:]) % len(self.categories)]

    def judge(
        self,
        rater: str,
        count: int,
        *,
        mode: str = "bradley-terry",
        tie_margin: float = 0.0,
        source: str = "simulated",
    ) -> pd.DataFrame:
        """`count` pair judgements by one rater: "bradley-terry" (logistic choice on the utility difference),
        "exact" (the higher utility, a tie within `tie_margin`) or "random"."""
        priors = list(self.strengths)
        rows = []
        for _ in range(count):
            prompt = self.prompt(int(self.rng.integers(self.prompts)))
            left, right = self.rng.choice(priors, size=2, replace=False)
            difference = self.utility[(left, prompt)] - self.utility[(right, prompt)]
            if mode == "random":
                choice = str(self.rng.choice(["left", "right"]))
            elif abs(difference) <= tie_margin:
                choice = "tie"
            elif mode == "exact":
                choice = "left" if difference > 0 else "right"
            else:
                choice = "left" if self.rng.random() < 1 / (1 + np.exp(-difference)) else "right"
            rows.append(self.row(rater, prompt, str(left), str(right), choice, source=source))
        return pd.DataFrame(rows, columns=list(JUDGEMENT_COLUMNS))

    def row(
        self, rater: str, prompt: str, left: str, right: str, choice: str, *, kind: str = "pair", **extra: str
    ) -> dict[str, object]:
        return {
            "judgement_id": uuid.uuid4().hex,
            "rater": rater,
            "question": "overall",
            "kind": kind,
            "decoder": self.decoder,
            "category": self.category(prompt),
            "prompt_id": prompt,
            "prompt": f"prompt {prompt}",
            "seed": 0,
            "left_prior": left,
            "right_prior": right,
            "left_image": f"images/{left}/{prompt}.png",
            "right_image": f"images/{right}/{prompt}.png",
            "choice": choice,
            "expected": "",
            "repeat_of": "",
            "created_at": "2026-01-01T00:00:00+00:00",
            "response_ms": 900,
            "source": "simulated",
        } | extra

    def canaries(self, rater: str, passed: int, failed: int) -> pd.DataFrame:
        """Canary trials (the intact image on the left): `passed` answered left, `failed` answered right."""
        prior = next(iter(self.strengths))
        rows = [
            self.row(rater, self.prompt(0), prior, CANARY_PRIOR, choice, kind="canary", expected="left")
            for choice in ["left"] * passed + ["right"] * failed
        ]
        return pd.DataFrame(rows, columns=list(JUDGEMENT_COLUMNS))

    def scores(self, metrics: Mapping[str, str] | None = None) -> pd.DataFrame:
        """scores.csv rows: metric "utility" (the simulated utility), "random" (noise) and "constant" (every image
        scores the same); `metrics` renames or picks them."""
        rows = []
        for (prior, prompt), utility in self.utility.items():
            values = {"utility": utility, "random": float(self.rng.random()), "constant": 0.5}
            for metric, value in values.items():
                if metrics is not None and metric not in metrics:
                    continue
                rows.append(
                    {
                        "prior": prior,
                        "decoder": self.decoder,
                        "category": self.category(prompt),
                        "metric": metrics[metric] if metrics else metric,
                        "prompt_id": prompt,
                        "prompt": f"prompt {prompt}",
                        "seed": 0,
                        "score": value,
                        "image": f"images/{prior}/{prompt}.png",
                    }
                )
        return pd.DataFrame(rows)


def judgements_of(*frames: pd.DataFrame) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True)
