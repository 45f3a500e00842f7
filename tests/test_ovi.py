"""The OVI prior family on the tiny Kandinsky backbone: forward, optimiser, convergence, constraints, independence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ovi_bench.bank.folder import EmbeddingBank
from ovi_bench.bank.neighbours import nearest_neighbours
from ovi_bench.bank.tiny import tiny_bank_dir
from ovi_bench.errors import OviBenchError
from ovi_bench.models.kandinsky import load_image_encoder, load_text_side
from ovi_bench.priors.ovi import (
    OVIMahalanobisPrior,
    OVINearestNeighbourPrior,
    OVIPrior,
    RowwiseAdamW,
    optimise_pseudo_tokens,
    pseudo_token_image_embeds,
)
from ovi_bench.registry import PRIORS
from ovi_bench.runner import seeded_generators

CPU, F32 = torch.device("cpu"), torch.float32
TEXTS = ["a red cube", "two cats and a dog", "a 'quoted' café on the left of a tree"]


@pytest.fixture(scope="module")
def image_encoder():
    return load_image_encoder("tiny", CPU, F32)


@pytest.fixture(scope="module")
def text_embeds() -> torch.Tensor:
    return load_text_side("tiny", CPU, F32).encode(TEXTS).text_embeds.float()


def test_family_is_registered() -> None:
    assert {"ovi", "ovi-mahalanobis", "ovi-nn"} <= set(PRIORS.names())


def test_forward_equals_the_towers_own_embedding_when_tokens_are_the_patch_embeddings(image_encoder) -> None:
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    embeddings = image_encoder.vision_model.embeddings
    patch_tokens = (
        embeddings.patch_embedding(pixels).flatten(2).transpose(1, 2)
    )  # [2, 16, 64]: P = all patches
    with torch.no_grad():
        ours = pseudo_token_image_embeds(image_encoder, patch_tokens)
        theirs = image_encoder(pixel_values=pixels).image_embeds
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_one_pseudo_token_fills_every_patch_position(image_encoder) -> None:
    token = torch.randn(1, 1, 64, generator=torch.Generator().manual_seed(1))
    repeated = token.expand(1, image_encoder.vision_model.embeddings.num_patches, 64)
    with torch.no_grad():
        torch.testing.assert_close(
            pseudo_token_image_embeds(image_encoder, token),
            pseudo_token_image_embeds(image_encoder, repeated),
        )


def test_rowwise_adamw_matches_torch_adamw() -> None:
    start = torch.randn(3, 2, 5, generator=torch.Generator().manual_seed(0))
    ours = start.clone()
    theirs = torch.nn.Parameter(start.clone())
    reference = torch.optim.AdamW([theirs], lr=2e-2, weight_decay=0.01)
    optimiser = RowwiseAdamW(ours, learning_rate=2e-2, weight_decay=0.01)
    grads = torch.Generator().manual_seed(1)
    for _ in range(20):
        grad = torch.randn(3, 2, 5, generator=grads)
        theirs.grad = grad.clone()
        reference.step()
        optimiser.step(torch.arange(3), grad)
    torch.testing.assert_close(ours, theirs.detach(), rtol=0, atol=1e-6)


def test_rowwise_adamw_leaves_inactive_rows_alone() -> None:
    rows = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    before = rows.clone()
    optimiser = RowwiseAdamW(rows, learning_rate=0.1, weight_decay=0.5)
    optimiser.step(torch.tensor([1, 3]), torch.ones(2, 3))
    assert torch.equal(rows[[0, 2]], before[[0, 2]])
    assert not torch.equal(rows[[1, 3]], before[[1, 3]])
    assert optimiser.steps.tolist() == [0, 1, 0, 1]


def test_gradients_reach_only_the_pseudo_tokens(image_encoder, text_embeds) -> None:
    weights_before = {name: value.clone() for name, value in image_encoder.state_dict().items()}
    optimise_pseudo_tokens(
        image_encoder,
        text_embeds,
        seeded_generators([0, 1, 2]),
        pseudo_tokens=2,
        steps=5,
        learning_rate=2e-2,
        weight_decay=0.01,
        init_std=0.02,
    )
    assert all(not parameter.requires_grad for parameter in image_encoder.parameters())
    assert all(parameter.grad is None for parameter in image_encoder.parameters())
    for name, value in image_encoder.state_dict().items():
        assert torch.equal(value, weights_before[name]), name


def _ovi(**params) -> OVIPrior:
    return OVIPrior(OVIPrior.Params(model="tiny", **params), device=CPU, dtype=F32)


def test_cosine_to_the_text_rises_above_095() -> None:
    prior = _ovi(steps=300, pseudo_tokens=1)
    short = _ovi(steps=1, pseudo_tokens=1).embed(TEXTS, seeded_generators([0, 1, 2]))
    output = prior.embed(TEXTS, seeded_generators([0, 1, 2]))
    final = [fact["text_cosine"] for fact in output.per_prompt]
    assert all(cosine > 0.95 for cosine in final), final
    assert all(
        late > early for late, early in zip(final, [f["text_cosine"] for f in short.per_prompt], strict=True)
    )
    assert [fact["steps"] for fact in output.per_prompt] == [300, 300, 300]
    text = load_text_side("tiny", CPU, F32).encode(TEXTS).text_embeds
    measured = F.cosine_similarity(output.image_embeds, text.float(), dim=-1)
    torch.testing.assert_close(measured, torch.tensor(final), atol=1e-5, rtol=0)


def test_same_seed_same_result_and_seeds_matter() -> None:
    prior = _ovi(steps=30)
    first = prior.embed(TEXTS[:2], seeded_generators([5, 6])).image_embeds
    again = prior.embed(TEXTS[:2], seeded_generators([5, 6])).image_embeds
    other = prior.embed(TEXTS[:2], seeded_generators([7, 8])).image_embeds
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_a_prompts_result_does_not_depend_on_its_batch() -> None:
    prior = _ovi(steps=60, early_stopping=True, patience=5, min_improvement=1e-3)
    together = prior.embed(TEXTS, seeded_generators([0, 1, 2]))
    alone = [
        prior.embed([text], seeded_generators([seed])) for text, seed in zip(TEXTS, (0, 1, 2), strict=True)
    ]
    separate = torch.cat([output.image_embeds for output in alone])
    # Rows share only matrix products, whose blocking (so float rounding) depends on the batch size; 60 Adam steps
    # amplify that rounding to 1.5e-5 of the embedding's norm on one CPU and 5.4e-4 on another (measured; the CPU's
    # kernels decide the blocking), far below any effect on an image.
    relative = (together.image_embeds - separate).norm(dim=-1) / separate.norm(dim=-1)
    assert (relative < 2e-3).all(), relative
    assert [f["steps"] for f in together.per_prompt] == [output.per_prompt[0]["steps"] for output in alone]


def test_early_stopping_stops_converged_prompts_and_records_their_steps() -> None:
    fixed = _ovi(steps=400, pseudo_tokens=1).embed(TEXTS, seeded_generators([0, 1, 2]))
    early = _ovi(steps=400, pseudo_tokens=1, early_stopping=True, patience=20, min_improvement=1e-4).embed(
        TEXTS, seeded_generators([0, 1, 2])
    )
    steps = [fact["steps"] for fact in early.per_prompt]
    assert all(step < 400 for step in steps), steps
    for stopped, full in zip(early.per_prompt, fixed.per_prompt, strict=True):
        assert stopped["text_cosine"] == pytest.approx(full["text_cosine"], abs=0.01)


def test_bfloat16_autocast_is_refused_on_the_cpu() -> None:
    with pytest.raises(OviBenchError, match="GPU"):
        _ovi(precision="bfloat16-autocast")


@pytest.fixture(scope="module")
def bank() -> EmbeddingBank:
    return EmbeddingBank.load(tiny_bank_dir())


def test_mahalanobis_variant_ends_closer_to_the_bank(bank: EmbeddingBank) -> None:
    common = {"model": "tiny", "steps": 150, "pseudo_tokens": 1}
    plain = OVIPrior(OVIPrior.Params(**common), device=CPU, dtype=F32).embed(
        TEXTS, seeded_generators([0, 1, 2])
    )
    constrained = OVIMahalanobisPrior(
        OVIMahalanobisPrior.Params(**common, mahalanobis_weight=1.0), device=CPU, dtype=F32
    ).embed(TEXTS, seeded_generators([0, 1, 2]))
    statistics = bank.statistics()
    plain_distance = statistics.mahalanobis_squared(plain.image_embeds)
    constrained_distance = statistics.mahalanobis_squared(constrained.image_embeds)
    assert (constrained_distance < plain_distance).all(), (constrained_distance, plain_distance)


def test_nearest_neighbour_variant_ends_closer_to_its_neighbours(bank: EmbeddingBank) -> None:
    common = {"model": "tiny", "steps": 150, "pseudo_tokens": 1}
    plain = OVIPrior(OVIPrior.Params(**common), device=CPU, dtype=F32).embed(
        TEXTS, seeded_generators([0, 1, 2])
    )
    constrained = OVINearestNeighbourPrior(
        OVINearestNeighbourPrior.Params(**common, nn_weight=1.0, k=4, refresh_every=5), device=CPU, dtype=F32
    ).embed(TEXTS, seeded_generators([0, 1, 2]))
    embeddings = bank.embeddings()
    plain_nn, _ = nearest_neighbours(plain.image_embeds, embeddings, 1)
    constrained_nn, _ = nearest_neighbours(constrained.image_embeds, embeddings, 1)
    assert (constrained_nn > plain_nn).all(), (constrained_nn, plain_nn)


def test_nn_variant_refuses_k_larger_than_the_bank(bank: EmbeddingBank) -> None:
    with pytest.raises(OviBenchError, match="lower k"):
        OVINearestNeighbourPrior(
            OVINearestNeighbourPrior.Params(model="tiny", k=bank.info.count + 1), device=CPU, dtype=F32
        )
