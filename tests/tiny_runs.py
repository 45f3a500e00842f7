"""The tiny run spec the end-to-end tests share: 2 priors × 2 categories × 1 prompt × 2 seeds, 32×32 images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ovi_bench.provenance import RunResult, write_results
from ovi_bench.runner import Runner
from ovi_bench.spec import parse_spec


def tiny_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "tiny",
        "device": "cpu",
        "images_per_prompt": 2,
        "prompts": {"source": "builtin", "categories": ["color", "spatial"], "limit": 1},
        "priors": [
            {"name": "text-embedding", "params": {"model": "tiny"}},
            {"name": "kandinsky-2.2", "params": {"model": "tiny", "steps": 3}},
        ],
        "decoder": {"params": {"model": "tiny"}, "steps": 2, "height": 32, "width": 32},
        "metrics": [{"name": "clip", "params": {"model": "tiny"}}],
    }
    return spec | overrides


def run(out: Path, **overrides: Any) -> RunResult:
    """Run the tiny spec (with overrides) into `out` and write its result files."""
    result = Runner(parse_spec(tiny_spec(**overrides)), out, show_progress=False).run()
    write_results(result)
    return result
