"""Optimization-based Visual Inversion (OVI): a training-free prior, and its two bank-constrained variants.

OVI learns, for each prompt, a few *pseudo-tokens* that replace the patch embeddings of the frozen CLIP vision
tower, and optimises them with AdamW until the tower's image embedding points where the prompt's text embedding
points (loss 1 − cos). The variants add a pull toward real images, measured on a bank of real-image embeddings made
by the same tower:

* `ovi-mahalanobis`: + λ · (e − μ)ᵀ Σ⁻¹ (e − μ) / D, with the bank's mean μ and Ledoit–Wolf covariance Σ;
* `ovi-nn`:          + λ · (1 − mean cosine to the k nearest bank embeddings), neighbours refreshed every N steps.

The constraint formulas are ovi-bench's definitions (the paper's are not public); their weights and the
neighbour settings are parameters, recorded in every result. Defaults are provisional until a sweep
(`configs/sweep-ovi-constraints.toml`) on real weights chooses them.

Every prompt is an independent problem: losses are summed over prompts (not averaged), and the optimiser keeps each
prompt's moments and step count to itself, so a prompt's result does not depend on its batch; with early stopping a
converged prompt drops out of the forward and backward passes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from transformers import CLIPVisionModelWithProjection

from ovi_bench.bank.folder import EmbeddingBank
from ovi_bench.bank.neighbours import nearest_neighbours
from ovi_bench.bank.statistics import BankStatistics
from ovi_bench.bank.tiny import bank_needs, resolve_bank
from ovi_bench.components import FileNeed, ModelNeed
from ovi_bench.errors import OviBenchError
from ovi_bench.models.towers import (
    load_towers_text_side,
    load_towers_vision,
    towers_files,
    towers_zero_image_embeds,
)
from ovi_bench.priors.base import Prior, PriorOutput
from ovi_bench.priors.towers import TowersParams
from ovi_bench.spaces import DEFAULT_SPACE

# ---------------------------------------------------------------------------------------------------------------------
# The forward pass: pseudo-tokens through the vision tower, with the patch convolution bypassed.


def pseudo_token_image_embeds(
    image_encoder: CLIPVisionModelWithProjection, tokens: torch.Tensor
) -> torch.Tensor:
    """Image embeddings [B, D] of pseudo-tokens [B, P, W] (W = the tower's token width).

    The P tokens are stretched over all patch positions by nearest-neighbour interpolation along the token axis
    (P = 1 fills every position with one vector), then the tower runs exactly as for an image: class token,
    position embeddings, pre-LayerNorm, encoder, post-LayerNorm of the class token, visual projection.
    """
    vision = image_encoder.vision_model
    embeddings = vision.embeddings
    batch_size = tokens.shape[0]
    patches = F.interpolate(tokens.transpose(1, 2), size=embeddings.num_patches, mode="nearest").transpose(
        1, 2
    )
    class_embeds = embeddings.class_embedding.expand(batch_size, 1, -1)
    hidden = torch.cat([class_embeds, patches.to(class_embeds.dtype)], dim=1)
    hidden = vision.pre_layrnorm(hidden + embeddings.position_embedding(embeddings.position_ids))
    last_hidden_state = vision.encoder(inputs_embeds=hidden).last_hidden_state
    return image_encoder.visual_projection(vision.post_layernorm(last_hidden_state[:, 0, :]))


# ---------------------------------------------------------------------------------------------------------------------
# The optimiser: AdamW whose rows (prompts) have their own step counts and can leave the optimisation.


class RowwiseAdamW:
    """torch.optim.AdamW's update (decoupled weight decay, bias correction) on the rows of one tensor.

    Only the rows passed to `step` move; each row keeps its own moments and step count, so a row that stopped early
    (or shares a batch with others) follows exactly the trajectory it would follow alone.
    """

    def __init__(
        self,
        rows: torch.Tensor,
        *,
        learning_rate: float,
        weight_decay: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.rows = rows
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.exp_avg = torch.zeros_like(rows)
        self.exp_avg_sq = torch.zeros_like(rows)
        self.steps = torch.zeros(rows.shape[0], dtype=torch.long, device=rows.device)

    @torch.no_grad()
    def step(self, active: torch.Tensor, grad: torch.Tensor) -> None:
        """Update the rows `active` (indices) with their gradient `grad` ([len(active), ...])."""
        self.steps[active] += 1
        shape = (-1,) + (1,) * (self.rows.ndim - 1)
        # Bias corrections in float64, like torch's (Python floats there), so the update rounds the same way.
        step = self.steps[active].to(torch.float64).view(shape)
        rows = self.rows[active] * (1 - self.learning_rate * self.weight_decay)
        exp_avg = self.exp_avg[active].lerp_(grad, 1 - self.beta1)
        exp_avg_sq = self.exp_avg_sq[active].mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
        bias_correction1 = (1 - self.beta1**step).to(self.rows.dtype)
        bias_correction2_sqrt = (1 - self.beta2**step).sqrt().to(self.rows.dtype)
        denominator = exp_avg_sq.sqrt() / bias_correction2_sqrt + self.eps
        rows -= self.learning_rate / bias_correction1 * exp_avg / denominator
        self.rows[active] = rows
        self.exp_avg[active] = exp_avg
        self.exp_avg_sq[active] = exp_avg_sq


# ---------------------------------------------------------------------------------------------------------------------
# The constraints toward real images.


class MahalanobisConstraint:
    """λ · (e − μ)ᵀ Σ⁻¹ (e − μ) / D: the squared Mahalanobis distance to the bank, per dimension."""

    def __init__(self, statistics: BankStatistics, weight: float) -> None:
        self.statistics = statistics
        self.weight = weight

    def __call__(self, image_embeds: torch.Tensor, rows: torch.Tensor, step: int) -> torch.Tensor:
        distance = self.statistics.mahalanobis_squared(image_embeds.float())
        return self.weight * distance / image_embeds.shape[-1]


class NearestNeighbourConstraint:
    """λ · (1 − mean cosine to the k nearest bank embeddings), the neighbours found anew every `refresh_every` steps."""

    def __init__(
        self, bank_embeds: torch.Tensor, batch_size: int, weight: float, k: int, refresh_every: int
    ) -> None:
        self.bank_unit = F.normalize(bank_embeds.float(), dim=-1)
        self.weight = weight
        self.k = k
        self.refresh_every = refresh_every
        self.neighbours = torch.zeros(batch_size, k, dtype=torch.long, device=bank_embeds.device)

    def __call__(self, image_embeds: torch.Tensor, rows: torch.Tensor, step: int) -> torch.Tensor:
        if step % self.refresh_every == 0:
            _, self.neighbours[rows] = nearest_neighbours(
                image_embeds.detach().float(), self.bank_unit, self.k
            )
        neighbours = self.bank_unit[self.neighbours[rows]]  # [B, k, D]
        cosines = torch.einsum("bd,bkd->bk", F.normalize(image_embeds.float(), dim=-1), neighbours)
        return self.weight * (1 - cosines.mean(dim=-1))


Constraint = MahalanobisConstraint | NearestNeighbourConstraint


# ---------------------------------------------------------------------------------------------------------------------
# The optimisation loop shared by the family.


@dataclass(frozen=True)
class OptimisationResult:
    image_embeds: torch.Tensor
    """[B, D] float32 on the CPU: the tower's embedding of the final pseudo-tokens."""
    steps: list[int]
    """Optimisation steps each prompt used (less than the budget when it stopped early)."""
    text_cosines: list[float]
    """Final cosine to the text embedding, per prompt."""
    losses: list[float]
    """Final total loss, per prompt."""


def optimise_pseudo_tokens(
    image_encoder: CLIPVisionModelWithProjection,
    text_embeds: torch.Tensor,
    generators: Sequence[torch.Generator],
    *,
    pseudo_tokens: int,
    steps: int,
    learning_rate: float,
    weight_decay: float,
    init_std: float,
    constraints: Sequence[Constraint] = (),
    patience: int | None = None,
    min_improvement: float = 1e-4,
    autocast_dtype: torch.dtype | None = None,
) -> OptimisationResult:
    """Optimise one set of pseudo-tokens per text embedding; the tower is never changed.

    With `patience`, a prompt stops when its loss has not improved by `min_improvement` for `patience` steps.
    """
    device = text_embeds.device
    width = image_encoder.config.hidden_size
    batch_size = text_embeds.shape[0]
    # Initial tokens come from each prompt's own CPU generator: identical on every device and batch.
    tokens = torch.stack(
        [torch.randn(pseudo_tokens, width, generator=generator) * init_std for generator in generators]
    ).to(device)
    optimiser = RowwiseAdamW(tokens, learning_rate=learning_rate, weight_decay=weight_decay)
    text_unit = F.normalize(text_embeds.float(), dim=-1)
    best_loss = torch.full((batch_size,), math.inf, device=device)
    since_best = torch.zeros(batch_size, dtype=torch.long, device=device)
    active = torch.arange(batch_size, device=device)
    image_encoder.requires_grad_(False)

    def losses(rows: torch.Tensor, row_tokens: torch.Tensor, step: int) -> tuple[torch.Tensor, ...]:
        """Per-prompt total loss, text cosine and image embedding of the tokens of `rows`."""
        with torch.autocast(
            device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
        ):
            image_embeds = pseudo_token_image_embeds(image_encoder, row_tokens).float()
        text_cosine = (F.normalize(image_embeds, dim=-1) * text_unit[rows]).sum(dim=-1)
        total = 1 - text_cosine
        for constraint in constraints:
            total = total + constraint(image_embeds, rows, step)
        return total, text_cosine, image_embeds

    for step in range(steps):
        if active.numel() == 0:
            break
        row_tokens = tokens[active].requires_grad_(True)
        loss, _, _ = losses(active, row_tokens, step)
        # A sum, not a mean: each prompt's gradient is its own, whatever the batch size.
        (grad,) = torch.autograd.grad(loss.sum(), row_tokens)
        optimiser.step(active, grad)
        if patience is not None:
            with torch.no_grad():
                improved = loss.detach() < best_loss[active] - min_improvement
                best_loss[active] = torch.where(improved, loss.detach(), best_loss[active])
                since_best[active] = torch.where(improved, 0, since_best[active] + 1)
                active = active[since_best[active] < patience]

    with torch.no_grad():
        # Step 0 makes the nearest-neighbour term search afresh, so the reported loss is the final tokens' own.
        final_loss, final_cosine, image_embeds = losses(
            torch.arange(batch_size, device=device), tokens, step=0
        )
    return OptimisationResult(
        image_embeds=image_embeds.cpu(),
        steps=optimiser.steps.tolist(),
        text_cosines=final_cosine.tolist(),
        losses=final_loss.tolist(),
    )


# ---------------------------------------------------------------------------------------------------------------------
# The registered priors.


class OVIParams(TowersParams):
    # `model`: the space's towers; the text tower gives the target and the vision tower is inverted.
    pseudo_tokens: int = Field(4, ge=1)
    """Pseudo-tokens per prompt (published: 1 for ViT-B/32, 4 for ViT-L/14; Kandinsky's ViT-bigG/14 also has 14 px
    patches, hence 4)."""
    steps: int = Field(1000, ge=1)
    """Optimisation steps (the budget, when early stopping is on)."""
    learning_rate: float = Field(2e-2, gt=0)
    """AdamW learning rate (published 2e-2)."""
    weight_decay: float = Field(0.01, ge=0)
    """AdamW decoupled weight decay (published 0.01)."""
    init_std: float = Field(0.02, gt=0)
    """Standard deviation of the pseudo-tokens' Gaussian initialisation (published 0.02)."""
    precision: Literal["float32", "bfloat16-autocast"] = "float32"
    """"bfloat16-autocast" runs the tower's matrix products in bfloat16 (fast on GPUs); tokens and optimiser
    stay float32."""
    early_stopping: bool = False
    """Stop a prompt once its loss has plateaued (see `patience`, `min_improvement`)."""
    patience: int = Field(50, ge=1)
    """Steps without an improvement of `min_improvement` after which a prompt stops."""
    min_improvement: float = Field(1e-4, ge=0)
    """Loss decrease that counts as an improvement for early stopping."""


class BankParams(OVIParams):
    bank: str = "tiny"
    """Embedding bank folder made by `ovi-bench bank build` with this model's image encoder, in this space ("tiny":
    the tiny bank of the space)."""


class MahalanobisParams(BankParams):
    mahalanobis_weight: float = Field(0.05, ge=0)
    """λ of the Mahalanobis term (provisional default)."""
    normalise: bool = False
    """Compute the statistics and the distance on L2-normalised embeddings instead of raw ones."""


class NearestNeighbourParams(BankParams):
    nn_weight: float = Field(0.5, ge=0)
    """λ of the nearest-neighbour term (provisional default)."""
    k: int = Field(8, ge=1)
    """Neighbours averaged in the nearest-neighbour term."""
    refresh_every: int = Field(10, ge=1)
    """Steps between neighbour searches (1 = every step)."""


class OVIPrior(Prior):
    """Training-free: pseudo-tokens through the frozen CLIP vision tower, optimised toward the text embedding."""

    space_parameter = "space"

    Params = OVIParams
    version = "1"
    registered_as: ClassVar[str] = "ovi"
    params: OVIParams

    @classmethod
    def embedding_space(cls, params: OVIParams) -> str:
        return params.space

    @classmethod
    def required_models(cls, params: OVIParams) -> list[ModelNeed]:
        files = towers_files(params.space)
        return [ModelNeed(params.model, "text encoder and the image encoder it inverts", files)]

    def __init__(self, params: OVIParams, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(params, device=device, dtype=dtype)
        if params.precision == "bfloat16-autocast" and device.type != "cuda":
            raise OviBenchError(
                f"prior '{self.registered_as}': precision \"bfloat16-autocast\" is for GPUs; on {device.type} "
                'use precision = "float32".'
            )
        self.text_side = load_towers_text_side(params.model, params.space, device, dtype)
        self.image_encoder = load_towers_vision(params.model, params.space, device, dtype)
        self.negative_image_embeds = towers_zero_image_embeds(
            params.model, params.space, device, dtype, image_encoder=self.image_encoder
        )

    def constraints(self, batch_size: int) -> list[Constraint]:
        return []

    def embed(self, texts: Sequence[str], generators: Sequence[torch.Generator]) -> PriorOutput:
        params = self.params
        text_embeds = self.text_side.encode(texts).text_embeds.float()
        result = optimise_pseudo_tokens(
            self.image_encoder,
            text_embeds,
            generators,
            pseudo_tokens=params.pseudo_tokens,
            steps=params.steps,
            learning_rate=params.learning_rate,
            weight_decay=params.weight_decay,
            init_std=params.init_std,
            constraints=self.constraints(len(texts)),
            patience=params.patience if params.early_stopping else None,
            min_improvement=params.min_improvement,
            autocast_dtype=torch.bfloat16 if params.precision == "bfloat16-autocast" else None,
        )
        facts = [
            {"steps": steps, "text_cosine": cosine, "loss": loss}
            for steps, cosine, loss in zip(result.steps, result.text_cosines, result.losses, strict=True)
        ]
        return PriorOutput(result.image_embeds, self.negative_image_embeds.repeat(len(texts), 1), facts)


class _BankConstrainedPrior(OVIPrior):
    params: BankParams

    @classmethod
    def required_files(cls, params: BankParams) -> list[FileNeed]:
        return bank_needs(params.bank, "embedding bank")

    @classmethod
    def content_identity(cls, values: dict[str, Any]) -> dict[str, Any]:
        # The bank is named by a path; its content digest makes a bank rebuilt in place a different prior.
        bank = resolve_bank(values["bank"], values.get("space", DEFAULT_SPACE))
        return {"bank_digest": EmbeddingBank.load(bank).info.digest}

    def __init__(self, params: BankParams, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(params, device=device, dtype=dtype)
        self.bank = EmbeddingBank.load(resolve_bank(params.bank, params.space))
        self.bank.check_encoder(params.model, params.space)


class OVIMahalanobisPrior(_BankConstrainedPrior):
    """OVI plus a Mahalanobis pull toward the statistics of a bank of real-image embeddings."""

    Params = MahalanobisParams
    registered_as = "ovi-mahalanobis"
    params: MahalanobisParams

    def constraints(self, batch_size: int) -> list[Constraint]:
        statistics = self.bank.statistics(normalised=self.params.normalise)
        return [MahalanobisConstraint(statistics, self.params.mahalanobis_weight)]


class OVINearestNeighbourPrior(_BankConstrainedPrior):
    """OVI plus a pull toward the k nearest real-image embeddings of a bank."""

    Params = NearestNeighbourParams
    registered_as = "ovi-nn"
    params: NearestNeighbourParams

    def __init__(self, params: NearestNeighbourParams, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(params, device=device, dtype=dtype)
        if params.k > self.bank.info.count:
            raise OviBenchError(
                f"prior 'ovi-nn': k = {params.k} but the bank {params.bank} holds only {self.bank.info.count} "
                "embeddings; lower k or use a larger bank."
            )
        self.bank_embeds = self.bank.embeddings(device=device)

    def constraints(self, batch_size: int) -> list[Constraint]:
        params = self.params
        return [
            NearestNeighbourConstraint(
                self.bank_embeds, batch_size, params.nn_weight, params.k, params.refresh_every
            )
        ]
