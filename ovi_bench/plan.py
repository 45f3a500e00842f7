"""Plan a run: its prompts, and every image it makes as a work item keyed by content.

A work item's keys are fingerprints of what produced it (prior, prompt, seed, decoder), so the same item in
another run, another process or after a crash maps to the same stored embedding and image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ovi_bench.prompts import Prompt, PromptSet, load_prompts
from ovi_bench.registry import DECODERS, METRICS, PRIORS
from ovi_bench.spec import MetricSpec, PriorSpec, RunSpec
from ovi_bench.store import item_key


@dataclass(frozen=True)
class WorkItem:
    """One image of the run: a prior × prompt × seed, rendered by the run's decoder."""

    prior: str
    """The prior's display name (label or registered name)."""
    prompt: Prompt
    seed: int
    embedding_key: str
    image_key: str


def prior_fingerprint(spec: RunSpec, prior: PriorSpec) -> str:
    return PRIORS.get(prior.name).fingerprint(prior.name, prior.params, spec.dtype)


def decoder_fingerprint(spec: RunSpec) -> str:
    decoder = spec.decoder
    settings = {**decoder.params, "steps": decoder.steps, "guidance": decoder.guidance}
    settings |= {"height": decoder.height, "width": decoder.width}
    return DECODERS.get(decoder.name).fingerprint(decoder.name, settings, spec.dtype)


def metric_fingerprint(spec: RunSpec, metric: MetricSpec) -> str:
    return METRICS.get(metric.name).fingerprint(metric.name, metric.params, spec.dtype)


def load_run_prompts(spec: RunSpec, data_dir: str | Path | None = None) -> PromptSet:
    prompts = spec.prompts
    return load_prompts(
        prompts.source,
        categories=prompts.categories,
        split=prompts.split,
        limit=prompts.limit,
        data_dir=data_dir or prompts.data_dir,
    )


def plan(spec: RunSpec, prompt_set: PromptSet) -> list[WorkItem]:
    """Every image of the run, keyed by content: the same prior, prompt, seed and decoder give the same keys."""
    decoder_key = decoder_fingerprint(spec)
    items = []
    for prior in spec.priors:
        prior_key = prior_fingerprint(spec, prior)
        for prompt in prompt_set.prompts:
            for seed in spec.seeds:
                embedding_key = item_key("embedding", prior_key, prompt.text, seed)
                image_key = item_key("image", embedding_key, decoder_key)
                items.append(WorkItem(prior.display_name, prompt, seed, embedding_key, image_key))
    return items
