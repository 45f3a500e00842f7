"""The kandinsky-2.2-decoder on the tiny Kandinsky 2.2 decoder folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from ovi_bench.decoders.base import Decoder
from ovi_bench.decoders.kandinsky import KandinskyDecoder
from ovi_bench.errors import OviBenchError, SpecError
from ovi_bench.models.kandinsky import zero_image_embeds
from ovi_bench.registry import DECODERS

CPU = torch.device("cpu")
F32 = torch.float32
SIZE = 64  # the tiny movq's scale factor is 2, so sizes must be multiples of 4
STEPS = 2

# Generated once from the saved tiny folders on CPU, float32: embeds = randn(1, 32) from seed 1, negative = the
# zero-image embedding, generator seed 0, 64x64, 2 steps, guidance 4. Pixels at (row, column) -> RGB.
GOLDEN_PIXELS = {(0, 0): [63, 69, 66], (31, 17): [140, 0, 156], (63, 63): [87, 201, 167]}
GOLDEN_CHANNEL_MEANS = [111.405518, 125.360352, 111.905762]
# uint8 pixels may flip by one where a value sits on a rounding edge.
PIXEL_TOLERANCE = 1

# An image alone vs. in a batch of three: measured up to 1/255 (batched convolutions round differently).
BATCH_PIXEL_TOLERANCE = 2


def generators(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed) for seed in seeds]


def random_embeds(seed: int, rows: int = 1) -> torch.Tensor:
    return torch.randn(rows, 32, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def decoder() -> KandinskyDecoder:
    return KandinskyDecoder(KandinskyDecoder.Params(model="tiny"), device=CPU, dtype=F32)


@pytest.fixture(scope="module")
def negative() -> torch.Tensor:
    return zero_image_embeds("tiny", CPU, F32)


def decode(
    decoder: KandinskyDecoder, embeds: torch.Tensor, negative: torch.Tensor, seeds: list[int], **kw
) -> list:
    options = {"height": SIZE, "width": SIZE, "steps": STEPS, "guidance": 4.0} | kw
    return decoder.decode(embeds, negative.expand(len(embeds), -1), generators(*seeds), **options)


def pixels(image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def test_decoder_is_registered() -> None:
    assert "kandinsky-2.2-decoder" in DECODERS.names()
    assert DECODERS.get("kandinsky-2.2-decoder") is KandinskyDecoder
    assert issubclass(KandinskyDecoder, Decoder)


def test_decoder_params_reject_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        KandinskyDecoder.Params(scheduler="ddim")


def test_decoder_matches_golden(decoder: KandinskyDecoder, negative: torch.Tensor) -> None:
    (image,) = decode(decoder, random_embeds(1), negative, [0])
    assert image.mode == "RGB" and image.size == (SIZE, SIZE)
    values = pixels(image)
    for (row, column), rgb in GOLDEN_PIXELS.items():
        assert np.abs(values[row, column] - rgb).max() <= PIXEL_TOLERANCE, (row, column, values[row, column])
    assert values.mean(axis=(0, 1)).tolist() == pytest.approx(GOLDEN_CHANNEL_MEANS, abs=0.05)


def test_decoder_seeds(decoder: KandinskyDecoder, negative: torch.Tensor) -> None:
    embeds = random_embeds(1, rows=2)
    first = [pixels(image) for image in decode(decoder, embeds, negative, [0, 1])]
    again = [pixels(image) for image in decode(decoder, embeds, negative, [0, 1])]
    other = [pixels(image) for image in decode(decoder, embeds, negative, [2, 3])]
    for index in range(2):
        assert np.array_equal(first[index], again[index])
        assert np.abs(first[index] - other[index]).mean() > 5


def test_decoder_embeds_matter(decoder: KandinskyDecoder, negative: torch.Tensor) -> None:
    (one,) = decode(decoder, random_embeds(1), negative, [0])
    (two,) = decode(decoder, random_embeds(2), negative, [0])
    assert np.abs(pixels(one) - pixels(two)).max() > 10


def test_decoder_batch_composition(decoder: KandinskyDecoder, negative: torch.Tensor) -> None:
    embeds = random_embeds(3, rows=3)
    batched = decode(decoder, embeds, negative, [10, 11, 12])
    for index in range(3):
        (alone,) = decode(decoder, embeds[index : index + 1], negative, [10 + index])
        assert np.abs(pixels(alone) - pixels(batched[index])).max() <= BATCH_PIXEL_TOLERANCE


def test_decoder_casts_embeds_without_guidance(decoder: KandinskyDecoder, negative: torch.Tensor) -> None:
    # Without guidance the pipeline itself would not cast: float64 embeds would meet float32 weights and fail.
    embeds = random_embeds(1).double()
    (reference,) = decode(decoder, random_embeds(1), negative, [0], guidance=1.0)
    (image,) = decode(decoder, embeds, negative.double(), [0], guidance=1.0)
    assert np.array_equal(pixels(image), pixels(reference))


@pytest.mark.parametrize(("height", "width"), [(66, 64), (64, 62), (0, 64), (64, -4)])
def test_decoder_refuses_sizes_it_would_round(
    decoder: KandinskyDecoder, negative: torch.Tensor, height: int, width: int
) -> None:
    with pytest.raises(SpecError, match="multiples of 4"):
        decode(decoder, random_embeds(1), negative, [0], height=height, width=width)


def test_decoder_size_multiple(decoder: KandinskyDecoder) -> None:
    assert decoder.size_multiple == 4
    (image,) = decode(
        decoder, random_embeds(1), zero_image_embeds("tiny", CPU, F32), [0], height=36, width=48
    )
    assert image.size == (48, 36)


def test_decoder_rejects_nan_embeds(decoder: KandinskyDecoder, negative: torch.Tensor) -> None:
    embeds = random_embeds(1, rows=2)
    embeds[1, 3] = float("nan")
    with pytest.raises(OviBenchError, match=r"NaN or inf in image_embeds at row\(s\) \[1\]"):
        decode(decoder, embeds, negative, [0, 1])


def test_decoder_rejects_mismatched_inputs(decoder: KandinskyDecoder, negative: torch.Tensor) -> None:
    with pytest.raises(OviBenchError, match="one row per generator"):
        decoder.decode(
            random_embeds(1, rows=2),
            negative.repeat(2, 1),
            generators(0),
            height=64,
            width=64,
            steps=STEPS,
            guidance=4.0,
        )
    with pytest.raises(OviBenchError, match=r"shape \[1, 32\]"):
        decoder.decode(
            torch.zeros(1, 16), negative, generators(0), height=64, width=64, steps=STEPS, guidance=4.0
        )
    with pytest.raises(SpecError, match="at least 1 step"):
        decode(decoder, random_embeds(1), negative, [0], steps=0)
