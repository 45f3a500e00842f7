"""Instant stand-in components, registered through the public plugin API, so that a run measures the harness alone.

Used by `harness_throughput.py` and `plan_and_skip.py`. Every stand-in is deterministic per sample (its own
generator, or the image bytes), like a real component, and costs microseconds: an 8-dimensional random embedding,
an 8×8 image, a score computed from the pixels. Whatever time a run takes beyond that is ovi-bench's own.

From the command line, load them as a plugin:
    PYTHONPATH=benchmarks ovi-bench run SPEC --out DIR -q --plugins instant_components
"""

from __future__ import annotations

import argparse
import csv
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
from ovi_bench.prompts.base import CATEGORIES
from ovi_bench.registry import DECODERS, METRICS, PRIORS

EMBEDDING_WIDTH = 8
IMAGE_SIDE = 8
"""Tiny on purpose: PNG encoding is the stand-in decoder's cost, and a harness benchmark should not measure zlib."""


@PRIORS.register("instant-prior")
class InstantPrior(Prior):
    """A seeded random embedding per sample; the negative is all zeros."""

    class Params(BaseParams):
        variant: int = 0
        """Tells several instant priors of one run apart (their fingerprints, hence their images, differ)."""

    def embed(self, texts: Sequence[str], generators: Sequence[torch.Generator]) -> PriorOutput:
        image_embeds = torch.stack([torch.randn(EMBEDDING_WIDTH, generator=g) for g in generators])
        image_embeds += self.params.variant
        return PriorOutput(image_embeds, torch.zeros_like(image_embeds))


@DECODERS.register("instant-decoder")
class InstantDecoder(Decoder):
    """An 8×8 image per embedding, its pixels drawn from the sample's generator (so every image differs)."""

    def decode(
        self,
        image_embeds: torch.Tensor,
        negative_image_embeds: torch.Tensor,
        generators: Sequence[torch.Generator],
        *,
        height: int,
        width: int,
        steps: int,
        guidance: float,
    ) -> list[Image.Image]:
        return [
            Image.fromarray(
                torch.randint(0, 256, (IMAGE_SIDE, IMAGE_SIDE, 3), generator=g, dtype=torch.uint8).numpy()
            )
            for g in generators
        ]


@METRICS.register("instant-metric")
class InstantMetric(Metric):
    """The mean pixel value in [0, 1]: a score that depends on the image content only."""

    def score(self, batch: Sequence[ScoreInput]) -> list[ScoreRow]:
        return [ScoreRow(float(np.asarray(item.image).mean() / 255.0), "mean pixel value") for item in batch]


def write_prompt_file(path: Path, prompts_per_category: int, categories: int) -> Path:
    """A .csv prompt file: `prompts_per_category` distinct prompts in each of the first `categories` categories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["prompt", "category"])
        for category in CATEGORIES[:categories]:
            for index in range(prompts_per_category):
                writer.writerow(
                    [f"{category} prompt number {index}: a red cube left of a blue ball", category]
                )
    return path


def instant_spec(prompt_file: Path, *, priors: int, images_per_prompt: int) -> dict[str, Any]:
    """A run spec of stand-ins only, with the default batch sizes of a real run."""
    return {
        "name": "instant",
        "device": "cpu",
        "images_per_prompt": images_per_prompt,
        "prompts": {"source": str(prompt_file)},
        "priors": [
            {"name": "instant-prior", "label": f"instant-{index}", "params": {"variant": index}}
            for index in range(priors)
        ],
        "decoder": {"name": "instant-decoder", "steps": 1, "height": IMAGE_SIDE, "width": IMAGE_SIDE},
        "metrics": [{"name": "instant-metric"}],
    }


def run_shape_arguments(description: str | None) -> argparse.ArgumentParser:
    """The command-line options both benchmarks share: the shape of the run they make (24,000 items by default) and
    where its folders go."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=300, help="prompts per category")
    parser.add_argument("--categories", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=10, help="images per prompt")
    parser.add_argument("--priors", type=int, default=1)
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="make the run folders under this folder (default: system temp)",
    )
    return parser
