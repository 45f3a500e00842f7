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
from typing import Any

import torch
import torch.nn.functional as F

from ovi_bench.bank.folder import EmbeddingBank
from ovi_bench.bank.tiny import resolve_bank
from ovi_bench.errors import OviBenchError

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
