"""Tiny Kandinsky 2.2 folders, the loading code (hub.py, kandinsky.py) and the cached zero-image embedding."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import KandinskyV22PriorPipeline
from safetensors.torch import save_file

from ovi_bench.errors import ModelLoadError
from ovi_bench.models.hub import load_pretrained, resolve_model
from ovi_bench.models.kandinsky import (
    PRIOR_TINY_BUILDERS,
    load_image_encoder,
    load_prior_pipeline,
    load_text_side,
    tiny_kandinsky_decoder_dir,
    tiny_kandinsky_prior_dir,
    zero_image_embeds,
)
from ovi_bench.models.zero_image import clear_zero_image_embeds_memo
from ovi_bench.paths import cache_dir

CPU = torch.device("cpu")
F32 = torch.float32

# Generated once from the saved tiny folders (not from the models built in memory) on CPU, float32.
# 1e-4 leaves room for BLAS and thread-count differences (measured: about 1e-7) and still catches any real change.
GOLDEN_TEXT_EMBEDS_A_RED_CUBE = [2.1396954, 0.6325053, -0.2538389, 1.0080109]
GOLDEN_ZERO_IMAGE_EMBEDS = [2.5212774, 1.1139463, 2.3574133, 2.5639293]
GOLDEN_ATOL = 1e-4


def _copy_prior_folder(tmp_path: Path) -> Path:
    # copytree keeps file times, but the copy's path differs, so it gets its own zero-image cache key.
    return Path(shutil.copytree(tiny_kandinsky_prior_dir(), tmp_path / "prior-copy"))


def test_tiny_prior_folder_has_the_real_layout() -> None:
    folder = tiny_kandinsky_prior_dir()
    assert folder.is_relative_to(cache_dir() / "tiny")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "KandinskyV22PriorPipeline"
    for subfolder, weights in [
        ("prior", "diffusion_pytorch_model.safetensors"),
        ("image_encoder", "model.safetensors"),
        ("text_encoder", "model.safetensors"),
    ]:
        assert (folder / subfolder / "config.json").is_file()
        assert (folder / subfolder / weights).is_file()
    assert (folder / "tokenizer" / "tokenizer.json").is_file()
    assert (folder / "scheduler" / "scheduler_config.json").is_file()
    assert (folder / "image_processor" / "preprocessor_config.json").is_file()
    assert not list(folder.rglob("*.bin")), "weights must be safetensors only"


def test_tiny_decoder_folder_has_the_real_layout() -> None:
    folder = tiny_kandinsky_decoder_dir()
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "KandinskyV22Pipeline"
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (folder / "movq" / "diffusion_pytorch_model.safetensors").is_file()
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    # The real decoder's scheduler, not the DDIM of diffusers' tests.
    assert scheduler["_class_name"] == "DDPMScheduler"
    assert (scheduler["beta_start"], scheduler["beta_end"], scheduler["beta_schedule"]) == (
        0.00085,
        0.012,
        "linear",
    )
    assert (scheduler["prediction_type"], scheduler["steps_offset"]) == ("epsilon", 1)


def test_tiny_build_is_deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = {"prior": tiny_kandinsky_prior_dir(), "decoder": tiny_kandinsky_decoder_dir()}
    monkeypatch.setenv("OVI_BENCH_CACHE", str(tmp_path))
    second = {"prior": tiny_kandinsky_prior_dir(), "decoder": tiny_kandinsky_decoder_dir()}
    for kind in first:
        assert second[kind].is_relative_to(tmp_path)
        files = sorted(path.relative_to(first[kind]) for path in first[kind].rglob("*") if path.is_file())
        assert files == sorted(
            path.relative_to(second[kind]) for path in second[kind].rglob("*") if path.is_file()
        )
        for name in files:
            assert (first[kind] / name).read_bytes() == (second[kind] / name).read_bytes(), (
                f"{kind}/{name} differs"
            )


def test_resolve_model() -> None:
    tiny = resolve_model("tiny", PRIOR_TINY_BUILDERS)
    assert Path(tiny) == tiny_kandinsky_prior_dir()
    assert resolve_model(tiny, PRIOR_TINY_BUILDERS) == str(Path(tiny).resolve())
    assert resolve_model("kandinsky-community/kandinsky-2-2-prior", PRIOR_TINY_BUILDERS) == (
        "kandinsky-community/kandinsky-2-2-prior"
    )


def test_text_side_loads_bit_exactly_twice_and_matches_golden() -> None:
    first = load_text_side("tiny", CPU, F32).encode(["a red cube", "two dogs"])
    second = load_text_side(str(tiny_kandinsky_prior_dir()), CPU, F32).encode(["a red cube", "two dogs"])
    assert torch.equal(first.text_embeds, second.text_embeds)
    assert torch.equal(first.last_hidden_state, second.last_hidden_state)
    assert first.text_embeds[0, :4].tolist() == pytest.approx(GOLDEN_TEXT_EMBEDS_A_RED_CUBE, abs=GOLDEN_ATOL)


def test_text_encoding_shapes_mask_and_eos_pooling() -> None:
    text_side = load_text_side("tiny", CPU, F32)
    texts = ["a red cube", "two dogs on a sofa"]
    encoding = text_side.encode(texts)
    assert encoding.text_embeds.shape == (2, 32)
    assert encoding.last_hidden_state.shape == (2, 77, 32)
    assert encoding.attention_mask.dtype == torch.bool and encoding.attention_mask.shape == (2, 77)
    # Tiny tokenizer: one token per character (spaces only split words), plus BOS and EOS.
    assert encoding.attention_mask.sum(dim=1).tolist() == [len(text.replace(" ", "")) + 2 for text in texts]
    # text_embeds is the projection of the state at the (first) EOS token: the pipeline's pooling.
    eos_positions = encoding.attention_mask.sum(dim=1) - 1
    pooled = encoding.last_hidden_state[torch.arange(2), eos_positions]
    projected = text_side.text_encoder.text_projection(pooled)
    torch.testing.assert_close(encoding.text_embeds, projected, rtol=0, atol=1e-6)


def test_prior_pipeline_loads_with_and_without_its_image_processor() -> None:
    pipeline = load_prior_pipeline("tiny", CPU, F32)
    assert pipeline.image_processor is None
    assert not pipeline.prior.training and not pipeline.text_encoder.training
    assert pipeline.tokenizer.model_max_length == pipeline.prior.config.num_embeddings == 77
    # The saved folder is complete: a plain from_pretrained (as a user would call it) loads it too.
    complete = KandinskyV22PriorPipeline.from_pretrained(tiny_kandinsky_prior_dir(), local_files_only=True)
    assert complete.image_processor is not None


def test_zero_image_embeds_match_the_image_encoder_and_are_cached(tmp_path: Path) -> None:
    folder = _copy_prior_folder(tmp_path)
    image_encoder = load_image_encoder(str(folder), CPU, F32)
    size = image_encoder.config.image_size
    with torch.no_grad():
        direct = image_encoder(pixel_values=torch.zeros(1, 3, size, size)).image_embeds
    cached_files_before = set((cache_dir() / "zero-image-embeds").glob("*.safetensors"))
    embeds = zero_image_embeds(str(folder), CPU, F32)
    assert embeds.shape == (1, 32) and embeds.dtype == F32 and embeds.device == CPU
    assert torch.equal(embeds, direct)
    assert embeds[0, :4].tolist() == pytest.approx(GOLDEN_ZERO_IMAGE_EMBEDS, abs=GOLDEN_ATOL)
    new_files = set((cache_dir() / "zero-image-embeds").glob("*.safetensors")) - cached_files_before
    assert len(new_files) == 1

    # Warm disk cache: replace the image encoder's weights by garbage of the same size and time, so any attempt to
    # load the encoder would fail, while the cache key (names, sizes, times) stays the same.
    weights = folder / "image_encoder" / "model.safetensors"
    stat = weights.stat()
    weights.write_bytes(b"\0" * stat.st_size)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    clear_zero_image_embeds_memo()
    assert torch.equal(zero_image_embeds(str(folder), CPU, F32), embeds)
    with pytest.raises(ModelLoadError):
        load_image_encoder(str(folder), CPU, F32)


@pytest.mark.parametrize("corruption", ["garbage", "nan", "wrong-shape"])
def test_corrupt_zero_image_cache_is_recomputed(tmp_path: Path, corruption: str) -> None:
    folder = str(_copy_prior_folder(tmp_path))
    before = set((cache_dir() / "zero-image-embeds").glob("*.safetensors"))
    expected = zero_image_embeds(folder, CPU, F32)
    (cache_file,) = set((cache_dir() / "zero-image-embeds").glob("*.safetensors")) - before
    if corruption == "garbage":
        cache_file.write_bytes(b"not a safetensors file")
    elif corruption == "nan":
        save_file({"zero_image_embeds": torch.full((1, 32), float("nan"))}, cache_file)
    else:
        save_file({"zero_image_embeds": torch.zeros(1, 31)}, cache_file)
    clear_zero_image_embeds_memo()
    assert torch.equal(zero_image_embeds(folder, CPU, F32), expected)
    # The bad file was replaced by a good one.
    clear_zero_image_embeds_memo()
    assert torch.equal(zero_image_embeds(folder, CPU, F32), expected)


def test_zero_image_embeds_key_on_dtype(tmp_path: Path) -> None:
    folder = str(_copy_prior_folder(tmp_path))
    before = set((cache_dir() / "zero-image-embeds").glob("*.safetensors"))
    float32 = zero_image_embeds(folder, CPU, F32)
    bfloat16 = zero_image_embeds(folder, CPU, torch.bfloat16)
    assert bfloat16.dtype == F32  # always returned as float32
    assert len(set((cache_dir() / "zero-image-embeds").glob("*.safetensors")) - before) == 2
    assert not torch.equal(bfloat16, float32)  # computed anew in bfloat16, not the float32 file reused
    # Same direction (measured cosine 0.9995); bfloat16 rounding moves single values by up to 0.3.
    assert torch.nn.functional.cosine_similarity(bfloat16, float32).item() > 0.99


def test_load_pretrained_missing_local_folder(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ModelLoadError, match="does not exist") as error:
        load_pretrained(KandinskyV22PriorPipeline, missing)
    assert missing in str(error.value)


def test_load_pretrained_unknown_hub_id_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as error:
        load_pretrained(KandinskyV22PriorPipeline, "ovi-bench-tests/no-such-model")
    message = str(error.value)
    assert "ovi-bench-tests/no-such-model" in message
    assert "hf download ovi-bench-tests/no-such-model" in message
    assert "HF_HUB_OFFLINE=1" in message and "local" in message


@pytest.mark.parametrize("missing", ["text_encoder", "text_encoder/model.safetensors", "tokenizer"])
def test_load_text_side_from_an_incomplete_folder(tmp_path: Path, missing: str) -> None:
    folder = _copy_prior_folder(tmp_path)
    path = folder / missing
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    # Without a check, transformers 5 would load an empty tokenizer (special tokens only) without complaint.
    with pytest.raises(ModelLoadError, match="incomplete or corrupt") as error:
        load_text_side(str(folder), CPU, F32)
    assert str(folder) in str(error.value)


def test_zero_image_embeds_of_an_uncached_hub_model_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="hf download ovi-bench-tests/no-such-model"):
        zero_image_embeds("ovi-bench-tests/no-such-model", CPU, F32)


def test_load_pretrained_refuses_remote_code() -> None:
    with pytest.raises(ModelLoadError, match="remote code"):
        load_pretrained(KandinskyV22PriorPipeline, str(tiny_kandinsky_prior_dir()), trust_remote_code=True)


def test_tiny_image_tower_can_be_steered_to_a_text_direction() -> None:
    # Optimisation-based priors (OVI) need an image tower whose output can reach a text embedding's direction.
    # Optimising the 16 patches' pixels is as expressive as optimising 16 pseudo-tokens; measured: cosine >= 0.97 for
    # every prompt after 50 Adam steps. diffusers' own test tower stalls at 0.5-0.8.
    text_embeds = load_text_side("tiny", CPU, F32).encode(["a red cube", "two dogs"]).text_embeds
    image_encoder = load_image_encoder("tiny", CPU, F32)
    image_encoder.requires_grad_(False)
    size = image_encoder.config.image_size
    pixels = (
        0.1 * torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    ).requires_grad_()
    optimizer = torch.optim.Adam([pixels], lr=5e-2)
    for _ in range(60):
        cosine = torch.nn.functional.cosine_similarity(
            image_encoder(pixel_values=pixels).image_embeds, text_embeds
        )
        optimizer.zero_grad()
        (1 - cosine).mean().backward()
        optimizer.step()
    assert cosine.min().item() >= 0.95
