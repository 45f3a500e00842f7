"""ECLIPSE (Patel et al., CVPR 2024): a small trained prior for Kandinsky 2.2 that is not a diffusion model.

ECLIPSE's prior is diffusers' `PriorTransformer` without the timestep token, trained to map Gaussian noise and the
prompt's CLIP text encoding straight to a CLIP image embedding. It runs as ECLIPSE's own pipeline runs it: one forward
pass; no scheduler, no classifier-free guidance, no `clip_mean`/`clip_std` post-processing; the negative embedding is
the zero-image embedding.

The released checkpoint's config.json says `_class_name: "PriorTransformer"`, so diffusers' stock class loads it
without complaint, leaves the time-embedding weights uninitialised (on the meta device), and fails only when called.
`EclipsePriorTransformer` is our own small subclass with the right architecture (ECLIPSE's repository code does not
import on current diffusers), `load_eclipse_prior_transformer` refuses checkpoints that are not in ECLIPSE's format, and
`refuse_eclipse_checkpoint` is the guard for every place that would hand a checkpoint to the stock class.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from diffusers import PriorTransformer
from diffusers.configuration_utils import register_to_config
from diffusers.models.transformers.prior_transformer import PriorTransformerOutput
from huggingface_hub import try_to_load_from_cache
from pydantic import Field
from safetensors import SafetensorError, safe_open
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

from ovi_bench.components import ModelNeed, model_files
from ovi_bench.components import Params as BaseParams
from ovi_bench.errors import ModelLoadError, OviBenchError
from ovi_bench.io import publish_directory
from ovi_bench.models.hub import (
    explain_load_failure,
    load_pretrained,
    looks_like_path,
    model_file,
    resolve_model,
)
from ovi_bench.models.kandinsky import (
    KANDINSKY22_PRIOR_ID,
    PRIOR_IMAGE_ENCODER_FILES,
    PRIOR_TEXT_SIDE_FILES,
    TextSide,
    load_text_side,
    zero_image_embeds,
)
from ovi_bench.models.tiny import EMBEDDING_DIM, TEXT_MAX_LENGTH
from ovi_bench.paths import cache_dir
from ovi_bench.priors.base import Prior, PriorOutput

ECLIPSE_KANDINSKY22_PRIOR_ID = "ECLIPSE-Community/ECLIPSE_KandinskyV22_Prior"

ECLIPSE_ADDITIONAL_EMBEDDINGS = 3
"""Tokens after the text states: projected text_embeds, noisy embedding, prd (the stock prior's 4 minus the time token)."""

_WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
_WEIGHTS_INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"
_TIME_EMBEDDING_PREFIX = "time_embedding."


# ---------------------------------------------------------------------------------------------------------------------
# The model


class EclipsePriorTransformer(PriorTransformer):
    """diffusers' `PriorTransformer` without the timestep token: ECLIPSE's prior architecture.

    Same sub-modules and weight names as the stock class, minus `time_proj` and `time_embedding`. The token sequence is
    [num_embeddings projected text states, projected text_embeds, projected noisy embedding, prd], with a learned
    position per token, the stock causal and padding masks, and the output read at the prd token.
    """

    # The stock constructor's time-token arguments: not recorded in our config, as in ECLIPSE's config.json.
    ignore_for_config: ClassVar[list[str]] = ["time_embed_act_fn", "time_embed_dim"]

    # The signature is restated (not forwarded as **kwargs): `from_pretrained` reads the accepted config keys from it.
    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 32,
        attention_head_dim: int = 64,
        num_layers: int = 20,
        embedding_dim: int = 768,
        num_embeddings: int = 77,
        additional_embeddings: int = ECLIPSE_ADDITIONAL_EMBEDDINGS,
        dropout: float = 0.0,
        norm_in_type: str | None = None,
        embedding_proj_norm_type: str | None = None,
        encoder_hid_proj_type: str | None = "linear",
        added_emb_type: str | None = "prd",
        embedding_proj_dim: int | None = None,
        clip_embed_dim: int | None = None,
    ) -> None:
        # The forward below reads the prd token and always attends to the text states; refuse anything else loudly.
        if additional_embeddings != ECLIPSE_ADDITIONAL_EMBEDDINGS:
            raise ValueError(
                f"an ECLIPSE prior has additional_embeddings = {ECLIPSE_ADDITIONAL_EMBEDDINGS} (no time token), "
                f"not {additional_embeddings}"
            )
        if added_emb_type != "prd" or encoder_hid_proj_type != "linear":
            raise ValueError(
                "an ECLIPSE prior has added_emb_type = 'prd' and encoder_hid_proj_type = 'linear', not "
                f"{added_emb_type!r} and {encoder_hid_proj_type!r}"
            )
        super().__init__(
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            num_layers=num_layers,
            embedding_dim=embedding_dim,
            num_embeddings=num_embeddings,
            additional_embeddings=additional_embeddings,
            dropout=dropout,
            norm_in_type=norm_in_type,
            embedding_proj_norm_type=embedding_proj_norm_type,
            encoder_hid_proj_type=encoder_hid_proj_type,
            added_emb_type=added_emb_type,
            embedding_proj_dim=embedding_proj_dim,
            clip_embed_dim=clip_embed_dim,
        )
        del self.time_proj
        del self.time_embedding

    def forward(  # type: ignore[override]  # no timestep: ECLIPSE is not a diffusion model
        self,
        hidden_states: torch.Tensor,
        proj_embedding: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.BoolTensor | None = None,
        return_dict: bool = True,
    ) -> PriorTransformerOutput | tuple[torch.Tensor]:
        """Noise [B, D], text_embeds [B, D], text states [B, 77, D] and their mask [B, 77] -> image embedding [B, D]."""
        batch_size, num_text_tokens = encoder_hidden_states.shape[:2]
        if num_text_tokens != self.config.num_embeddings:
            raise ValueError(
                f"the prior has positions for {self.config.num_embeddings} text tokens, not {num_text_tokens}: "
                "the tokenizer's model_max_length must equal the prior's num_embeddings"
            )
        if self.embedding_proj_norm is not None:
            proj_embedding = self.embedding_proj_norm(proj_embedding)
        tokens = torch.cat(
            [
                self.encoder_hidden_states_proj(encoder_hidden_states),
                self.embedding_proj(proj_embedding)[:, None, :],
                self.proj_in(hidden_states)[:, None, :],
                self.prd_embedding.to(hidden_states.dtype).expand(batch_size, -1, -1),
            ],
            dim=1,
        )
        tokens = tokens + self.positional_embedding.to(tokens.dtype)

        # As in the stock class: padded text tokens get -10000, the extra tokens are always visible, the causal mask is
        # added, and without a text mask there is no mask at all (ECLIPSE's pipeline always passes one).
        if attention_mask is not None:
            attention_mask = (1 - attention_mask.to(tokens.dtype)) * -10000.0
            attention_mask = F.pad(attention_mask, (0, self.additional_embeddings), value=0.0)
            attention_mask = (attention_mask[:, None, :] + self.causal_attention_mask).to(tokens.dtype)
            attention_mask = attention_mask.repeat_interleave(self.config.num_attention_heads, dim=0)

        if self.norm_in is not None:
            tokens = self.norm_in(tokens)
        for block in self.transformer_blocks:
            tokens = block(tokens, attention_mask=attention_mask)
        prd_state = self.norm_out(tokens)[:, -1]
        predicted_image_embedding = self.proj_to_clip_embeddings(prd_state)

        if not return_dict:
            return (predicted_image_embedding,)
        return PriorTransformerOutput(predicted_image_embedding=predicted_image_embedding)


# ---------------------------------------------------------------------------------------------------------------------
# Telling ECLIPSE-format checkpoints from stock diffusion-prior checkpoints, without loading weights


@dataclass(frozen=True)
class PriorCheckpointFacts:
    """What a prior checkpoint's config.json and safetensors header (or index) say about its time token."""

    additional_embeddings: int | None
    """From config.json; None when the key is missing."""
    has_time_embedding_weights: bool | None
    """Whether a `time_embedding.*` weight is stored; None when the weight names are not readable without a download."""

    def eclipse_signs(self) -> list[str]:
        """Why it looks like an ECLIPSE checkpoint (no time token); empty when nothing does."""
        signs = []
        if self.additional_embeddings == ECLIPSE_ADDITIONAL_EMBEDDINGS:
            signs.append(f"config.json has additional_embeddings = {ECLIPSE_ADDITIONAL_EMBEDDINGS}")
        if self.has_time_embedding_weights is False:
            signs.append("its weights have no time_embedding.* tensors")
        return signs

    def time_token_signs(self) -> list[str]:
        """Why it looks like a diffusion prior with a timestep token (not ECLIPSE); empty when nothing does."""
        signs = []
        if (
            self.additional_embeddings is not None
            and self.additional_embeddings != ECLIPSE_ADDITIONAL_EMBEDDINGS
        ):
            signs.append(f"config.json has additional_embeddings = {self.additional_embeddings}")
        if self.has_time_embedding_weights:
            signs.append("its weights include time_embedding.* tensors")
        return signs


def _cached_file(resolved: str, subfolder: str, filename: str) -> Path | None:
    """A checkpoint file already on this machine (a folder's file, or a hub file in the HF cache), else None."""
    folder = Path(resolved)
    if folder.is_dir():
        path = folder / subfolder / filename
        return path if path.is_file() else None
    if looks_like_path(resolved):
        return None
    cached = try_to_load_from_cache(resolved, f"{subfolder}/{filename}" if subfolder else filename)
    return Path(cached) if isinstance(cached, str) else None


def _stored_weight_names(resolved: str, subfolder: str) -> set[str] | None:
    """The names of the stored weights, from the safetensors index or file header (no tensor is read), or None."""
    index = _cached_file(resolved, subfolder, _WEIGHTS_INDEX_NAME)
    if index is not None:
        try:
            return set(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise explain_load_failure(resolved, f"{subfolder}/{_WEIGHTS_INDEX_NAME}", error) from error
    weights = _cached_file(resolved, subfolder, _WEIGHTS_NAME)
    if weights is not None:
        try:
            with safe_open(weights, framework="pt") as stored:  # reads the header only
                return set(stored.keys())
        except (OSError, SafetensorError) as error:
            raise explain_load_failure(resolved, f"{subfolder}/{_WEIGHTS_NAME}", error) from error
    return None


def inspect_prior_checkpoint(resolved: str, subfolder: str = "") -> PriorCheckpointFacts:
    """Read config.json (downloading only that small file for a hub id) and, when on disk, the weight names."""
    folder = Path(resolved) / subfolder
    if (folder / "model_index.json").is_file() and not (folder / "config.json").is_file():
        raise ModelLoadError(
            f"{_describe(resolved, subfolder)} is a pipeline folder (it has model_index.json), not a prior checkpoint "
            "with config.json at its root: point at the prior model itself, for example the ECLIPSE checkpoint "
            f"'{ECLIPSE_KANDINSKY22_PRIOR_ID}'."
        )
    config_path = model_file(resolved, subfolder, "config.json")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise explain_load_failure(resolved, f"{subfolder}/config.json", error) from error
    names = _stored_weight_names(resolved, subfolder)
    return PriorCheckpointFacts(
        additional_embeddings=config.get("additional_embeddings") if isinstance(config, dict) else None,
        has_time_embedding_weights=(
            None if names is None else any(name.startswith(_TIME_EMBEDDING_PREFIX) for name in names)
        ),
    )


def _describe(ref: str, subfolder: str) -> str:
    return f"'{ref}'" + (f" (subfolder '{subfolder}')" if subfolder else "")


def refuse_eclipse_checkpoint(ref: str, subfolder: str = "prior") -> None:
    """Raise ModelLoadError when `ref`'s prior is an ECLIPSE checkpoint: call before the stock PriorTransformer loads it.

    `ref` is a resolved hub id or folder. The stock class would load it without error, leave the time-embedding
    weights uninitialised and fail (or produce garbage) only when run. Loads no weights.
    """
    signs = inspect_prior_checkpoint(ref, subfolder).eclipse_signs()
    if signs:
        checkpoint = str(Path(ref) / subfolder) if Path(ref).is_dir() else ref
        raise ModelLoadError(
            f"{_describe(ref, subfolder)} is an ECLIPSE-format prior checkpoint without a timestep token "
            f"({'; '.join(signs)}). diffusers' stock PriorTransformer would load it silently with its time-embedding "
            "weights uninitialised. Use the `eclipse` prior for it instead: "
            f'[[priors]] name = "eclipse", params = {{ checkpoint = "{checkpoint}" }}.'
        )


def load_eclipse_prior_transformer(
    ref: str, device: torch.device, dtype: torch.dtype, subfolder: str = ""
) -> EclipsePriorTransformer:
    """An ECLIPSE-format prior checkpoint (hub id, local folder or "tiny") as an `EclipsePriorTransformer`, in eval mode.

    The checkpoint's config.json and weights sit at the root of the hub repository (`subfolder=""`). A checkpoint with
    a timestep token (a diffusion prior such as Kandinsky 2.2's) is refused: our class would silently drop its
    time-embedding weights.
    """
    resolved = resolve_model(ref, ECLIPSE_TINY_BUILDERS)
    signs = inspect_prior_checkpoint(resolved, subfolder).time_token_signs()
    if signs:
        raise ModelLoadError(
            f"{_describe(ref, subfolder)} is not an ECLIPSE-format prior checkpoint: {'; '.join(signs)}, so it is a "
            "diffusion prior with a timestep token. Point `checkpoint` at an ECLIPSE prior (for example "
            f"'{ECLIPSE_KANDINSKY22_PRIOR_ID}'), or use the `kandinsky-2.2` prior for Kandinsky 2.2's own."
        )
    prior = load_pretrained(
        EclipsePriorTransformer, resolved, dtype=dtype, **({"subfolder": subfolder} if subfolder else {})
    )
    # diffusers only warns about weights missing from the file, and leaves them on the meta device.
    missing = [name for name, parameter in prior.named_parameters() if parameter.is_meta]
    if missing:
        raise ModelLoadError(
            f"the ECLIPSE checkpoint {_describe(ref, subfolder)} lacks the weights {missing[:5]}: it is incomplete or "
            "not an ECLIPSE prior. Download it again, or point `checkpoint` at another one."
        )
    return prior.to(device).eval()


# ---------------------------------------------------------------------------------------------------------------------
# The tiny ECLIPSE-format checkpoint (random weights, for tests and the smoke run)


def build_tiny_eclipse_prior(folder: Path) -> None:
    """Save a tiny ECLIPSE-format checkpoint into `folder`, laid out like the real one (config.json + safetensors).

    Width 32 and 77 text positions, to pair with the tiny Kandinsky 2.2 text encoder, tokenizer and image encoder.
    """
    torch.manual_seed(0)
    prior = EclipsePriorTransformer(
        num_attention_heads=2,
        attention_head_dim=12,
        num_layers=1,
        embedding_dim=EMBEDDING_DIM,
        num_embeddings=TEXT_MAX_LENGTH,
        additional_embeddings=ECLIPSE_ADDITIONAL_EMBEDDINGS,
    )
    # positional_embedding and prd_embedding start at zero, and without positions attention cannot tell the tokens
    # apart: random values make the token order matter, so tests can check it. clip_std = 1 and a nonzero clip_mean
    # (as in the tiny Kandinsky prior) make an accidental post-processing visible: ECLIPSE applies none.
    statistics = torch.Generator().manual_seed(0)
    with torch.no_grad():
        prior.positional_embedding.copy_(torch.randn(prior.positional_embedding.shape, generator=statistics))
        prior.prd_embedding.copy_(torch.randn(prior.prd_embedding.shape, generator=statistics))
        prior.clip_std.copy_(torch.ones_like(prior.clip_std))
        prior.clip_mean.copy_(0.1 * torch.randn(prior.clip_mean.shape, generator=statistics))
    prior.eval().save_pretrained(folder, safe_serialization=True)
    # ECLIPSE saved its checkpoint with its own class, also named PriorTransformer: the real config.json says
    # "PriorTransformer", which is what makes the stock class load it silently. The tiny one must look the same.
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["_class_name"] = "PriorTransformer"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def tiny_eclipse_prior_dir() -> Path:
    """The tiny ECLIPSE-format checkpoint folder, built on first use."""
    return publish_directory(build_tiny_eclipse_prior, cache_dir() / "tiny" / "eclipse-prior-v1")


ECLIPSE_TINY_BUILDERS = {"tiny": tiny_eclipse_prior_dir}
"""Tiny references accepted wherever an ECLIPSE prior checkpoint is expected."""


# ---------------------------------------------------------------------------------------------------------------------
# The registered prior


def _load_clip_text_side(
    ref: str, device: torch.device, dtype: torch.dtype, hidden_size: int, projection_dim: int
) -> TextSide:
    """A CLIP text model with its tokenizer at the root of `ref`, loaded as ECLIPSE's README loads the LAION one.

    `projection_dim` is passed explicitly: a full CLIP repository (text and vision) keeps it in the top-level config,
    which the text model's config would not see. `hidden_size` is checked from the config before any weight is read.
    """
    resolved = resolve_model(ref, {})
    tokenizer = load_pretrained(CLIPTokenizer, resolved)
    if len(tokenizer) <= len(tokenizer.all_special_tokens):
        # transformers 5 silently builds an empty tokenizer (special tokens only) when the files are missing.
        raise explain_load_failure(resolved, "CLIPTokenizer", FileNotFoundError("no vocabulary found"))
    config = load_pretrained(CLIPTextConfig, resolved, projection_dim=projection_dim)
    if config.hidden_size != hidden_size:
        raise ModelLoadError(
            f"the text encoder '{ref}' has hidden size {config.hidden_size}, but the ECLIPSE checkpoint needs "
            f"{hidden_size}: give the CLIP text model the checkpoint was trained with."
        )
    try:
        text_encoder = load_pretrained(CLIPTextModelWithProjection, resolved, config=config, dtype=dtype)
    except RuntimeError as error:
        # transformers raises RuntimeError when a stored weight's shape differs from the config's (the projection).
        raise ModelLoadError(
            f"the text encoder '{ref}' does not fit the ECLIPSE checkpoint, which needs a text projection of width "
            f"{projection_dim}: {error}"
        ) from error
    return TextSide(tokenizer=tokenizer, text_encoder=text_encoder.to(device).eval())


class EclipsePrior(Prior):
    """ECLIPSE's trained non-diffusion prior: one forward pass from Gaussian noise; negative = the zero-image embedding."""

    class Params(BaseParams):
        checkpoint: str = ECLIPSE_KANDINSKY22_PRIOR_ID
        """An ECLIPSE prior checkpoint (config.json + safetensors at its root): Hugging Face id, local folder, or "tiny"
        (random weights, for tests)."""
        model: str = KANDINSKY22_PRIOR_ID
        """The Kandinsky 2.2 prior repository whose tokenizer and text encoder (unless `text_encoder` is set) encode the
        prompts and whose image encoder gives the zero-image negative: Hugging Face id, local folder, or "tiny"."""
        text_encoder: str | None = None
        """Another CLIP text model with its tokenizer (Hugging Face id or local folder), loaded as
        `CLIPTextModelWithProjection` with the checkpoint's projection width; ECLIPSE's README uses
        "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k". None: the text encoder of `model`."""
        steps: int | None = Field(default=None, ge=1)
        """Accepted and ignored, as ECLIPSE's pipeline ignores num_inference_steps: ECLIPSE is not a diffusion model."""
        guidance: float | None = Field(default=None, ge=0.0)
        """Accepted and ignored, as ECLIPSE's pipeline ignores guidance_scale: there is no classifier-free guidance."""

    params: EclipsePrior.Params

    @classmethod
    def required_models(cls, params: EclipsePrior.Params) -> list[ModelNeed]:
        needs = [ModelNeed(params.checkpoint, "ECLIPSE prior checkpoint", ("config.json", "*.safetensors"))]
        if params.text_encoder is None:
            files = PRIOR_TEXT_SIDE_FILES + PRIOR_IMAGE_ENCODER_FILES
            return [
                *needs,
                ModelNeed(params.model, "text encoder, and image encoder (zero-image negative)", files),
            ]
        text_files = ("vocab.json|tokenizer.json", *model_files(""))
        return [
            *needs,
            ModelNeed(params.text_encoder, "CLIP text encoder and tokenizer", text_files),
            ModelNeed(params.model, "image encoder (zero-image negative)", PRIOR_IMAGE_ENCODER_FILES),
        ]

    def __init__(self, params: EclipsePrior.Params, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(params, device=device, dtype=dtype)
        self.prior = load_eclipse_prior_transformer(params.checkpoint, device, dtype)
        config = self.prior.config
        text_width = config.embedding_proj_dim or config.embedding_dim
        if params.text_encoder is None:
            self.text_side = load_text_side(params.model, device, dtype)
        else:
            self.text_side = _load_clip_text_side(
                params.text_encoder,
                device,
                dtype,
                hidden_size=config.embedding_dim,
                projection_dim=text_width,
            )
        self.negative_image_embeds = zero_image_embeds(params.model, device, dtype)
        self._check_widths(text_width)

    def _check_widths(self, text_width: int) -> None:
        """Refuse a text encoder, tokenizer or image encoder that does not fit the checkpoint, before any prompt."""
        config = self.prior.config
        text_config = self.text_side.text_encoder.config
        text_source = self.params.text_encoder or self.params.model
        checks = [
            ("text encoder's hidden size", text_source, text_config.hidden_size, config.embedding_dim),
            ("text encoder's projection_dim", text_source, text_config.projection_dim, text_width),
            (
                "tokenizer's model_max_length",
                text_source,
                self.text_side.tokenizer.model_max_length,
                config.num_embeddings,
            ),
            (
                "zero-image embedding's width",
                self.params.model,
                self.negative_image_embeds.shape[-1],
                config.clip_embed_dim or config.embedding_dim,
            ),
        ]
        for what, source, actual, expected in checks:
            if actual != expected:
                raise ModelLoadError(
                    f"the {what} of '{source}' is {actual}, but the ECLIPSE checkpoint '{self.params.checkpoint}' "
                    f"needs {expected}: pair the checkpoint with the Kandinsky 2.2 prior (and text encoder) it was "
                    "trained for."
                )

    def embed(self, texts: Sequence[str], generators: Sequence[torch.Generator]) -> PriorOutput:
        if len(generators) != len(texts):
            raise OviBenchError(f"prior 'eclipse' got {len(texts)} texts but {len(generators)} generators.")
        encoding = self.text_side.encode(texts)
        # Row i's noise comes from generators[i] alone, so a prompt's result does not depend on its batch. Each row is
        # drawn on its generator's device in the model's dtype, as diffusers' randn_tensor draws ECLIPSE's noise, so a
        # single prompt gets exactly the noise ECLIPSE's pipeline would give it.
        width = self.prior.config.embedding_dim
        noise = torch.stack(
            [
                torch.randn(width, generator=generator, device=generator.device, dtype=self.dtype)
                for generator in generators
            ]
        ).to(self.device)
        with torch.inference_mode():
            image_embeds = self.prior(
                noise,
                proj_embedding=encoding.text_embeds,
                encoder_hidden_states=encoding.last_hidden_state,
                attention_mask=encoding.attention_mask,
            ).predicted_image_embedding
        negative_image_embeds = self.negative_image_embeds.repeat(len(texts), 1)
        return PriorOutput(
            image_embeds=image_embeds.float().cpu(), negative_image_embeds=negative_image_embeds
        )
