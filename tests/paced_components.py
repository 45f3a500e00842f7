"""Cheap stand-in components with a set cost per sample, for tests of the real store (kills, timers, verify).

Like benchmarks/instant_components.py (deterministic per sample, microseconds of work), plus a `seconds` parameter
that each sample sleeps, so that a test can stop a run in a chosen stage. The prior records a per-prompt fact
(`norm`), so that embeddings.csv has `prior_*` columns. Registered on import; load with `--plugins paced_components`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ovi_bench.components import Params as BaseParams
from ovi_bench.decoders.base import Decoder
from ovi_bench.metrics.base import Metric, ScoreInput, ScoreRow
from ovi_bench.priors.base import Prior, PriorOutput
from ovi_bench.registry import DECODERS, METRICS, PRIORS


class PacedParams(BaseParams):
    seconds: float = 0.0
    """Sleep per sample."""
    variant: int = 0
    """Tells two priors of one run apart (their fingerprints, hence their embeddings, differ)."""


@PRIORS.register("paced-prior")
class PacedPrior(Prior):
    """A seeded random 8-dimensional embedding per sample, its norm recorded as a fact."""

    Params = PacedParams

    def embed(self, texts: Sequence[str], generators: Sequence[torch.Generator]) -> PriorOutput:
        time.sleep(self.params.seconds * len(texts))
        image_embeds = torch.stack([torch.randn(8, generator=g) for g in generators])
        facts = [{"norm": round(float(row.norm()), 6)} for row in image_embeds]
        return PriorOutput(image_embeds, torch.zeros_like(image_embeds), facts)


@DECODERS.register("paced-decoder")
class PacedDecoder(Decoder):
    """An 8×8 image per embedding, its pixels drawn from the sample's generator."""

    Params = PacedParams

    def decode(
        self,
        image_embeds: torch.Tensor,
        negative_image_embeds: torch.Tensor,
        generators: Sequence[torch.Generator],
        **_: Any,
    ) -> list[Image.Image]:
        time.sleep(self.params.seconds * len(generators))
        return [
            Image.fromarray(torch.randint(0, 256, (8, 8, 3), generator=g, dtype=torch.uint8).numpy())
            for g in generators
        ]


@METRICS.register("paced-metric")
class PacedMetric(Metric):
    """The mean pixel value in [0, 1]."""

    Params = PacedParams

    def score(self, batch: Sequence[ScoreInput]) -> list[ScoreRow]:
        time.sleep(self.params.seconds * len(batch))
        return [ScoreRow(float(np.asarray(item.image).mean() / 255.0), "mean pixel value") for item in batch]


def paced_spec(prompts: int = 4, seeds: int = 2, seconds: float = 0.0, **overrides: Any) -> dict[str, Any]:
    """2 paced priors × `prompts` builtin color/spatial prompts (limit per category) × `seeds`, batch size 1."""
    paced = {"seconds": seconds}
    spec: dict[str, Any] = {
        "name": "paced",
        "device": "cpu",
        "images_per_prompt": seeds,
        "prompts": {"source": "builtin", "categories": ["color", "spatial"], "limit": prompts},
        "priors": [
            {"name": "paced-prior", "label": "first", "params": paced},
            {"name": "paced-prior", "label": "second", "params": {**paced, "variant": 1}},
        ],
        "decoder": {"name": "paced-decoder", "steps": 1, "height": 8, "width": 8, "params": paced},
        "metrics": [{"name": "paced-metric", "params": paced}],
        "prior_batch_size": 1,
        "decoder_batch_size": 1,
        "metric_batch_size": 1,
    }
    return spec | overrides


def temporaries(folder: Path) -> list[Path]:
    """The hidden temporary files under a run folder."""
    return [path for path in folder.rglob(".*.tmp") if path.is_file()]
