"""Image-embedding spaces: the contract between a prior, which makes CLIP image embeddings, and a decoder, which
renders them.

A space is defined by the CLIP image encoder whose output the decoder was trained on: an embedding is only
meaningful to decoders of the space it was made in. Every decoder declares the space it consumes and every prior
the space it produces (`Component.embedding_space`); a spec that pairs a prior with a decoder of another space is
refused before anything loads (`check_pairing`). Learned priors are fixed to their checkpoint's space; the
training-free priors (`text-embedding` and the OVI family) need only the space's CLIP text and vision towers, so
they take the space as a parameter and default to its towers.

Tiny stand-ins of each space (random weights, built in code for tests and the smoke run) have a width of their own
(`tiny_width`), so that a tiny prior and a tiny decoder of different spaces could not be paired by accident either.
"""

from __future__ import annotations

from dataclasses import dataclass

from ovi_bench.errors import UnknownNameError
from ovi_bench.text import did_you_mean


@dataclass(frozen=True)
class EmbeddingSpace:
    """One CLIP image-embedding space."""

    name: str
    """The name specs and result files use, e.g. "clip-vit-bigg-14"."""
    encoder: str
    """The CLIP image encoder that defines the space, in words (architecture and training set)."""
    width: int
    """Width of an image embedding (the encoder's projection dimension)."""
    towers: str
    """Hugging Face id of the CLIP text and vision towers that the training-free priors use by default."""
    towers_layout: str
    """How `towers` stores them: "kandinsky-prior" (subfolders text_encoder/, image_encoder/, tokenizer/ of a
    Kandinsky 2.2 prior) or "clip" (one transformers CLIPModel folder)."""
    tiny_width: int
    """Width of the tiny stand-ins of this space (random weights, for tests and the smoke run)."""
    models: tuple[str, ...]
    """Published models that live in this space, for documentation and messages."""


BIGG = EmbeddingSpace(
    name="clip-vit-bigg-14",
    encoder="OpenCLIP ViT-bigG/14 (LAION-2B)",
    width=1280,
    towers="kandinsky-community/kandinsky-2-2-prior",
    towers_layout="kandinsky-prior",
    tiny_width=32,
    models=(
        "Kandinsky 2.2 prior and decoder",
        "ECLIPSE",
        "SDXL + IP-Adapter (h94/IP-Adapter, sdxl_models/)",
    ),
)
H = EmbeddingSpace(
    name="clip-vit-h-14",
    encoder="OpenCLIP ViT-H/14 (LAION-2B)",
    width=1024,
    towers="laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
    towers_layout="clip",
    tiny_width=24,
    models=(
        "SD 1.5 + IP-Adapter (h94/IP-Adapter, models/)",
        "Stable unCLIP (stabilityai/stable-diffusion-2-1-unclip)",
    ),
)
L = EmbeddingSpace(
    name="clip-vit-l-14",
    encoder="OpenAI CLIP ViT-L/14",
    width=768,
    towers="openai/clip-vit-large-patch14",
    towers_layout="clip",
    tiny_width=16,
    models=(
        "Karlo prior and decoder (kakaobrain/karlo-v1-alpha)",
        "Stable unCLIP small (stabilityai/stable-diffusion-2-1-unclip-small)",
    ),
)

SPACES: dict[str, EmbeddingSpace] = {space.name: space for space in (BIGG, H, L)}
"""Every built-in space, by name."""

DEFAULT_SPACE = BIGG.name
"""The space of Kandinsky 2.2, where every component lived before spaces were declared."""


def get_space(name: str) -> EmbeddingSpace:
    """The space called `name`; UnknownNameError with the nearest name when there is none."""
    try:
        return SPACES[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown embedding space {name!r}.{did_you_mean(name, list(SPACES))} Known spaces: "
            f"{', '.join(SPACES)}."
        ) from None


def describe(name: str | None) -> str:
    """A space for messages: "clip-vit-h-14 (OpenCLIP ViT-H/14 (LAION-2B), 1024-d)", or "undeclared"."""
    if name is None:
        return "an undeclared space"
    space = SPACES.get(name)
    return f"{name} ({space.encoder}, {space.width}-d)" if space else name


def pairing_problem(
    prior: str, prior_space: str | None, decoder: str, decoder_space: str | None
) -> str | None:
    """Why the decoder cannot read the prior's embeddings (both spaces named), or None when it can.

    A component that declares no space (a plugin written before spaces existed) pairs with anything: its author
    vouches for it, as before."""
    if prior_space is None or decoder_space is None or prior_space == decoder_space:
        return None
    return (
        f"prior '{prior}' makes image embeddings in {describe(prior_space)}, but decoder '{decoder}' renders "
        f"embeddings of {describe(decoder_space)}: the decoder would read them as noise"
    )
