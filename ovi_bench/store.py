"""The artifact store of a run folder: embeddings, images, the manifest and cached scores.

Layout (all keys are sha256 hex digests, so no file name ever comes from prompt text):

    embeddings/ab/<embedding key>.safetensors   one prompt × seed of one prior
    images/ab/<image key>.png                   one prompt × seed of one prior through one decoder
    manifest.jsonl                              one line per generated image (append-only; last line per key wins)
    scores/<metric fingerprint>.jsonl           one line per scored (image, prompt) pair
    diagnostics/<settings key>.jsonl            one line per diagnosed embedding
    features/<extractor fingerprint>/*.safetensors   per-image features of set metrics (FID, KID, CMMD)

Every file is written atomically (temporary file, fsync, rename), so a killed run leaves whole files or none.
A manifest line is appended only after its image is in place, so an image without a line is simply regenerated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from ovi_bench.errors import OviBenchError
from ovi_bench.io import atomic_write_bytes, canonical_json, sha256_bytes, sha256_file, sha256_text


def item_key(*parts: Any) -> str:
    """Content address of an artifact: sha256 over the canonical JSON of what determines it."""
    return sha256_text(canonical_json(list(parts)))


@dataclass(frozen=True)
class ImageRecord:
    """The manifest line of one generated image."""

    image_key: str
    path: str
    """Relative to the run folder."""
    bytes: int
    sha256: str
    mtime_ns: int
    prior: str
    prompt_id: str
    category: str
    prompt: str
    seed: int


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSON-lines file, skipping a line that a crash left half-written."""
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                yield value


def _append_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    text = "".join(canonical_json(row) + "\n" for row in rows)
    if not text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        # A previous crash may have left a line without its newline; start on a fresh line so both stay parseable.
        if handle.tell() > 0:
            with open(path, "rb") as reader:
                reader.seek(-1, os.SEEK_END)
                if reader.read(1) != b"\n":
                    handle.write("\n")
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


class RunStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.manifest_path = self.root / "manifest.jsonl"
        self._manifest: dict[str, ImageRecord] | None = None

    # -- embeddings ---------------------------------------------------------------------------------------------

    def embedding_path(self, key: str) -> Path:
        return self.root / "embeddings" / key[:2] / f"{key}.safetensors"

    def put_embedding(
        self,
        key: str,
        image_embeds: torch.Tensor,
        negative_image_embeds: torch.Tensor,
        facts: dict[str, Any] | None = None,
    ) -> None:
        """Store one embedding pair; `facts` (JSON-able, e.g. optimisation steps used) ride along as metadata."""
        tensors = {
            "image_embeds": image_embeds.detach().to("cpu", torch.float32).contiguous(),
            "negative_image_embeds": negative_image_embeds.detach().to("cpu", torch.float32).contiguous(),
        }
        path = self.embedding_path(key)
        atomic_write_bytes(path, save(tensors, metadata={"facts": canonical_json(facts or {})}))

    def get_embedding(self, key: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The stored pair, or None when missing or unreadable (an unreadable file is removed)."""
        path = self.embedding_path(key)
        if not path.is_file():
            return None
        try:
            tensors = load_file(str(path))
            pair = tensors["image_embeds"], tensors["negative_image_embeds"]
        except (SafetensorError, KeyError, OSError, ValueError):
            path.unlink(missing_ok=True)
            return None
        if not all(torch.isfinite(tensor).all() for tensor in pair):
            path.unlink(missing_ok=True)
            return None
        return pair

    def embedding_facts(self, key: str) -> dict[str, Any]:
        """The facts stored with an embedding (empty when it has none or cannot be read)."""
        try:
            with safe_open(str(self.embedding_path(key)), framework="pt") as handle:
                return json.loads((handle.metadata() or {}).get("facts", "{}"))
        except (SafetensorError, OSError, ValueError):
            return {}

    # -- images -------------------------------------------------------------------------------------------------

    def image_path(self, key: str) -> Path:
        return self.root / "images" / key[:2] / f"{key}.png"

    @property
    def manifest(self) -> dict[str, ImageRecord]:
        if self._manifest is None:
            self._manifest = {}
            for row in _read_jsonl(self.manifest_path):
                try:
                    record = ImageRecord(**row)
                except TypeError:
                    continue
                self._manifest[record.image_key] = record
        return self._manifest

    def has_image(self, key: str) -> bool:
        """True when the image is listed and its file is intact.

        Size and modification time are checked for every image (cheap); the content hash only when the file was
        touched after it was written, so that resuming a large run does not read every image again.
        """
        record = self.manifest.get(key)
        if record is None:
            return False
        path = self.root / record.path
        try:
            status = path.stat()
        except FileNotFoundError:
            return False
        if status.st_size != record.bytes:
            return False
        if status.st_mtime_ns != record.mtime_ns:
            return sha256_file(path) == record.sha256
        return True

    def put_images(self, entries: list[tuple[str, bytes, dict[str, Any]]]) -> None:
        """Write (key, png bytes, metadata) images, then append their manifest lines in one go."""
        records = []
        for key, png, metadata in entries:
            path = self.image_path(key)
            atomic_write_bytes(path, png)
            record = ImageRecord(
                image_key=key,
                path=path.relative_to(self.root).as_posix(),
                bytes=len(png),
                sha256=sha256_bytes(png),
                mtime_ns=path.stat().st_mtime_ns,
                **metadata,
            )
            records.append(record)
        _append_jsonl(self.manifest_path, (asdict(record) for record in records))
        for record in records:
            self.manifest[record.image_key] = record

    def read_image_bytes(self, key: str) -> bytes:
        return (self.root / self.manifest[key].path).read_bytes()

    def forget_image(self, key: str) -> None:
        """Drop a corrupt image so that the next generation pass makes it again."""
        record = self.manifest.pop(key, None)
        if record is not None:
            (self.root / record.path).unlink(missing_ok=True)


class RowCache:
    """JSON rows keyed by their "key" field, append-only on disk: the scores of one metric fingerprint (keyed by
    image content, prompt and category), or the diagnostics of one diagnostics setting (keyed by embedding)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: dict[str, dict[str, Any]] = {
            row["key"]: row for row in _read_jsonl(self.path) if "key" in row
        }

    @staticmethod
    def score_key(image_sha256: str, prompt: str, category: str) -> str:
        return item_key(image_sha256, prompt, category)

    def add(self, rows: list[dict[str, Any]]) -> None:
        _append_jsonl(self.path, rows)
        for row in rows:
            self.rows[row["key"]] = row


class FeatureCache:
    """Per-image features of one extractor, keyed by image sha256: append-only safetensors files, one per batch.

    features/<extractor fingerprint>/<batch key>.safetensors holds "features" [B, F] and, in its metadata, the image
    hashes of its rows. Each file is written atomically, so a killed run keeps every finished batch; an unreadable
    file is ignored (its images are featurised again).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.features: dict[str, torch.Tensor] = {}
        for path in sorted(self.folder.glob("*.safetensors")) if self.folder.is_dir() else []:
            try:
                tensors = load_file(str(path))
                with safe_open(str(path), framework="pt") as handle:
                    keys = json.loads((handle.metadata() or {})["keys"])
                rows = tensors["features"]
            except (SafetensorError, KeyError, OSError, ValueError):
                continue
            if rows.ndim == 2 and rows.shape[0] == len(keys) and bool(rows.isfinite().all()):
                self.features.update(zip(keys, rows, strict=True))

    def add(self, keys: list[str], features: torch.Tensor) -> None:
        features = features.detach().to("cpu", torch.float32).contiguous()
        if features.ndim != 2 or features.shape[0] != len(keys) or not bool(features.isfinite().all()):
            raise OviBenchError(
                f"a feature extractor returned {tuple(features.shape)} (or non-finite values) for {len(keys)} "
                "images; it must return one finite row per image. Its model may be corrupt or overflowing."
            )
        batch_key = item_key("features", keys)
        atomic_write_bytes(
            self.folder / f"{batch_key}.safetensors",
            save({"features": features}, metadata={"keys": json.dumps(keys)}),
        )
        self.features.update(zip(keys, features, strict=True))
