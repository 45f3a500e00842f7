"""ECLIPSE (Patel et al., CVPR 2024): a small trained prior for Kandinsky 2.2 that is not a diffusion model.

It runs as ECLIPSE's own pipeline runs it: one forward pass of the checkpoint (`ovi_bench.models.eclipse`) from
Gaussian noise and the prompt's CLIP text encoding; no scheduler, no classifier-free guidance, no
`clip_mean`/`clip_std` post-processing; the negative embedding is the zero-image embedding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import Field

from ovi_bench.components import ModelNeed, model_files
from ovi_bench.components import Params as BaseParams
from ovi_bench.errors import ModelLoadError, OviBenchError
from ovi_bench.models.eclipse import (
    ECLIPSE_KANDINSKY22_PRIOR_ID,
    load_eclipse_prior_transformer,
    load_eclipse_text_side,
)
from ovi_bench.models.kandinsky import (
    KANDINSKY22_PRIOR_ID,
    PRIOR_IMAGE_ENCODER_FILES,
    PRIOR_TEXT_SIDE_FILES,
    load_text_side,
    zero_image_embeds,
)
from ovi_bench.priors.base import Prior, PriorOutput
from ovi_bench.spaces import DEFAULT_SPACE


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
    def embedding_space(cls, params: EclipsePrior.Params) -> str:
        return DEFAULT_SPACE  # ECLIPSE's checkpoints are trained on Kandinsky 2.2's image encoder

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
            self.text_side = load_eclipse_text_side(
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
