"""The `imagereward` metric: ImageReward's release layout converted onto transformers' BLIP towers.

The tiny checkpoint is written in the release's key layout (ImageReward.pt + med_config.json) and loaded back through
the same conversion as the real one; `_original_rewards` recomputes the rewards from that file by hand, as the
authors' timm ViT and BLIP `med.py` compute them, independently of transformers.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import ValidationError
from transformers import BertTokenizer, BlipTextModel, BlipVisionModel

from ovi_bench.components import build_component
from ovi_bench.errors import ModelLoadError
from ovi_bench.metrics.base import ScoreInput
from ovi_bench.metrics.imagereward import ImageRewardMetric, ImageRewardParams
from ovi_bench.models.aesthetic import AestheticMLP
from ovi_bench.models.clip import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from ovi_bench.models.imagereward import (
    IMAGEREWARD_CHECKPOINT,
    IMAGEREWARD_ID,
    IMAGEREWARD_MEAN,
    IMAGEREWARD_STD,
    MED_CONFIG,
    pixel_values,
    text_config_of,
    tiny_imagereward_dir,
    vision_config_of,
)
from ovi_bench.registry import METRICS

CPU = torch.device("cpu")
PROMPTS = ["a red cube", "two cats on the table near a blue car", "a green tree", "three small dogs"]
LONG_PROMPT = " ".join(["a big red cube on a small blue table"] * 6)


def _images(count: int) -> list[Image.Image]:
    # Mixed sizes: square, portrait and a 231x224 landscape whose centre crop needs torchvision's rounding.
    sizes = [(48, 48), (40, 56), (231, 224), (64, 48)]
    return [
        Image.fromarray(np.random.default_rng(index).integers(0, 256, (h, w, 3), dtype=np.uint8))
        for index, (w, h) in zip(range(count), sizes * 2, strict=False)
    ]


def _inputs(images: list[Image.Image], prompts: list[str]) -> list[ScoreInput]:
    return [ScoreInput(image, prompt, "color") for image, prompt in zip(images, prompts, strict=True)]


@pytest.fixture(scope="module")
def metric() -> ImageRewardMetric:
    return ImageRewardMetric(
        ImageRewardParams(checkpoint="tiny", tokenizer="tiny"), device=CPU, dtype=torch.float32
    )


def _layer_norm(x: torch.Tensor, state: dict[str, torch.Tensor], name: str, eps: float) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], state[f"{name}.weight"], state[f"{name}.bias"], eps)


def _linear(x: torch.Tensor, state: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    return F.linear(x, state[f"{name}.weight"], state[f"{name}.bias"])


def _attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int, mask: torch.Tensor | float
):
    batch, length, width = query.shape
    split = [t.reshape(batch, t.shape[1], heads, width // heads).transpose(1, 2) for t in (query, key, value)]
    scores = split[0] @ split[1].transpose(-1, -2) / (width // heads) ** 0.5 + mask
    return (scores.softmax(-1) @ split[2]).transpose(1, 2).reshape(batch, length, width)


def _original_vit(state: dict[str, torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
    """BLIP's timm ViT (`vit.py`): patch conv, [CLS], positions, pre-norm blocks (eps 1e-6), final norm."""
    prefix = "blip.visual_encoder."
    s = {key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)}
    patch = s["patch_embed.proj.weight"].shape[-1]
    x = F.conv2d(pixels, s["patch_embed.proj.weight"], s["patch_embed.proj.bias"], stride=patch)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([s["cls_token"].expand(len(x), -1, -1), x], dim=1) + s["pos_embed"]
    width = x.shape[-1]
    heads = width // 64
    depth = len({key.split(".")[1] for key in s if key.startswith("blocks.")})
    for block in range(depth):
        b = f"blocks.{block}."
        h = _layer_norm(x, s, b + "norm1", 1e-6)
        qkv = _linear(h, s, b + "attn.qkv").reshape(len(x), x.shape[1], 3, width)
        x = x + _linear(_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], heads, 0.0), s, b + "attn.proj")
        h = _layer_norm(x, s, b + "norm2", 1e-6)
        x = x + _linear(F.gelu(_linear(h, s, b + "mlp.fc1")), s, b + "mlp.fc2")
    return _layer_norm(x, s, "norm", 1e-6)


def _original_rewards(folder: Path, images: list[Image.Image], prompts: list[str]) -> np.ndarray:
    """ImageReward.score by hand from the release files: ViT, BLIP med BERT with cross-attention, [CLS], MLP."""
    state = torch.load(folder / IMAGEREWARD_CHECKPOINT, map_location="cpu", weights_only=True)
    med = json.loads((folder / MED_CONFIG).read_text())
    tokenizer = BertTokenizer.from_pretrained(folder / "tokenizer")
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    tokens = tokenizer(prompts, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
    patch = state["blip.visual_encoder.patch_embed.proj.weight"].shape[-1]
    image_size = round((state["blip.visual_encoder.pos_embed"].shape[1] - 1) ** 0.5) * patch
    with torch.no_grad():
        image_embeds = _original_vit(state, pixel_values(images, image_size))
        prefix = "blip.text_encoder."
        s = {key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)}
        ids = tokens["input_ids"]
        x = (
            s["embeddings.word_embeddings.weight"][ids]
            + s["embeddings.position_embeddings.weight"][: ids.shape[1]]
        )
        x = _layer_norm(x, s, "embeddings.LayerNorm", med["layer_norm_eps"])
        mask = (1.0 - tokens["attention_mask"][:, None, None, :].float()) * -10000.0
        heads, eps = med["num_attention_heads"], med["layer_norm_eps"]
        for layer in range(med["num_hidden_layers"]):
            p = f"encoder.layer.{layer}."
            for kind, keys_from, layer_mask in (
                ("attention", None, mask),
                ("crossattention", image_embeds, 0.0),
            ):
                source = x if keys_from is None else keys_from
                context = _attention(
                    _linear(x, s, p + kind + ".self.query"),
                    _linear(source, s, p + kind + ".self.key"),
                    _linear(source, s, p + kind + ".self.value"),
                    heads,
                    layer_mask,
                )
                x = _layer_norm(
                    _linear(context, s, p + kind + ".output.dense") + x,
                    s,
                    p + kind + ".output.LayerNorm",
                    eps,
                )
            hidden = F.gelu(_linear(x, s, p + "intermediate.dense"))
            x = _layer_norm(_linear(hidden, s, p + "output.dense") + x, s, p + "output.LayerNorm", eps)
        reward = x[:, 0, :]
        for index in (0, 2, 4, 6, 7):
            reward = _linear(reward, state, f"mlp.layers.{index}")
    return ((reward.squeeze(-1) - IMAGEREWARD_MEAN) / IMAGEREWARD_STD).numpy()


def test_registered() -> None:
    assert METRICS.get("imagereward") is ImageRewardMetric


def test_converted_model_equals_the_original_forward(metric: ImageRewardMetric) -> None:
    images = _images(4)
    rows = metric.score(_inputs(images, PROMPTS))
    expected = _original_rewards(tiny_imagereward_dir(), images, PROMPTS)
    np.testing.assert_allclose([row.score for row in rows], expected, atol=2e-5)
    # The rewards depend on the image and on the prompt.
    assert len({round(row.score, 5) for row in rows}) == 4
    other_prompt = metric.score(_inputs(images[:1], PROMPTS[1:2]))[0].score
    assert abs(other_prompt - rows[0].score) > 1e-4


def test_preprocessing_is_torchvisions_resize_and_centre_crop() -> None:
    image = _images(3)[
        2
    ]  # 231x224: short side already 224, crop left = round(3.5) = 4 (the CLIP processor: 3)
    pixels = pixel_values([image], 224)[0]
    array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[:, :, 4:228]
    expected = (array - torch.tensor(OPENAI_CLIP_MEAN)[:, None, None]) / torch.tensor(OPENAI_CLIP_STD)[
        :, None, None
    ]
    torch.testing.assert_close(pixels, expected, atol=1e-6, rtol=0)


def test_batch_composition_does_not_change_a_score(metric: ImageRewardMetric) -> None:
    images = _images(4)
    together = [row.score for row in metric.score(_inputs(images, PROMPTS))]
    alone = [
        metric.score(_inputs([image], [prompt]))[0].score
        for image, prompt in zip(images, PROMPTS, strict=True)
    ]
    reversed_order = [row.score for row in metric.score(_inputs(images[::-1], PROMPTS[::-1]))][::-1]
    np.testing.assert_allclose(together, alone, atol=1e-6)
    np.testing.assert_allclose(together, reversed_order, atol=1e-6)
    assert metric.score([]) == []


def test_deterministic_across_loads(metric: ImageRewardMetric) -> None:
    again = ImageRewardMetric(
        ImageRewardParams(checkpoint="tiny", tokenizer="tiny"), device=CPU, dtype=torch.float32
    )
    inputs = _inputs(_images(2), PROMPTS[:2])
    assert [row.score for row in again.score(inputs)] == [row.score for row in metric.score(inputs)]


def test_reasons(metric: ImageRewardMetric) -> None:
    short, long = metric.score(_inputs(_images(2), [PROMPTS[0], LONG_PROMPT]))
    assert short.reason == f"ImageReward {short.score:+.3f}"
    assert long.reason.startswith(f"ImageReward {long.score:+.3f} (prompt truncated to 35 of its ")


def _release_copy(tmp_path: Path, state: dict[str, torch.Tensor]) -> Path:
    folder = tmp_path / "release"
    folder.mkdir()
    torch.save(state, folder / IMAGEREWARD_CHECKPOINT)
    shutil.copy(tiny_imagereward_dir() / MED_CONFIG, folder / MED_CONFIG)
    return folder


def _tiny_state() -> dict[str, torch.Tensor]:
    return torch.load(tiny_imagereward_dir() / IMAGEREWARD_CHECKPOINT, map_location="cpu", weights_only=True)


def _metric(checkpoint: str) -> ImageRewardMetric:
    return ImageRewardMetric(
        ImageRewardParams(checkpoint=checkpoint, tokenizer="tiny"), device=CPU, dtype=torch.float32
    )


def test_a_missing_key_is_named(tmp_path: Path) -> None:
    state = _tiny_state()
    del state["blip.visual_encoder.blocks.1.attn.qkv.weight"]
    with pytest.raises(
        ModelLoadError, match=r"missing \['blip\.visual_encoder\.blocks\.1\.attn\.qkv\.weight'\]"
    ):
        _metric(str(_release_copy(tmp_path, state)))


def test_an_unexpected_key_is_named(tmp_path: Path) -> None:
    state = _tiny_state() | {"blip.itm_head.weight": torch.zeros(2, 32)}
    with pytest.raises(ModelLoadError, match=r"unexpected keys \['blip\.itm_head\.weight'\]"):
        _metric(str(_release_copy(tmp_path, state)))
    text_extra = _tiny_state() | {"blip.text_encoder.pooler.dense.weight": torch.zeros(32, 32)}
    shutil.rmtree(tmp_path / "release")
    with pytest.raises(ModelLoadError, match=r"unexpected \['blip\.text_encoder\.pooler\.dense\.weight'\]"):
        _metric(str(_release_copy(tmp_path, text_extra)))


class PickledPayload:
    """Not a tensor: torch.load(weights_only=True) must refuse to rebuild it."""


def test_a_pickle_with_objects_is_refused(tmp_path: Path) -> None:
    folder = _release_copy(tmp_path, _tiny_state() | {"payload": PickledPayload()})  # type: ignore[dict-item]
    with pytest.raises(ModelLoadError, match=r"(?s)weights_only=True.*convert other files to \.safetensors"):
        _metric(str(folder / IMAGEREWARD_CHECKPOINT))


def test_safetensors_file_and_folder_forms_agree(metric: ImageRewardMetric, tmp_path: Path) -> None:
    folder = tmp_path / "converted"
    folder.mkdir()
    shutil.copy(tiny_imagereward_dir() / MED_CONFIG, folder / MED_CONFIG)
    safetensors.torch.save_file(
        {k: v.contiguous() for k, v in _tiny_state().items()}, folder / "ImageReward.safetensors"
    )
    inputs = _inputs(_images(1), PROMPTS[:1])
    expected = metric.score(inputs)[0].score
    assert _metric(str(folder)).score(inputs)[0].score == expected
    assert _metric(str(folder / "ImageReward.safetensors")).score(inputs)[0].score == expected
    (folder / MED_CONFIG).unlink()
    with pytest.raises(ModelLoadError, match=r"no med_config\.json beside"):
        _metric(str(folder))


def test_params_validation() -> None:
    assert (
        ImageRewardParams().checkpoint == IMAGEREWARD_ID
        and ImageRewardParams().tokenizer == "bert-base-uncased"
    )
    with pytest.raises(ValidationError, match='"tiny" go together'):
        ImageRewardParams(checkpoint="tiny")
    with pytest.raises(ValidationError, match='"tiny" go together'):
        ImageRewardParams(tokenizer="tiny")
    with pytest.raises(ValidationError):
        ImageRewardParams(checkpoint="")
    with pytest.raises(ValidationError):
        ImageRewardParams.model_validate({"checkpoint": "tiny", "tokenizer": "tiny", "dtype": "float16"})
    built = build_component(
        ImageRewardMetric, {"checkpoint": "tiny", "tokenizer": "tiny"}, device=CPU, dtype=torch.float32
    )
    assert isinstance(built, ImageRewardMetric)


def test_declared_needs(tmp_path: Path) -> None:
    hub = ImageRewardMetric.required_models(ImageRewardParams())
    assert [(need.ref, need.files) for need in hub] == [
        ("bert-base-uncased", ("vocab.txt|tokenizer.json",)),
        (IMAGEREWARD_ID, ("ImageReward.pt|ImageReward.safetensors", "med_config.json")),
    ]
    file_params = ImageRewardParams(checkpoint=str(tmp_path / "ImageReward.pt"))
    assert [need.ref for need in ImageRewardMetric.required_models(file_params)] == ["bert-base-uncased"]
    files = ImageRewardMetric.required_files(file_params)
    assert [(need.path, need.contains) for need in files] == [
        (str(tmp_path / "ImageReward.pt"), None),
        (str(tmp_path), "med_config.json"),
    ]


# BLIP's med config as the authors' repository holds it (train/src/config/med_config.json, 485 bytes, the size of the
# hub's med_config.json).
RELEASE_MED_CONFIG = {
    "architectures": ["BertModel"],
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "model_type": "bert",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 0,
    "type_vocab_size": 2,
    "vocab_size": 30524,
    "encoder_width": 768,
    "add_cross_attention": True,
}


def test_release_shapes_give_blip_vit_l_and_the_release_size(tmp_path: Path) -> None:
    """The configs derived from the release's shapes (on the meta device, no weights) are BLIP ViT-L/16 at 224 px and
    the med BERT cross-attending to 1024-wide states; their tensors, with the unused projections, add up to the
    1.79 GB of ImageReward.pt on the hub (float32)."""
    shapes = {
        "embeddings.class_embedding": (1, 1, 1024),
        "embeddings.patch_embedding.weight": (1024, 3, 16, 16),
        "embeddings.position_embedding": (1, 197, 1024),
        "encoder.layers.0.mlp.fc1.weight": (4096, 1024),
    } | {f"encoder.layers.{index}.layer_norm1.weight": (1024,) for index in range(24)}
    vision_config = vision_config_of({k: torch.empty(v, device="meta") for k, v in shapes.items()}, "release")
    assert (vision_config.num_attention_heads, vision_config.image_size, vision_config.patch_size) == (
        16,
        224,
        16,
    )
    assert (vision_config.num_hidden_layers, vision_config.layer_norm_eps) == (24, 1e-6)
    (tmp_path / MED_CONFIG).write_text(json.dumps(RELEASE_MED_CONFIG))
    text_config = text_config_of(tmp_path / MED_CONFIG, vision_config.hidden_size)
    assert (text_config.encoder_hidden_size, text_config.num_attention_heads, text_config.vocab_size) == (
        1024,
        12,
        30524,
    )
    with torch.device("meta"):
        modules = (
            BlipVisionModel(vision_config),
            BlipTextModel(text_config, add_pooling_layer=False),
            AestheticMLP(768),
        )
    assert any("crossattention" in key for key in modules[1].state_dict())
    numbers = sum(tensor.numel() for module in modules for tensor in module.state_dict().values())
    numbers += (1024 + 1) * 256 + (768 + 1) * 256  # blip.vision_proj, blip.text_proj
    assert 1.78e9 < 4 * numbers < 1.795e9


@pytest.mark.weights
def test_real_weights_reproduce_the_published_example() -> None:
    """The README's example: THUDM/ImageReward's assets/images/1-4.webp and its prompt give 0.58, 0.27, -1.41,
    -2.03. Set OVI_BENCH_IMAGEREWARD_ASSETS to a folder holding those four images (from the authors' repository)."""
    assets = os.environ.get("OVI_BENCH_IMAGEREWARD_ASSETS")
    if not assets:
        pytest.skip("set OVI_BENCH_IMAGEREWARD_ASSETS to THUDM/ImageReward's assets/images folder")
    prompt = "a painting of an ocean with clouds and birds, day time, low depth field effect"
    images = [Image.open(Path(assets) / f"{index}.webp") for index in range(1, 5)]
    metric = ImageRewardMetric(ImageRewardParams(), device=CPU, dtype=torch.float32)
    scores = [row.score for row in metric.score(_inputs(images, [prompt] * 4))]
    np.testing.assert_allclose(
        scores, [0.5811622738838196, 0.2745276093482971, -1.4131819009780884, -2.029569625854492], atol=2e-3
    )
