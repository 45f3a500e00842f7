"""Making a run's embeddings and images: each prior loaded once for the embeddings the store lacks, then each decoder
loaded once for the images it lacks.

An embedding is made once per prior × prompt × seed, however many decoders render it (items of several decoders
share its `embedding_key`); every decoder of the prior's space then renders it into its own image. The runner
(`ovi_bench.runner`) calls these for the items whose image is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from rich.markup import escape

from ovi_bench.components import build_component, free_memory
from ovi_bench.decoders.base import Decoder
from ovi_bench.io import png_bytes
from ovi_bench.plan import WorkItem, distinct_embeddings
from ovi_bench.priors.base import Prior, check_prior_output
from ovi_bench.progress import Reporter
from ovi_bench.registry import DECODERS, PRIORS
from ovi_bench.scoring import batched
from ovi_bench.spec import RunSpec
from ovi_bench.store import RunStore


def seeded_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per sample: results do not depend on the batch, the device or the batch size."""
    return [torch.Generator("cpu").manual_seed(seed) for seed in seeds]


class GenerationCounts(Protocol):
    """Where the making of embeddings and images is counted (the run's `RunCounts`)."""

    embeddings_computed: int
    images_generated: int


@dataclass
class ImageMaker:
    """Makes the embeddings and images of one run's store with the spec's priors and decoders."""

    spec: RunSpec
    store: RunStore
    device: torch.device
    dtype: torch.dtype
    report: Reporter
    counts: GenerationCounts

    def embed(self, items: Sequence[WorkItem]) -> None:
        """Compute the embeddings `items` need and the store lacks, each once, loading each prior only if needed."""
        for prior_spec in self.spec.priors:
            todo = [
                item
                for item in distinct_embeddings(items)
                if item.prior == prior_spec.display_name
                and not self.store.embedding_path(item.embedding_key).is_file()
            ]
            if not todo:
                continue
            self.report.say(
                f"loading prior [bold]{escape(prior_spec.display_name)}[/] ({escape(prior_spec.name)})"
            )
            prior: Prior = build_component(
                PRIORS.get(prior_spec.name), prior_spec.params, device=self.device, dtype=self.dtype
            )
            # Finished embeddings are committed in groups, and the last group even when a batch fails.
            with self.report.bars() as progress, self.store.grouped_commits():
                task = progress.add_task(f"embed {escape(prior_spec.display_name)}", total=len(todo))
                for batch in batched(todo, self.spec.prior_batch_size):
                    texts = [item.prompt.text for item in batch]
                    output = check_prior_output(
                        prior_spec.name, texts, prior.embed(texts, seeded_generators([i.seed for i in batch]))
                    )
                    for row, item in enumerate(batch):
                        self.store.put_embedding(
                            item.embedding_key,
                            output.image_embeds[row],
                            output.negative_image_embeds[row],
                            output.per_prompt[row] if output.per_prompt else {},
                        )
                    self.counts.embeddings_computed += len(batch)
                    progress.advance(task, len(batch))
            del prior
            free_memory()

    def decode(self, items: Sequence[WorkItem]) -> None:
        """Render `items` from their stored embeddings, each decoder loaded once for the items it renders."""
        for decoder_spec in self.spec.decoder_specs:
            todo = [item for item in items if item.decoder == decoder_spec.display_name]
            if not todo:
                continue
            shown = escape(decoder_spec.display_name)
            label = "" if decoder_spec.label is None else f" ({escape(decoder_spec.name)})"
            self.report.say(f"loading decoder [bold]{shown}[/]{label}")
            decoder: Decoder = build_component(
                DECODERS.get(decoder_spec.name), decoder_spec.params, device=self.device, dtype=self.dtype
            )
            with self.report.bars() as progress, self.store.grouped_commits():
                # One decoder's bar reads "decode" as it always did; several name theirs.
                title = "decode" if self.spec.decoders is None else f"decode {shown}"
                task = progress.add_task(title, total=len(todo))
                for batch in batched(todo, self.spec.decoder_batch_size):
                    pairs = [self.store.get_embedding(item.embedding_key) for item in batch]
                    # An unreadable embedding was removed by the store; the next generation pass recomputes it.
                    ready = [
                        (item, pair) for item, pair in zip(batch, pairs, strict=True) if pair is not None
                    ]
                    if ready:
                        images = decoder.decode(
                            torch.stack([pair[0] for _, pair in ready]),
                            torch.stack([pair[1] for _, pair in ready]),
                            seeded_generators([item.seed for item, _ in ready]),
                            height=decoder_spec.height,
                            width=decoder_spec.width,
                            steps=decoder_spec.steps,
                            guidance=decoder_spec.guidance,
                            **decoder.prompt_keywords([item.prompt.text for item, _ in ready]),
                        )
                        self.store.put_images(
                            [
                                (item.image_key, png_bytes(image), item.image_metadata())
                                for (item, _), image in zip(ready, images, strict=True)
                            ]
                        )
                        self.counts.images_generated += len(ready)
                    progress.advance(task, len(batch))
            del decoder
            free_memory()
