"""Small file helpers shared by every stage: atomic writes, digests, canonical JSON."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ovi_bench.errors import OviBenchError


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal text, hence equal hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _explain_os_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except PermissionError as error:
        raise OviBenchError(
            f"cannot write {path}: permission denied. Choose a writable folder (--out)."
        ) from error
    except OSError as error:
        if error.errno == 28:  # ENOSPC
            raise OviBenchError(
                f"cannot write {path}: the disk is full. Free space and run again."
            ) from error
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one, never a part."""
    atomic_write_with(path, lambda handle: handle.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(path: Path, write: Callable[[Any], object]) -> None:
    """Call `write(binary_handle)` on a temporary file beside `path`, fsync it, then rename it into place."""
    path = Path(path)
    with _explain_os_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise


def publish_directory(build: Callable[[Path], None], destination: Path) -> Path:
    """Build a folder under a temporary name and rename it into place, so a crash never leaves half a folder.

    If another process published the same folder first, its copy is kept and ours is discarded.
    """
    destination = Path(destination)
    if destination.is_dir():
        return destination
    with _explain_os_errors(destination):
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
        try:
            build(staging)
            os.replace(staging, destination)
        except OSError:
            if not destination.is_dir():
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return destination
