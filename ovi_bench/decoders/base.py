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
    ) -> list[Image.Image]:
        """Return one RGB image per embedding row."""
