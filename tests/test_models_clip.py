"""The one CLIP loader and preprocessing definition (models/clip.py): each named policy gives what its caller used."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessorPil, CLIPTextModelWithProjection, CLIPVisionModelWithProjection

from ovi_bench.models.clip import (
    ClipImageEncoder,
    encode_images,
    encode_token_ids,
    load_image_processor,
    load_tokenizer,
    tiny_clip_dir,
    token_ids,
)
from ovi_bench.models.kandinsky import load_prior_image_encoder, tiny_kandinsky_prior_dir

CPU = torch.device("cpu")
F32 = torch.float32


def _images(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)) for _ in range(count)]


def test_encode_images_is_the_prior_image_encoders_image_embeds() -> None:
    """What the embedding bank stores: the image encoder's `image_embeds` after the saved PIL image processor."""
    images = _images(3)
    encoder = load_prior_image_encoder("tiny", CPU, F32)
    embeds = encode_images(encoder.tower, encoder.processor, images)

    folder = tiny_kandinsky_prior_dir()
    vision = CLIPVisionModelWithProjection.from_pretrained(
        folder / "image_encoder", local_files_only=True
    ).eval()
    processor = CLIPImageProcessorPil.from_pretrained(folder / "image_processor", local_files_only=True)
    with torch.inference_mode():
        expected = vision(
            pixel_values=processor(images=images, return_tensors="pt").pixel_values
        ).image_embeds
    assert embeds.dtype == F32 and embeds.device == CPU
    assert torch.equal(embeds, expected.float())
    assert torch.equal(ClipImageEncoder(encoder.tower, encoder.processor).image_embeds(images), embeds)


def test_image_processor_backends() -> None:
    source = str(tiny_clip_dir())
    pil = load_image_processor(source, backend="pil", resample=Image.Resampling.BILINEAR)
    assert isinstance(pil, CLIPImageProcessorPil) and pil.resample == Image.Resampling.BILINEAR
    saved = load_image_processor(source, backend="checkpoint")
    assert type(saved).__name__ == "CLIPImageProcessorPil"  # the class the tiny folder's config names
    assert saved.resample == Image.Resampling.BICUBIC


@pytest.mark.parametrize(("padding", "length"), [("max_length", 77), ("longest", None)])
def test_token_ids_padding(padding: str, length: int | None) -> None:
    tokenizer = load_tokenizer(str(tiny_kandinsky_prior_dir()), subfolder="tokenizer")
    tokens = token_ids(tokenizer, ["a cat", "a red cube on a table", "x" * 500], padding=padding)  # type: ignore[arg-type]
    longest = tokens["attention_mask"].sum(dim=1).max().item()
    assert tokens["input_ids"].shape[1] == (length or longest) and longest == 77  # the long text is truncated


def test_unmasked_text_encoding_is_the_text_towers_forward() -> None:
    """`use_attention_mask=False` is KandinskyV22PriorPipeline's encoding: the tower's own forward on the ids."""
    folder = tiny_kandinsky_prior_dir()
    tokenizer = load_tokenizer(str(folder), subfolder="tokenizer")
    tower = CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder", local_files_only=True).eval()
    tokens = token_ids(tokenizer, ["a red cube", "two dogs"], padding="max_length")
    with torch.no_grad():
        text_embeds, last_hidden_state = encode_token_ids(tower, tokens, use_attention_mask=False)
        expected = tower(tokens["input_ids"])
    assert torch.equal(text_embeds, expected.text_embeds)
    assert torch.equal(last_hidden_state, expected.last_hidden_state)
