"""The text-embedding and kandinsky-2.2 priors on the tiny Kandinsky 2.2 prior folder."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from ovi_bench.errors import OviBenchError
from ovi_bench.models.kandinsky import load_text_side, zero_image_embeds
from ovi_bench.priors.base import Prior, PriorOutput, check_prior_output
from ovi_bench.priors.kandinsky import KandinskyPrior
from ovi_bench.priors.text_embedding import TextEmbeddingPrior
from ovi_bench.registry import PRIORS
from ovi_bench.runner import seeded_generators

CPU = torch.device("cpu")
F32 = torch.float32
TEXTS = ["a red cube", "two dogs on a sofa", "a blue sphere left of a green cone"]

# Generated once from the saved tiny folder on CPU, float32 (seed 0, default 25 steps, guidance 4).
# 1e-4 leaves room for BLAS and thread-count differences and still catches any real change.
GOLDEN_KANDINSKY_A_RED_CUBE_SEED_0 = [1.3327755, 0.5106562, -0.0288434, 0.8476599]
GOLDEN_ATOL = 1e-4

# A prompt's embedding alone vs. in a batch of three: measured up to 1.9e-6 (batched matmuls round differently).
BATCH_ATOL = 1e-5


@pytest.fixture(scope="module")
def text_embedding_prior() -> TextEmbeddingPrior:
    return TextEmbeddingPrior(TextEmbeddingPrior.Params(model="tiny"), device=CPU, dtype=F32)


@pytest.fixture(scope="module")
def kandinsky_prior() -> KandinskyPrior:
    return KandinskyPrior(KandinskyPrior.Params(model="tiny"), device=CPU, dtype=F32)


def test_priors_are_registered() -> None:
    assert {"text-embedding", "kandinsky-2.2"} <= set(PRIORS.names())
    assert PRIORS.get("text-embedding") is TextEmbeddingPrior
    assert PRIORS.get("kandinsky-2.2") is KandinskyPrior
    assert issubclass(TextEmbeddingPrior, Prior) and issubclass(KandinskyPrior, Prior)


# --- text-embedding -------------------------------------------------------------------------------------------------


def test_text_embedding_is_the_text_encoder_output(text_embedding_prior: TextEmbeddingPrior) -> None:
    output = text_embedding_prior.embed(TEXTS, seeded_generators([0, 1, 2]))
    expected = load_text_side("tiny", CPU, F32).encode(TEXTS).text_embeds
    assert output.image_embeds.dtype == F32 and output.image_embeds.device == CPU
    assert torch.equal(output.image_embeds, expected)
    zero = zero_image_embeds("tiny", CPU, F32)
    assert torch.equal(output.negative_image_embeds, zero.repeat(3, 1))


def test_text_embedding_ignores_generators_and_batch(text_embedding_prior: TextEmbeddingPrior) -> None:
    batched = text_embedding_prior.embed(TEXTS, seeded_generators([0, 1, 2])).image_embeds
    alone = text_embedding_prior.embed(TEXTS[1:2], seeded_generators([7])).image_embeds
    torch.testing.assert_close(alone[0], batched[1], rtol=0, atol=BATCH_ATOL)


@pytest.mark.parametrize("rescale", ["zero-image-norm", 3.5])
def test_text_embedding_rescale_sets_the_norm(
    text_embedding_prior: TextEmbeddingPrior, rescale: str | float
) -> None:
    prior = TextEmbeddingPrior(
        TextEmbeddingPrior.Params(model="tiny", rescale=rescale), device=CPU, dtype=F32
    )
    plain = text_embedding_prior.embed(TEXTS, seeded_generators([0, 1, 2])).image_embeds
    rescaled = prior.embed(TEXTS, seeded_generators([0, 1, 2])).image_embeds
    target = zero_image_embeds("tiny", CPU, F32).norm().item() if rescale == "zero-image-norm" else rescale
    assert rescaled.norm(dim=-1).tolist() == pytest.approx([target] * 3, rel=1e-5)
    assert target != pytest.approx(plain.norm(dim=-1)[0].item(), rel=1e-2)  # the rescale did something
    # Only the scale changes, not the direction.
    cosine = torch.nn.functional.cosine_similarity(rescaled, plain)
    assert cosine.tolist() == pytest.approx([1.0] * 3, abs=1e-6)


@pytest.mark.parametrize(
    "bad", [{"rescale": 0.0}, {"rescale": -1.0}, {"rescale": float("inf")}, {"rescale": "unit"}, {"seed": 1}]
)
def test_text_embedding_rejects_bad_params(bad: dict) -> None:
    with pytest.raises(ValidationError):
        TextEmbeddingPrior.Params(**bad)


def test_text_embedding_fingerprint_depends_on_params() -> None:
    plain = TextEmbeddingPrior.fingerprint("text-embedding", TextEmbeddingPrior.Params(), "float32")
    rescaled = TextEmbeddingPrior.fingerprint(
        "text-embedding", TextEmbeddingPrior.Params(rescale="zero-image-norm"), "float32"
    )
    assert plain != rescaled


def test_text_embedding_reports_nan() -> None:
    prior = TextEmbeddingPrior(TextEmbeddingPrior.Params(model="tiny"), device=CPU, dtype=F32)
    with torch.no_grad():
        prior.text_side.text_encoder.text_projection.weight.fill_(float("nan"))
    with pytest.raises(OviBenchError, match=r"'text-embedding'.*index \[0, 1\]"):
        check_prior_output("text-embedding", TEXTS[:2], prior.embed(TEXTS[:2], seeded_generators([0, 1])))


# --- kandinsky-2.2 --------------------------------------------------------------------------------------------------


def test_kandinsky_prior_matches_golden(kandinsky_prior: KandinskyPrior) -> None:
    output = kandinsky_prior.embed(["a red cube"], seeded_generators([0]))
    assert output.image_embeds.shape == (1, 32)
    assert output.image_embeds.dtype == F32 and output.image_embeds.device == CPU
    assert output.image_embeds[0, :4].tolist() == pytest.approx(
        GOLDEN_KANDINSKY_A_RED_CUBE_SEED_0, abs=GOLDEN_ATOL
    )


def test_kandinsky_prior_negative_is_the_pipelines_zero_embedding(kandinsky_prior: KandinskyPrior) -> None:
    output = kandinsky_prior.embed(TEXTS[:2], seeded_generators([0, 1]))
    assert torch.equal(output.negative_image_embeds, zero_image_embeds("tiny", CPU, F32).repeat(2, 1))
    with torch.no_grad():
        pipeline_zero = kandinsky_prior.pipeline.get_zero_embed(2, device=CPU)
    assert torch.equal(output.negative_image_embeds, pipeline_zero)


def test_kandinsky_prior_seeds(kandinsky_prior: KandinskyPrior) -> None:
    first = kandinsky_prior.embed(TEXTS[:2], seeded_generators([0, 1])).image_embeds
    again = kandinsky_prior.embed(TEXTS[:2], seeded_generators([0, 1])).image_embeds
    other = kandinsky_prior.embed(TEXTS[:2], seeded_generators([2, 3])).image_embeds
    assert torch.equal(first, again)
    assert not torch.allclose(first, other, atol=1e-3)


def test_kandinsky_prior_batch_composition(kandinsky_prior: KandinskyPrior) -> None:
    batched = kandinsky_prior.embed(TEXTS, seeded_generators([10, 11, 12])).image_embeds
    for index, text in enumerate(TEXTS):
        alone = kandinsky_prior.embed([text], seeded_generators([10 + index])).image_embeds
        torch.testing.assert_close(alone[0], batched[index], rtol=0, atol=BATCH_ATOL)


@pytest.mark.parametrize("change", [{"steps": 5}, {"guidance": 1.0}, {"guidance": 7.5}])
def test_kandinsky_prior_steps_and_guidance_matter(kandinsky_prior: KandinskyPrior, change: dict) -> None:
    changed = KandinskyPrior(KandinskyPrior.Params(model="tiny", **change), device=CPU, dtype=F32)
    default = kandinsky_prior.embed(TEXTS[:2], seeded_generators([0, 1])).image_embeds
    other = changed.embed(TEXTS[:2], seeded_generators([0, 1])).image_embeds
    assert not torch.allclose(default, other, atol=1e-3)


@pytest.mark.parametrize("bad", [{"steps": 0}, {"guidance": -1.0}, {"steps": "many"}, {"sampler": "ddim"}])
def test_kandinsky_prior_rejects_bad_params(bad: dict) -> None:
    with pytest.raises(ValidationError):
        KandinskyPrior.Params(**bad)


def test_kandinsky_prior_needs_one_generator_per_text(kandinsky_prior: KandinskyPrior) -> None:
    with pytest.raises(OviBenchError, match="2 texts but 1 generators"):
        kandinsky_prior.embed(TEXTS[:2], seeded_generators([0]))


def test_kandinsky_prior_reports_nan() -> None:
    prior = KandinskyPrior(KandinskyPrior.Params(model="tiny"), device=CPU, dtype=F32)
    with torch.no_grad():
        prior.pipeline.prior.clip_mean[0, 0] = float("nan")
    with pytest.raises(OviBenchError, match=r"'kandinsky-2.2'.*index \[0, 1\]"):
        check_prior_output("kandinsky-2.2", TEXTS[:2], prior.embed(TEXTS[:2], seeded_generators([0, 1])))


def test_prior_output_guard_refuses_wrong_shapes() -> None:
    rows = torch.zeros(2, 4)
    with pytest.raises(OviBenchError, match=r"one row per text \(\[3, D\]\)"):
        check_prior_output("acme", ["a", "b", "c"], PriorOutput(rows, rows))
    with pytest.raises(OviBenchError, match="same shape"):
        check_prior_output("acme", ["a", "b"], PriorOutput(rows, torch.zeros(2, 5)))
    assert check_prior_output("acme", ["a", "b"], PriorOutput(rows, rows)).image_embeds is rows
