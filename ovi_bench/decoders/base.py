"""The decoder seam: image embeddings in, images out."""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch
from PIL import Image

from ovi_bench.components import Component, Params


class Decoder(Component, abc.ABC):
    """Renders images from (image, negative image) embedding pairs.

    Contract: image i depends only on row i of the embeddings and on `generators[i]`.
    """

    negative_embedding: str = "the prior's negative embedding"
    """What the decoder uses as the negative (unconditional) embedding of classifier-free guidance, in words."""

    reads_prompts: bool = False
    """Whether `decode` takes the prompts (keyword `prompts`), for a decoder that conditions on the text as well as
    on the embeddings. Only such a decoder is given them (`prompt_keywords`), so decoders written before the keyword
    existed keep working."""

    @classmethod
    def embedding_space(cls, params: Params) -> str | None:
        """The image-embedding space (`ovi_bench.spaces`) this decoder renders with these parameters; None: not
        declared (a plugin's default), which pairs with any prior."""
        return None

    def __init__(self, params: Params, *, device: torch.device, dtype: torch.dtype) -> None:
        self.params = params
        self.device = device
        self.dtype = dtype

    @abc.abstractmethod
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
        prompts: Sequence[str] | None = None,
    ) -> list[Image.Image]:
        """Return one RGB image per embedding row; `prompts` (one per row) only if `reads_prompts`."""

    def prompt_keywords(self, prompts: Sequence[str]) -> dict[str, list[str]]:
        """The `prompts` keyword of `decode` for a decoder that reads them, else nothing."""
        return {"prompts": list(prompts)} if self.reads_prompts else {}
