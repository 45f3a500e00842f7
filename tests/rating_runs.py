"""A finished run folder for the rating tests, written in the real shapes (results.json, scores.csv, manifest.jsonl,
images/xx/<sha256>.png) without running any model: 3 priors × 2 categories × 3 prompts × 1 seed, 8×8 PNGs.

The `clip` score of an image is its prior's true strength plus a little noise, so simulated raters whose utility is
`clip` prefer priors in the order of PRIOR_STRENGTHS. One prompt is hostile HTML (HOSTILE_PROMPT)."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from PIL import Image

from ovi_bench.io import write_csv

PRIOR_STRENGTHS = {"strong": 1.0, "middle": 0.0, "weak": -1.0}
CATEGORIES = ("color", "shape")
PROMPTS_PER_CATEGORY = 3
SEED = 42
DECODER = "tiny-decoder"
HOSTILE_PROMPT = '<img src=x onerror="document.body.dataset.hacked=1">'


def prompt_text(category: str, index: int) -> str:
    return HOSTILE_PROMPT if (category, index) == ("color", 0) else f"a {category} test prompt number {index}"


def make_rating_run(folder: Path, *, priors: dict[str, float] | None = None, seed: int = 0) -> Path:
    """Write the run folder into `folder` (created) and return it."""
    strengths = priors or PRIOR_STRENGTHS
    generator = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    score_rows: list[dict[str, Any]] = []
    manifest: list[dict[str, Any]] = []
    for prior, strength in strengths.items():
        for category in CATEGORIES:
            for index in range(PROMPTS_PER_CATEGORY):
                pixels = generator.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, format="PNG")
                data = buffer.getvalue()
                key = hashlib.sha256(data).hexdigest()
                relative = f"images/{key[:2]}/{key}.png"
                (folder / relative).parent.mkdir(parents=True, exist_ok=True)
                (folder / relative).write_bytes(data)
                prompt_id = f"{category}-builtin-{index:04d}"
                common = {
                    "prior": prior,
                    "decoder": DECODER,
                    "category": category,
                    "prompt_id": prompt_id,
                    "prompt": prompt_text(category, index),
                    "seed": SEED,
                }
                manifest.append(
                    {**common, "image_key": key, "path": relative, "sha256": key, "bytes": len(data)}
                )
                for metric, score in (
                    ("clip", strength + 0.1 * float(generator.normal())),
                    ("b-vqa", float(generator.uniform())),
                ):
                    score_rows.append(
                        {**common, "metric": metric, "score": score, "reason": "", "image": relative}
                    )
    write_csv(pd.DataFrame(score_rows), folder / "scores.csv")
    (folder / "manifest.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in manifest), encoding="utf-8"
    )
    results = {
        "spec_fingerprint": "0" * 64,
        "spec": {
            "name": "rating-test",
            "priors": [{"name": prior, "label": None, "params": {}} for prior in strengths],
            "decoder": {"name": DECODER},
        },
        "priors": {prior: {} for prior in strengths},
        "metrics": {"clip": {"higher_is_better": True}, "b-vqa": {"higher_is_better": True}},
        "leaderboard": [],
    }
    (folder / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return folder


def n_items(priors: int = len(PRIOR_STRENGTHS)) -> int:
    """Items (pairs of priors on one prompt) of the run."""
    return priors * (priors - 1) // 2 * len(CATEGORIES) * PROMPTS_PER_CATEGORY


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(run_dir: Path, port: int, *options: str) -> subprocess.Popen[bytes]:
    """`ovi-bench rate RUN_DIR --port PORT OPTIONS` in a subprocess (the real command, uvicorn and all), returned
    once it answers; the caller kills it."""
    command = [sys.executable, "-m", "ovi_bench", "rate", str(run_dir), "--port", str(port), *options]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise AssertionError(f"`ovi-bench rate` exited with {process.returncode}: {output}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/progress", params={"rater": "probe"}, timeout=2)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("`ovi-bench rate` did not answer within 60 s")


def kill_server(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL: no shutdown hook runs, as when the machine loses power or the process is killed by the OOM killer."""
    process.kill()
    process.wait(timeout=30)
    if process.stdout:
        process.stdout.close()
