"""The karlo prior and the karlo-decoder on the tiny Karlo folders (the CLIP ViT-L/14 space's tiny width, 16)."""

from __future__ import annotations

import logging

import diffusers
import numpy as np
import pytest
import torch
from pydantic import ValidationError
from tiny_runs import tiny_spec

from ovi_bench.decoders.base import Decoder
from ovi_bench.decoders.karlo import KarloDecoder
from ovi_bench.errors import OviBenchError, SpecError
from ovi_bench.models.karlo import (
    KARLO_ID,
    KARLO_IMAGE_VARIATIONS_ID,
    load_decoder_pipeline,
    load_prior_pipeline,
)
from ovi_bench.priors.base import Prior, check_prior_output
from ovi_bench.priors.karlo import KarloPrior
from ovi_bench.registry import DECODERS, PRIORS
from ovi_bench.runner import seeded_generators
from ovi_bench.spaces import L
from ovi_bench.spec import parse_spec

CPU = torch.device("cpu")
F32 = torch.float32
WIDTH = L.tiny_width
SIZE = 32  # the tiny cascade's only size: an 8 px decoder and 8 -> 32 px super-resolution
STEPS = 2
TEXTS = ["a red cube", "two dogs on a sofa", "a blue sphere left of a green cone"]

# Generated once from the saved tiny folders on CPU, float32.
# Prior: "a red cube", seed 0, the default 25 steps and guidance 4; 1e-4 leaves room for BLAS differences.
GOLDEN_PRIOR_A_RED_CUBE_SEED_0 = [1.6853648, 2.9079614, 1.5058945, -1.4751499]
GOLDEN_ATOL = 1e-4
# Decoder: embeds = randn(1, 16) from seed 1, generator seed 0, 32x32, 2 decoder and 2 super-resolution steps,
# guidance 4. Pixels at (row, column) -> RGB (the random super-resolution saturates many of them).
GOLDEN_PIXELS = {(0, 0): [255, 255, 0], (13, 21): [0, 0, 1], (31, 31): [255, 1, 0], (7, 3): [1, 255, 0]}
GOLDEN_CHANNEL_MEANS = [121.369141, 112.112305, 129.527344]
PIXEL_TOLERANCE = 1  # uint8 pixels may flip by one where a value sits on a rounding edge

# A prompt's embedding alone vs. in a batch: measured up to 1.8e-6. An image alone vs. in a batch: up to 1/255.
BATCH_ATOL = 1e-5
BATCH_PIXEL_TOLERANCE = 1


@pytest.fixture(scope="module")
def prior() -> KarloPrior:
    return KarloPrior(KarloPrior.Params(model="tiny"), device=CPU, dtype=F32)


@pytest.fixture(scope="module")
def decoder() -> KarloDecoder:
    return KarloDecoder(KarloDecoder.Params(model="tiny", super_res_steps=STEPS), device=CPU, dtype=F32)


def random_embeds(seed: int, rows: int = 1) -> torch.Tensor:
    return torch.randn(rows, WIDTH, generator=torch.Generator().manual_seed(seed))


def decode(decoder: KarloDecoder, embeds: torch.Tensor, seeds: list[int], **options) -> list:
    negative = options.pop("negative", torch.zeros_like(embeds))
    settings = {"height": SIZE, "width": SIZE, "steps": STEPS, "guidance": 4.0} | options
    return decoder.decode(embeds, negative, seeded_generators(seeds), **settings)


def pixels(image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


# --- registration and the space --------------------------------------------------------------------------------------


def test_karlo_is_registered_in_the_l_space() -> None:
    assert PRIORS.get("karlo") is KarloPrior and issubclass(KarloPrior, Prior)
    assert DECODERS.get("karlo-decoder") is KarloDecoder and issubclass(KarloDecoder, Decoder)
    assert KarloPrior.embedding_space(KarloPrior.Params()) == "clip-vit-l-14"
    assert KarloDecoder.embedding_space(KarloDecoder.Params()) == "clip-vit-l-14"


def test_a_spec_pairs_karlo_only_with_decoders_of_its_space() -> None:
    karlo = [{"name": "karlo", "params": {"model": "tiny", "steps": 2}}]
    with pytest.raises(SpecError) as refused:
        parse_spec(tiny_spec(priors=karlo))  # the tiny spec's decoder is Kandinsky 2.2's (ViT-bigG/14)
    message = str(refused.value)
    assert "'karlo'" in message and "clip-vit-l-14" in message and "clip-vit-bigg-14" in message
    decoder = {
        "name": "karlo-decoder",
        "params": {"model": "tiny", "super_res_steps": 2},
        "height": 32,
        "width": 32,
    }
    spec = parse_spec(tiny_spec(priors=karlo, decoder=decoder))
    assert spec.decoder.params["super_res_steps"] == 2


def test_defaults_are_the_pipelines() -> None:
    prior_params, decoder_params = KarloPrior.Params(), KarloDecoder.Params()
    assert (prior_params.model, prior_params.steps, prior_params.guidance) == (KARLO_ID, 25, 4.0)
    assert (decoder_params.model, decoder_params.super_res_steps) == (KARLO_IMAGE_VARIATIONS_ID, 7)
    with pytest.raises(ValidationError):
        KarloDecoder.Params(super_res_steps=0)
    with pytest.raises(ValidationError):
        KarloPrior.Params(noise_level=1)


def test_loading_drops_only_the_deprecation_notice() -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    library_logger = logging.getLogger("diffusers")
    filters_before = list(logging.getLogger("diffusers.pipelines.pipeline_utils").filters)
    verbosity = diffusers.utils.logging.get_verbosity()
    diffusers.utils.logging.set_verbosity_warning()
    library_logger.addHandler(handler)
    try:
        load_prior_pipeline("tiny", CPU, F32)
        load_decoder_pipeline("tiny", CPU, F32)
    finally:
        library_logger.removeHandler(handler)
        diffusers.utils.logging.set_verbosity(verbosity)
    assert not [record for record in records if "deprecated" in record.getMessage()]
    # The notice's filter is gone afterwards.
    assert logging.getLogger("diffusers.pipelines.pipeline_utils").filters == filters_before


# --- prior -----------------------------------------------------------------------------------------------------------


def test_prior_matches_golden(prior: KarloPrior) -> None:
    output = check_prior_output("karlo", TEXTS[:1], prior.embed(TEXTS[:1], seeded_generators([0])))
    assert output.image_embeds.shape == (1, WIDTH) and output.image_embeds.dtype == F32
    assert output.image_embeds[0, :4].tolist() == pytest.approx(
        GOLDEN_PRIOR_A_RED_CUBE_SEED_0, abs=GOLDEN_ATOL
    )
    assert torch.equal(output.negative_image_embeds, torch.zeros(1, WIDTH))


def test_prior_rows_do_not_depend_on_the_batch(prior: KarloPrior) -> None:
    batched = prior.embed(TEXTS, seeded_generators([0, 1, 2])).image_embeds
    for index, text in enumerate(TEXTS):
        alone = prior.embed([text], seeded_generators([index])).image_embeds
        torch.testing.assert_close(alone[0], batched[index], rtol=0, atol=BATCH_ATOL)
    other_seed = prior.embed(TEXTS[:1], seeded_generators([5])).image_embeds
    # The seed matters (little for the tiny prior, whose 25 guided steps nearly converge), and far beyond BATCH_ATOL.
    assert (other_seed[0] - batched[0]).abs().max() > 10 * BATCH_ATOL


def test_prior_guidance_and_steps_matter(prior: KarloPrior) -> None:
    guided = prior.embed(TEXTS[:1], seeded_generators([0])).image_embeds
    unguided = KarloPrior(KarloPrior.Params(model="tiny", guidance=1.0), device=CPU, dtype=F32)
    fewer_steps = KarloPrior(KarloPrior.Params(model="tiny", steps=3), device=CPU, dtype=F32)
    for other in (unguided, fewer_steps):
        assert (other.embed(TEXTS[:1], seeded_generators([0])).image_embeds - guided).abs().max() > 1e-3


def test_prior_refuses_a_generator_count_mismatch(prior: KarloPrior) -> None:
    with pytest.raises(OviBenchError, match="2 texts but 1 generators"):
        prior.embed(TEXTS[:2], seeded_generators([0]))


def test_prior_embeddings_decode(prior: KarloPrior, decoder: KarloDecoder) -> None:
    # The tiny prior and decoder share the space's tiny width, so a tiny run can pair them.
    output = prior.embed(TEXTS[:2], seeded_generators([0, 1]))
    images = decoder.decode(
        output.image_embeds, output.negative_image_embeds, seeded_generators([0, 1]),
        height=SIZE, width=SIZE, steps=STEPS, guidance=4.0,
    )  # fmt: skip
    assert [image.size for image in images] == [(SIZE, SIZE)] * 2


# --- decoder ---------------------------------------------------------------------------------------------------------


def test_decoder_matches_golden(decoder: KarloDecoder) -> None:
    (image,) = decode(decoder, random_embeds(1), [0])
    assert image.mode == "RGB" and image.size == (SIZE, SIZE)
    values = pixels(image)
    for (row, column), rgb in GOLDEN_PIXELS.items():
        assert np.abs(values[row, column] - rgb).max() <= PIXEL_TOLERANCE, (row, column, values[row, column])
    assert values.mean(axis=(0, 1)).tolist() == pytest.approx(GOLDEN_CHANNEL_MEANS, abs=0.05)


def test_decoder_batch_composition(decoder: KarloDecoder) -> None:
    embeds = random_embeds(3, rows=3)
    batched = decode(decoder, embeds, [10, 11, 12])
    for index in range(3):
        (alone,) = decode(decoder, embeds[index : index + 1], [10 + index])
        assert np.abs(pixels(alone) - pixels(batched[index])).max() <= BATCH_PIXEL_TOLERANCE


def test_decoder_embedding_reaches_the_image(decoder: KarloDecoder) -> None:
    (one,) = decode(decoder, random_embeds(1), [0])
    (two,) = decode(decoder, random_embeds(2), [0])
    (other_seed,) = decode(decoder, random_embeds(1), [1])
    assert np.abs(pixels(one) - pixels(two)).mean() > 5
    assert np.abs(pixels(one) - pixels(other_seed)).mean() > 5


def test_decoder_ignores_the_negative_embedding(decoder: KarloDecoder) -> None:
    # Its unconditional branch is text_proj's learned embedding: what a prior proposes as negative changes nothing.
    (zeros,) = decode(decoder, random_embeds(1), [0])
    (other,) = decode(decoder, random_embeds(1), [0], negative=random_embeds(9))
    assert np.array_equal(pixels(zeros), pixels(other))


def test_decoder_casts_the_embeddings(decoder: KarloDecoder) -> None:
    (reference,) = decode(decoder, random_embeds(1), [0], guidance=1.0)
    (image,) = decode(decoder, random_embeds(1).double(), [0], guidance=1.0)
    assert np.array_equal(pixels(image), pixels(reference))


@pytest.mark.parametrize(("height", "width"), [(64, 64), (32, 16), (16, 32), (256, 256)])
def test_decoder_refuses_other_sizes(decoder: KarloDecoder, height: int, width: int) -> None:
    with pytest.raises(SpecError, match=r"renders only 32x32 images \(its 8 px decoder and 8 -> 32 px"):
        decode(decoder, random_embeds(1), [0], height=height, width=width)


@pytest.mark.parametrize(
    ("embeds", "negative", "message"),
    [
        (torch.randn(1, WIDTH + 1), torch.zeros(1, WIDTH + 1), r"image_embeds of shape \[1, 16\]"),
        (torch.randn(2, WIDTH), torch.zeros(2, WIDTH), r"one row per generator"),
        (torch.randn(1, WIDTH), torch.zeros(1, 8), r"negative_image_embeds of shape \[1, 16\]"),
        (
            torch.full((1, WIDTH), float("nan")),
            torch.zeros(1, WIDTH),
            r"NaN or inf in image_embeds at row\(s\) \[0\]",
        ),
        (torch.randn(1, WIDTH), torch.full((1, WIDTH), float("inf")), r"NaN or inf in negative_image_embeds"),
    ],
)
def test_decoder_refuses_bad_embeddings(
    decoder: KarloDecoder, embeds: torch.Tensor, negative: torch.Tensor, message: str
) -> None:
    with pytest.raises(OviBenchError, match=message):
        decoder.decode(
            embeds, negative, seeded_generators([0]), height=SIZE, width=SIZE, steps=STEPS, guidance=4.0
        )
