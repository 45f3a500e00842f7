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
