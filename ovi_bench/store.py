"""The artifact store of a run folder: embeddings, images and the manifest, and the layout of the whole folder.

Layout (all keys are sha256 hex digests, so no file name ever comes from prompt text):

    embeddings/ab/<embedding key>.safetensors   one prompt × seed of one prior
    images/ab/<image key>.png                   one prompt × seed of one prior through one decoder
    manifest.jsonl                              one line per generated image (append-only; last line per key wins)
    scores/<metric fingerprint>.jsonl           one line per scored (image, prompt) pair
    diagnostics/<settings key>.jsonl            one line per diagnosed embedding
    features/<extractor fingerprint>/*.safetensors   per-image features of set metrics (FID, KID, CMMD)

Every file is written atomically (temporary file, sync, rename), so a killed run leaves whole files or none.
A manifest line is appended only after its image is in place, so an image without a line is simply regenerated.

Writes are committed in groups (`RunStore.commit`): new files wait under hidden temporary names until their data is
synced, with one file-system sync for the whole group, and are then renamed into place, after which their manifest
lines are appended and synced. An fsync per file cost more than the rest of the harness together (about 3 ms each on
a 2-core VM), so a group is committed once its oldest write has waited `COMMIT_COST_RATIO` times as long as the last
commit took (commits then cost at most ~5% of the time: on a GPU, where a batch takes longer, every batch is
committed as it finishes), at the latest after `COMMIT_SECONDS` or `COMMIT_ITEMS` writes, and at the end of every
stage. A background timer commits a group that is due when no further write comes (a batch that takes minutes),
so nothing finished waits longer than that. SIGKILL loses at most that much finished work, which the next run makes
again; SIGINT and SIGTERM (`stop_signals_raise`) commit every finished write first. Temporary files that a SIGKILL
left behind are removed when the next run starts (`remove_temporaries`).

The file primitives (appends, temporaries, grouped syncs, the commit timer) are in `ovi_bench.durable`; the score,
diagnostics and feature caches in `ovi_bench.caches`.
"""

from __future__ import annotations

import json
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.numpy import save as save_arrays
from safetensors.torch import load

from ovi_bench.durable import (
    GroupedCommits,
    append_jsonl,
    read_all_jsonl,
    sync_data,
    write_temporary,
    writer_file,
)
from ovi_bench.interrupts import stop_signals_deferred
from ovi_bench.io import canonical_json, explain_os_errors, sha256_bytes, sha256_file, sha256_text

COMMIT_SECONDS = 0.5
"""Longest time finished writes wait for their commit: bounds the work a kill can lose."""
COMMIT_COST_RATIO = 20
"""A group is committed once its oldest write has waited this many times the last commit's duration."""
COMMIT_ITEMS = 256
"""Most writes (embeddings or images) waiting for their commit, so that fast components lose little to a kill."""


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
    decoder: str | None = None
    """The decoder's display name; None in manifests written before runs had several decoders."""


@dataclass(frozen=True)
class _PendingFile:
    """A write waiting for its commit."""

    temporary: Path
    path: Path
    record: ImageRecord | None
    """The manifest line of an image (None for an embedding)."""
    call: int
    """The `put_*` call that wrote it."""


def _safetensors_metadata(path: Path) -> dict[str, str]:
    """The `__metadata__` of a safetensors file, read from its header alone (8-byte little-endian length, then
    JSON), which is several times faster than `safe_open` when a finished run reads every embedding's facts."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > 1 << 20:  # ours are a few hundred bytes; anything larger is not an embedding file of ours
            raise ValueError(f"{path}: safetensors header of {length} bytes")
        header = json.loads(handle.read(length))
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def _read_embedding(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """An embedding file's pair, checked: both tensors, finite, and (files that record one) the tensor bytes'
    sha256. Raises ValueError (or a safetensors/OS error) for a damaged file."""
    # Read whole, not mapped (load_file): for a file of a few kB that is 4× faster.
    data = path.read_bytes()
    tensors = load(data)
    pair = tensors["image_embeds"], tensors["negative_image_embeds"]
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    recorded = (header.get("__metadata__") or {}).get("sha256")
    if recorded is not None and sha256_bytes(data[8 + length :]) != recorded:
        raise ValueError(f"{path}: content hash differs from the one recorded when it was written")
    if not all(torch.isfinite(tensor).all() for tensor in pair):
        raise ValueError(f"{path}: non-finite values")
    return pair


@dataclass
class VerifyReport:
    """What `RunStore.verify` checked and what it found damaged (and removed, so the next run makes it again)."""

    images_checked: int = 0
    embeddings_checked: int = 0
    damaged_images: list[str] = field(default_factory=list)
    """"<path>: <what differs>" per image whose file differs from its manifest line."""
    damaged_embeddings: list[str] = field(default_factory=list)
    """"<path>: <why>" per embedding file that does not read back whole."""
    missing_images: int = 0
    """Listed images whose file is gone (made again by the next run in any case)."""

    @property
    def damaged(self) -> int:
        return len(self.damaged_images) + len(self.damaged_embeddings)

    def lines(self, shown: int = 20) -> list[str]:
        """A summary line, then up to `shown` damaged files."""
        summary = (
            f"checked {self.images_checked} image(s) against the manifest and {self.embeddings_checked} "
            f"embedding(s): {len(self.damaged_images)} damaged image(s), {len(self.damaged_embeddings)} damaged "
            f"embedding(s), {self.missing_images} listed image(s) missing"
        )
        found = [*self.damaged_images, *self.damaged_embeddings]
        lines = [summary, *(f"  damaged: {line}" for line in found[:shown])]
        if len(found) > shown:
            lines.append(f"  … and {len(found) - shown} more")
        if self.damaged:
            lines.append("damaged files were removed: the next `ovi-bench run` of this spec makes them again")
        return lines


class RunStore(GroupedCommits):
    def __init__(self, root: str | Path, writer: str = "") -> None:
        """`writer`: this process's file suffix in a sharded launch (see `writer_file`); "" for a single process."""
        self.root = Path(root)
        self.manifest_path = writer_file(self.root / "manifest.jsonl", writer)
        self._manifest: dict[str, ImageRecord] | None = None
        self._pending: list[_PendingFile] = []
        self._pending_since = 0.0
        self._commit_seconds = 0.0
        """How long the last commit took (a sync of the file system dominates)."""
        self.writer = writer
        self._init_grouping()
        self._calls = 0
        """Counts `put_*` calls: the images of one call are listed together or not at all."""

    # -- commits ------------------------------------------------------------------------------------------------

    def commit(self) -> None:
        """Put every pending write in place: sync their data, rename them to their real names, then append and
        sync the manifest lines of the images among them. Until then they are hidden temporary files.

        When a rename fails (a full disk), the files not yet placed are deleted and left to the next run, and the
        images of each `put_images` call get their lines only if all of that call's images were placed."""
        with self._lock, stop_signals_deferred():
            self._commit_pending()

    def _commit_pending(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        placed = 0
        started = time.monotonic()
        try:
            sync_data([write.temporary for write in pending])
            for write in pending:
                with explain_os_errors(write.path):
                    os.replace(write.temporary, write.path)
                placed += 1
        finally:
            for write in pending[placed:]:
                write.temporary.unlink(missing_ok=True)
            # The lines go last: a line is never on disk before its image (a kill in between leaves unlisted
            # images, which the next run makes again).
            failed_calls = {write.call for write in pending[placed:]}
            records = [
                write.record
                for write in pending[:placed]
                if write.record is not None and write.call not in failed_calls
            ]
            if records:
                # vars(): the fields are flat values, so this is asdict() without its deep copy.
                append_jsonl(self.manifest_path, (vars(record) for record in records))
                for record in records:
                    self.manifest[record.image_key] = record
            self._commit_seconds = time.monotonic() - started

    def _write(self, path: Path, data: bytes, metadata: dict[str, Any] | None = None) -> None:
        """Write `data` for `path` under a temporary name; with `metadata`, it is an image and gets a manifest line.

        A stop signal waits until the temporary file is registered as pending: raised in between, it would leave a
        file that no clean-up path knows of."""
        with stop_signals_deferred():
            self._write_pending(path, data, metadata)

    def _write_pending(self, path: Path, data: bytes, metadata: dict[str, Any] | None) -> None:
        temporary = write_temporary(path, data, self.writer)
        record = None
        if metadata is not None:
            record = ImageRecord(
                image_key=path.stem,  # image files are named <image key>.png
                path=path.relative_to(self.root).as_posix(),
                bytes=len(data),
                sha256=sha256_bytes(data),
                # A rename keeps the modification time, so the temporary file's is the image's.
                mtime_ns=temporary.stat().st_mtime_ns,
                **metadata,
            )
        if not self._pending:
            self._pending_since = time.monotonic()
            self._wake.notify()  # the timer sleeps until a group exists
        self._pending.append(_PendingFile(temporary, path, record, self._calls))

    def _due_at(self) -> float | None:
        if not self._pending:
            return None
        return self._pending_since + min(COMMIT_SECONDS, COMMIT_COST_RATIO * self._commit_seconds)

    def _commit_when_due(self) -> None:
        self._raise_timer_error()
        due = self._due_at()
        if (
            not self._grouping
            or len(self._pending) >= COMMIT_ITEMS
            or (due is not None and time.monotonic() >= due)
        ):
            self.commit()

    def _discard_pending_after(self, count: int) -> None:
        """Drop the writes after the first `count` pending ones (those of a call that failed half-way)."""
        for write in self._pending[count:]:
            write.temporary.unlink(missing_ok=True)
        del self._pending[count:]

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
        """Store one embedding pair; `facts` (JSON-able, e.g. optimisation steps used) ride along as metadata.

        In place when this returns, or inside `grouped_commits` at the group's commit."""
        # The same bytes as safetensors.torch.save, in a third of its time (it checks for shared storage).
        arrays = {
            name: tensor.detach().to("cpu", torch.float32).contiguous().numpy()
            for name, tensor in (
                ("image_embeds", image_embeds),
                ("negative_image_embeds", negative_image_embeds),
            )
        }
        # The digest of the tensor bytes rides along, so that `verify` finds a damaged file that still parses.
        digest = sha256_bytes(b"".join(arrays[name].tobytes() for name in sorted(arrays)))
        data = save_arrays(arrays, metadata={"facts": canonical_json(facts or {}), "sha256": digest})
        with self._lock:
            self._calls += 1
            self._write(self.embedding_path(key), data)
            self._commit_when_due()

    def get_embedding(self, key: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The stored pair, or None when missing or unreadable (an unreadable file is removed)."""
        path = self.embedding_path(key)
        try:
            pair = _read_embedding(path)
        except FileNotFoundError:
            return None
        except (SafetensorError, KeyError, OSError, ValueError, struct.error):
            path.unlink(missing_ok=True)
            return None
        return pair

    def embedding_facts(self, key: str) -> dict[str, Any] | None:
        """The facts stored with an embedding (empty when it has none); None when its file is missing or its
        header cannot be read, so that callers compute it again rather than report no facts."""
        try:
            facts = json.loads(_safetensors_metadata(self.embedding_path(key)).get("facts", "{}"))
        except (OSError, ValueError, struct.error):
            return None
        return facts if isinstance(facts, dict) else {}

    # -- images -------------------------------------------------------------------------------------------------

    def image_path(self, key: str) -> Path:
        return self.root / "images" / key[:2] / f"{key}.png"

    @property
    def manifest(self) -> dict[str, ImageRecord]:
        """Every process's manifest lines; for an image written more than once, the latest write wins."""
        if self._manifest is None:
            self._manifest = {}
            for row in read_all_jsonl(self.root / "manifest.jsonl"):
                try:
                    record = ImageRecord(**row)
                except TypeError:
                    continue
                known = self._manifest.get(record.image_key)
                if known is None or record.mtime_ns >= known.mtime_ns:
                    self._manifest[record.image_key] = record
        return self._manifest

    def reload(self) -> None:
        """Forget the manifest read so far: other processes may have added images since."""
        self._manifest = None

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
        """Write (key, png bytes, metadata) images, then append their manifest lines in one go.

        In place when this returns, or inside `grouped_commits` at the group's commit."""
        with self._lock:
            before = len(self._pending)
            self._calls += 1
            try:
                for key, png, metadata in entries:
                    self._write(self.image_path(key), png, metadata)
            except BaseException:
                self._discard_pending_after(before)
                raise
            self._commit_when_due()

    def verify(self) -> VerifyReport:
        """Re-hash every listed image against its manifest line and read back every embedding; remove what differs,
        so that the next generation pass makes it again (`has_image` trusts an untouched size and mtime)."""
        report = VerifyReport()
        for key, record in list(self.manifest.items()):
            report.images_checked += 1
            path = self.root / record.path
            try:
                size = path.stat().st_size
                problem = (
                    f"{size} bytes, the manifest says {record.bytes}"
                    if size != record.bytes
                    else "content differs from the manifest's sha256"
                    if sha256_file(path) != record.sha256
                    else None
                )
            except FileNotFoundError:
                report.missing_images += 1
                continue
            if problem is not None:
                report.damaged_images.append(f"{record.path}: {problem}")
                self.forget_image(key)
        folder = self.root / "embeddings"
        for path in sorted(folder.glob("*/*.safetensors")) if folder.is_dir() else []:
            if path.name.startswith("."):
                continue
            report.embeddings_checked += 1
            try:
                _read_embedding(path)
            except FileNotFoundError:
                continue
            except (SafetensorError, KeyError, OSError, ValueError, struct.error) as error:
                reason = str(error).replace(f"{path}: ", "") or type(error).__name__
                report.damaged_embeddings.append(f"{path.relative_to(self.root).as_posix()}: {reason[:200]}")
                path.unlink(missing_ok=True)
        return report

    def read_image_bytes(self, key: str) -> bytes:
        return (self.root / self.manifest[key].path).read_bytes()

    def forget_image(self, key: str) -> None:
        """Drop a corrupt image so that the next generation pass makes it again."""
        record = self.manifest.pop(key, None)
        if record is not None:
            (self.root / record.path).unlink(missing_ok=True)
