"""Metric audits: can a metric tell prompts apart on this run, and does it rank junk images near real ones?

* Prompt-shuffle control: every image is also scored against another prompt of its category (a seeded cyclic
  derangement of the category's prompts). The matched-minus-shuffled gap, averaged per prompt, gets a bootstrap
  confidence interval over prompts. A gap whose interval does not lie above zero means the metric cannot tell this
  run's prompts apart, whatever its mean says.
* Canaries: blank, noise and single-colour images scored against every prompt of the category. A metric that scores
  them above a quarter of the run's real generations is flagged.

Audit scores go through the metric's own score cache (keyed by image content, prompt and category) and the one
scoring path of every caller (`ovi_bench.scoring`), so they are computed once.
"""

from __future__ import annotations

import io
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ovi_bench.caches import RowCache
from ovi_bench.io import sha256_bytes
from ovi_bench.plan import WorkItem
from ovi_bench.registry import METRICS
from ovi_bench.results.statistics import prompt_bootstrap_interval
from ovi_bench.scoring import Scorer, ScoreRequest, metric_kind

CANARY_FLAG_RANK = 0.25
"""A metric is flagged when the canaries' mean score beats this fraction of the run's real images."""


# ---------------------------------------------------------------------------------------------------------------------
# Pure statistics.


@dataclass(frozen=True)
class ShuffleGap:
    gap: float
    """Mean over prompts of (matched − shuffled) score, in the metric's better direction."""
    ci_low: float
    ci_high: float
    n_prompts: int

    @property
    def discriminates(self) -> bool:
        return self.ci_low > 0


def shuffle_gap(
    prompt_ids: Sequence[str],
    matched: Sequence[float],
    shuffled: Sequence[float],
    *,
    higher_is_better: bool = True,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> ShuffleGap:
    """Per-prompt mean of matched − shuffled (sign flipped for lower-is-better metrics), and a percentile bootstrap
    interval over prompts (images are nested within prompts, so prompts are the resampling unit)."""
    sign = 1.0 if higher_is_better else -1.0
    differences = [sign * (good - bad) for good, bad in zip(matched, shuffled, strict=True)]
    if not differences:
        return ShuffleGap(float("nan"), float("nan"), float("nan"), 0)
    gap, low, high = prompt_bootstrap_interval(
        prompt_ids, differences, weight_by_images=False, resamples=resamples, confidence=confidence, seed=seed
    )
    return ShuffleGap(gap, low, high, len(set(prompt_ids)))


def canary_rank(
    canary_scores: Sequence[float], real_scores: Sequence[float], higher_is_better: bool = True
) -> float:
    """Fraction of real images that the canaries' mean score beats (0: canaries are worse than every real image)."""
    if not real_scores:
        return float("nan")
    canary = float(np.mean(canary_scores))
    real = np.asarray(real_scores, dtype=float)
    return float(np.mean(real < canary) if higher_is_better else np.mean(real > canary))


def cyclic_derangement(keys: Sequence[str], seed: int) -> dict[str, str]:
    """Map every key to another key (a random cycle through all of them); empty when there are fewer than two."""
    order = sorted(set(keys))
    if len(order) < 2:
        return {}
    random.Random(seed).shuffle(order)
    return {key: order[(index + 1) % len(order)] for index, key in enumerate(order)}


def canary_images(width: int, height: int, seed: int = 0) -> dict[str, Image.Image]:
    """Images no prompt describes: black, white, mid-grey, uniform noise and three saturated colours."""
    rng = np.random.default_rng(seed)
    solid = {
        "black": (0, 0, 0),
        "white": (255, 255, 255),
        "grey": (128, 128, 128),
        "red": (220, 30, 30),
        "green": (30, 200, 60),
        "blue": (40, 60, 220),
    }
    images = {name: Image.new("RGB", (width, height), colour) for name, colour in solid.items()}
    images["noise"] = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    return images


# ---------------------------------------------------------------------------------------------------------------------
# Running them.


def _png_sha(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return sha256_bytes(buffer.getvalue())


def run_audits(
    scorer: Scorer, items: Sequence[WorkItem], rows: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Audit every per-image metric of the run; one row per metric × decoder × category and audit kind (each
    decoder's images are audited on their own, against canaries of its image size)."""
    spec = scorer.spec
    settings = spec.audits
    if settings is None:
        return []
    matched = {(row["image"], row["metric"]): row["score"] for row in rows}
    records = scorer.store.manifest
    canaries_of = {
        decoder.display_name: canary_images(decoder.width, decoder.height, settings.seed)
        for decoder in spec.decoder_specs
    }
    canary_keys = {
        (decoder, name): _png_sha(image)
        for decoder, canaries in canaries_of.items()
        for name, image in canaries.items()
    }
    audit_rows: list[dict[str, Any]] = []
    for metric_spec in spec.metrics:
        if metric_kind(metric_spec) != "image":
            continue
        higher_is_better = METRICS.get(metric_spec.name).higher_is_better
        cache = scorer.score_cache(metric_spec)
        scored = [
            item
            for item in items
            if item.image_key in records and (records[item.image_key].path, metric_spec.name) in matched
        ]
        by_category: dict[tuple[str, str], list[WorkItem]] = defaultdict(list)
        for item in scored:
            by_category[(item.decoder, item.prompt.category)].append(item)
        requests: list[ScoreRequest] = []
        plans: list[tuple[str, tuple[str, str], list[tuple[WorkItem, ScoreRequest]], list[ScoreRequest]]] = []
        for (decoder, category), category_items in by_category.items():
            prompts = {item.prompt.id: item.prompt for item in category_items}
            shuffled_pairs: list[tuple[WorkItem, ScoreRequest]] = []
            if settings.shuffle:
                other = cyclic_derangement(list(prompts), settings.seed)
                for item in category_items:
                    if item.prompt.id not in other:
                        continue
                    prompt = prompts[other[item.prompt.id]]
                    record = records[item.image_key]
                    request = ScoreRequest(
                        RowCache.score_key(record.sha256, prompt.text, category),
                        lambda item=item: scorer.load_image(item),
                        prompt.text,
                        category,
                        prompt.subset,
                    )
                    shuffled_pairs.append((item, request))
            canary_requests: list[ScoreRequest] = []
            if settings.canaries:
                for name, image in canaries_of[decoder].items():
                    for prompt in prompts.values():
                        canary_requests.append(
                            ScoreRequest(
                                RowCache.score_key(canary_keys[(decoder, name)], prompt.text, category),
                                lambda image=image: image,
                                prompt.text,
                                category,
                                prompt.subset,
                            )
                        )
            requests += [request for _, request in shuffled_pairs] + canary_requests
            plans.append((metric_spec.name, (decoder, category), shuffled_pairs, canary_requests))
        # A pair asked for twice (two seeds of one image content, a canary for a repeated prompt) is scored once.
        distinct = list({request.cache_key: request for request in requests}.values())
        scorer.score_requests(metric_spec, distinct, cache, task="audit")
        for name, (decoder, category), shuffled_pairs, canary_requests in plans:
            real = [
                matched[(records[item.image_key].path, name)] for item in by_category[(decoder, category)]
            ]
            if shuffled_pairs:
                gap = shuffle_gap(
                    [item.prompt.id for item, _ in shuffled_pairs],
                    [matched[(records[item.image_key].path, name)] for item, _ in shuffled_pairs],
                    [cache.rows[request.cache_key]["score"] for _, request in shuffled_pairs],
                    higher_is_better=higher_is_better,
                    resamples=settings.bootstrap,
                    seed=settings.seed,
                )
                audit_rows.append(
                    {
                        "metric": name,
                        "decoder": decoder,
                        "category": category,
                        "audit": "prompt-shuffle",
                        "value": gap.gap,
                        "ci_low": gap.ci_low,
                        "ci_high": gap.ci_high,
                        "n_prompts": gap.n_prompts,
                        "flagged": not gap.discriminates,
                        "verdict": "tells prompts apart"
                        if gap.discriminates
                        else "cannot tell prompts apart",
                    }
                )
            if canary_requests:
                canary_scores = [cache.rows[request.cache_key]["score"] for request in canary_requests]
                rank = canary_rank(canary_scores, real, higher_is_better)
                flagged = bool(rank >= CANARY_FLAG_RANK)
                audit_rows.append(
                    {
                        "metric": name,
                        "decoder": decoder,
                        "category": category,
                        "audit": "canaries",
                        "value": float(np.mean(canary_scores)),
                        "ci_low": float("nan"),
                        "ci_high": float("nan"),
                        "n_prompts": len({request.prompt for request in canary_requests}),
                        "flagged": flagged,
                        "verdict": f"canaries beat {rank:.0%} of real images"
                        + (" — ranks junk near real generations" if flagged else ""),
                    }
                )
    return audit_rows
