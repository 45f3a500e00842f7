"""Pure CLIP scoring rules (no model): testable on tensors."""

from __future__ import annotations

import torch


def clip_cosine(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity of L2-normalised image and text embeddings.

    This is T2I-CompBench's non-spatial score exactly: the raw cosine, with no ×100 (torchmetrics' CLIPScore),
    no ×2.5 (Hessel et al.) and no clamp at zero. Published values therefore sit around 0.30–0.32.
    """
    if image_embeds.shape != text_embeds.shape or image_embeds.ndim != 2:
        raise ValueError(
            f"expected two [B, D] tensors of equal shape, got {tuple(image_embeds.shape)} and "
            f"{tuple(text_embeds.shape)}"
        )
    image_unit = torch.nn.functional.normalize(image_embeds.double(), dim=-1)
    text_unit = torch.nn.functional.normalize(text_embeds.double(), dim=-1)
    return (image_unit * text_unit).sum(dim=-1)
