"""Which decoders render which priors: the components' declared embedding spaces (`ovi_bench.spaces`) looked up
through the registry, and the messages that refuse a prior no decoder of the run can read.

A run renders each prior with every decoder of its space (`RunSpec.decoders_for`); spec validation refuses a prior
that none of the run's decoders renders (`unrenderable_prior`), naming both spaces and the fix, before anything loads.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ovi_bench.registry import DECODERS, Registry
from ovi_bench.spaces import describe, pairing_problem


def component_space(registry: Registry, name: str, params: dict[str, Any]) -> str | None:
    """The embedding space a prior produces or a decoder consumes with these (validated) parameters."""
    component = registry.get(name)
    declared = getattr(
        component, "embedding_space", None
    )  # a registered stand-in may not derive from the bases
    return declared(component.Params.model_validate(params)) if declared else None


def pairing_fix(prior_space: str | None, decoder_space: str | None) -> str:
    """How to pair a prior of `prior_space` with a decoder that reads it: the decoders of its space, or the
    training-free priors' `space` parameter."""
    decoders = []
    for name in DECODERS.names():
        with contextlib.suppress(
            Exception
        ):  # a plugin decoder without defaults for every parameter: not listed
            if component_space(DECODERS, name, {}) == prior_space:
                decoders.append(name)
    choices = f" ({', '.join(decoders)})" if decoders else ""
    return (
        f"Render it with a decoder of {prior_space}{choices}, or, for a prior that takes the space as a parameter "
        f'(text-embedding, ovi, ovi-mahalanobis, ovi-nn), set its params.space = "{decoder_space}"'
    )


def renders(decoder_space: str | None, prior_space: str | None) -> bool:
    """Whether a decoder of `decoder_space` reads embeddings of `prior_space` (an undeclared space pairs with any)."""
    return pairing_problem("", prior_space, "", decoder_space) is None


def unrenderable_prior(
    prior: str, prior_space: str | None, decoders: list[tuple[str, str | None]]
) -> str | None:
    """Why no decoder of the run renders the prior (both spaces and the fix), or None when one does. `decoders`:
    (display name, space) of each decoder of the run, in order."""
    if any(renders(space, prior_space) for _, space in decoders):
        return None
    if len(decoders) == 1:
        name, space = decoders[0]
        return f"{pairing_problem(prior, prior_space, name, space)}. {pairing_fix(prior_space, space)}"
    spaces = ", ".join(dict.fromkeys(describe(space) for _, space in decoders))
    return (
        f"prior '{prior}' makes image embeddings in {describe(prior_space)}, but no decoder of the run renders that "
        f"space (they render {spaces}). {pairing_fix(prior_space, decoders[0][1])}"
    )
