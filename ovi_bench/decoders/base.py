"""The decoder seam: image embeddings in, images out."""

from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ovi_bench.components import Component, Params, nonfinite_rows
from ovi_bench.errors import OviBenchError, SpecError


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


def check_decode_inputs(
    decoder: str,
    image_embeds: torch.Tensor,
    negative_image_embeds: torch.Tensor,
    generators: Sequence[torch.Generator],
    *,
    steps: int,
    width: int,
) -> None:
    """Refuse what a decoder must not render: fewer than 1 step, embeddings that are not [len(generators), width]
    (one row per generator), or NaN/inf rows."""
    if steps < 1:
        raise SpecError(f"decoder '{decoder}' needs at least 1 step, not {steps}.")
    rows = len(generators)
    for name, embeds in (("image_embeds", image_embeds), ("negative_image_embeds", negative_image_embeds)):
        if embeds.ndim != 2 or embeds.shape != (rows, width):
            raise OviBenchError(
                f"decoder '{decoder}' expects {name} of shape [{rows}, {width}] (one row per generator), got "
                f"{list(embeds.shape)}."
            )
        bad_rows = nonfinite_rows(embeds)
        if bad_rows:
            raise OviBenchError(
                f"decoder '{decoder}' got NaN or inf in {name} at row(s) {bad_rows}: the prior that produced them "
                "failed."
            )


def rgb_images(images: np.ndarray) -> list[Image.Image]:
    """A diffusers pipeline's `output_type="np"` batch ([B, H, W, 3] floats in [0, 1]) as uint8 RGB images."""
    pixels = (images * 255).round().clip(0, 255).astype(np.uint8)
    return [Image.fromarray(image) for image in pixels]
