"""Small file helpers shared by every stage: atomic writes, digests, canonical JSON."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ovi_bench.errors import OviBenchError
from ovi_bench.text import map_text_cells, spreadsheet_original, spreadsheet_safe

if TYPE_CHECKING:
    import pandas as pd
    from PIL import Image


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal text, hence equal hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def png_bytes(image: Image.Image) -> bytes:
    """A generated image as stored: PNG at zlib level 1."""
    # Level 1, not PIL's default 6: lossless either way, about 20% larger, and 5× faster to encode (16 ms against
    # 83 ms for a 512×512 image on the 2-core development VM, where a GPU renders one in ~100 ms).
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


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


# errno values that mean "this folder cannot take the write": what is wrong with it and how to fix it.
_UNWRITABLE: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("the disk is full", "Free space on that disk, or choose a folder on another disk (--out)"),
    errno.EDQUOT: (
        "the disk quota is exhausted",
        "Free space within your quota, or choose another folder (--out)",
    ),
    errno.EROFS: ("the file system is read-only", "Choose a folder on a writable disk (--out)"),
    errno.EACCES: ("permission denied", "Choose a folder you can write to (--out), or fix its permissions"),
    errno.EPERM: ("the operation is not permitted", "Choose a folder you can write to (--out)"),
}

RESUME_HINT = "Everything finished before it is kept: run the same command again to resume."


def unwritable_error(path: Path | str | None, error: OSError) -> OviBenchError | None:
    """The OviBenchError that names `path`, the cause and the fix for a write that failed with a full disk, a
    read-only file system or a permission problem; None for any other OSError (a bug, not a user's problem)."""
    explained = _UNWRITABLE.get(error.errno) if error.errno is not None else None
    if explained is None:
        return None
    cause, fix = explained
    where = path if path is not None else (error.filename or "a file")
    return OviBenchError(f"cannot write {where}: {cause}. {fix}. {RESUME_HINT}")


@contextlib.contextmanager
def explain_os_errors(path: Path | str) -> Iterator[None]:
    """Turn a full disk, a read-only file system or a permission problem inside the block into an OviBenchError
    that names `path` and the fix; other errors pass through unchanged."""
    try:
        yield
    except OSError as error:
        explained = unwritable_error(path, error)
        if explained is None or not _concerns(error, Path(path)):
            raise
        raise explained from error


def _concerns(error: OSError, path: Path) -> bool:
    """Whether the failed call was about `path` or its folder (a write() error names no file); an input that a
    build step could not read elsewhere keeps its own message."""
    if not isinstance(error.filename, (str, bytes, os.PathLike)):
        return True
    failed = Path(os.path.abspath(os.fsdecode(error.filename)))
    folder = Path(os.path.abspath(path)).parent
    return failed == folder or folder in failed.parents or failed in folder.parents


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one, never a part."""
    atomic_write_with(path, lambda handle: handle.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(path: Path, write: Callable[[Any], object]) -> None:
    """Call `write(binary_handle)` on a temporary file beside `path`, fsync it, then rename it into place."""
    path = Path(path)
    with explain_os_errors(path):
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
    with explain_os_errors(destination):
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


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write `frame` (no index) atomically as CSV, every text cell and column name through `spreadsheet_safe`, so
    that a prompt or label like `=HYPERLINK(...)` is shown as text by a spreadsheet, never evaluated. Numbers are
    left alone (-0.5 stays a number). Every CSV file ovi-bench writes goes through here; `read_csv` reads it back."""
    atomic_write_text(path, map_text_cells(frame, spreadsheet_safe).to_csv(index=False))


def read_csv(path: Path, **options: Any) -> pd.DataFrame:
    """`pandas.read_csv(path, **options)` of a file written by `write_csv`, with the text as it was given."""
    import pandas as pd

    return map_text_cells(pd.read_csv(path, **options), spreadsheet_original)
