"""Distances between two sets of image features: Fréchet distance, KID and CMMD. Pure functions, float64 throughout.

Feature sets are [N, F] arrays (numpy or torch, any float dtype); everything is converted to float64 first, because
the matrix square root of FID loses several digits in float32 (pytorch-fid computes in float64 for the same reason).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.linalg

ArrayLike = Any
"""A numpy array or a torch tensor of shape [N, F]."""


def _as_float64(values: ArrayLike, name: str) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor: no torch import needed for a pure function
        values = values.detach().cpu().double().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a [N, F] matrix of features, got shape {array.shape}.")
    if not np.isfinite(array).all():
        raise ValueError(
            f"{name} holds NaN or infinite values; the feature extractor overflowed or is corrupt."
        )
    return array


def feature_statistics(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean [F] and unbiased covariance [F, F] (divided by N − 1, as pytorch-fid's `np.cov`) of [N, F] features."""
    array = _as_float64(features, "features")
    if array.shape[0] < 2:
        raise ValueError(f"a covariance needs at least 2 samples, got {array.shape[0]}.")
    return array.mean(axis=0), np.atleast_2d(np.cov(array, rowvar=False))


def frechet_distance(
    mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike, eps: float = 1e-6
) -> float:
    """‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½): the Fréchet distance between two Gaussians.

    As pytorch-fid: `scipy.linalg.sqrtm` of Σ1Σ2; when the product is singular (fewer samples than dimensions, which
    is the rule for small sets) the square root is not finite, and eps·I is added to both covariances and it is taken
    again. A small imaginary part from rounding is dropped; a large one means the statistics are broken.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = (
        np.atleast_2d(np.asarray(sigma1, np.float64)),
        np.atleast_2d(np.asarray(sigma2, np.float64)),
    )
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"mismatched statistics: means {mu1.shape} and {mu2.shape}, covariances {sigma1.shape} and {sigma2.shape}; "
            "both sets must come from the same feature extractor."
        )
    diff = mu1 - mu2
    # scipy warns on singular matrices before we get the chance to handle them; we check the result instead.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(
                f"the matrix square root has an imaginary component of {np.max(np.abs(covmean.imag)):.3g}: the "
                "covariances are not positive semi-definite (corrupt or non-finite features)."
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def _polynomial_kernel(a: np.ndarray, b: np.ndarray, degree: int, gamma: float, coef: float) -> np.ndarray:
    return (a @ b.T * gamma + coef) ** degree


def _unbiased_mmd2(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    """The unbiased MMD² estimator: within-set means leave out the diagonal (a sample compared with itself)."""
    m, n = k_xx.shape[0], k_yy.shape[0]
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * k_xy.mean())


def kernel_inception_distance(
    x: ArrayLike,
    y: ArrayLike,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
    generator: np.random.Generator | int | None = 0,
) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018): mean and std over `subsets` random subsets of the unbiased MMD² with the
    polynomial kernel (γ xᵀy + coef)^degree, γ = 1/F by default. `subset_size` is capped by the smaller set, so small
    sets still give a value (with a larger spread). Subsets are drawn without replacement by `generator` (a seed by
    default, so the same features always give the same KID)."""
    x, y = _as_float64(x, "x"), _as_float64(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature widths differ: {x.shape[1]} and {y.shape[1]}.")
    size = min(subset_size, x.shape[0], y.shape[0])
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples in each set, got {x.shape[0]} and {y.shape[0]}.")
    if subsets < 1:
        raise ValueError(f"subsets must be at least 1, got {subsets}.")
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    rng = generator if isinstance(generator, np.random.Generator) else np.random.default_rng(generator)
    values = np.empty(subsets)
    for index in range(subsets):
        a = x[rng.choice(x.shape[0], size, replace=False)]
        b = y[rng.choice(y.shape[0], size, replace=False)]
        values[index] = _unbiased_mmd2(
            _polynomial_kernel(a, a, degree, gamma, coef),
            _polynomial_kernel(b, b, degree, gamma, coef),
            _polynomial_kernel(a, b, degree, gamma, coef),
        )
    return float(values.mean()), float(values.std())


def _rbf_kernel(a: np.ndarray, b: np.ndarray, sigma: float) -> np.ndarray:
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.exp(-np.maximum(squared, 0.0) / (2.0 * sigma**2))


def cmmd(
    x: ArrayLike, y: ArrayLike, sigma: float = 10.0, scale: float = 1000.0, unbiased: bool = True
) -> float:
    """CMMD (Jayasumana et al. 2024): MMD² with the Gaussian RBF kernel exp(−‖a − b‖²/2σ²), σ = 10, times 1000.

    `unbiased=True` leaves the diagonal out of the within-set means (≈ 0 in expectation for one distribution, can
    be slightly negative); `unbiased=False` is the V-statistic of the authors' released code (google-research/cmmd,
    `distance.mmd`: plain means over the full kernel matrices, exactly 0 for identical sets), whose numbers papers
    report. The features are used as given: the CMMD definition L2-normalises CLIP embeddings first (the caller's job).
    """
    x, y = _as_float64(x, "x"), _as_float64(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature widths differ: {x.shape[1]} and {y.shape[1]}.")
    if min(x.shape[0], y.shape[0]) < 2:
        raise ValueError(f"CMMD needs at least 2 samples in each set, got {x.shape[0]} and {y.shape[0]}.")
    k_xx, k_yy, k_xy = _rbf_kernel(x, x, sigma), _rbf_kernel(y, y, sigma), _rbf_kernel(x, y, sigma)
    if unbiased:
        return scale * _unbiased_mmd2(k_xx, k_yy, k_xy)
    return float(scale * (k_xx.mean() + k_yy.mean() - 2.0 * k_xy.mean()))
