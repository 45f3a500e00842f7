"""Embedding spaces: every built-in prior and decoder declares one, a mismatched pair is refused before anything
loads, and parameters added to a component later leave the fingerprints of older specs alone."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
import torch
from tiny_runs import tiny_spec

from ovi_bench.components import Params, added_field, stored_params
from ovi_bench.errors import SpecError, UnknownNameError
from ovi_bench.priors.base import Prior, PriorOutput
from ovi_bench.registry import DECODERS, PRIORS
from ovi_bench.spaces import DEFAULT_SPACE, SPACES, get_space
from ovi_bench.spec import parse_spec


class _OtherSpacePrior(Prior):
    """A prior of the ViT-H/14 space, registered for the tests below."""

    class Params(Params):
        space: str = "clip-vit-h-14"

    @classmethod
    def embedding_space(cls, params: _OtherSpacePrior.Params) -> str:
        return params.space

    def embed(self, texts: Sequence[str], generators: Sequence[torch.Generator]) -> PriorOutput:
        raise AssertionError("never run: the spec is refused first")


@pytest.fixture
def other_space_prior() -> Iterator[str]:
    PRIORS.register("test-h-prior")(_OtherSpacePrior)
    yield "test-h-prior"
    PRIORS._entries.pop("test-h-prior")


def test_every_built_in_component_declares_a_known_space() -> None:
    for registry in (PRIORS, DECODERS):
        for name in registry.names():
            component = registry.get(name)
            if not component.__module__.startswith("ovi_bench."):
                continue  # a test's or a plugin's stand-in, registered by another test
            assert component.embedding_space(component.Params()) in SPACES, name


def test_a_prior_of_another_space_is_refused_naming_both_spaces_and_the_fix(other_space_prior: str) -> None:
    spec = tiny_spec(priors=[{"name": other_space_prior}])
    with pytest.raises(SpecError) as refused:
        parse_spec(spec)
    message = str(refused.value)
    assert "priors[0]" in message
    assert "clip-vit-h-14" in message and DEFAULT_SPACE in message
    assert "kandinsky-2.2-decoder" in message
    assert 'params.space = "clip-vit-bigg-14"' in message
    # The same prior told to make embeddings of the decoder's space is accepted.
    parse_spec(tiny_spec(priors=[{"name": other_space_prior, "params": {"space": DEFAULT_SPACE}}]))


def test_unknown_space_suggests_the_nearest() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'clip-vit-h-14'"):
        get_space("clip-vit-h14")
    assert get_space("clip-vit-l-14").width == 768


def test_spaces_have_distinct_widths_and_tiny_widths() -> None:
    # Distinct tiny widths: even a tiny prior and a tiny decoder of two spaces cannot be paired by accident.
    assert len({space.width for space in SPACES.values()}) == len(SPACES)
    assert len({space.tiny_width for space in SPACES.values()}) == len(SPACES)


class _Grown(Params):
    steps: int = 10
    space: str = added_field(DEFAULT_SPACE)


def test_an_added_field_at_its_default_stays_out_of_the_stored_parameters() -> None:
    assert stored_params(_Grown()) == {"steps": 10}
    assert stored_params(_Grown(space=DEFAULT_SPACE)) == {"steps": 10}
    assert stored_params(_Grown(space="clip-vit-l-14")) == {"steps": 10, "space": "clip-vit-l-14"}
