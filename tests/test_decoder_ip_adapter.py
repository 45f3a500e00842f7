"""The sdxl-ip-adapter and sd15-ip-adapter decoders on their tiny saved pipelines and tiny IP-Adapter folders."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from safetensors import safe_open
from tiny_runs import tiny_spec

from ovi_bench.decoders.base import Decoder
from ovi_bench.decoders.ip_adapter import IpAdapterDecoder, Sd15IpAdapterDecoder, SdxlIpAdapterDecoder
from ovi_bench.errors import ModelLoadError, OviBenchError, SpecError
from ovi_bench.models.ip_adapter import SD15, SDXL, load_ip_adapter_pipeline
from ovi_bench.registry import DECODERS
from ovi_bench.runner import Runner
from ovi_bench.spaces import BIGG, H
from ovi_bench.spec import parse_spec

CPU = torch.device("cpu")
F32 = torch.float32
SIZE = 32  # the tiny VAE's factor (2) times the tiny UNet's (2): sizes must be multiples of 4
STEPS = 2
GUIDANCE = 4.0

DECODER_CLASSES = {"sdxl-ip-adapter": SdxlIpAdapterDecoder, "sd15-ip-adapter": Sd15IpAdapterDecoder}
WIDTHS = {"sdxl-ip-adapter": BIGG.tiny_width, "sd15-ip-adapter": H.tiny_width}

# Generated once from the saved tiny folders on CPU, float32: embeds = randn(1, width) from seed 1, generator seed 0,
# 32x32, 2 steps, guidance 4, empty prompt, scale 1. Pixels at (row, column) -> RGB.
GOLDEN_PIXELS = {
    "sdxl-ip-adapter": {(0, 0): [142, 112, 120], (15, 9): [156, 156, 88], (31, 31): [129, 160, 117]},
    "sd15-ip-adapter": {(0, 0): [145, 105, 117], (15, 9): [164, 133, 126], (31, 31): [130, 152, 114]},
}
GOLDEN_CHANNEL_MEANS = {
    "sdxl-ip-adapter": [138.970703, 113.861328, 136.371094],
    "sd15-ip-adapter": [139.202148, 113.862305, 136.823242],
}
PIXEL_TOLERANCE = 1  # uint8 pixels may flip by one where a value sits on a rounding edge


def generators(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed) for seed in seeds]


def random_embeds(width: int, seed: int, rows: int = 1) -> torch.Tensor:
    return torch.randn(rows, width, generator=torch.Generator().manual_seed(seed))


def decode(decoder: IpAdapterDecoder, embeds: torch.Tensor, seeds: list[int], **options) -> list:
    settings = {"height": SIZE, "width": SIZE, "steps": STEPS, "guidance": GUIDANCE} | options
    return decoder.decode(embeds, torch.zeros_like(embeds), generators(*seeds), **settings)


def pixels(image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def tiny_decoder(name: str, **params) -> IpAdapterDecoder:
    decoder_class = DECODER_CLASSES[name]
    return decoder_class(decoder_class.Params(model="tiny", adapter="tiny", **params), device=CPU, dtype=F32)


@pytest.fixture(scope="module", params=list(DECODER_CLASSES))
def decoder(request: pytest.FixtureRequest) -> IpAdapterDecoder:
    return tiny_decoder(request.param)


def width_of(decoder: IpAdapterDecoder) -> int:
    return WIDTHS[decoder.decoder_name]


def test_decoders_are_registered_with_their_space() -> None:
    for name, decoder_class in DECODER_CLASSES.items():
        assert DECODERS.get(name) is decoder_class
        assert issubclass(decoder_class, Decoder)
        assert decoder_class.decoder_name == name
        assert "zeros" in decoder_class.negative_embedding
    assert SdxlIpAdapterDecoder.embedding_space(SdxlIpAdapterDecoder.Params()) == BIGG.name
    assert Sd15IpAdapterDecoder.embedding_space(Sd15IpAdapterDecoder.Params()) == H.name


def test_params_defaults_and_refusals() -> None:
    params = SdxlIpAdapterDecoder.Params()
    assert (params.model, params.adapter) == ("stabilityai/stable-diffusion-xl-base-1.0", "h94/IP-Adapter")
    assert (params.scale, params.prompt_mode) == (1.0, "empty")
    assert Sd15IpAdapterDecoder.Params().model == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    with pytest.raises(ValidationError):
        SdxlIpAdapterDecoder.Params(scale=-0.5)
    with pytest.raises(ValidationError):
        SdxlIpAdapterDecoder.Params(prompt_mode="negative")
    with pytest.raises(ValidationError):
        Sd15IpAdapterDecoder.Params(noise_level=10)


def test_required_models_name_the_adapter_file() -> None:
    base, adapter = SdxlIpAdapterDecoder.required_models(SdxlIpAdapterDecoder.Params())
    assert (
        base.ref == SDXL.base_id
        and "unet/config.json" in base.files
        and "text_encoder_2/config.json" in base.files
    )
    assert (adapter.ref, adapter.files) == ("h94/IP-Adapter", ("sdxl_models/ip-adapter_sdxl.safetensors",))
    _, adapter = Sd15IpAdapterDecoder.required_models(Sd15IpAdapterDecoder.Params())
    assert adapter.files == ("models/ip-adapter_sd15.safetensors",)


@pytest.mark.parametrize(("family", "width"), [(SDXL, BIGG.tiny_width), (SD15, H.tiny_width)])
def test_tiny_adapter_has_the_released_layout(family, width: int) -> None:
    with safe_open(family.tiny_adapter() / family.adapter_file, framework="pt") as weights:
        keys = set(weights.keys())
        assert weights.get_tensor("image_proj.proj.weight").shape[1] == width
    assert {key.split(".")[0] for key in keys} == {"image_proj", "ip_adapter"}
    assert {"image_proj.norm.weight", "ip_adapter.1.to_k_ip.weight", "ip_adapter.1.to_v_ip.weight"} <= keys


def test_decoder_matches_golden(decoder: IpAdapterDecoder) -> None:
    name = decoder.decoder_name
    (image,) = decode(decoder, random_embeds(width_of(decoder), 1), [0])
    assert image.mode == "RGB" and image.size == (SIZE, SIZE)
    values = pixels(image)
    for (row, column), rgb in GOLDEN_PIXELS[name].items():
        assert np.abs(values[row, column] - rgb).max() <= PIXEL_TOLERANCE, (row, column, values[row, column])
    assert values.mean(axis=(0, 1)).tolist() == pytest.approx(GOLDEN_CHANNEL_MEANS[name], abs=0.05)


def test_batch_composition_does_not_change_an_image(decoder: IpAdapterDecoder) -> None:
    embeds = random_embeds(width_of(decoder), 3, rows=2)
    batched = decode(decoder, embeds, [10, 11])
    for index in range(2):
        (alone,) = decode(decoder, embeds[index : index + 1], [10 + index])
        assert np.abs(pixels(alone) - pixels(batched[index])).max() <= 1


def test_embedding_reaches_the_attention(decoder: IpAdapterDecoder) -> None:
    (one,) = decode(decoder, random_embeds(width_of(decoder), 1), [0])
    (two,) = decode(decoder, random_embeds(width_of(decoder), 2), [0])
    assert np.abs(pixels(one) - pixels(two)).max() > 10


@pytest.mark.parametrize("name", list(DECODER_CLASSES))
def test_scale_zero_makes_the_image_independent_of_the_embedding(name: str) -> None:
    decoder = tiny_decoder(name, scale=0.0)
    (one,) = decode(decoder, random_embeds(WIDTHS[name], 1), [0])
    (two,) = decode(decoder, random_embeds(WIDTHS[name], 2), [0])
    assert np.array_equal(pixels(one), pixels(two))


def test_text_mode_reads_the_prompts() -> None:
    decoder = tiny_decoder("sd15-ip-adapter", prompt_mode="text")
    assert decoder.reads_prompts and decoder.prompt_keywords(["a cat"]) == {"prompts": ["a cat"]}
    embeds = random_embeds(H.tiny_width, 1)
    (cat,) = decode(decoder, embeds, [0], prompts=["a cat"])
    (boat,) = decode(decoder, embeds, [0], prompts=["a red boat on a lake"])
    assert np.abs(pixels(cat) - pixels(boat)).max() > 0
    with pytest.raises(OviBenchError, match='prompt_mode = "text" needs one prompt per image'):
        decode(decoder, embeds, [0])


def test_empty_mode_ignores_the_prompts(decoder: IpAdapterDecoder) -> None:
    assert not decoder.reads_prompts and decoder.prompt_keywords(["a cat"]) == {}
    embeds = random_embeds(width_of(decoder), 1)
    (plain,) = decode(decoder, embeds, [0])
    (given,) = decode(decoder, embeds, [0], prompts=["a cat"])
    assert np.array_equal(pixels(plain), pixels(given))


@pytest.mark.parametrize(("height", "width"), [(30, 32), (32, 34), (0, 32), (32, -4)])
def test_refuses_sizes(decoder: IpAdapterDecoder, height: int, width: int) -> None:
    with pytest.raises(SpecError, match="multiples of 4"):
        decode(decoder, random_embeds(width_of(decoder), 1), [0], height=height, width=width)


def test_rejects_nan_embeds(decoder: IpAdapterDecoder) -> None:
    embeds = random_embeds(width_of(decoder), 1, rows=2)
    embeds[1, 3] = float("nan")
    with pytest.raises(OviBenchError, match=r"NaN or inf in image_embeds at row\(s\) \[1\]"):
        decode(decoder, embeds, [0, 1])


def test_rejects_mismatched_inputs(decoder: IpAdapterDecoder) -> None:
    width = width_of(decoder)
    with pytest.raises(OviBenchError, match="one row per generator"):
        decode(decoder, random_embeds(width, 1, rows=2), [0])
    with pytest.raises(OviBenchError, match=rf"shape \[1, {width}\]"):
        decode(decoder, torch.zeros(1, width + 1), [0])


def test_an_adapter_of_another_base_model_is_refused(tmp_path: Path) -> None:
    # SD 1.5 adapter weights saved under the SDXL file name: found, loaded, and refused for their shapes.
    (tmp_path / SDXL.adapter_subfolder).mkdir()
    shutil.copy(SD15.tiny_adapter() / SD15.adapter_file, tmp_path / SDXL.adapter_file)
    with pytest.raises(ModelLoadError, match="does not fit the base pipeline"):
        load_ip_adapter_pipeline(SDXL, "tiny", str(tmp_path), CPU, F32)


def test_a_missing_adapter_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=re.escape(SDXL.adapter_file)):
        load_ip_adapter_pipeline(SDXL, "tiny", str(tmp_path), CPU, F32)


class _GreyDecoder(Decoder):
    """Grey images, whatever the embeddings; records the prompts each call was given."""

    calls: ClassVar[list] = []

    def decode(
        self, image_embeds, negative_image_embeds, generators, *, height, width, steps, guidance, prompts=None
    ):
        type(self).calls.append(prompts)
        return [Image.new("RGB", (width, height), (128, 128, 128)) for _ in generators]


class _PromptReadingDecoder(_GreyDecoder):
    reads_prompts = True


class _StrictDecoder(Decoder):
    """A decoder written before `prompts` existed: its decode takes no other keyword."""

    def decode(
        self, image_embeds, negative_image_embeds, generators, *, height, width, steps, guidance
    ) -> list:
        return [Image.new("RGB", (width, height), (128, 128, 128)) for _ in generators]


@pytest.fixture
def prompt_decoders() -> Iterator[None]:
    names = {
        "test-prompt-reading": _PromptReadingDecoder,
        "test-grey": _GreyDecoder,
        "test-strict": _StrictDecoder,
    }
    for name, decoder_class in names.items():
        DECODERS.register(name)(decoder_class)
    yield
    for name in names:
        DECODERS._entries.pop(name)


@pytest.mark.usefixtures("prompt_decoders")
def test_the_runner_gives_prompts_only_to_decoders_that_read_them(tmp_path: Path) -> None:
    def run(decoder: str) -> list[str]:
        spec = tiny_spec(
            priors=[{"name": "text-embedding", "params": {"model": "tiny"}}],
            decoder={"name": decoder, "steps": 1, "height": 8, "width": 8},
            prompts={"source": "builtin", "categories": ["color", "spatial"], "limit": 1},
            images_per_prompt=1,
        )
        result = Runner(parse_spec(spec), tmp_path / decoder, show_progress=False).run()
        return [item.prompt.text for item in result.items]

    _GreyDecoder.calls.clear()
    texts = run("test-prompt-reading")
    assert sorted(text for call in _GreyDecoder.calls for text in call) == sorted(texts)
    _GreyDecoder.calls.clear()
    run("test-grey")
    assert _GreyDecoder.calls and all(call is None for call in _GreyDecoder.calls)
    run("test-strict")  # called without `prompts=`, which it would refuse
