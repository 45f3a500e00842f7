"""The prior seam: texts in, CLIP image embeddings out."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ovi_bench.components import Component, Params


@dataclass(frozen=True)
class PriorOutput:
    """One row per input text. Embeddings are float32 on the CPU, in the decoder's raw (unnormalised) space."""

    image_embeds: torch.Tensor
    """[B, D] the embedding the decoder renders."""
    negative_image_embeds: torch.Tensor
    """[B, D] the negative embedding for classifier-free guidance in the decoder."""
    per_prompt: list[dict[str, Any]] = field(default_factory=list)
    """Optional per-text facts recorded with the results (for example optimisation steps used). Empty or length B."""


class Prior(Component, abc.ABC):
    """A text-to-image-embedding prior.

    Contract: `embed` returns one row per text, and row i depends only on `texts[i]` and `generators[i]` (up to
    floating-point tolerance): never on which other texts share the batch.
    """

    def __init__(self, params: Params, *, device: torch.device, dtype: torch.dtype) -> None:
        self.params = params
        self.device = device
        self.dtype = dtype

    @abc.abstractmethod
    def embed(self, texts: Sequence[str], generators: Sequence[torch.Generator]) -> PriorOutput:
        """Embed `texts`; `generators[i]` is the only source of randomness for `texts[i]`."""
