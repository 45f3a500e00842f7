"""Plan a run: its prompts, and every image it makes as a work item keyed by content.

A work item's keys are fingerprints of what produced it (prior, prompt, seed, decoder), so the same item in
another run, another process or after a crash maps to the same stored embedding and image. Every decoder of a prior's
embedding space renders the same embedding: a run with two decoders has two items (two images) per embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovi_bench.components import RunData
from ovi_bench.paths import expand_user
from ovi_bench.prompts import Prompt, PromptSet, load_prompts
from ovi_bench.registry import DECODERS, METRICS, PRIORS
from ovi_bench.spec import DecoderSpec, MetricSpec, PriorSpec, RunSpec
from ovi_bench.store import item_key


@dataclass(frozen=True)
class WorkItem:
    """One image of the run: a prior × prompt × seed, rendered by one decoder of the prior's space."""

    prior: str
    """The prior's display name (label or registered name)."""
    prompt: Prompt
    seed: int
    embedding_key: str
    image_key: str
    decoder: str
    """The decoder's display name (label or registered name)."""

    def image_metadata(self) -> dict[str, Any]:
        """What the store's manifest records beside the image."""
        prompt = self.prompt
        return {
            "prior": self.prior,
            "decoder": self.decoder,
            "prompt_id": prompt.id,
            "category": prompt.category,
            "prompt": prompt.text,
            "seed": self.seed,
        }


def prior_fingerprint(spec: RunSpec, prior: PriorSpec) -> str:
    return PRIORS.get(prior.name).fingerprint(prior.name, prior.params, spec.dtype)


def decoder_fingerprint(spec: RunSpec, decoder: DecoderSpec | None = None) -> str:
    """The fingerprint of `decoder` (default: the run's first decoder) with its shared settings; the label is a
    display name and does not enter."""
    decoder = decoder or spec.decoder
    settings = {**decoder.params, "steps": decoder.steps, "guidance": decoder.guidance}
    settings |= {"height": decoder.height, "width": decoder.width}
    return DECODERS.get(decoder.name).fingerprint(decoder.name, settings, spec.dtype)


def metric_fingerprint(spec: RunSpec, metric: MetricSpec, run_data: RunData | None = None) -> str:
    """`run_data`: what the run hands its metrics (see `run_data`); the numeracy lexicon's content enters."""
    return METRICS.get(metric.name).fingerprint(metric.name, metric.params, spec.dtype, run_data)


def metric_applies(metric: MetricSpec, category: str) -> bool:
    """The metric's own categories, narrowed by the spec's `categories` for it."""
    return METRICS.get(metric.name).applies_to(category, metric.categories)


def run_data(spec: RunSpec, data_dir: str | Path | None = None) -> RunData:
    """What a run hands the components that ask for it: the folder of official files (`data_dir`, else the spec's
    `prompts.data_dir`, else none: the prompt loader's own lookup)."""
    official = data_dir or spec.prompts.data_dir
    return RunData(official_data=expand_user(official) if official else None)


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
    """Every image of the run, keyed by content: the same prior, prompt, seed and decoder give the same keys. One
    embedding per prior × prompt × seed, rendered by every decoder of the prior's space (`RunSpec.decoders_for`)."""
    decoder_keys = {
        decoder.display_name: decoder_fingerprint(spec, decoder) for decoder in spec.decoder_specs
    }
    items = []
    for prior in spec.priors:
        prior_key = prior_fingerprint(spec, prior)
        decoders = [decoder.display_name for decoder in spec.decoders_for(prior)]
        for prompt in prompt_set.prompts:
            for seed in spec.seeds:
                embedding_key = item_key("embedding", prior_key, prompt.text, seed)
                for decoder in decoders:
                    image_key = item_key("image", embedding_key, decoder_keys[decoder])
                    items.append(
                        WorkItem(prior.display_name, prompt, seed, embedding_key, image_key, decoder)
                    )
    return items


def distinct_embeddings(items: Sequence[WorkItem]) -> list[WorkItem]:
    """One item per embedding (the first of its decoders): what embedding-level work (priors, diagnostics,
    embeddings.csv) goes through, once whatever the number of decoders."""
    first: dict[str, WorkItem] = {}
    for item in items:
        first.setdefault(item.embedding_key, item)
    return list(first.values())
