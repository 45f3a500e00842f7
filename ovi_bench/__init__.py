"""ovi-bench: a benchmark framework for text-to-image diffusion priors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ovi_bench.version import __version__

__all__ = ["Evaluation", "__version__", "evaluate"]

if TYPE_CHECKING:
    from ovi_bench.api import Evaluation, evaluate


def __getattr__(name: str) -> Any:
    # Imported on first use: the API pulls in torch and the runner, and `import ovi_bench` (the CLI's --help, a
    # plugin's registration) should stay cheap.
    if name in ("evaluate", "Evaluation"):
        from ovi_bench import api

        return getattr(api, name)
    raise AttributeError(f"module 'ovi_bench' has no attribute {name!r}")
