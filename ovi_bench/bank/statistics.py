"""Bank statistics: the mean and Ledoit–Wolf shrunk covariance of a bank's embeddings, and the Mahalanobis distance
(e − μ)ᵀ Σ⁻¹ (e − μ) that OVI's constraint and the embedding diagnostics measure against them."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ovi_bench.errors import DataError

_LEDOIT_WOLF_CHUNK_ROWS = 8192


def _float64_rows(embeddings: torch.Tensor, start: int, stop: int, normalise: bool) -> torch.Tensor:
    rows = embeddings[start:stop].to(device="cpu", dtype=torch.float64)
    return F.normalize(rows, dim=-1) if normalise else rows


def _mean_and_ledoit_wolf(
    embeddings: torch.Tensor, *, normalise: bool, chunk_rows: int = _LEDOIT_WOLF_CHUNK_ROWS
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mean, Ledoit–Wolf shrunk covariance and shrinkage, in float64 on the CPU, reading `chunk_rows` rows at a time.

    Two passes (mean, then the centred sums), so the memory beyond the input is O(chunk_rows · D + D²) and the bank is
    never copied whole. The formula is sklearn's `ledoit_wolf(assume_centered=False)`, written in sums that a stream
    of rows can accumulate (x_i the centred rows, S = XᵀX / n, p = D):

        mu = tr(S) / p
        delta = ‖S − mu·I‖²_F / p                            (sklearn: (Σ((XᵀX)²)/n² − 2·mu·tr(S) + p·mu²) / p)
        beta = (Σ_i ‖x_i‖⁴ / n − ‖S‖²_F) / (p·n)            (= Σ_i ‖x_i x_iᵀ − S‖²_F / (p·n²), Ledoit–Wolf's b̄²)
        shrinkage = min(beta, delta) / delta
        Σ = (1 − shrinkage)·S + shrinkage·mu·I
    """
    if embeddings.ndim != 2:
        raise ValueError(f"expected embeddings of shape [N, D], got {tuple(embeddings.shape)}")
    count, dim = embeddings.shape
    if count < 2:
        raise DataError(
            f"bank statistics need at least 2 embeddings, got {count}: build the bank from more images."
        )
    total = torch.zeros(dim, dtype=torch.float64)
    for start in range(0, count, chunk_rows):
        total += _float64_rows(embeddings, start, start + chunk_rows, normalise).sum(dim=0)
    mean = total / count

    scatter = torch.zeros(dim, dim, dtype=torch.float64)
    sum_fourth_powers = 0.0  # Σ_i ‖x_i‖⁴ of the centred rows
    for start in range(0, count, chunk_rows):
        centred = _float64_rows(embeddings, start, start + chunk_rows, normalise) - mean
        scatter += centred.T @ centred
        sum_fourth_powers += centred.square().sum(dim=1).square().sum().item()
    empirical = scatter / count
    trace = empirical.trace().item()
    mu = trace / dim
    frobenius_squared = empirical.square().sum().item()
    delta = (frobenius_squared - 2.0 * mu * trace + dim * mu**2) / dim
    beta = (sum_fourth_powers / count - frobenius_squared) / (dim * count)
    beta = min(beta, delta)
    # delta == 0: S is already a multiple of the identity, nothing to shrink toward. beta >= 0 in exact arithmetic
    # (Jensen); a rounding-negative value means no shrinkage rather than a negative one.
    shrinkage = 0.0 if beta <= 0.0 or delta <= 0.0 else beta / delta
    covariance = (1.0 - shrinkage) * empirical
    covariance.diagonal().add_(shrinkage * mu)
    return mean, covariance, shrinkage


def ledoit_wolf(embeddings: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The Ledoit–Wolf (2004) shrunk covariance of the rows of `embeddings` [N, D] (float64 [D, D]) and its shrinkage.

    Equal (to float64 rounding) to `sklearn.covariance.ledoit_wolf(X, assume_centered=False)`; the data are centred
    on their mean first. Computed in float64 on the CPU, streaming over the rows.
    """
    _, covariance, shrinkage = _mean_and_ledoit_wolf(embeddings, normalise=False)
    return covariance, shrinkage


def _cholesky(covariance: torch.Tensor) -> torch.Tensor:
    factor, info = torch.linalg.cholesky_ex(covariance)
    if info.item() != 0:
        raise DataError(
            f"the bank's covariance ({covariance.shape[0]}×{covariance.shape[1]}) is not positive definite: the "
            "bank has too few, or too similar, embeddings. Build the bank from more, and more varied, images."
        )
    return factor


@dataclass(frozen=True, eq=False)
class BankStatistics:
    """A bank's mean and shrunk covariance: what the Mahalanobis constraint and diagnostic measure against.

    All four tensors are float64 on the CPU; `mahalanobis_squared` moves what it needs to the embeddings' device and
    dtype on first use there (and keeps it). Equality is identity: tensors have no single truth value.
    """

    mean: torch.Tensor
    """[D] float64: the mean embedding μ."""
    covariance: torch.Tensor
    """[D, D] float64: the Ledoit–Wolf shrunk covariance Σ (positive definite whenever shrinkage > 0)."""
    precision: torch.Tensor
    """[D, D] float64: Σ⁻¹, from the Cholesky factor of Σ (`torch.cholesky_inverse`), never an explicit inverse."""
    shrinkage: float
    """Ledoit–Wolf's weight on the scaled identity, in [0, 1]: near 1 for few embeddings, near 0 for many."""
    normalised: bool
    """Whether the embeddings were L2-normalised before the statistics (and are normalised before a distance)."""
    _device_copies: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, init=False, repr=False
    )
    """(μ, Wᵀ) per (device, dtype), with W = L⁻¹ for Σ = L·Lᵀ, so that (e − μ)ᵀ Σ⁻¹ (e − μ) = ‖W (e − μ)‖²."""

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    def _whitening(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        key = (device, dtype)
        if key not in self._device_copies:
            factor = _cholesky(self.covariance.to(device="cpu", dtype=torch.float64))
            identity = torch.eye(self.dim, dtype=torch.float64)
            whitening = torch.linalg.solve_triangular(factor, identity, upper=False)  # L⁻¹
            self._device_copies[key] = (
                self.mean.to(device=device, dtype=dtype),
                whitening.T.contiguous().to(device=device, dtype=dtype),
            )
        return self._device_copies[key]

    def mahalanobis_squared(self, embeds: torch.Tensor) -> torch.Tensor:
        """(e − μ)ᵀ Σ⁻¹ (e − μ) for every row of `embeds` [..., D]: shape [...], in embeds' dtype and on its device.

        Differentiable with respect to `embeds`. Rows are L2-normalised first when the statistics were made from
        normalised embeddings. Computed as the squared norm of the whitened difference, so it is never negative, even
        in bfloat16.
        """
        if embeds.shape[-1] != self.dim:
            raise ValueError(
                f"embeddings of width {embeds.shape[-1]} cannot be compared with bank statistics of width {self.dim}"
            )
        mean, whitening_t = self._whitening(embeds.device, embeds.dtype)
        if self.normalised:
            embeds = F.normalize(embeds, dim=-1)
        return ((embeds - mean) @ whitening_t).square().sum(dim=-1)


def bank_statistics(embeddings: torch.Tensor, *, normalised: bool = False) -> BankStatistics:
    """Mean, Ledoit–Wolf covariance and its precision of `embeddings` [N, D] (rows L2-normalised first if asked)."""
    mean, covariance, shrinkage = _mean_and_ledoit_wolf(embeddings, normalise=normalised)
    precision = torch.cholesky_inverse(_cholesky(covariance)).contiguous()
    return BankStatistics(
        mean=mean, covariance=covariance, precision=precision, shrinkage=shrinkage, normalised=normalised
    )
