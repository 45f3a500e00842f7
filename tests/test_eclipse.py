"""The eclipse prior on a tiny ECLIPSE-format checkpoint, saved and loaded through the real loading path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from diffusers import PriorTransformer
from pydantic import ValidationError
from safetensors import safe_open
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    CLIPVisionConfig,
)

from ovi_bench.errors import ModelLoadError, OviBenchError
from ovi_bench.models.clip import tiny_tokenizer
from ovi_bench.models.eclipse import (
    ECLIPSE_KANDINSKY22_PRIOR_ID,
    EclipsePriorTransformer,
    load_eclipse_prior_transformer,
    refuse_eclipse_checkpoint,
    tiny_eclipse_prior_dir,
)
from ovi_bench.models.kandinsky import load_text_side, tiny_kandinsky_prior_dir, zero_image_embeds
from ovi_bench.priors.base import Prior
from ovi_bench.priors.eclipse import EclipsePrior
from ovi_bench.provenance import write_results
from ovi_bench.registry import PRIORS
from ovi_bench.runner import Runner, seeded_generators
from ovi_bench.spec import parse_spec

CPU = torch.device("cpu")
F32 = torch.float32
TEXTS = ["a red cube", "two dogs on a sofa", "a blue sphere left of a green cone"]

# Generated once from the saved tiny checkpoint on CPU, float32 ("a red cube", seed 0). 1e-4 leaves room for BLAS
# and thread-count differences and still catches any real change.
GOLDEN_ECLIPSE_A_RED_CUBE_SEED_0 = [0.2276787, 0.0820407, 0.2945274, -0.4566645]
GOLDEN_ATOL = 1e-4

# A prompt's embedding alone vs. in a batch of three: measured up to 2.4e-7 over 20 batches (batched matmuls round
# differently).
BATCH_ATOL = 1e-5


@pytest.fixture(scope="module")
def eclipse_prior() -> EclipsePrior:
    return EclipsePrior(EclipsePrior.Params(checkpoint="tiny", model="tiny"), device=CPU, dtype=F32)


def test_eclipse_is_registered() -> None:
    assert "eclipse" in PRIORS.names()
    assert PRIORS.get("eclipse") is EclipsePrior and issubclass(EclipsePrior, Prior)


def test_tiny_checkpoint_has_the_real_checkpoints_format() -> None:
    folder = tiny_eclipse_prior_dir()
    assert sorted(path.name for path in folder.iterdir()) == [
        "config.json",
        "diffusion_pytorch_model.safetensors",
    ]
    config = json.loads((folder / "config.json").read_text())
    # The real config.json names the stock class, has 3 additional embeddings and no time-embedding settings.
    assert config["_class_name"] == "PriorTransformer"
    assert config["additional_embeddings"] == 3
    assert not {"time_embed_act_fn", "time_embed_dim"} & set(config)
    # Same weight names as the stock class with the same shape, minus the time embedding.
    with safe_open(folder / "diffusion_pytorch_model.safetensors", framework="pt") as stored:
        names = set(stored.keys())
    shape = {key: value for key, value in config.items() if not key.startswith("_")}
    stock_names = set(PriorTransformer(**shape).state_dict())
    assert names == {name for name in stock_names if not name.startswith("time_embedding.")}


def test_eclipse_prior_matches_golden(eclipse_prior: EclipsePrior) -> None:
    output = eclipse_prior.embed(["a red cube"], seeded_generators([0]))
    assert output.image_embeds.shape == (1, 32)
    assert output.image_embeds.dtype == F32 and output.image_embeds.device == CPU
    assert output.image_embeds[0, :4].tolist() == pytest.approx(
        GOLDEN_ECLIPSE_A_RED_CUBE_SEED_0, abs=GOLDEN_ATOL
    )


def test_eclipse_prior_seeds(eclipse_prior: EclipsePrior) -> None:
    first = eclipse_prior.embed(TEXTS[:2], seeded_generators([0, 1])).image_embeds
    again = eclipse_prior.embed(TEXTS[:2], seeded_generators([0, 1])).image_embeds
    other = eclipse_prior.embed(TEXTS[:2], seeded_generators([2, 3])).image_embeds
    assert torch.equal(first, again)
    assert not torch.allclose(first, other, atol=1e-3)


def test_eclipse_prior_batch_composition(eclipse_prior: EclipsePrior) -> None:
    batched = eclipse_prior.embed(TEXTS, seeded_generators([10, 11, 12])).image_embeds
    for index, text in enumerate(TEXTS):
        alone = eclipse_prior.embed([text], seeded_generators([10 + index])).image_embeds
        torch.testing.assert_close(alone[0], batched[index], rtol=0, atol=BATCH_ATOL)


@pytest.mark.parametrize(
    "ignored",
    [{"steps": 1}, {"steps": 50}, {"guidance": 0.0}, {"guidance": 7.5}, {"steps": 5, "guidance": 4.0}],
)
def test_steps_and_guidance_do_not_change_the_output(eclipse_prior: EclipsePrior, ignored: dict) -> None:
    changed = EclipsePrior(
        EclipsePrior.Params(checkpoint="tiny", model="tiny", **ignored), device=CPU, dtype=F32
    )
    default = eclipse_prior.embed(TEXTS, seeded_generators([0, 1, 2]))
    other = changed.embed(TEXTS, seeded_generators([0, 1, 2]))
    assert torch.equal(default.image_embeds, other.image_embeds)
    assert torch.equal(default.negative_image_embeds, other.negative_image_embeds)


def test_negative_is_the_zero_image_embedding(eclipse_prior: EclipsePrior) -> None:
    output = eclipse_prior.embed(TEXTS[:2], seeded_generators([0, 1]))
    assert torch.equal(output.negative_image_embeds, zero_image_embeds("tiny", CPU, F32).repeat(2, 1))


def reference_forward(
    prior: PriorTransformer,
    noise: torch.Tensor,
    text_embeds: torch.Tensor,
    text_states: torch.Tensor,
    text_mask: torch.Tensor,
    order: tuple[str, ...] = ("text", "proj", "noisy", "prd"),
) -> torch.Tensor:
    """ECLIPSE's forward as described, written from the sub-modules: tokens [77 text, proj, noisy, prd] + positions,
    each token sees itself, the tokens before it and no text padding; the output is read at the last token."""
    batch_size = noise.shape[0]
    parts = {
        "text": prior.encoder_hidden_states_proj(text_states),
        "proj": prior.embedding_proj(text_embeds)[:, None],
        "noisy": prior.proj_in(noise)[:, None],
        "prd": prior.prd_embedding.expand(batch_size, -1, -1),
    }
    tokens = torch.cat([parts[name] for name in order], dim=1) + prior.positional_embedding
    length = tokens.shape[1]
    visible_keys = torch.cat(
        [text_mask, torch.ones(batch_size, length - text_mask.shape[1], dtype=torch.bool)], 1
    )
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    allowed = causal[None] & visible_keys[:, None, :]  # [B, query, key]
    # Additive masks: the stock class adds -10000 per reason a key is hidden (padding and causality add up).
    bias = (~causal).float()[None] * -10000.0 + (~visible_keys).float()[:, None, :] * -10000.0
    assert torch.equal(bias == 0, allowed)
    bias = bias.repeat_interleave(prior.config.num_attention_heads, dim=0)
    for block in prior.transformer_blocks:
        tokens = block(tokens, attention_mask=bias)
    return prior.proj_to_clip_embeddings(prior.norm_out(tokens)[:, -1])


def test_embed_is_one_forward_pass_with_the_documented_token_order(eclipse_prior: EclipsePrior) -> None:
    texts = TEXTS[:1]
    output = eclipse_prior.embed(texts, seeded_generators([0]))
    # What ECLIPSE's pipeline does for one prompt: randn(B, D) from the generator, the prompt's text_embeds, last
    # hidden state and mask, one forward pass, and nothing after it.
    noise = torch.randn(1, 32, generator=torch.Generator().manual_seed(0))
    encoding = load_text_side("tiny", CPU, F32).encode(texts)
    prior = eclipse_prior.prior
    arguments = (noise, encoding.text_embeds, encoding.last_hidden_state, encoding.attention_mask)
    with torch.no_grad():
        expected = reference_forward(prior, *arguments)
        swapped = reference_forward(prior, *arguments, order=("text", "noisy", "proj", "prd"))
    torch.testing.assert_close(output.image_embeds, expected, rtol=0, atol=1e-6)
    # The check has power: the tiny checkpoint's positions make the token order matter.
    assert not torch.allclose(expected, swapped, atol=1e-3)
    # No clip_mean/clip_std post-processing (the tiny checkpoint's clip_mean is nonzero).
    assert not torch.allclose(output.image_embeds, prior.post_process_latents(expected), atol=1e-3)


def test_stock_class_silently_leaves_the_time_embedding_uninitialised() -> None:
    """The trap the guard exists for: diffusers loads an ECLIPSE checkpoint into its stock class without an error."""
    stock = PriorTransformer.from_pretrained(tiny_eclipse_prior_dir())
    assert {name for name, parameter in stock.named_parameters() if parameter.is_meta} == {
        "time_embedding.linear_1.weight",
        "time_embedding.linear_1.bias",
        "time_embedding.linear_2.weight",
        "time_embedding.linear_2.bias",
    }


def test_stock_class_guard_refuses_an_eclipse_checkpoint() -> None:
    folder = str(tiny_eclipse_prior_dir())
    with pytest.raises(
        ModelLoadError, match=r"ECLIPSE-format.*additional_embeddings = 3.*Use the `eclipse` prior"
    ):
        refuse_eclipse_checkpoint(folder, subfolder="")
    refuse_eclipse_checkpoint(str(tiny_kandinsky_prior_dir()), subfolder="prior")  # a stock prior passes


def test_stock_class_guard_needs_only_the_config(tmp_path: Path) -> None:
    # A hub checkpoint whose weights are not downloaded yet: config.json alone decides, no weights are read.
    shutil.copy(tiny_eclipse_prior_dir() / "config.json", tmp_path / "config.json")
    with pytest.raises(ModelLoadError, match="Use the `eclipse` prior"):
        refuse_eclipse_checkpoint(str(tmp_path), subfolder="")


def test_eclipse_loader_refuses_a_diffusion_prior_checkpoint() -> None:
    kandinsky = str(tiny_kandinsky_prior_dir())
    with pytest.raises(
        ModelLoadError, match=r"not an ECLIPSE-format.*additional_embeddings = 4.*time_embedding"
    ):
        load_eclipse_prior_transformer(kandinsky, CPU, F32, subfolder="prior")
    with pytest.raises(ModelLoadError, match="is a pipeline folder"):
        EclipsePrior(EclipsePrior.Params(checkpoint=kandinsky, model="tiny"), device=CPU, dtype=F32)
    with pytest.raises(ModelLoadError, match=r"use the `kandinsky-2\.2` prior"):
        EclipsePrior(
            EclipsePrior.Params(checkpoint=f"{kandinsky}/prior", model="tiny"), device=CPU, dtype=F32
        )


def test_eclipse_loader_gives_our_class_from_the_folder_root() -> None:
    prior = load_eclipse_prior_transformer("tiny", CPU, F32)
    assert type(prior) is EclipsePriorTransformer and not prior.training
    assert not hasattr(prior, "time_embedding") and not hasattr(prior, "time_proj")


def test_missing_checkpoint_offline_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=rf"hf download {ECLIPSE_KANDINSKY22_PRIOR_ID}"):
        EclipsePrior(EclipsePrior.Params(model="tiny"), device=CPU, dtype=F32)
    with pytest.raises(ModelLoadError, match="does not exist"):
        EclipsePrior(
            EclipsePrior.Params(checkpoint=str(tmp_path / "nowhere"), model="tiny"), device=CPU, dtype=F32
        )


def _save_text_model(folder: Path, hidden_size: int, projection_dim: int) -> None:
    """A CLIP text model with its tokenizer at the folder's root, as in laion/CLIP-ViT-bigG-14-laion2B-39B-b160k."""
    tokenizer = tiny_tokenizer()
    config = CLIPTextConfig(
        hidden_size=hidden_size,
        projection_dim=projection_dim,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=1,
        vocab_size=1000,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    CLIPTextModelWithProjection(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def test_configured_text_encoder_replaces_the_kandinsky_one(
    eclipse_prior: EclipsePrior, tmp_path: Path
) -> None:
    # The tiny Kandinsky prior's own text encoder and tokenizer, saved at a folder's root: the output must not change.
    text_side = load_text_side("tiny", CPU, F32)
    text_side.text_encoder.save_pretrained(tmp_path)
    text_side.tokenizer.save_pretrained(tmp_path)
    prior = EclipsePrior(
        EclipsePrior.Params(checkpoint="tiny", model="tiny", text_encoder=str(tmp_path)),
        device=CPU,
        dtype=F32,
    )
    assert prior.text_side.text_encoder.config.projection_dim == 32  # the checkpoint's width
    torch.testing.assert_close(
        prior.embed(TEXTS, seeded_generators([0, 1, 2])).image_embeds,
        eclipse_prior.embed(TEXTS, seeded_generators([0, 1, 2])).image_embeds,
        rtol=0,
        atol=0,
    )


def test_full_clip_repository_gives_its_text_side_with_the_checkpoints_projection(tmp_path: Path) -> None:
    # Like laion/CLIP-ViT-bigG-14-laion2B-39B-b160k: text and vision towers in one repository, the projection width
    # only in the top-level config (the text config says 512), which is why ECLIPSE passes projection_dim=1280.
    tokenizer = tiny_tokenizer()
    text_config = CLIPTextConfig(
        hidden_size=32,
        projection_dim=512,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=1,
        vocab_size=1000,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision_config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=1,
        image_size=32,
        patch_size=8,
    )
    torch.manual_seed(0)
    clip = CLIPModel(
        CLIPConfig(
            text_config=text_config.to_dict(), vision_config=vision_config.to_dict(), projection_dim=32
        )
    ).eval()
    clip.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    params = EclipsePrior.Params(checkpoint="tiny", model="tiny", text_encoder=str(tmp_path))
    prior = EclipsePrior(params, device=CPU, dtype=F32)
    text_encoder = prior.text_side.text_encoder
    assert text_encoder.config.projection_dim == 32
    assert torch.equal(text_encoder.text_projection.weight, clip.text_projection.weight)
    assert prior.embed(TEXTS[:1], seeded_generators([0])).image_embeds.shape == (1, 32)


@pytest.mark.parametrize(
    ("hidden_size", "projection_dim", "message"),
    [
        (16, 16, "has hidden size 16, but the ECLIPSE checkpoint needs 32"),
        (32, 16, "needs a text projection of width 32"),
    ],
)
def test_text_encoder_of_the_wrong_width_is_refused(
    tmp_path: Path, hidden_size: int, projection_dim: int, message: str
) -> None:
    _save_text_model(tmp_path, hidden_size=hidden_size, projection_dim=projection_dim)
    params = EclipsePrior.Params(checkpoint="tiny", model="tiny", text_encoder=str(tmp_path))
    with pytest.raises(ModelLoadError, match=message):
        EclipsePrior(params, device=CPU, dtype=F32)


@pytest.mark.parametrize("bad", [{"steps": 0}, {"guidance": -1.0}, {"scheduler": "ddpm"}, {"checkpoint": 3}])
def test_eclipse_prior_rejects_bad_params(bad: dict) -> None:
    with pytest.raises(ValidationError):
        EclipsePrior.Params(**bad)


def test_eclipse_prior_needs_one_generator_per_text(eclipse_prior: EclipsePrior) -> None:
    with pytest.raises(OviBenchError, match="2 texts but 1 generators"):
        eclipse_prior.embed(TEXTS[:2], seeded_generators([0]))


def test_runner_end_to_end_with_the_eclipse_prior(tmp_path: Path) -> None:
    spec = {
        "name": "tiny-eclipse",
        "device": "cpu",
        "images_per_prompt": 2,
        "prompts": {"source": "builtin", "categories": ["color", "spatial"], "limit": 1},
        "priors": [{"name": "eclipse", "params": {"checkpoint": "tiny", "model": "tiny"}}],
        "decoder": {"params": {"model": "tiny"}, "steps": 2, "height": 32, "width": 32},
        "metrics": [{"name": "clip", "params": {"model": "tiny"}}],
    }
    result = Runner(parse_spec(spec), tmp_path, show_progress=False).run()
    write_results(result)
    assert result.counts.images_generated == 2 * 1 * 2  # categories × prompts × seeds
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert set(zip(board.prior, board.category, strict=True)) == {
        ("eclipse", "color"),
        ("eclipse", "spatial"),
    }
    assert (board.n == 2).all() and board["mean"].between(-1, 1).all()


def test_kandinsky_prior_refuses_a_pipeline_folder_holding_an_eclipse_checkpoint(tmp_path: Path) -> None:
    from ovi_bench.priors.kandinsky import KandinskyPrior

    folder = tmp_path / "kandinsky-with-eclipse"
    shutil.copytree(tiny_kandinsky_prior_dir(), folder)
    shutil.rmtree(folder / "prior")
    shutil.copytree(tiny_eclipse_prior_dir(), folder / "prior")
    with pytest.raises(ModelLoadError, match="eclipse"):
        KandinskyPrior(KandinskyPrior.Params(model=str(folder)), device=CPU, dtype=F32)
