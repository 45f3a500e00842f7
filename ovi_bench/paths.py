"""Where ovi-bench keeps data that outlives a run: tiny models, downloads, cached embeddings."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "OVI_BENCH_CACHE"


def cache_dir() -> Path:
    """`$OVI_BENCH_CACHE`, else `$XDG_CACHE_HOME/ovi-bench`, else `~/.cache/ovi-bench`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "ovi-bench"


def expand_user(path: str | os.PathLike[str]) -> Path:
    """`~` and `~user` expanded as a shell does. An unknown user's `~user` stays as written (and is then reported as
    a missing file or folder) instead of raising RuntimeError as `Path.expanduser` does."""
    return Path(os.path.expanduser(os.fspath(path)))
