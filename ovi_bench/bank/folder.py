"""The bank folder: its format, and `EmbeddingBank`, which reads a finished one (embeddings, cached statistics,
nearest neighbours, the encoder it was made with).

A bank is a folder, written by `build_bank` (`ovi_bench.bank.build`, `ovi-bench bank build`):

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

import hashlib
import json
import warnings
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from ovi_bench.bank.neighbours import bank_inverse_norms, nearest_neighbours
from ovi_bench.bank.statistics import BankStatistics, bank_statistics
from ovi_bench.errors import DataError, OviBenchError
from ovi_bench.io import atomic_write_bytes
from ovi_bench.paths import expand_user
from ovi_bench.spaces import DEFAULT_SPACE, describe

BANK_FORMAT = 1
"""Version of the folder layout; a bank written in another format is refused with the fix (rebuild it)."""

EMBEDDINGS_KEY = "embeddings"

_STATISTICS_FORMAT = "1"


def rebuild_hint(path: Path | str) -> str:
    """The command that builds a bank into `path`, for error messages that tell how to fix a bank."""
    return f"`ovi-bench bank build IMAGES --encoder REF --out {path}`"


def build_command(space: str, encoder: str, out: str = "NEW_DIR") -> str:
    """The exact command that builds a bank of `space` with the towers `encoder`."""
    space_option = "" if space == DEFAULT_SPACE else f" --space {space}"
    return f"`ovi-bench bank build IMAGES{space_option} --encoder {encoder} --out {out}`"


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
    """Embedding width (the space's: 1280 for Kandinsky 2.2's ViT-bigG/14; its tiny width for "tiny")."""
    digest: str
    """sha256 over the float32 embeddings' bytes, in row order: equal digests mean equal banks."""
    created: str
    """When the build finished (ISO 8601, UTC)."""
    sources: list[str]
    """Short description of the images the bank was made from."""
    space: str = DEFAULT_SPACE
    """The embedding space (`ovi_bench.spaces`) of the encoder. Banks built before spaces were recorded have none:
    they were all made by a Kandinsky 2.2 prior's image encoder (their `encoder_identity` names it), the bigG space."""


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


def read_bank_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(
            f"{path} is unreadable or corrupt ({error}): delete the folder {path.parent} and build the bank again "
            f"with {rebuild_hint(path.parent)}."
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
                f'no embedding bank at {path}: build one with {rebuild_hint(path)} (or use bank = "tiny").'
            )
        record_path = path / "bank.json"
        if not record_path.is_file():
            if (path / "progress.json").is_file():
                raise DataError(
                    f"the bank build in {path} did not finish: run the same `ovi-bench bank build ... --out {path}` "
                    "command again; it keeps the finished shards and encodes the rest."
                )
            raise DataError(
                f"{path} is not an embedding bank (no bank.json): build one with {rebuild_hint(path)}."
            )
        record = read_bank_json(record_path)
        if record.get("format") != BANK_FORMAT:
            raise DataError(
                f"{path} is a bank in format {record.get('format')!r}, this ovi-bench reads format {BANK_FORMAT}: "
                f"build it again with {rebuild_hint(path)} into a new folder."
            )
        try:
            # A field with a default (`space`) may be missing: the bank was built before it was recorded.
            info = BankInfo(
                **{
                    item.name: record[item.name]
                    for item in fields(BankInfo)
                    if item.name in record or item.default is MISSING
                }
            )
            shards = [(str(shard["file"]), int(shard["rows"])) for shard in record["shards"]]
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(
                f"{record_path} is corrupt (missing or malformed {error}): delete {path} and build the bank again "
                f"with {rebuild_hint(path)}."
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
            shard = read_shard(self.path / "shards" / name)
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
                f"files were changed. Delete the folder and build the bank again with {rebuild_hint(self.path)}."
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

    def check_space(self, space: str, encoder_ref: str) -> None:
        """Refuse (DataError) to serve a prior of another embedding space than the bank's."""
        if space != self.info.space:
            raise DataError(
                f"the bank {self.path} holds embeddings of {describe(self.info.space)}, but the prior works in "
                f"{describe(space)}: distances between the two mean nothing. Build a bank with that space's "
                f"encoder: {build_command(space, encoder_ref)}."
            )

    def check_encoder(self, encoder_ref: str, space: str = DEFAULT_SPACE) -> None:
        """Refuse (DataError) to serve a prior whose image encoder is not the one the bank was made with (first its
        space, `check_space`; then the encoder itself, of the towers `encoder_ref` of `space`)."""
        from ovi_bench.models.towers import towers_identity

        self.check_space(space, encoder_ref)
        identity = towers_identity(encoder_ref, space)
        if identity != self.info.encoder_identity:
            raise DataError(
                f"the bank {self.path} was made with the image encoder of '{self.info.encoder}' (identity "
                f"{self.info.encoder_identity[:12]}), but '{encoder_ref}' has another image encoder (identity "
                f"{identity[:12]}): its embeddings live in a different space. A local folder counts as another "
                "encoder when its weight files' names, sizes or modification times change. Rebuild the bank with "
                f"that encoder: {build_command(space, encoder_ref)}."
            )


def _canonical_device(device: torch.device | str | None) -> torch.device:
    """'cuda' and 'cuda:0' name one device: key caches by the device a tensor really lands on."""
    if device is None:
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cpu":
        return torch.device("cpu")
    return torch.empty(0, device=device).device


@dataclass(frozen=True)
class Shard:
    """One shard file's embeddings [n, D] and its metadata (build plan digest, image names, skipped images)."""

    embeddings: torch.Tensor
    metadata: dict[str, str]


def read_shard(path: Path) -> Shard | None:
    """A shard file's embeddings and metadata, or None when it is missing or not a valid float32 [n, D] shard."""
    try:
        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
            embeddings = handle.get_tensor(EMBEDDINGS_KEY)
    except (SafetensorError, OSError, KeyError):
        return None
    if embeddings.dtype != torch.float32 or embeddings.ndim != 2 or not embeddings.isfinite().all():
        return None
    return Shard(embeddings, metadata)
