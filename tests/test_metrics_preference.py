"""The human-preference metrics `pickscore` and `hpsv2`, on tiny random CLIPs saved and loaded like the real ones.

PickScore loads the tiny CLIP folder with `from_pretrained`; HPS v2 reads a tiny CLIPModel written out in open_clip's
key layout and converts it back. The hand computations below go through the CLIPModel's own get_image_features and
get_text_features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image
from transformers import CLIPModel, CLIPProcessor, CLIPTokenizer

from ovi_bench.availability import ModelCheck, hub_reachability, resolve_model
from ovi_bench.components import FileNeed, ModelNeed
from ovi_bench.errors import ModelLoadError
from ovi_bench.metrics.base import ScoreInput
from ovi_bench.metrics.hpsv2 import HPSv2Metric, HPSv2Params
from ovi_bench.metrics.pickscore import PickScoreMetric, PickScoreParams
from ovi_bench.models.clip import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, tiny_clip_dir
from ovi_bench.models.hps import (
    hf_to_open_clip,
    hps_pixel_values,
    open_clip_to_hf,
    read_open_clip_checkpoint,
    tiny_hps_config,
)
from ovi_bench.registry import METRICS

CPU = torch.device("cpu")
PROMPTS = ["a red cube", "two cats on the table", "a blue car", "three green trees"]

# Measured once from the tiny builds (torch.manual_seed(0)) and two 64x48 `_images`: they pin the whole path, pixel
# preparation included (HPS letterboxes these wide images).
GOLDEN_TINY_PICKSCORE = [0.3111662, 0.3039886]
GOLDEN_TINY_HPS = [0.2508368, 0.2047573]


def _images(count: int, size: tuple[int, int] = (48, 48)) -> list[Image.Image]:
    return [
        Image.fromarray(np.random.default_rng(index).integers(0, 256, (*size, 3), dtype=np.uint8))
        for index in range(count)
    ]


def _inputs(images: list[Image.Image], prompts: list[str]) -> list[ScoreInput]:
    return [ScoreInput(image, prompt, "color") for image, prompt in zip(images, prompts, strict=True)]


def _unit(features: object) -> torch.Tensor:
    """get_*_features returns a tensor, or in transformers 5 an output whose pooler_output is the projection."""
    tensor = features if isinstance(features, torch.Tensor) else features.pooler_output
    return torch.nn.functional.normalize(tensor, dim=-1)


def test_registered() -> None:
    assert METRICS.get("pickscore") is PickScoreMetric
    assert METRICS.get("hpsv2") is HPSv2Metric
    for metric in (PickScoreMetric, HPSv2Metric):
        assert metric.categories is None and metric.higher_is_better and metric.version == "1"


# -- pickscore -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pickscore() -> PickScoreMetric:
    return PickScoreMetric(PickScoreParams(model="tiny", processor="tiny"), device=CPU, dtype=torch.float32)


def test_pickscore_is_the_scaled_cosine_of_get_features(pickscore: PickScoreMetric) -> None:
    images = _images(3, (48, 40))
    rows = pickscore.score(_inputs(images, PROMPTS[:3]))
    folder = tiny_clip_dir()
    model = CLIPModel.from_pretrained(folder, local_files_only=True).eval()
    processor = CLIPProcessor.from_pretrained(folder, local_files_only=True)
    with torch.no_grad():
        image = _unit(model.get_image_features(**processor(images=images, return_tensors="pt")))
        text_inputs = processor(
            text=PROMPTS[:3], padding=True, truncation=True, max_length=77, return_tensors="pt"
        )
        text = _unit(model.get_text_features(**text_inputs))
        expected = model.logit_scale.exp() * (image * text).sum(-1)
    np.testing.assert_allclose([row.score for row in rows], expected.numpy(), rtol=1e-6, atol=1e-6)
    assert rows[0].reason == f"PickScore {rows[0].score:.2f}"


def test_pickscore_range_determinism_and_prompt_matters(pickscore: PickScoreMetric) -> None:
    images = _images(4)
    own = [row.score for row in pickscore.score(_inputs(images, PROMPTS))]
    shuffled = [row.score for row in pickscore.score(_inputs(images, PROMPTS[1:] + PROMPTS[:1]))]
    scale = pickscore.scorer.logit_scale
    assert all(abs(value) <= scale + 1e-6 for value in own + shuffled)  # |cos| <= 1
    assert own == [row.score for row in pickscore.score(_inputs(images, PROMPTS))]
    assert own != shuffled  # computed, not judged: a random tiny CLIP prefers nothing


def test_pickscore_batch_independence(pickscore: PickScoreMetric) -> None:
    images = _images(4)
    prompts = ["a red cube", "a blue sphere", "a red cube", "three green bananas behind a wooden table"]
    together = pickscore.score(_inputs(images, prompts))
    alone = [
        pickscore.score(_inputs([image], [prompt]))[0] for image, prompt in zip(images, prompts, strict=True)
    ]
    np.testing.assert_allclose([r.score for r in together], [r.score for r in alone], rtol=1e-6, atol=1e-6)
    assert pickscore.score([]) == []


@pytest.mark.parametrize("name", ["pickscore", "hpsv2"])
def test_golden_values_of_the_tiny_builds(name: str, pickscore: PickScoreMetric) -> None:
    metric = pickscore if name == "pickscore" else _hps("tiny")
    golden = GOLDEN_TINY_PICKSCORE if name == "pickscore" else GOLDEN_TINY_HPS
    rows = metric.score(_inputs(_images(2, (48, 64)), PROMPTS[:2]))
    assert [row.score for row in rows] == pytest.approx(golden, abs=1e-5)


def test_pickscore_needs() -> None:
    needs = PickScoreMetric.required_models(PickScoreParams())
    assert [need.ref for need in needs] == [
        "yuvalkirstain/PickScore_v1",
        "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
    ]
    assert "preprocessor_config.json|processor_config.json" in needs[1].files


@pytest.mark.parametrize("name", ["pickscore", "hpsv2"])
def test_declared_files_are_those_save_pretrained_writes(name: str) -> None:
    folder = str(tiny_clip_dir())
    params = (
        {"model": folder, "processor": folder}
        if name == "pickscore"
        else {"model": folder, "weights": "tiny"}
    )
    metric = METRICS.get(name)
    needs = metric.required_models(metric.Params.model_validate(params))
    assert needs and all(need.ref == folder for need in needs)
    for need in needs:
        assert resolve_model(ModelCheck(folder, None, list(need.files)), hub_reachability())[0] == "folder"


# -- hpsv2: the open_clip conversion ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def original() -> CLIPModel:
    """A tiny CLIPModel that is not the cached tiny HPS (another seed), to be written out and read back."""
    torch.manual_seed(7)
    return CLIPModel(tiny_hps_config()).eval()


def test_conversion_round_trips_exactly(original: CLIPModel) -> None:
    config = original.config
    state = original.state_dict()
    open_clip_state = hf_to_open_clip(state, config)
    assert "visual.transformer.resblocks.1.attn.in_proj_weight" in open_clip_state
    assert open_clip_state["visual.proj"].shape == state["visual_projection.weight"].T.shape
    back = open_clip_to_hf(open_clip_state, config, "test")
    assert back.keys() == state.keys()
    assert all(torch.equal(back[key], state[key]) for key in state)
    again = hf_to_open_clip(back, config)
    assert all(torch.equal(again[key], open_clip_state[key]) for key in open_clip_state)


@pytest.fixture(scope="module")
def written(original: CLIPModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hps") / "hps.pt"
    torch.save({"state_dict": hf_to_open_clip(original.state_dict(), original.config), "epoch": 1}, path)
    return path


def _checkpoint(state: dict[str, torch.Tensor], path: Path) -> Path:
    torch.save({"state_dict": state}, path)
    return path


def _hps(weights: Path | str) -> HPSv2Metric:
    return HPSv2Metric(HPSv2Params(model="tiny", weights=str(weights)), device=CPU, dtype=torch.float32)


def test_hps_scores_equal_the_original_model(original: CLIPModel, written: Path) -> None:
    metric = _hps(written)
    converted = metric.scorer.model.state_dict()
    assert all(torch.equal(converted[key], value) for key, value in original.state_dict().items())
    images = _images(3, (40, 48))
    rows = metric.score(_inputs(images, PROMPTS[:3]))
    tokenizer = CLIPTokenizer.from_pretrained(tiny_clip_dir(), local_files_only=True)
    with torch.no_grad():
        image = _unit(original.get_image_features(pixel_values=hps_pixel_values(images, 32, antialias=True)))
        text = _unit(original.get_text_features(**tokenizer(PROMPTS[:3], padding=True, return_tensors="pt")))
    assert [row.score for row in rows] == (image * text).sum(-1).tolist()
    assert rows[0].reason == f"HPS v2 {rows[0].score:.4f}"
    assert all(-1.0 <= row.score <= 1.0 for row in rows)


def _open_clip_block(
    x: torch.Tensor, state: dict[str, torch.Tensor], prefix: str, heads: int, mask
) -> torch.Tensor:
    """One open_clip ResidualAttentionBlock on [L, N, D], written from its definition (nn.MultiheadAttention with a
    packed in_proj, exact GELU), independently of the converter."""
    width = x.shape[-1]
    normed = torch.nn.functional.layer_norm(
        x, (width,), state[f"{prefix}.ln_1.weight"], state[f"{prefix}.ln_1.bias"]
    )
    attended, _ = torch.nn.functional.multi_head_attention_forward(
        normed,
        normed,
        normed,
        width,
        heads,
        state[f"{prefix}.attn.in_proj_weight"],
        state[f"{prefix}.attn.in_proj_bias"],
        None,
        None,
        False,
        0.0,
        state[f"{prefix}.attn.out_proj.weight"],
        state[f"{prefix}.attn.out_proj.bias"],
        training=False,
        need_weights=False,
        attn_mask=mask,
    )
    x = x + attended
    normed = torch.nn.functional.layer_norm(
        x, (width,), state[f"{prefix}.ln_2.weight"], state[f"{prefix}.ln_2.bias"]
    )
    hidden = torch.nn.functional.gelu(
        torch.nn.functional.linear(
            normed, state[f"{prefix}.mlp.c_fc.weight"], state[f"{prefix}.mlp.c_fc.bias"]
        )
    )
    return x + torch.nn.functional.linear(
        hidden, state[f"{prefix}.mlp.c_proj.weight"], state[f"{prefix}.mlp.c_proj.bias"]
    )


def test_hps_matches_an_open_clip_forward_of_the_checkpoint(original: CLIPModel, written: Path) -> None:
    """The converted model computes what open_clip's CLIP.encode_image / encode_text compute from the same tensors."""
    state = read_open_clip_checkpoint(written)
    config = original.config
    images, prompts = _images(2), PROMPTS[:2]
    layers = config.text_config.num_hidden_layers
    with torch.no_grad():
        pixels = hps_pixel_values(images, 32, antialias=True)
        x = torch.nn.functional.conv2d(
            pixels, state["visual.conv1.weight"], stride=config.vision_config.patch_size
        )
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([state["visual.class_embedding"].expand(x.shape[0], 1, -1), x], dim=1)
        x = x + state["visual.positional_embedding"]
        width = x.shape[-1]
        x = torch.nn.functional.layer_norm(
            x, (width,), state["visual.ln_pre.weight"], state["visual.ln_pre.bias"]
        )
        x = x.transpose(0, 1)
        for layer in range(config.vision_config.num_hidden_layers):
            x = _open_clip_block(x, state, f"visual.transformer.resblocks.{layer}", 4, None)
        pooled = torch.nn.functional.layer_norm(
            x[0], (width,), state["visual.ln_post.weight"], state["visual.ln_post.bias"]
        )
        image = torch.nn.functional.normalize(pooled @ state["visual.proj"], dim=-1)
        tokenizer = CLIPTokenizer.from_pretrained(tiny_clip_dir(), local_files_only=True)
        ids = tokenizer(prompts, padding="max_length", max_length=77, return_tensors="pt")["input_ids"]
        x = (state["token_embedding.weight"][ids] + state["positional_embedding"]).transpose(0, 1)
        causal = torch.full((77, 77), float("-inf")).triu(1)
        for layer in range(layers):
            x = _open_clip_block(x, state, f"transformer.resblocks.{layer}", 4, causal)
        x = x.transpose(0, 1)
        width = x.shape[-1]
        x = torch.nn.functional.layer_norm(x, (width,), state["ln_final.weight"], state["ln_final.bias"])
        text = torch.nn.functional.normalize(
            x[torch.arange(2), ids.argmax(dim=-1)] @ state["text_projection"], dim=-1
        )
    expected = (image * text).sum(-1)
    np.testing.assert_allclose(
        [r.score for r in _hps(written).score(_inputs(images, prompts))], expected, atol=1e-5
    )


def test_hps_reads_a_safetensors_conversion_a_folder_and_half_precision(
    original: CLIPModel, written: Path, tmp_path: Path
) -> None:
    state = hf_to_open_clip(original.state_dict(), original.config)
    safetensors.torch.save_file(state, tmp_path / "hps.safetensors")
    _checkpoint(state, tmp_path / "HPS_v2.1_compressed.pt")
    images = _images(2)
    expected = [r.score for r in _hps(written).score(_inputs(images, PROMPTS[:2]))]
    for weights in (tmp_path / "hps.safetensors", tmp_path):  # a file, and a folder holding weights_file
        assert [r.score for r in _hps(weights).score(_inputs(images, PROMPTS[:2]))] == expected
    # The released checkpoint is float16: it is widened to the run's dtype.
    half = _hps(_checkpoint({k: v.half() for k, v in state.items()}, tmp_path / "half.pt"))
    assert half.scorer.model.dtype == torch.float32
    np.testing.assert_allclose(
        [r.score for r in half.score(_inputs(images, PROMPTS[:2]))], expected, atol=2e-2
    )


def test_hps_tiny_batch_independence_and_prompt_matters() -> None:
    metric = _hps("tiny")
    images = _images(4)
    together = metric.score(_inputs(images, PROMPTS))
    alone = [
        metric.score(_inputs([image], [prompt]))[0] for image, prompt in zip(images, PROMPTS, strict=True)
    ]
    np.testing.assert_allclose([r.score for r in together], [r.score for r in alone], rtol=1e-6, atol=1e-6)
    shuffled = metric.score(_inputs(images, PROMPTS[1:] + PROMPTS[:1]))
    assert [r.score for r in together] != [r.score for r in shuffled]
    assert metric.score([]) == []


def test_hps_refuses_missing_unexpected_and_misshaped_keys(original: CLIPModel, tmp_path: Path) -> None:
    state = hf_to_open_clip(original.state_dict(), original.config)
    missing = {key: value for key, value in state.items() if key != "ln_final.bias"}
    with pytest.raises(ModelLoadError, match=r"missing \['ln_final.bias'\], unexpected none"):
        _hps(_checkpoint(missing, tmp_path / "missing.pt"))
    extra = {**state, "visual.attn_pool.query": torch.zeros(2)}
    with pytest.raises(ModelLoadError, match=r"missing none, unexpected \['visual.attn_pool.query'\]"):
        _hps(_checkpoint(extra, tmp_path / "extra.pt"))
    wrong = {**state, "text_projection": torch.zeros(5, 5)}
    with pytest.raises(ModelLoadError, match=r"wrong shape.*text_projection \(5, 5\)"):
        _hps(_checkpoint(wrong, tmp_path / "wrong.pt"))


class PickledPayload:
    """Not a tensor: torch.load(weights_only=True) must refuse to rebuild it."""


def test_hps_refuses_files_that_are_not_weights(tmp_path: Path) -> None:
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(ModelLoadError, match=r"cannot read .*notes\.pt.* as a weights file"):
        read_open_clip_checkpoint(text)
    pickled = tmp_path / "pickled.pt"
    torch.save({"state_dict": {"logit_scale": torch.zeros(())}, "payload": PickledPayload()}, pickled)
    with pytest.raises(ModelLoadError, match=r"weights_only=True"):
        read_open_clip_checkpoint(pickled)
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(ModelLoadError, match="holds no state dict of tensors"):
        read_open_clip_checkpoint(listed)
    with pytest.raises(ModelLoadError, match=r"not found.*HPS_v2\.1_compressed\.pt"):
        read_open_clip_checkpoint(tmp_path / "absent.pt")


def test_hps_pixels_letterbox_without_crop() -> None:
    square = _images(1, (32, 32))
    mean = torch.tensor(OPENAI_CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD).view(3, 1, 1)
    exact = torch.from_numpy(np.array(square[0])).permute(2, 0, 1).float().div(255)
    torch.testing.assert_close(hps_pixel_values(square, 32, antialias=True)[0], (exact - mean) / std)
    wide = hps_pixel_values(_images(1, (24, 48)), 32, antialias=True)  # 48 wide, 24 high: 32 x 16, padded
    assert wide.shape == (1, 3, 32, 32)
    black = (-mean / std).expand(3, 8, 32)
    torch.testing.assert_close(wide[0, :, :8], black)
    torch.testing.assert_close(wide[0, :, 24:], black)
    assert not torch.allclose(wide[0, :, 8:24], (-mean / std).expand(3, 16, 32))
    large = _images(1, (96, 96))
    assert not torch.equal(
        hps_pixel_values(large, 32, antialias=True), hps_pixel_values(large, 32, antialias=False)
    )


def test_hps_needs() -> None:
    needs = HPSv2Metric.required_models(HPSv2Params())
    assert needs == [
        ModelNeed(
            "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
            "HPS v2 architecture (config and tokenizer)",
            ("config.json", "vocab.json|tokenizer.json", "merges.txt|tokenizer.json"),
        ),
        ModelNeed("xswu/HPSv2", "HPS v2 checkpoint", ("HPS_v2.1_compressed.pt",)),
    ]
    assert HPSv2Metric.required_files(HPSv2Params()) == []
    local = HPSv2Params(weights="~/models/HPS_v2.1_compressed.pt")
    assert [need.ref for need in HPSv2Metric.required_models(local)] == [
        "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
    ]
    [file_need] = HPSv2Metric.required_files(local)
    assert isinstance(file_need, FileNeed) and file_need.path == "~/models/HPS_v2.1_compressed.pt"
    tiny = HPSv2Params(model="tiny", weights="tiny")
    assert [need.ref for need in HPSv2Metric.required_models(tiny)] == ["tiny"]
    assert HPSv2Metric.required_files(tiny) == []


# -- real weights (skipped by default; run with -m weights where the hub or its cache has them) ----------------------


def _solid(colour: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (512, 512), colour)


@pytest.mark.weights
@pytest.mark.parametrize("name", ["pickscore", "hpsv2"])
def test_real_weights_prefer_the_matching_colour(name: str) -> None:
    metric = METRICS.get(name)(METRICS.get(name).Params(), device=CPU, dtype=torch.float32)
    images = [_solid((220, 20, 20)), _solid((20, 180, 20))]
    matching = metric.score(_inputs(images, ["a red square", "a green square"]))
    swapped = metric.score(_inputs(images, ["a green square", "a red square"]))
    assert all(m.score > s.score for m, s in zip(matching, swapped, strict=True))
    low, high = (10.0, 30.0) if name == "pickscore" else (0.0, 0.5)
    assert all(low < row.score < high for row in matching)
