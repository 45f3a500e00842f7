"""Karlo's learned unCLIP prior (`kakaobrain/karlo-v1-alpha`), run through the prior half of diffusers'
UnCLIPPipeline: its own prompt encoding, latent preparation, PriorTransformer denoising loop with classifier-free
guidance against the empty prompt, and `post_process_latents`. The decoder cascade is never loaded."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import Field

from ovi_bench.components import ModelNeed
from ovi_bench.components import Params as BaseParams
from ovi_bench.errors import OviBenchError
from ovi_bench.models.karlo import KARLO_ID, PRIOR_PIPELINE_FILES, load_prior_pipeline
from ovi_bench.priors.base import Prior, PriorOutput
from ovi_bench.spaces import L


class KarloPrior(Prior):
    """Karlo v1 alpha's unCLIP diffusion prior, CFG against the empty prompt; negative = zeros (Karlo reads none).

    Karlo's decoder guides with its own learned unconditional embedding and reads no negative image embedding, so
    the negative this prior returns is the conventional "no image" embedding: zeros."""

    class Params(BaseParams):
        model: str = KARLO_ID
        """A Karlo UnCLIPPipeline: Hugging Face id, local folder, or "tiny" (random weights, for tests)."""
        steps: int = Field(default=25, ge=1)
        """Denoising steps of the prior's UnCLIP scheduler (UnCLIPPipeline's `prior_num_inference_steps` default)."""
        guidance: float = Field(default=4.0, ge=0.0)
        """Classifier-free guidance scale against the empty prompt (UnCLIPPipeline's `prior_guidance_scale`
        default); at most 1 turns guidance off."""

    params: KarloPrior.Params

    @classmethod
    def embedding_space(cls, params: KarloPrior.Params) -> str:
        return L.name  # Karlo's prior is trained on OpenAI CLIP ViT-L/14 image embeddings

    @classmethod
    def required_models(cls, params: KarloPrior.Params) -> list[ModelNeed]:
        return [
            ModelNeed(params.model, "unCLIP prior (tokenizer, text encoder, prior)", PRIOR_PIPELINE_FILES)
        ]

    def __init__(self, params: KarloPrior.Params, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(params, device=device, dtype=dtype)
        self.pipeline = load_prior_pipeline(params.model, device, dtype)

    def embed(self, texts: Sequence[str], generators: Sequence[torch.Generator]) -> PriorOutput:
        if len(generators) != len(texts):
            raise OviBenchError(f"prior 'karlo' got {len(texts)} texts but {len(generators)} generators.")
        pipeline = self.pipeline
        scheduler = pipeline.prior_scheduler
        guided = self.params.guidance > 1.0
        device = pipeline._execution_device
        # A list of generators, one per prompt (diffusers' randn_tensor draws row i from generators[i], in the latents
        # and in every scheduler step): with one generator a prompt's noise would depend on its batch position.
        row_generators = list(generators)
        with torch.inference_mode():
            # The steps of UnCLIPPipeline.__call__ up to "done prior", with the pipeline's own helpers.
            prompt_embeds, text_hidden_states, text_mask = pipeline._encode_prompt(
                list(texts), device, 1, guided
            )
            scheduler.set_timesteps(self.params.steps, device=device)
            timesteps = scheduler.timesteps
            latents = pipeline.prepare_latents(
                (len(texts), pipeline.prior.config.embedding_dim),
                prompt_embeds.dtype,
                device,
                row_generators,
                None,
                scheduler,
            )
            for index, timestep in enumerate(timesteps):
                model_input = torch.cat([latents] * 2) if guided else latents
                predicted = pipeline.prior(
                    model_input,
                    timestep=timestep,
                    proj_embedding=prompt_embeds,
                    encoder_hidden_states=text_hidden_states,
                    attention_mask=text_mask,
                ).predicted_image_embedding
                if guided:
                    unconditional, conditional = predicted.chunk(2)
                    predicted = unconditional + self.params.guidance * (conditional - unconditional)
                previous = timesteps[index + 1] if index + 1 < len(timesteps) else None
                latents = scheduler.step(
                    predicted,
                    timestep=timestep,
                    sample=latents,
                    generator=row_generators,
                    prev_timestep=previous,
                ).prev_sample
            image_embeds = pipeline.prior.post_process_latents(latents).float().cpu()
        return PriorOutput(image_embeds=image_embeds, negative_image_embeds=torch.zeros_like(image_embeds))
