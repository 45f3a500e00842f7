"""The prior seam: texts in, CLIP image embeddings out."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ovi_bench.components import Component, Params, nonfinite_rows
from ovi_bench.errors import OviBenchError


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

    space_parameter: ClassVar[str | None] = None
    """The parameter that chooses the space, when one does (listings show it beside the default space)."""

    @classmethod
    def embedding_space(cls, params: Params) -> str | None:
        """The image-embedding space (`ovi_bench.spaces`) this prior produces with these parameters; None: not
        declared (a plugin's default), which pairs with any decoder."""
        return None

    @abc.abstractmethod
    def embed(self, texts: Sequence[str], generators: Sequence[torch.Generator]) -> PriorOutput:
        """Embed `texts`; `generators[i]` is the only source of randomness for `texts[i]`."""


def check_prior_output(name: str, texts: Sequence[str], output: PriorOutput) -> PriorOutput:
    """Refuse what no decoder should see: wrong shapes, or NaN/inf rows (fp16 overflow, corrupt weights).

    The runner applies this to every prior, built-in or plugin, before anything is stored.
    """
    for field_name in ("image_embeds", "negative_image_embeds"):
        embeds = getattr(output, field_name)
        if embeds.ndim != 2 or embeds.shape[0] != len(texts):
            raise OviBenchError(
                f"prior '{name}' returned {field_name} of shape {list(embeds.shape)} for {len(texts)} texts; "
                f"a prior must return one row per text ([{len(texts)}, D])."
            )
        bad_rows = nonfinite_rows(embeds)
        if bad_rows:
            examples = "; ".join(repr(texts[row][:60]) for row in bad_rows[:3])
            raise OviBenchError(
                f"prior '{name}' produced NaN or inf in {field_name} for the prompt(s) at index {bad_rows} "
                f"({examples}). float16 can overflow (try bfloat16 or float32), or the weights are corrupt."
            )
    if output.image_embeds.shape != output.negative_image_embeds.shape:
        raise OviBenchError(
            f"prior '{name}' returned image_embeds {list(output.image_embeds.shape)} and negative_image_embeds "
            f"{list(output.negative_image_embeds.shape)}; they must have the same shape."
        )
    if output.per_prompt and len(output.per_prompt) != len(texts):
        raise OviBenchError(
            f"prior '{name}' returned per_prompt facts for {len(output.per_prompt)} of {len(texts)} texts."
        )
    return output
