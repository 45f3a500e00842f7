"""Embedding diagnostics: how an image embedding relates to its text and to real images, before any decoding.

For every prior's embedding of every prompt and seed:

* `text_cosine`  cosine to the prompt's text embedding (the OVI objective; high for TextEmb and plain OVI);
* `norm`         L2 norm (real image embeddings and text embeddings differ in scale);
* `mahalanobis`  Mahalanobis distance to a bank of real-image embeddings (statistics of `ovi-bench bank build`);
* `nn_cosine`    cosine to the nearest bank embedding.

High `text_cosine` with large `mahalanobis` and low `nn_cosine` is "on-text but off-manifold": the embedding says the
right thing in a place no real image occupies.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ovi_bench.bank.folder import EmbeddingBank
from ovi_bench.bank.tiny import resolve_bank
from ovi_bench.caches import RowCache
from ovi_bench.components import free_memory
from ovi_bench.errors import DataError, OviBenchError
from ovi_bench.pairing import component_space
from ovi_bench.plan import WorkItem
from ovi_bench.progress import Reporter
from ovi_bench.registry import PRIORS
from ovi_bench.spaces import DEFAULT_SPACE
from ovi_bench.spec import RunSpec
from ovi_bench.store import RunStore, item_key

DIAGNOSTIC_COLUMNS = ("text_cosine", "norm", "mahalanobis", "nn_cosine")


class EmbeddingDiagnostics:
    """Computes the diagnostics with a text encoder (for the text embedding) and an optional bank."""

    def __init__(self, model: str, bank: str | None, *, device: torch.device, dtype: torch.dtype) -> None:
        from ovi_bench.models.kandinsky import load_text_side

        self.text_side = load_text_side(model, device, dtype)
        self.bank = EmbeddingBank.load(resolve_bank(bank)) if bank else None
        if self.bank is not None:
            self.bank.check_encoder(model)
            self.statistics = self.bank.statistics()

    def __call__(self, image_embeds: torch.Tensor, texts: Sequence[str]) -> list[dict[str, Any]]:
        text_embeds = self.text_side.encode(texts).text_embeds.float().cpu()
        if text_embeds.shape[-1] != image_embeds.shape[-1]:
            raise OviBenchError(
                f"diagnostics: the text encoder gives {text_embeds.shape[-1]}-d embeddings but the prior's are "
                f"{image_embeds.shape[-1]}-d; set diagnostics.model to the prior's own model."
            )
        image_embeds = image_embeds.float()
        values: dict[str, list[float]] = {
            "text_cosine": F.cosine_similarity(image_embeds, text_embeds, dim=-1).tolist(),
            "norm": image_embeds.norm(dim=-1).tolist(),
        }
        if self.bank is not None:
            values["mahalanobis"] = (
                self.statistics.mahalanobis_squared(image_embeds).clamp_min(0).sqrt().tolist()
            )
            nearest_cosine, _ = self.bank.nearest(image_embeds, 1)
            values["nn_cosine"] = nearest_cosine[:, 0].tolist()
        return [dict(zip(values, row, strict=True)) for row in zip(*values.values(), strict=True)]


def diagnosable(spec: RunSpec, items: Sequence[WorkItem]) -> list[WorkItem]:
    """The items whose embeddings the diagnostics can describe: those of priors in the diagnostics model's space.
    `diagnostics.model` is a Kandinsky 2.2 prior (ViT-bigG/14); the embeddings of priors of other spaces keep empty
    diagnostic columns rather than being compared with a text embedding of another space."""
    spaces = {prior.display_name: component_space(PRIORS, prior.name, prior.params) for prior in spec.priors}
    return [item for item in items if spaces.get(item.prior) in (DEFAULT_SPACE, None)]


def diagnose(
    spec: RunSpec,
    store: RunStore,
    items: Sequence[WorkItem],
    cache: RowCache,
    *,
    device: torch.device,
    dtype: torch.dtype,
    report: Reporter,
) -> int:
    """Diagnose the stored embeddings of `items` into `cache`, loading the text encoder only if there are some;
    return how many. An unreadable embedding is skipped: the store has removed it, and the next run computes it."""
    available = [
        item for item in diagnosable(spec, items) if store.embedding_path(item.embedding_key).is_file()
    ]
    settings = spec.diagnostics
    if not available or settings is None:
        return 0
    report.say("computing embedding diagnostics")
    diagnostics = EmbeddingDiagnostics(settings.model, settings.bank, device=device, dtype=dtype)
    computed = 0
    with report.bars() as bars, cache.grouped_commits():
        task = bars.add_task("diagnose", total=len(available))
        for start in range(0, len(available), spec.prior_batch_size):
            batch = available[start : start + spec.prior_batch_size]
            pairs = [(item, store.get_embedding(item.embedding_key)) for item in batch]
            readable = [(item, pair[0]) for item, pair in pairs if pair is not None]
            if readable:
                values = diagnostics(
                    torch.stack([embeds for _, embeds in readable]),
                    [item.prompt.text for item, _ in readable],
                )
                cache.add(
                    [
                        {"key": item.embedding_key, **row}
                        for (item, _), row in zip(readable, values, strict=True)
                    ]
                )
                computed += len(readable)
            bars.advance(task, len(batch))
    del diagnostics
    free_memory()
    return computed


def diagnostics_cache_path(output_dir: Path, spec: RunSpec) -> Path:
    """The file of the diagnostics cached for the spec's diagnostics settings (model, bank content, dtype), keyed
    by embedding. Needs `spec.diagnostics`."""
    diagnostics = spec.diagnostics
    assert diagnostics is not None
    bank_digest = EmbeddingBank.load(resolve_bank(diagnostics.bank)).info.digest if diagnostics.bank else None
    key = item_key("diagnostics", diagnostics.model, bank_digest, spec.dtype)
    return output_dir / "diagnostics" / f"{key}.jsonl"


def embedding_rows(
    store: RunStore, items: Sequence[WorkItem], diagnostics: RowCache | None
) -> list[dict[str, Any]]:
    """One row per item (embeddings.csv): the prior's facts stored with the embedding, and the cached diagnostics."""
    rows = []
    for item in items:
        row: dict[str, Any] = {
            "prior": item.prior,
            "category": item.prompt.category,
            "prompt_id": item.prompt.id,
            "prompt": item.prompt.text,
            "seed": item.seed,
        }
        if diagnostics is not None:
            row |= {
                name: value
                for name, value in diagnostics.rows.get(item.embedding_key, {}).items()
                if name != "key"
            }
        facts = store.embedding_facts(item.embedding_key)
        if facts is None:
            raise DataError(
                f"the embedding of {item.prior} for prompt {item.prompt.id} seed {item.seed} cannot be read back "
                f"from {store.embedding_path(item.embedding_key)} after it was computed again; check the disk."
            )
        row |= {f"prior_{name}": value for name, value in facts.items()}
        rows.append(row)
    return rows
