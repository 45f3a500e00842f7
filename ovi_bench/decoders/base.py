"""The decoder seam: image embeddings in, images out."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import ClassVar

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

    space_parameter: ClassVar[str | None] = None
    """The parameter that chooses the space, when one does (listings show it beside the default space)."""

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


def check_decode_inputs(
    decoder: str,
    image_embeds: torch.Tensor,
    negative_image_embeds: torch.Tensor,
    generators: Sequence[torch.Generator],
    *,
    height: int,
    width: int,
    steps: int,
    size_multiple: int,
    size_advice: str,
    embedding_width: int,
    negative_is_read: bool = True,
) -> None:
    """Refuse, naming the problem and the fix, what decoder `decoder` cannot render faithfully: a size that is not a
    positive multiple of `size_multiple` (`size_advice` says what to use and what the pipeline would do instead),
    fewer than 1 step, embeddings not of shape [len(generators), embedding_width], and NaN or inf in the embeddings
    it reads (the negative ones only when `negative_is_read`)."""
    if height <= 0 or width <= 0 or height % size_multiple or width % size_multiple:
        raise SpecError(
            f"decoder '{decoder}' cannot render {width}x{height} exactly: height and width must be positive "
            f"multiples of {size_multiple}: {size_advice}."
        )
    if steps < 1:
        raise SpecError(f"decoder '{decoder}' needs at least 1 step, not {steps}.")
    expected = [len(generators), embedding_width]
    checked = [("image_embeds", image_embeds), ("negative_image_embeds", negative_image_embeds)]
    for name, embeds in checked:
        if list(embeds.shape) != expected:
            raise OviBenchError(
                f"decoder '{decoder}' expects {name} of shape {expected} (one row per generator), got "
                f"{list(embeds.shape)}."
            )
    for name, embeds in checked if negative_is_read else checked[:1]:
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
