"""The caches of a run folder: scored rows and diagnostics (`RowCache`, append-only JSON lines) and the per-image
features of set metrics (`FeatureCache`). Their files are listed in the run folder layout of `ovi_bench.store`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from ovi_bench.durable import GroupedCommits, append_jsonl, fsync_path, read_all_jsonl, writer_file
from ovi_bench.errors import OviBenchError
from ovi_bench.io import atomic_write_bytes
from ovi_bench.store import COMMIT_SECONDS, item_key


class RowCache(GroupedCommits):
    """JSON rows keyed by their "key" field, append-only on disk: the scores of one metric fingerprint (keyed by
    image content, prompt and category), or the diagnostics of one diagnostics setting (keyed by embedding)."""

    def __init__(self, path: str | Path, writer: str = "") -> None:
        """Reads what every process wrote for `path`; appends to this process's own file (see `writer_file`)."""
        self.path = writer_file(Path(path), writer)
        self.rows: dict[str, dict[str, Any]] = {
            row["key"]: row for row in read_all_jsonl(Path(path)) if "key" in row
        }
        self._unsynced_since: float | None = None
        self._init_grouping()

    @staticmethod
    def score_key(image_sha256: str, prompt: str, category: str) -> str:
        return item_key(image_sha256, prompt, category)

    def add(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            self._raise_timer_error()
            append_jsonl(self.path, rows, sync=False)
            for row in rows:
                self.rows[row["key"]] = row
            if self._unsynced_since is None:
                self._unsynced_since = time.monotonic()
                self._wake.notify()
            if not self._grouping or time.monotonic() - self._unsynced_since >= COMMIT_SECONDS:
                self.commit()

    def _due_at(self) -> float | None:
        return None if self._unsynced_since is None else self._unsynced_since + COMMIT_SECONDS

    def commit(self) -> None:
        """Sync the rows added so far against a power cut."""
        with self._lock:
            if self._unsynced_since is not None:
                fsync_path(self.path)
                self._unsynced_since = None


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
