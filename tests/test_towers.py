"""The training-free priors in every embedding space: the towers of the H and L spaces (a whole CLIPModel, tiny here),
per-space defaults and banks, and `ovi-bench spaces` / `ovi-bench spaces check`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from command_line import run_main
from safetensors.torch import save_file
from tiny_runs import tiny_spec
from transformers import CLIPModel

from ovi_bench.bank.folder import EmbeddingBank
from ovi_bench.bank.tiny import tiny_bank_dir
from ovi_bench.components import stored_params
from ovi_bench.errors import DataError, SpecError
from ovi_bench.models.kandinsky import (
    KANDINSKY22_PRIOR_ID,
    PRIOR_IMAGE_ENCODER_FILES,
    PRIOR_TEXT_SIDE_FILES,
    tiny_image_encoder,
)
from ovi_bench.models.towers import (
    CLIP_TEXT_SIDE_FILES,
    load_towers_text_side,
    load_towers_vision,
    tiny_towers_dir,
    towers_zero_image_embeds,
)
from ovi_bench.priors.ovi import OVINearestNeighbourPrior, OVIPrior
from ovi_bench.priors.text_embedding import TextEmbeddingPrior
from ovi_bench.runner import seeded_generators
from ovi_bench.spaces import BIGG, DEFAULT_SPACE, SPACES, H, L
from ovi_bench.spec import parse_spec

CPU, F32 = torch.device("cpu"), torch.float32
TEXTS = ["a red cube", "two cats and a dog", "a 'quoted' café on the left of a tree"]
CLIP_SPACES = [H.name, L.name]

# Generated once from the saved tiny towers on CPU, float32: "a red cube", first four values.
GOLDEN_TEXT_EMBEDDING = {
    H.name: [-1.1037694, 0.3653949, 0.1688174, -1.9060472],
    L.name: [-0.6954329, 0.7151058, -0.1068088, 0.4428178],
}
GOLDEN_ZERO_IMAGE = {
    H.name: [-8.7677193, 3.3920095, 3.3653297, -3.3122270],
    L.name: [1.8491019, 1.5393919, -0.8573080, -5.0430479],
}
GOLDEN_OVI_20_STEPS_SEED_0 = {
    H.name: [-2.8010347, 0.9890709, 0.3967071, -4.3205795],
    L.name: [-2.4425735, 2.9769237, -0.3943222, 1.5827954],
}
GOLDEN_ATOL = 1e-4
# 20 Adam steps amplify the float rounding of the CPU's matrix kernels.
GOLDEN_OVI_ATOL = 1e-3


# --- parameters ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prior", [TextEmbeddingPrior, OVIPrior, OVINearestNeighbourPrior])
def test_the_model_defaults_to_the_towers_of_the_space(prior) -> None:
    assert prior.Params().model == KANDINSKY22_PRIOR_ID == BIGG.towers
    assert prior.embedding_space(prior.Params()) == DEFAULT_SPACE
    for space in SPACES.values():
        params = prior.Params(space=space.name)
        assert params.model == space.towers and prior.embedding_space(params) == space.name
    assert prior.Params(space=H.name, model="tiny").model == "tiny"
    # The default space stays out of the stored parameters, so specs written before spaces keep their fingerprints.
    assert "space" not in stored_params(prior.Params())
    assert stored_params(prior.Params(space=L.name))["space"] == L.name


def test_an_unknown_space_is_refused_with_the_nearest_name() -> None:
    with pytest.raises(ValueError, match="Did you mean 'clip-vit-l-14'"):
        OVIPrior.Params(space="clip-vit-l14")


def test_required_models_name_the_files_of_each_layout() -> None:
    (bigg,) = TextEmbeddingPrior.required_models(TextEmbeddingPrior.Params())
    assert bigg.files == PRIOR_TEXT_SIDE_FILES + PRIOR_IMAGE_ENCODER_FILES
    (clip,) = OVIPrior.required_models(OVIPrior.Params(space=H.name))
    assert clip.ref == H.towers and clip.files == CLIP_TEXT_SIDE_FILES
    assert {"config.json", "vocab.json|tokenizer.json"} <= set(clip.files)


def test_a_prior_in_the_h_space_is_refused_with_the_bigg_decoder() -> None:
    spec = tiny_spec(priors=[{"name": "ovi", "params": {"model": "tiny", "space": H.name, "steps": 2}}])
    with pytest.raises(SpecError) as refused:
        parse_spec(spec)
    assert H.name in str(refused.value) and BIGG.name in str(refused.value)


# --- the towers of a CLIPModel ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("space", CLIP_SPACES)
def test_the_towers_load_from_one_clip_model_with_the_top_level_projection(space: str) -> None:
    folder = tiny_towers_dir(space)
    whole = CLIPModel.from_pretrained(folder).eval()
    text_side = load_towers_text_side("tiny", space, CPU, F32)
    vision = load_towers_vision(str(folder), space, CPU, F32)
    width = SPACES[space].tiny_width
    assert torch.equal(text_side.text_encoder.text_projection.weight, whole.text_projection.weight)
    assert torch.equal(vision.visual_projection.weight, whole.visual_projection.weight)
    zeros = torch.zeros(1, 3, 32, 32)
    with torch.no_grad():
        expected = whole.visual_projection(whole.vision_model(pixel_values=zeros).pooler_output)
    zero_embeds = towers_zero_image_embeds("tiny", space, CPU, F32)
    assert zero_embeds.shape == (1, width)
    torch.testing.assert_close(zero_embeds, expected, rtol=0, atol=1e-6)
    assert zero_embeds[0, :4].tolist() == pytest.approx(GOLDEN_ZERO_IMAGE[space], abs=GOLDEN_ATOL)


# --- the priors in the tiny H and L spaces ---------------------------------------------------------------------------


@pytest.mark.parametrize("space", CLIP_SPACES)
def test_text_embedding_in_a_tiny_space(space: str) -> None:
    prior = TextEmbeddingPrior(TextEmbeddingPrior.Params(space=space, model="tiny"), device=CPU, dtype=F32)
    output = prior.embed(TEXTS, seeded_generators([0, 1, 2]))
    width = SPACES[space].tiny_width
    assert output.image_embeds.shape == output.negative_image_embeds.shape == (3, width)
    assert output.image_embeds[0, :4].tolist() == pytest.approx(GOLDEN_TEXT_EMBEDDING[space], abs=GOLDEN_ATOL)
    assert torch.equal(output.negative_image_embeds[1], towers_zero_image_embeds("tiny", space, CPU, F32)[0])


@pytest.mark.parametrize("space", CLIP_SPACES)
def test_ovi_in_a_tiny_space(space: str) -> None:
    prior = OVIPrior(OVIPrior.Params(space=space, model="tiny", steps=20), device=CPU, dtype=F32)
    together = prior.embed(TEXTS, seeded_generators([0, 1, 2]))
    assert together.image_embeds.shape == (3, SPACES[space].tiny_width)
    assert together.image_embeds[0, :4].tolist() == pytest.approx(
        GOLDEN_OVI_20_STEPS_SEED_0[space], abs=GOLDEN_OVI_ATOL
    )
    # Batch independence, as on the bigG towers (tests/test_ovi.py).
    alone = torch.cat(
        [prior.embed([text], seeded_generators([seed])).image_embeds for seed, text in enumerate(TEXTS)]
    )
    relative = (together.image_embeds - alone).norm(dim=-1) / alone.norm(dim=-1)
    assert (relative < 2e-3).all(), relative


def test_ovi_reaches_the_text_direction_in_the_tiny_l_space() -> None:
    prior = OVIPrior(
        OVIPrior.Params(space=L.name, model="tiny", steps=150, pseudo_tokens=1), device=CPU, dtype=F32
    )
    output = prior.embed(TEXTS, seeded_generators([0, 1, 2]))
    assert all(fact["text_cosine"] > 0.95 for fact in output.per_prompt), output.per_prompt


# --- banks and spaces ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("space", CLIP_SPACES)
def test_the_tiny_bank_of_a_space_is_made_by_its_towers(space: str) -> None:
    prior = OVINearestNeighbourPrior(
        OVINearestNeighbourPrior.Params(space=space, model="tiny", steps=2, k=2), device=CPU, dtype=F32
    )
    assert prior.bank.info.space == space and prior.bank.info.dim == SPACES[space].tiny_width
    assert prior.bank.path == tiny_bank_dir(space) != tiny_bank_dir()
    assert prior.embed(TEXTS[:1], seeded_generators([0])).image_embeds.shape == (1, SPACES[space].tiny_width)


def test_a_bank_of_another_space_is_refused_naming_both_spaces_and_the_command() -> None:
    bigg_bank = str(tiny_bank_dir())
    with pytest.raises(DataError) as refused:
        OVINearestNeighbourPrior(
            OVINearestNeighbourPrior.Params(space=L.name, model="tiny", bank=bigg_bank), device=CPU, dtype=F32
        )
    message = str(refused.value)
    assert BIGG.name in message and L.name in message
    assert f"ovi-bench bank build IMAGES --space {L.name} --encoder tiny --out NEW_DIR" in message


def test_a_bank_built_before_spaces_were_recorded_is_read_as_bigg(tmp_path: Path) -> None:
    folder = tmp_path / "old-bank"
    shutil.copytree(tiny_bank_dir(), folder)
    record = json.loads((folder / "bank.json").read_text(encoding="utf-8"))
    assert record.pop("space") == BIGG.name
    (folder / "bank.json").write_text(json.dumps(record), encoding="utf-8")
    bank = EmbeddingBank.load(folder)
    assert bank.info.space == BIGG.name
    bank.check_encoder("tiny")
    with pytest.raises(DataError, match=H.name):
        bank.check_encoder("tiny", H.name)


# --- ovi-bench spaces, spaces check ----------------------------------------------------------------------------------


def test_spaces_lists_every_space(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_main(monkeypatch, capsys, "spaces")
    assert code == 0
    rows = [line.split("\t") for line in out.strip().splitlines()]
    assert rows[0] == ["name", "encoder", "width", "towers", "models"]
    assert [(row[0], int(row[2]), row[3]) for row in rows[1:]] == [
        (space.name, space.width, space.towers) for space in SPACES.values()
    ]


@pytest.fixture(scope="module")
def tower_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tower saved alone, a copy, the same weights in float16, one with another projection, a CLIPModel folder."""
    root = tmp_path_factory.mktemp("towers")
    tower = tiny_image_encoder(projection_dim=H.tiny_width)
    tower.save_pretrained(root / "tower")
    shutil.copytree(root / "tower", root / "copy")
    tower.half().save_pretrained(root / "float16")
    other = tiny_image_encoder(projection_dim=H.tiny_width)
    with torch.no_grad():
        other.visual_projection.weight.mul_(-1)
    other.save_pretrained(root / "other")
    (root / "empty").mkdir()
    (root / "text-only").mkdir()
    save_file({"text_projection.weight": torch.zeros(2, 2)}, root / "text-only" / "model.safetensors")
    return {path.name: path for path in root.iterdir()}


def _check(monkeypatch, capsys, first: Path | str, second: Path | str) -> tuple[int, str, str]:
    return run_main(monkeypatch, capsys, "spaces", "check", str(first), str(second))


def test_spaces_check_tells_equal_towers(monkeypatch, capsys, tower_folders: dict[str, Path]) -> None:
    code, out, _ = _check(monkeypatch, capsys, tower_folders["tower"], tower_folders["copy"])
    assert code == 0, out
    assert "visual_projection.weight\tequal\t" in out and "verdict: the same tower" in out
    code, out, _ = _check(monkeypatch, capsys, tower_folders["tower"], tower_folders["float16"])
    assert code == 0 and "equal at float16" in out
    # The same tower inside a whole CLIPModel folder (the tiny H towers were built from it).
    code, out, _ = _check(monkeypatch, capsys, tower_folders["tower"], tiny_towers_dir(H.name))
    assert code == 0, out


def test_spaces_check_tells_different_towers(monkeypatch, capsys, tower_folders: dict[str, Path]) -> None:
    code, out, _ = _check(monkeypatch, capsys, tower_folders["tower"], tower_folders["other"])
    assert code == 1
    assert "visual_projection.weight\tdifferent\t" in out
    assert "vision_model.embeddings.class_embedding\tequal\t" in out
    assert "verdict: different towers (1 of 8 tensors differ)" in out
    code, out, _ = _check(monkeypatch, capsys, tower_folders["tower"], tiny_towers_dir(L.name))
    assert code == 1 and "different shapes [24, 64] and [16, 64]" in out


@pytest.mark.parametrize(
    ("second", "message"),
    [
        ("missing", "no folder"),
        ("empty", "no .safetensors weights"),
        ("text-only", "holds no CLIP vision tower"),
    ],
)
def test_spaces_check_usage_errors(
    monkeypatch, capsys, tower_folders: dict[str, Path], second: str, message: str
) -> None:
    path = tower_folders.get(second, tower_folders["tower"].parent / second)
    code, _, err = _check(monkeypatch, capsys, tower_folders["tower"], path)
    assert code == 2 and message in err
