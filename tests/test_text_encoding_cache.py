"""Each distinct prompt text is encoded once per prior that encodes through a TextSide (text-embedding, OVI, ECLIPSE;
the Kandinsky 2.2 prior runs diffusers' pipeline as it is, whose text encoding is ~3% of its cost), on its own: a prompt's seeds share its encoding, the results
are unchanged (up to the rounding of batched matrix products), and a text's encoding is the same bits whatever else
was encoded before or beside it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

from ovi_bench.models.clip import TEXT_CACHE_SIZE, TextEncoding, TextSide
from ovi_bench.models.kandinsky import load_text_side
from ovi_bench.priors.eclipse import EclipsePrior
from ovi_bench.priors.ovi import OVIPrior
from ovi_bench.priors.text_embedding import TextEmbeddingPrior
from ovi_bench.runner import seeded_generators

CPU = torch.device("cpu")
F32 = torch.float32
# Three prompts with several seeds each, as a run plans them (each prompt's seeds next to each other).
TEXTS = ["a red cube"] * 3 + ["two dogs on a sofa"] * 2 + ["a blue sphere left of a green cone"]
UNIQUE = list(dict.fromkeys(TEXTS))


@contextmanager
def encoded_rows(text_encoder: torch.nn.Module) -> Iterator[list[int]]:
    """The batch size of every call of the text encoder's transformer (`text_model`, which every encoding runs
    through: see `ovi_bench.models.clip.encode_token_ids`) inside the block."""
    calls: list[int] = []
    handle = text_encoder.text_model.register_forward_pre_hook(
        lambda module, args: calls.append(int(args[0].shape[0]))
    )
    try:
        yield calls
    finally:
        handle.remove()


class UncachedTextSide:
    """A TextSide as before the cache: every text encoded, repeats included."""

    def __init__(self, text_side: TextSide) -> None:
        self.text_side = text_side

    def encode(self, texts: list[str]) -> TextEncoding:
        return self.text_side._encode(list(texts))

    def __getattr__(self, name: str) -> object:
        return getattr(self.text_side, name)


def uncached(text_side: TextSide, texts: list[str]) -> torch.Tensor:
    """`text_embeds` as before the cache: every text encoded, repeats included, in one batch."""
    return text_side._encode(texts).text_embeds


def test_a_text_side_encodes_each_text_once_and_gives_the_same_rows() -> None:
    text_side = load_text_side("tiny", CPU, F32)
    with encoded_rows(text_side.text_encoder) as calls:
        first = text_side.encode(TEXTS)
        again = text_side.encode([*UNIQUE[1:], "a new prompt"])
    assert calls == [1] * len(UNIQUE) + [1]  # each text once, on its own; then only the text not seen before
    torch.testing.assert_close(first.text_embeds, uncached(text_side, TEXTS), rtol=1e-6, atol=1e-6)
    reference = text_side._encode(TEXTS)
    torch.testing.assert_close(first.last_hidden_state, reference.last_hidden_state, rtol=1e-6, atol=1e-6)
    assert torch.equal(first.attention_mask, reference.attention_mask)
    assert torch.equal(again.text_embeds[0], first.text_embeds[3])  # served from the cache, bit for bit


def test_an_encoding_does_not_depend_on_its_batch_or_on_what_came_before() -> None:
    warm = load_text_side("tiny", CPU, F32)
    warm.encode(["something else entirely", UNIQUE[2], "and more"])
    cold = load_text_side("tiny", CPU, F32)
    assert torch.equal(warm.encode(TEXTS).text_embeds, cold.encode(TEXTS).text_embeds)
    alone = load_text_side("tiny", CPU, F32).encode([UNIQUE[1]]).last_hidden_state[0]
    assert torch.equal(cold.encode(TEXTS).last_hidden_state[3], alone)


def test_the_cache_is_bounded() -> None:
    text_side = load_text_side("tiny", CPU, F32)
    texts = [f"prompt {index}" for index in range(TEXT_CACHE_SIZE + 5)]
    encoding = text_side.encode(texts)  # more distinct texts than the cache holds, in one call
    assert encoding.text_embeds.shape[0] == len(texts)
    assert len(text_side._cache) == TEXT_CACHE_SIZE
    with encoded_rows(text_side.text_encoder) as calls:
        text_side.encode(texts[-3:])
        text_side.encode(texts[:1])
    assert calls == [1]  # the newest were kept, the oldest evicted


@pytest.mark.parametrize(
    "prior_class, params, atol",
    [
        (TextEmbeddingPrior, {"model": "tiny"}, 1e-5),
        # The optimisation amplifies the rounding of a text embedding encoded alone rather than in a batch.
        (OVIPrior, {"model": "tiny", "steps": 3}, 1e-3),
        (EclipsePrior, {"checkpoint": "tiny", "model": "tiny"}, 1e-5),
    ],
)
def test_priors_on_a_text_side_encode_each_prompt_once(prior_class: type, params: dict, atol: float) -> None:
    prior = prior_class(prior_class.Params(**params), device=CPU, dtype=F32)
    seeds = list(range(len(TEXTS)))
    with encoded_rows(prior.text_side.text_encoder) as calls:
        cached = prior.embed(TEXTS, seeded_generators(seeds))
        prior.embed(TEXTS, seeded_generators(seeds))
    assert calls == [1] * len(UNIQUE)
    # Unchanged results: the same prior with every text encoded anew, repeats included.
    fresh = prior_class(prior_class.Params(**params), device=CPU, dtype=F32)
    fresh.text_side = UncachedTextSide(fresh.text_side)
    expected = fresh.embed(TEXTS, seeded_generators(seeds))
    torch.testing.assert_close(cached.image_embeds, expected.image_embeds, rtol=0, atol=atol)
    assert torch.equal(cached.negative_image_embeds, expected.negative_image_embeds)
