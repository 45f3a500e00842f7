"""Embedding banks: CLIP image embeddings of real images, and what the OVI constraints and the diagnostics need.

A bank holds the image embeddings of a set of real images, made by ONE image encoder (Kandinsky 2.2's CLIP ViT-bigG/14
vision tower, or "tiny"); OVI's constraints and the embedding diagnostics compare a prior's embeddings with them:

* `BankStatistics`: mean μ and Ledoit–Wolf shrunk covariance Σ, for the Mahalanobis distance (e − μ)ᵀ Σ⁻¹ (e − μ);
* `nearest_neighbours`: exact top-k by cosine, scanning the bank in chunks so that no normalised copy is ever made.

A bank is a folder, written by `build_bank` (`ovi-bench bank build`):

    bank.json                      BankInfo (encoder, its identity, count, dim, digest, created, sources), the build
                                   plan, the shard list and the images that could not be read (skipped)
    images.json                    the source of every embedding, in row order (relative path or data set row)
    shards/00000.safetensors       "embeddings" [n, D] float32: images [i * shard_size, (i + 1) * shard_size) of the
                                   source's order, minus the unreadable ones. Shards are kept as they are (not merged):
                                   a finished shard is never rewritten, which is what makes a killed build resume.
    stats-raw.safetensors          statistics of the raw embeddings, written on first use
    stats-normalised.safetensors   statistics of the L2-normalised embeddings, written on first use

While a build is unfinished the folder holds `progress.json` (the plan) instead of `bank.json`; running the same build
again keeps every finished shard and encodes the rest, giving a bank identical (same digest) to a build in one go.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from ovi_bench.components import DTYPES, FileNeed, nonfinite_rows, resolve_device
from ovi_bench.errors import DataError, ModelLoadError, OviBenchError
from ovi_bench.io import atomic_write_bytes, atomic_write_text, canonical_json, publish_directory, sha256_text
from ovi_bench.paths import cache_dir, expand_user
from ovi_bench.progress import progress_bar

if TYPE_CHECKING:
    from transformers import CLIPImageProcessorPil, CLIPVisionModelWithProjection

BANK_FORMAT = 1
"""Version of the folder layout; a bank written in another format is refused with the fix (rebuild it)."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
"""Files (case-insensitive suffix) that a folder source encodes; anything else in the folder is ignored."""

EMBEDDINGS_KEY = "embeddings"

_STATISTICS_FORMAT = "1"
_LEDOIT_WOLF_CHUNK_ROWS = 8192


def _rebuild_hint(path: Path | str) -> str:
    return f"`ovi-bench bank build IMAGES --encoder REF --out {path}`"


# ---------------------------------------------------------------------------------------------------------------------
# Statistics: mean, Ledoit–Wolf covariance, precision, Mahalanobis distance.


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


# ---------------------------------------------------------------------------------------------------------------------
# Exact nearest neighbours by cosine.


def _inverse_norms(rows: torch.Tensor) -> torch.Tensor:
    # Norms in at least float32: a float16 row's sum of squares overflows at a norm of 256. An all-zero row has no
    # direction: its cosine to anything is defined as 0.
    norms = torch.linalg.vector_norm(rows, dim=-1, dtype=torch.promote_types(rows.dtype, torch.float32))
    return torch.where(norms > 0, norms.reciprocal(), torch.zeros_like(norms))


def bank_inverse_norms(bank: torch.Tensor, chunk_size: int = 65536) -> torch.Tensor:
    """1 / ‖b‖ for every row of `bank` [N, D] (0 for an all-zero row): [N], on the bank's device, at least float32.

    Read `chunk_size` rows at a time, so it never copies the bank; pass it to `nearest_neighbours` to search a fixed
    bank many times.
    """
    return torch.cat(
        [_inverse_norms(bank[start : start + chunk_size]) for start in range(0, bank.shape[0], chunk_size)]
    )


@torch.no_grad()
def nearest_neighbours(
    queries: torch.Tensor,
    bank: torch.Tensor,
    k: int,
    *,
    bank_inverse_norms: torch.Tensor | None = None,
    chunk_size: int = 65536,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k bank rows with the highest cosine to each query: (cosines [B, k], descending, and indices [B, k] int64).

    Exact. The bank [N, D] is neither copied nor normalised as a whole: it is scanned `chunk_size` rows at a time,
    each chunk's dot products with the unit queries are scaled by the rows' inverse norms (`bank_inverse_norms`, or
    computed per chunk) and merged into a running top-k, so the memory beyond the bank is O(B · chunk_size) (plus a
    chunk-sized copy only when the bank's norms have to be computed in a wider dtype). Runs on the bank's device in
    the bank's dtype; the results are returned on the queries' device, the cosines in the bank's dtype. Not
    differentiable: callers that need gradients gather the neighbours by index and recompute their cosines.
    """
    if queries.ndim != 2 or bank.ndim != 2 or queries.shape[1] != bank.shape[1]:
        raise ValueError(
            f"nearest_neighbours needs queries [B, D] and a bank [N, D] of the same width, got "
            f"{tuple(queries.shape)} and {tuple(bank.shape)}"
        )
    if not bank.is_floating_point():
        raise ValueError(f"the bank must hold floating-point embeddings, not {bank.dtype}")
    count = bank.shape[0]
    if not 1 <= k <= count:
        raise OviBenchError(
            f"{k} nearest neighbours were asked for, but the bank holds {count} embeddings: use 1 <= k <= {count}, "
            "or a larger bank."
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if bank_inverse_norms is not None and bank_inverse_norms.shape != (count,):
        raise ValueError(
            f"bank_inverse_norms must have shape ({count},), got {tuple(bank_inverse_norms.shape)}"
        )
    if bad_rows := nonfinite_rows(queries.detach()):
        raise OviBenchError(f"nearest_neighbours: query rows {bad_rows} hold NaN or infinity.")

    unit_queries = F.normalize(queries.detach().to(device=bank.device, dtype=bank.dtype), dim=-1)
    best_cosines = torch.empty(queries.shape[0], 0, device=bank.device, dtype=bank.dtype)
    best_indices = torch.empty(queries.shape[0], 0, device=bank.device, dtype=torch.int64)
    for start in range(0, count, chunk_size):
        chunk = bank[start : start + chunk_size]
        inverse_norms = (
            _inverse_norms(chunk)
            if bank_inverse_norms is None
            else bank_inverse_norms[start : start + chunk.shape[0]]
        )
        cosines = unit_queries @ chunk.T
        cosines *= inverse_norms.to(device=bank.device, dtype=bank.dtype)
        # The chunk's own top-k first, so the merge only ever concatenates 2k columns.
        chunk_cosines, chunk_indices = cosines.topk(min(k, chunk.shape[0]), dim=1)
        merged_cosines = torch.cat([best_cosines, chunk_cosines], dim=1)
        merged_indices = torch.cat([best_indices, chunk_indices + start], dim=1)
        best_cosines, order = merged_cosines.topk(min(k, merged_cosines.shape[1]), dim=1)
        best_indices = merged_indices.gather(1, order)
    return best_cosines.to(queries.device), best_indices.to(queries.device)


# ---------------------------------------------------------------------------------------------------------------------
# The bank folder.


@dataclass(frozen=True)
class BankInfo:
    """What `bank.json` says about a bank (its top-level keys)."""

    encoder: str
    """The image encoder's reference as given to the build ("tiny", a hub id, or a local folder's absolute path)."""
    encoder_identity: str
    """`image_encoder_identity` of that encoder: config plus weight files (folder) or snapshot commit (hub)."""
    count: int
    """Number of embeddings (images that could be read)."""
    dim: int
    """Embedding width (1280 for Kandinsky 2.2's ViT-bigG/14; 32 for "tiny")."""
    digest: str
    """sha256 over the float32 embeddings' bytes, in row order: equal digests mean equal banks."""
    created: str
    """When the build finished (ISO 8601, UTC)."""
    sources: list[str]
    """Short description of the images the bank was made from."""


@dataclass(frozen=True)
class SkippedImage:
    """An image that could not be read, and was left out of the bank."""

    image: str
    """Its name in the source (relative path or data set row)."""
    reason: str
    """The decoder's error."""


@dataclass(frozen=True)
class BuildReport:
    """What one `build_bank` call did."""

    shards_encoded: int
    """Shards encoded by this call."""
    shards_reused: int
    """Shards found finished (by an earlier, maybe interrupted, call) and kept as they were."""
    images_encoded: int
    """Images encoded by this call (unreadable ones not counted)."""
    skipped: list[SkippedImage]
    """Every unreadable image of the bank (also those of reused shards)."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(
            f"{path} is unreadable or corrupt ({error}): delete the folder {path.parent} and build the bank again "
            f"with {_rebuild_hint(path.parent)}."
        ) from error
    if not isinstance(value, dict):
        raise DataError(
            f"{path} is corrupt (not a JSON object): delete {path.parent} and build the bank again."
        )
    return value


class EmbeddingBank:
    """A finished bank folder (see the module docstring), read lazily: embeddings and statistics on first use."""

    def __init__(self, path: Path, info: BankInfo, record: dict[str, Any]) -> None:
        self.path = path
        """The bank folder."""
        self.info = info
        """What bank.json says about it."""
        self.build_report: BuildReport | None = None
        """What the `build_bank` call that returned this object did (None for a bank opened with `load`)."""
        self._record = record
        self._embeddings: torch.Tensor | None = None
        self._device_copies: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self._inverse_norms: dict[torch.device, torch.Tensor] = {}
        self._statistics: dict[bool, BankStatistics] = {}
        self._faiss_index: Any = None

    def __repr__(self) -> str:
        return f"EmbeddingBank({str(self.path)!r}, count={self.info.count}, dim={self.info.dim})"

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingBank:
        """Open a bank folder; DataError, naming the fix, if it is missing, unfinished or corrupt."""
        path = expand_user(path)
        if not path.is_dir():
            raise DataError(
                f'no embedding bank at {path}: build one with {_rebuild_hint(path)} (or use bank = "tiny").'
            )
        record_path = path / "bank.json"
        if not record_path.is_file():
            if (path / "progress.json").is_file():
                raise DataError(
                    f"the bank build in {path} did not finish: run the same `ovi-bench bank build ... --out {path}` "
                    "command again; it keeps the finished shards and encodes the rest."
                )
            raise DataError(
                f"{path} is not an embedding bank (no bank.json): build one with {_rebuild_hint(path)}."
            )
        record = _read_json(record_path)
        if record.get("format") != BANK_FORMAT:
            raise DataError(
                f"{path} is a bank in format {record.get('format')!r}, this ovi-bench reads format {BANK_FORMAT}: "
                f"build it again with {_rebuild_hint(path)} into a new folder."
            )
        try:
            info = BankInfo(**{item.name: record[item.name] for item in fields(BankInfo)})
            shards = [(str(shard["file"]), int(shard["rows"])) for shard in record["shards"]]
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(
                f"{record_path} is corrupt (missing or malformed {error}): delete {path} and build the bank again "
                f"with {_rebuild_hint(path)}."
            ) from error
        missing = [name for name, _ in shards if not (path / "shards" / name).is_file()]
        if missing:
            raise DataError(
                f"the bank {path} lacks shard file(s) {missing}: run its `ovi-bench bank build` command again to "
                "re-encode them."
            )
        return cls(path, info, record)

    # -- embeddings ---------------------------------------------------------------------------------------------------

    def _read_embeddings(self) -> torch.Tensor:
        """All shards into one preallocated [N, D] float32 tensor (never two copies at once), checked against digest."""
        embeddings = torch.empty(self.info.count, self.info.dim, dtype=torch.float32)
        digest = hashlib.sha256()
        row = 0
        for name, rows in ((shard["file"], shard["rows"]) for shard in self._record["shards"]):
            shard = _read_shard(self.path / "shards" / name)
            tensor = shard.embeddings if shard is not None else None
            if tensor is None or tensor.shape[0] != rows or (rows and tensor.shape[1] != self.info.dim):
                raise DataError(
                    f"the bank shard {self.path / 'shards' / name} is corrupt: run the bank's `ovi-bench bank build` "
                    "command again to re-encode it."
                )
            if rows:
                digest.update(tensor.numpy().data)
                embeddings[row : row + rows] = tensor
            row += rows
        if row != self.info.count or digest.hexdigest() != self.info.digest:
            raise DataError(
                f"the embeddings of the bank {self.path} do not match its bank.json (digest or count differ): its "
                f"files were changed. Delete the folder and build the bank again with {_rebuild_hint(self.path)}."
            )
        return embeddings

    def embeddings(
        self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """The embeddings [N, D] in row order, on `device` (default: CPU) in `dtype`.

        Read once and kept, one copy per device and dtype: treat the returned tensor as read-only.
        """
        if self._embeddings is None:
            self._embeddings = self._read_embeddings()
        target = _canonical_device(device)
        if target.type == "cpu" and dtype == torch.float32:
            return self._embeddings
        key = (target, dtype)
        if key not in self._device_copies:
            self._device_copies[key] = self._embeddings.to(device=target, dtype=dtype)
        return self._device_copies[key]

    @property
    def skipped(self) -> list[SkippedImage]:
        """The images the build could not read (left out of the bank)."""
        return [SkippedImage(**entry) for entry in self._record.get("skipped", [])]

    def row_sources(self) -> list[str]:
        """The source of every embedding in row order: relative image path, file path or data set row."""
        sources = json.loads((self.path / "images.json").read_text(encoding="utf-8"))
        if len(sources) != self.info.count:
            raise DataError(
                f"{self.path / 'images.json'} does not list one source per embedding: rebuild the bank."
            )
        return sources

    # -- statistics ---------------------------------------------------------------------------------------------------

    def _statistics_path(self, normalised: bool) -> Path:
        return self.path / ("stats-normalised.safetensors" if normalised else "stats-raw.safetensors")

    def cached_statistics(self, normalised: bool = False) -> BankStatistics | None:
        """The statistics cached in the bank folder if they are there and valid; computes nothing."""
        if normalised in self._statistics:
            return self._statistics[normalised]
        path = self._statistics_path(normalised)
        if not path.is_file():
            return None
        try:
            with safe_open(path, framework="pt") as handle:
                metadata = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in ("mean", "covariance", "precision")}
            shrinkage = float(metadata["shrinkage"])
        except (SafetensorError, OSError, KeyError, ValueError):
            return None
        dim = self.info.dim
        valid = (
            metadata.get("format") == _STATISTICS_FORMAT
            and metadata.get("bank_digest") == self.info.digest
            and metadata.get("normalised") == str(normalised).lower()
            and tensors["mean"].shape == (dim,)
            and tensors["covariance"].shape == (dim, dim)
            and tensors["precision"].shape == (dim, dim)
            and all(tensor.dtype == torch.float64 and tensor.isfinite().all() for tensor in tensors.values())
            and 0.0 <= shrinkage <= 1.0
        )
        if not valid:
            return None
        statistics = BankStatistics(**tensors, shrinkage=shrinkage, normalised=normalised)
        self._statistics[normalised] = statistics
        return statistics

    def statistics(self, normalised: bool = False) -> BankStatistics:
        """Mean, Ledoit–Wolf covariance and precision of the (optionally L2-normalised) embeddings.

        Computed once and cached in the bank folder (stats-raw / stats-normalised.safetensors); a missing, corrupt or
        stale cache file is recomputed and rewritten. A read-only bank folder only loses the cache (with a warning).
        """
        cached = self.cached_statistics(normalised)
        if cached is not None:
            return cached
        statistics = bank_statistics(self.embeddings(), normalised=normalised)
        metadata = {
            "format": _STATISTICS_FORMAT,
            "bank_digest": self.info.digest,
            "normalised": str(normalised).lower(),
            "shrinkage": repr(statistics.shrinkage),
        }
        tensors = {
            "mean": statistics.mean,
            "covariance": statistics.covariance,
            "precision": statistics.precision,
        }
        try:
            atomic_write_bytes(self._statistics_path(normalised), save(tensors, metadata=metadata))
        except (OviBenchError, OSError) as error:
            warnings.warn(f"could not cache the bank statistics in {self.path}: {error}", stacklevel=2)
        self._statistics[normalised] = statistics
        return statistics

    # -- nearest neighbours -------------------------------------------------------------------------------------------

    def nearest(
        self, queries: torch.Tensor, k: int, *, backend: Literal["exact", "faiss"] = "exact"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The k most cosine-similar bank embeddings of each query: (cosines [B, k] descending, indices [B, k] int64).

        "exact" (default) scans the bank (a float32 copy on the queries' device, kept) with `nearest_neighbours`;
        "faiss" uses the optional `faiss-cpu` package (an IndexFlatIP over normalised vectors on the CPU: also exact,
        faster for large banks). Results are on the queries' device, cosines in float32.
        """
        if backend == "exact":
            device = _canonical_device(queries.device)
            bank = self.embeddings(device=device)
            if device not in self._inverse_norms:
                self._inverse_norms[device] = bank_inverse_norms(bank)
            return nearest_neighbours(queries, bank, k, bank_inverse_norms=self._inverse_norms[device])
        if backend == "faiss":
            return self._nearest_faiss(queries, k)
        raise ValueError(f"unknown nearest-neighbour backend {backend!r}: use 'exact' or 'faiss'")

    def _nearest_faiss(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            import faiss
        except ImportError as error:
            raise OviBenchError(
                "the 'faiss' nearest-neighbour backend needs the optional package faiss-cpu: `pip install faiss-cpu`, "
                "or use backend 'exact'."
            ) from error
        if not 1 <= k <= self.info.count:
            raise OviBenchError(
                f"{k} nearest neighbours were asked for, but the bank holds {self.info.count} embeddings."
            )
        if self._faiss_index is None:
            index = faiss.IndexFlatIP(self.info.dim)
            index.add(np.ascontiguousarray(F.normalize(self.embeddings(), dim=-1).numpy()))
            self._faiss_index = index
        unit_queries = F.normalize(queries.detach().to(device="cpu", dtype=torch.float32), dim=-1)
        cosines, indices = self._faiss_index.search(np.ascontiguousarray(unit_queries.numpy()), k)
        return (
            torch.from_numpy(cosines).to(queries.device),
            torch.from_numpy(indices).to(device=queries.device, dtype=torch.int64),
        )

    # -- provenance ---------------------------------------------------------------------------------------------------

    def check_encoder(self, encoder_ref: str) -> None:
        """Refuse (DataError) to serve a prior whose image encoder is not the one the bank was made with."""
        from ovi_bench.models.kandinsky import image_encoder_identity

        identity = image_encoder_identity(encoder_ref)
        if identity != self.info.encoder_identity:
            raise DataError(
                f"the bank {self.path} was made with the image encoder of '{self.info.encoder}' (identity "
                f"{self.info.encoder_identity[:12]}), but '{encoder_ref}' has another image encoder (identity "
                f"{identity[:12]}): its embeddings live in a different space. A local folder counts as another "
                "encoder when its weight files' names, sizes or modification times change. Rebuild the bank with "
                f"that encoder: `ovi-bench bank build IMAGES --encoder {encoder_ref} --out NEW_DIR`."
            )


def _canonical_device(device: torch.device | str | None) -> torch.device:
    """'cuda' and 'cuda:0' name one device: key caches by the device a tensor really lands on."""
    if device is None:
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cpu":
        return torch.device("cpu")
    return torch.empty(0, device=device).device


# ---------------------------------------------------------------------------------------------------------------------
# Image sources.


class ImageSource(Protocol):
    """Images to encode, in a fixed order: a folder, a list of files, or a Hugging Face data set."""

    def names(self) -> list[str]:
        """One name per image, in order (recorded per embedding in images.json)."""
        ...

    def fingerprint(self) -> str:
        """Changes whenever the images (or their order) do: a build resumes only into a folder with the same one."""
        ...

    def describe(self) -> str:
        """A short description for BankInfo.sources."""
        ...

    def open(self, index: int) -> Image.Image:
        """The image, decoded (raises on an unreadable one)."""
        ...


class ImageFiles:
    """Image files: every image under a folder (recursively, sorted by relative path), or an explicit list."""

    def __init__(self, paths: Sequence[Path], names: Sequence[str], description: str) -> None:
        self.paths = list(paths)
        self._names = list(names)
        self._description = description

    @classmethod
    def from_folder(cls, folder: str | Path) -> ImageFiles:
        folder = expand_user(folder)
        if not folder.is_dir():
            what = "is a file, not a folder" if folder.exists() else "does not exist"
            raise DataError(
                f"the images folder {folder} {what}: give a folder of {'/'.join(IMAGE_SUFFIXES)} images "
                "(searched recursively)."
            )
        found = sorted(
            (path.relative_to(folder).as_posix(), path)
            for path in folder.rglob("*")
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
        )
        if not found:
            raise DataError(
                f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {folder}: give the folder that holds them."
            )
        names, paths = zip(*found, strict=True)
        return cls(paths, names, f"folder {folder.resolve()}: {len(paths)} image files")

    @classmethod
    def from_paths(cls, paths: Sequence[str | Path]) -> ImageFiles:
        if not paths:
            raise DataError("no images were given: pass a folder or a non-empty list of image files.")
        resolved = [expand_user(path).resolve() for path in paths]
        return cls(resolved, [str(path) for path in resolved], f"{len(resolved)} image files")

    def names(self) -> list[str]:
        return self._names

    def fingerprint(self) -> str:
        def size(path: Path) -> int:
            # A missing file is not an error here: it is skipped as unreadable when its turn comes.
            with contextlib.suppress(OSError):
                return path.stat().st_size
            return -1

        return sha256_text(
            canonical_json([[name, size(path)] for name, path in zip(self._names, self.paths, strict=True)])
        )

    def describe(self) -> str:
        return self._description

    def open(self, index: int) -> Image.Image:
        with Image.open(self.paths[index]) as image:
            return image.convert("RGB")


@dataclass(frozen=True)
class HFDatasetImages:
    """The images of one column of a Hugging Face data set (hub name, or a folder saved with `save_to_disk`).

    Needs the optional `datasets` package. Rows keep the data set's order; undecodable images are skipped.
    """

    name: str
    """Hub data set name, or a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`."""
    split: str = "train"
    """The split to encode (ignored for a folder holding a single saved Dataset)."""
    image_column: str = "image"
    """The column of `datasets.Image` type."""
    _state: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def _dataset(self) -> Any:
        if "dataset" in self._state:
            return self._state["dataset"]
        try:
            import datasets
        except ImportError as error:
            raise OviBenchError(
                "a Hugging Face data set source needs the optional package datasets: `pip install datasets`."
            ) from error
        folder = expand_user(self.name)
        try:
            if folder.is_dir():
                loaded = datasets.load_from_disk(str(folder))
                if isinstance(loaded, datasets.DatasetDict):
                    if self.split not in loaded:
                        raise DataError(
                            f"the data set {folder} has splits {sorted(loaded)}, not '{self.split}': use --split."
                        )
                    loaded = loaded[self.split]
            else:
                loaded = datasets.load_dataset(self.name, split=self.split)
        except (OSError, ValueError, KeyError) as error:
            raise DataError(
                f"cannot load the data set '{self.name}' (split '{self.split}'): {error}"
            ) from error
        if self.image_column not in loaded.column_names:
            raise DataError(
                f"the data set '{self.name}' has no column '{self.image_column}' (columns: {loaded.column_names}): "
                "use --image-column."
            )
        if not isinstance(loaded.features[self.image_column], datasets.Image):
            raise DataError(
                f"the column '{self.image_column}' of '{self.name}' holds {loaded.features[self.image_column]}, not "
                "images: use --image-column to name the image column."
            )
        # Undecoded: each image is decoded here, one at a time, so that one broken image is skipped, not fatal.
        dataset = loaded.select_columns([self.image_column]).cast_column(
            self.image_column, datasets.Image(decode=False)
        )
        self._state["dataset"] = dataset
        return dataset

    def names(self) -> list[str]:
        return [f"{self.name}[{self.split}]#{index}" for index in range(len(self._dataset()))]

    def fingerprint(self) -> str:
        dataset = self._dataset()
        files = []
        for cache_file in dataset.cache_files:
            path = Path(cache_file["filename"])
            files.append([path.name, path.stat().st_size if path.exists() else -1])
        return sha256_text(
            canonical_json(
                {
                    "name": self.name,
                    "split": self.split,
                    "column": self.image_column,
                    "rows": len(dataset),
                    "files": files,
                }
            )
        )

    def describe(self) -> str:
        return f"Hugging Face data set {self.name}, split {self.split}, column {self.image_column}"

    def open(self, index: int) -> Image.Image:
        value = self._dataset()[index][self.image_column]
        if value is None:
            raise ValueError("no image in this row")
        source = io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"]
        with Image.open(source) as image:
            return image.convert("RGB")


def _as_image_source(images: str | Path | Sequence[str | Path] | ImageSource) -> ImageSource:
    if isinstance(images, (str, Path)):
        return ImageFiles.from_folder(images)
    if isinstance(images, Sequence):
        return ImageFiles.from_paths(images)
    return images


# ---------------------------------------------------------------------------------------------------------------------
# Building a bank.


@dataclass(frozen=True)
class _Shard:
    embeddings: torch.Tensor
    metadata: dict[str, str]


def _read_shard(path: Path) -> _Shard | None:
    """A shard file's embeddings and metadata, or None when it is missing or not a valid float32 [n, D] shard."""
    try:
        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
            embeddings = handle.get_tensor(EMBEDDINGS_KEY)
    except (SafetensorError, OSError, KeyError):
        return None
    if embeddings.dtype != torch.float32 or embeddings.ndim != 2 or not embeddings.isfinite().all():
        return None
    return _Shard(embeddings, metadata)


def _encode_images(
    encoder: CLIPVisionModelWithProjection, processor: CLIPImageProcessorPil, images: list[Image.Image]
) -> torch.Tensor:
    """`image_embeds` [B, D] of a batch of RGB images, float32 on the CPU."""
    pixel_values = processor(images=images, return_tensors="pt").pixel_values
    with torch.inference_mode():
        embeds = encoder(
            pixel_values=pixel_values.to(device=encoder.device, dtype=encoder.dtype)
        ).image_embeds
    return embeds.float().cpu()


def _encode_shard(
    source: ImageSource,
    indices: range,
    names: list[str],
    load_models: Callable[[], tuple[CLIPVisionModelWithProjection, CLIPImageProcessorPil]],
    batch_size: int,
    advance: Callable[[int], None],
) -> tuple[torch.Tensor, list[str], list[SkippedImage]]:
    """Embeddings of the readable images among `indices` (in order), their names, and the unreadable ones."""
    encoder, processor = load_models()
    parts: list[torch.Tensor] = []
    encoded: list[str] = []
    skipped: list[SkippedImage] = []
    for start in range(indices.start, indices.stop, batch_size):
        batch: list[Image.Image] = []
        for index in range(start, min(start + batch_size, indices.stop)):
            try:
                batch.append(source.open(index))
            except (
                Exception
            ) as error:  # any decoder failure on one user file skips that file, never the build
                skipped.append(SkippedImage(names[index], f"{type(error).__name__}: {error}"))
                continue
            encoded.append(names[index])
        if batch:
            embeds = _encode_images(encoder, processor, batch)
            if bad_rows := nonfinite_rows(embeds):
                raise ModelLoadError(
                    f"the image encoder gave NaN or infinity for {[encoded[len(encoded) - len(batch) + row] for row in bad_rows]}: "
                    "are its weights corrupt, or does float16 overflow? Try --dtype float32 or bfloat16."
                )
            parts.append(embeds)
        advance(min(start + batch_size, indices.stop) - start)
    dim = encoder.config.projection_dim
    embeddings = torch.cat(parts) if parts else torch.zeros(0, dim)
    return embeddings.contiguous(), encoded, skipped


def _plan_mismatch(recorded: dict[str, Any], plan: dict[str, Any], encoder_label: str) -> str | None:
    """Why a folder's recorded build plan does not match this build, or None when it does."""
    recorded_plan = recorded.get("plan", {})
    if recorded_plan.get("format") != plan["format"]:
        return f"it was written in another bank format ({recorded_plan.get('format')!r})"
    if recorded_plan.get("encoder_identity") != plan["encoder_identity"]:
        return (
            f"it was made with another image encoder ('{recorded.get('encoder')}'), not '{encoder_label}' "
            "(a bank holds the embeddings of one encoder)"
        )
    if (
        recorded_plan.get("images") != plan["images"]
        or recorded_plan.get("image_count") != plan["image_count"]
    ):
        return (
            f"it was made from other images ({recorded_plan.get('image_count')} images: "
            f"{'; '.join(recorded.get('sources', []))})"
        )
    for setting in ("dtype", "shard_size"):
        if recorded_plan.get(setting) != plan[setting]:
            option = setting.replace("_", "-")
            return (
                f"it was made with --{option} {recorded_plan.get(setting)} (run again with that, to resume)"
            )
    return None


def build_bank(
    images: str | Path | Sequence[str | Path] | ImageSource,
    encoder: str,
    out: str | Path,
    *,
    batch_size: int = 64,
    device: str = "auto",
    dtype: str = "float32",
    shard_size: int = 4096,
    progress: bool = True,
    description: str | None = None,
) -> EmbeddingBank:
    """Encode images with a Kandinsky 2.2 prior's image encoder into the bank folder `out`, resuming a killed build.

    `images`: a folder (every .png/.jpg/.jpeg/.webp/.bmp under it, sorted by relative path), a list of image files,
    or an `ImageSource` such as `HFDatasetImages`. `encoder`: a prior reference (hub id, local folder or "tiny"); its
    `image_encoder` encodes, after its `image_processor` (always transformers' PIL implementation, so the embeddings
    do not depend on whether torchvision is installed). `description` replaces the default BankInfo.sources text.

    Shard i holds images [i·shard_size, (i+1)·shard_size) and is written atomically; a shard already in `out` for
    the same plan (encoder identity, images, dtype, shard size) is kept, so a re-run encodes only what is missing and
    gives the same bank (same digest, for the same batch size and device). Unreadable images are skipped, recorded
    in bank.json and reported with a warning. Refuses (DataError) an `out` that holds a bank or an unfinished build
    of another encoder, other images or other settings, or a non-empty folder that is not a bank.
    """
    from ovi_bench.models.hub import load_pretrained
    from ovi_bench.models.kandinsky import image_encoder_identity, load_image_encoder, resolve_prior_model
    from ovi_bench.models.tiny import PRIOR_TINY_BUILDERS

    if batch_size < 1 or shard_size < 1:
        raise OviBenchError(
            f"batch size and shard size must be at least 1, got {batch_size} and {shard_size}."
        )
    if dtype not in DTYPES:
        raise OviBenchError(f"unknown dtype '{dtype}': use one of {', '.join(DTYPES)}.")
    source = _as_image_source(images)  # first: a missing images folder fails before any model is touched
    out = expand_user(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file: give a folder for the bank.")

    resolved = resolve_prior_model(encoder)
    encoder_label = (
        str(Path(resolved)) if Path(resolved).is_dir() and encoder not in PRIOR_TINY_BUILDERS else encoder
    )
    names = source.names()
    plan = {
        "format": BANK_FORMAT,
        "encoder_identity": image_encoder_identity(resolved),
        "images": source.fingerprint(),
        "image_count": len(names),
        "dtype": dtype,
        "shard_size": shard_size,
    }
    plan_digest = sha256_text(canonical_json(plan))
    sources = [description or source.describe()]

    record_path, progress_path = out / "bank.json", out / "progress.json"
    finished = record_path.is_file()
    if finished or progress_path.is_file():
        recorded = _read_json(record_path if finished else progress_path)
        if reason := _plan_mismatch(recorded, plan, encoder_label):
            state = "holds a bank" if finished else "holds an unfinished bank build"
            raise DataError(
                f"--out {out} {state} that cannot be continued by this build: {reason}. Choose another --out, or "
                "delete that folder to build it anew."
            )
    elif out.is_dir() and any(out.iterdir()):
        raise DataError(f"--out {out} is not empty and not an embedding bank: choose a new or empty folder.")
    else:
        atomic_write_text(
            progress_path,
            json.dumps({"plan": plan, "encoder": encoder_label, "sources": sources}, indent=2) + "\n",
        )

    models: dict[str, Any] = {}

    def load_models() -> tuple[CLIPVisionModelWithProjection, CLIPImageProcessorPil]:
        # Loaded only when a shard must be encoded: re-running a finished build never touches the 1.8 B-parameter tower.
        if not models:
            from transformers import CLIPImageProcessorPil

            models["encoder"] = load_image_encoder(resolved, resolve_device(device), DTYPES[dtype])
            models["processor"] = load_pretrained(
                CLIPImageProcessorPil, resolved, subfolder="image_processor"
            )
        return models["encoder"], models["processor"]

    shard_count = (len(names) + shard_size - 1) // shard_size
    shard_names = [f"{index:05d}.safetensors" for index in range(shard_count)]
    # Only what bank.json needs is kept per shard, so building a large bank never holds it all in memory.
    shard_rows: list[int] = []
    dims: set[int] = set()
    all_names: list[str] = []
    all_skipped: list[SkippedImage] = []
    digest = hashlib.sha256()
    encoded_shards = images_encoded = 0
    with _progress_bar(progress, len(names)) as advance:
        for index, shard_name in enumerate(shard_names):
            indices = range(index * shard_size, min((index + 1) * shard_size, len(names)))
            shard_path = out / "shards" / shard_name
            shard = _read_shard(shard_path)
            if shard is not None and shard.metadata.get("plan") == plan_digest and _shard_consistent(shard):
                advance(len(indices))
            else:
                embeddings, encoded, skipped = _encode_shard(
                    source, indices, names, load_models, batch_size, advance
                )
                metadata = {
                    "plan": plan_digest,
                    "images": json.dumps(encoded),
                    "skipped": json.dumps([asdict(entry) for entry in skipped]),
                }
                atomic_write_bytes(shard_path, save({EMBEDDINGS_KEY: embeddings}, metadata=metadata))
                shard = _Shard(embeddings, metadata)
                encoded_shards += 1
                images_encoded += len(encoded)
            rows = shard.embeddings.shape[0]
            shard_rows.append(rows)
            all_names += json.loads(shard.metadata["images"])
            all_skipped += [SkippedImage(**entry) for entry in json.loads(shard.metadata["skipped"])]
            if rows:
                dims.add(shard.embeddings.shape[1])
                digest.update(shard.embeddings.numpy().data)

    if not all_names:
        raise DataError(
            f"none of the {len(names)} images could be read (e.g. {all_skipped[0].reason}): no bank built."
        )
    if len(dims) != 1:
        raise DataError(
            f"the shards in {out / 'shards'} have different widths {sorted(dims)}: delete {out} and build again."
        )

    if encoded_shards or not finished:
        info = BankInfo(
            encoder=encoder_label,
            encoder_identity=plan["encoder_identity"],
            count=len(all_names),
            dim=dims.pop(),
            digest=digest.hexdigest(),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            sources=sources,
        )
        record = {
            "format": BANK_FORMAT,
            **asdict(info),
            "plan": plan,
            "shards": [
                {"file": name, "rows": rows} for name, rows in zip(shard_names, shard_rows, strict=True)
            ],
            "skipped": [asdict(entry) for entry in all_skipped],
            # Informational: embeddings can differ across devices and batch sizes by float rounding.
            "build": {
                "device": str(models["encoder"].device) if models else device,
                "batch_size": batch_size,
            },
        }
        atomic_write_text(out / "images.json", json.dumps(all_names) + "\n")
        atomic_write_text(record_path, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
        progress_path.unlink(missing_ok=True)

    if all_skipped:
        listed = "; ".join(f"{entry.image} ({entry.reason})" for entry in all_skipped[:10])
        more = f" and {len(all_skipped) - 10} more" if len(all_skipped) > 10 else ""
        warnings.warn(
            f"{len(all_skipped)} unreadable image(s) left out of the bank {out}: {listed}{more}. All are listed under "
            "'skipped' in its bank.json.",
            stacklevel=2,
        )
    bank = EmbeddingBank.load(out)
    bank.build_report = BuildReport(
        shards_encoded=encoded_shards,
        shards_reused=shard_count - encoded_shards,
        images_encoded=images_encoded,
        skipped=all_skipped,
    )
    return bank


def _shard_consistent(shard: _Shard) -> bool:
    try:
        names = json.loads(shard.metadata["images"])
        json.loads(shard.metadata["skipped"])
    except (KeyError, json.JSONDecodeError):
        return False
    return isinstance(names, list) and len(names) == shard.embeddings.shape[0]


@contextlib.contextmanager
def _progress_bar(show: bool, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar over the images, or a no-op; yields `advance(n)`."""
    with progress_bar(show=show) as bar:
        task = bar.add_task("encode images", total=total)
        yield lambda count: bar.advance(task, count)


# ---------------------------------------------------------------------------------------------------------------------
# The tiny bank: procedurally drawn images through the tiny encoder, for tests and the offline smoke run.

TINY_BANK_IMAGES = 256
TINY_BANK_IMAGE_SIZE = 48
TINY_BANK_SEED = 0


def draw_tiny_bank_images(
    folder: Path, count: int = TINY_BANK_IMAGES, size: int = TINY_BANK_IMAGE_SIZE, seed: int = TINY_BANK_SEED
) -> None:
    """Write `count` deterministic size×size PNGs: a random background and one to four coloured rectangles/ellipses."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        image = Image.new("RGB", (size, size), tuple(int(value) for value in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(1, 5))):
            left, top = (int(value) for value in rng.integers(0, size - 6, 2))
            width, height = (int(value) for value in rng.integers(6, size // 2 + 1, 2))
            box = (left, top, min(left + width, size - 1), min(top + height, size - 1))
            colour = tuple(int(value) for value in rng.integers(0, 256, 3))
            if rng.random() < 0.5:
                draw.rectangle(box, fill=colour)
            else:
                draw.ellipse(box, fill=colour)
        image.save(folder / f"{index:05d}.png")


def _build_tiny_bank(folder: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="ovi-bench-tiny-bank-images-") as images:
        draw_tiny_bank_images(Path(images))
        build_bank(
            Path(images),
            "tiny",
            folder,
            batch_size=64,
            device="cpu",
            dtype="float32",
            progress=False,
            description=(
                f"tiny: {TINY_BANK_IMAGES} procedurally drawn {TINY_BANK_IMAGE_SIZE}×{TINY_BANK_IMAGE_SIZE} images "
                f"(seed {TINY_BANK_SEED})"
            ),
        )


def tiny_bank_dir() -> Path:
    """The tiny bank (256 drawn images, "tiny" encoder), built on first use into `cache_dir()/tiny/bank-v1`."""
    return publish_directory(_build_tiny_bank, cache_dir() / "tiny" / "bank-v1")


def bank_needs(ref: str | None, what: str) -> list[FileNeed]:
    """The bank folder a component reads, for `Component.required_files`; none for "tiny" (built on first use)."""
    if ref is None or str(ref) == "tiny":
        return []
    return [
        FileNeed(what, str(ref), folder=True, contains="bank.json", fix=f"build it with {_rebuild_hint(ref)}")
    ]


def resolve_bank(ref: str | Path) -> Path:
    """ "tiny" gives the tiny bank's folder (built on first use); anything else is a bank folder path."""
    if str(ref) == "tiny":
        return tiny_bank_dir()
    return expand_user(ref)
