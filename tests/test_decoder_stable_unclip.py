"""The stable-unclip decoder on the tiny Stable unCLIP folders of both variants (ViT-H and ViT-L spaces)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from tiny_runs import tiny_spec

from ovi_bench.availability import ModelCheck, hub_reachability, resolve_model
from ovi_bench.decoders.base import Decoder
from ovi_bench.decoders.stable_unclip import StableUnclipDecoder
from ovi_bench.errors import ModelLoadError, OviBenchError, SpecError
from ovi_bench.models.stable_unclip import (
    STABLE_UNCLIP_H_ID,
    STABLE_UNCLIP_SMALL_ID,
    tiny_stable_unclip_dir,
)
from ovi_bench.registry import DECODERS
from ovi_bench.spec import parse_spec

CPU = torch.device("cpu")
F32 = torch.float32
SIZE = 32
STEPS = 2
TINY_WIDTH = {"h": 24, "small": 16}

# Generated once from the saved tiny folders on CPU, float32: embeds = randn(1, width) from seed 1, generator seed 0,
# 32x32, 2 steps, guidance 4, noise_level 0. Pixels at (row, column) -> RGB, and the mean of each channel.
GOLDEN = {
    "h": (
        {(0, 0): [139, 122, 128], (15, 7): [183, 115, 131], (31, 31): [133, 106, 128]},
        [136.488281, 109.69043, 152.519531],
    ),
    "small": (
        {(0, 0): [155, 106, 151], (15, 7): [145, 123, 230], (31, 31): [132, 117, 116]},
        [150.104492, 106.944336, 164.330078],
    ),
}
# uint8 pixels may flip by one where a value sits on a rounding edge.
PIXEL_TOLERANCE = 1
# An image alone vs. in a batch of three: within one grey level.
BATCH_PIXEL_TOLERANCE = 1


def generators(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed) for seed in seeds]


def random_embeds(seed: int, width: int, rows: int = 1) -> torch.Tensor:
    return torch.randn(rows, width, generator=torch.Generator().manual_seed(seed))


def tiny_decoder(variant: str = "h", **params) -> StableUnclipDecoder:
    return StableUnclipDecoder(
        StableUnclipDecoder.Params(variant=variant, model="tiny", **params), device=CPU, dtype=F32
    )


@pytest.fixture(scope="module")
def h_decoder() -> StableUnclipDecoder:
    return tiny_decoder("h")


@pytest.fixture(scope="module")
def small_decoder() -> StableUnclipDecoder:
    return tiny_decoder("small")


def decode(decoder: StableUnclipDecoder, embeds: torch.Tensor, seeds: list[int], **options) -> list:
    options = {"height": SIZE, "width": SIZE, "steps": STEPS, "guidance": 4.0} | options
    negative = options.pop("negative", torch.zeros_like(embeds))
    return decoder.decode(embeds, negative, generators(*seeds), **options)


def pixels(image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def test_decoder_is_registered() -> None:
    assert DECODERS.get("stable-unclip") is StableUnclipDecoder
    assert issubclass(StableUnclipDecoder, Decoder)


@pytest.mark.parametrize("variant", ["h", "small"])
def test_tiny_folder_has_the_real_layout_and_the_declared_files(variant: str) -> None:
    folder = tiny_stable_unclip_dir(variant)
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableUnCLIPImg2ImgPipeline"
    # Saved like the real repository, though loading skips them.
    assert (folder / "image_encoder" / "model.safetensors").is_file()
    assert (folder / "feature_extractor" / "preprocessor_config.json").is_file()
    assert not list(folder.rglob("*.bin")), "weights must be safetensors only"
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert (scheduler["_class_name"], scheduler["prediction_type"]) == ("PNDMScheduler", "v_prediction")
    noising = json.loads((folder / "image_noising_scheduler" / "scheduler_config.json").read_text())
    assert (noising["beta_schedule"], noising["num_train_timesteps"]) == ("squaredcos_cap_v2", 1000)
    # What the decoder declares for the preflight is exactly what save_pretrained wrote.
    params = StableUnclipDecoder.Params(variant=variant, model=str(folder))
    (need,) = StableUnclipDecoder.required_models(params)
    assert resolve_model(ModelCheck(str(folder), None, list(need.files)), hub_reachability()) == (
        "folder",
        f"local folder {Path(folder).resolve()}",
    )


def test_variant_chooses_space_and_default_model() -> None:
    h = StableUnclipDecoder.Params()
    small = StableUnclipDecoder.Params(variant="small")
    assert (h.model, StableUnclipDecoder.embedding_space(h)) == (STABLE_UNCLIP_H_ID, "clip-vit-h-14")
    assert (small.model, StableUnclipDecoder.embedding_space(small)) == (
        STABLE_UNCLIP_SMALL_ID,
        "clip-vit-l-14",
    )
    assert StableUnclipDecoder.Params(variant="small", model="tiny").model == "tiny"
    assert "zeros" in StableUnclipDecoder.negative_embedding


def test_a_spec_pairs_the_variant_space_with_the_priors() -> None:
    decoder = {"name": "stable-unclip", "params": {"variant": "small", "model": "tiny"}, "steps": 2}
    with pytest.raises(SpecError) as refused:
        parse_spec(tiny_spec(decoder=decoder))  # its priors make ViT-bigG/14 embeddings
    assert "clip-vit-l-14" in str(refused.value) and "clip-vit-bigg-14" in str(refused.value)


def test_params_refuse_mismatches() -> None:
    with pytest.raises(ValidationError, match="set variant = 'small'"):
        StableUnclipDecoder.Params(variant="h", model=STABLE_UNCLIP_SMALL_ID)
    with pytest.raises(ValidationError):
        StableUnclipDecoder.Params(variant="l")
    with pytest.raises(ValidationError):
        StableUnclipDecoder.Params(noise_level=-1)
    with pytest.raises(ValidationError):
        StableUnclipDecoder.Params(scheduler="ddim")


@pytest.mark.parametrize("variant", ["h", "small"])
def test_decoder_matches_golden(request: pytest.FixtureRequest, variant: str) -> None:
    decoder = request.getfixturevalue(f"{variant}_decoder")
    assert decoder.embedding_width == TINY_WIDTH[variant]
    (image,) = decode(decoder, random_embeds(1, decoder.embedding_width), [0])
    assert image.mode == "RGB" and image.size == (SIZE, SIZE)
    values = pixels(image)
    golden_pixels, golden_means = GOLDEN[variant]
    for (row, column), rgb in golden_pixels.items():
        assert np.abs(values[row, column] - rgb).max() <= PIXEL_TOLERANCE, (row, column, values[row, column])
    assert values.mean(axis=(0, 1)).tolist() == pytest.approx(golden_means, abs=0.05)


def test_batch_composition_does_not_change_an_image(h_decoder: StableUnclipDecoder) -> None:
    embeds = random_embeds(3, h_decoder.embedding_width, rows=3)
    batched = decode(h_decoder, embeds, [10, 11, 12])
    for index in range(3):
        (alone,) = decode(h_decoder, embeds[index : index + 1], [10 + index])
        assert np.abs(pixels(alone) - pixels(batched[index])).max() <= BATCH_PIXEL_TOLERANCE


def test_embedding_reaches_the_image(h_decoder: StableUnclipDecoder) -> None:
    width = h_decoder.embedding_width
    (one,) = decode(h_decoder, random_embeds(1, width), [0])
    (two,) = decode(h_decoder, random_embeds(2, width), [0])
    assert np.abs(pixels(one) - pixels(two)).max() > 10


def test_negative_embedding_is_ignored(h_decoder: StableUnclipDecoder) -> None:
    # The pipeline guides against an all-zero class label whatever the prior's negative embedding is.
    embeds = random_embeds(1, h_decoder.embedding_width)
    (zero,) = decode(h_decoder, embeds, [0])
    (other,) = decode(h_decoder, embeds, [0], negative=random_embeds(5, h_decoder.embedding_width))
    assert np.array_equal(pixels(zero), pixels(other))


def test_noise_level_changes_the_image(h_decoder: StableUnclipDecoder) -> None:
    embeds = random_embeds(1, h_decoder.embedding_width)
    (clean,) = decode(h_decoder, embeds, [0])
    (noised,) = decode(tiny_decoder("h", noise_level=500), embeds, [0])
    assert np.abs(pixels(clean) - pixels(noised)).max() > 10


def test_noise_level_beyond_the_schedule_is_refused() -> None:
    with pytest.raises(SpecError, match="noise_level must be 0 to 999"):
        tiny_decoder("h", noise_level=1000)


def test_variant_must_match_the_model_folder() -> None:
    params = StableUnclipDecoder.Params(variant="small", model=str(tiny_stable_unclip_dir("h")))
    with pytest.raises(ModelLoadError, match="takes 24-d image embeddings, but variant 'small'"):
        StableUnclipDecoder(params, device=CPU, dtype=F32)


def test_decoder_casts_embeds(h_decoder: StableUnclipDecoder) -> None:
    # The pipeline never casts image_embeds: float64 would meet float32 weights and fail.
    embeds = random_embeds(1, h_decoder.embedding_width)
    (reference,) = decode(h_decoder, embeds, [0], guidance=1.0)
    (image,) = decode(h_decoder, embeds.double(), [0], guidance=1.0)
    assert np.array_equal(pixels(image), pixels(reference))


@pytest.mark.parametrize(("height", "width"), [(36, 32), (32, 30), (0, 32), (32, -8)])
def test_decoder_refuses_sizes(h_decoder: StableUnclipDecoder, height: int, width: int) -> None:
    assert h_decoder.size_multiple == 8
    with pytest.raises(SpecError, match="positive multiples of 8"):
        decode(h_decoder, random_embeds(1, h_decoder.embedding_width), [0], height=height, width=width)


def test_decoder_rejects_nan_embeds(h_decoder: StableUnclipDecoder) -> None:
    embeds = random_embeds(1, h_decoder.embedding_width, rows=2)
    embeds[1, 3] = float("nan")
    with pytest.raises(OviBenchError, match=r"NaN or inf in image_embeds at row\(s\) \[1\]"):
        decode(h_decoder, embeds, [0, 1])


def test_decoder_rejects_mismatched_inputs(h_decoder: StableUnclipDecoder) -> None:
    width = h_decoder.embedding_width
    with pytest.raises(OviBenchError, match="one row per generator"):
        h_decoder.decode(
            random_embeds(1, width, rows=2),
            torch.zeros(2, width),
            generators(0),
            height=SIZE,
            width=SIZE,
            steps=STEPS,
            guidance=4.0,
        )
    with pytest.raises(OviBenchError, match=r"image_embeds of shape \[1, 24\]"):
        decode(h_decoder, torch.zeros(1, 16), [0])
    with pytest.raises(OviBenchError, match=r"negative_image_embeds of shape \[1, 24\]"):
        decode(h_decoder, torch.zeros(1, width), [0], negative=torch.zeros(1, 32))
    with pytest.raises(SpecError, match="at least 1 step"):
        decode(h_decoder, random_embeds(1, width), [0], steps=0)
