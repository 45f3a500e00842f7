"""End to end on tiny models: result files, caching, resume after a kill, corruption, determinism."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tomli_w
import torch
from PIL import Image
from tiny_runs import run, tiny_spec

from ovi_bench.components import Params
from ovi_bench.metrics.base import DerivedMetric, Metric, ScoreInput, ScoreRow, SetMetric, SetScore
from ovi_bench.provenance import write_results
from ovi_bench.registry import METRICS
from ovi_bench.runner import Runner
from ovi_bench.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]


def test_run_writes_result_files_with_a_row_per_prior_and_category(tmp_path: Path) -> None:
    result = run(tmp_path)
    assert result.counts.images_generated == 2 * 2 * 1 * 2  # priors × categories × prompts × seeds
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert set(zip(board.prior, board.category, strict=True)) == {
        (prior, category)
        for prior in ("text-embedding", "kandinsky-2.2")
        for category in ("color", "spatial")
    }
    assert {"prior", "category", "metric", "mean", "n"} <= set(board.columns)
    assert (board.n == 2).all() and board["mean"].between(-1, 1).all()
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert len(scores) == 8 and scores.reason.str.startswith("CLIP cosine").all()
    # The leaderboard mean is the mean over images of the per-image scores.
    for record in board.itertuples():
        mine = scores[(scores.prior == record.prior) & (scores.category == record.category)]
        assert record.mean == pytest.approx(mine.score.mean())
    for path in scores.image:
        assert Image.open(tmp_path / path).size == (32, 32)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["spec_fingerprint"] == result.spec.fingerprint() == board.spec_fingerprint[0]
    assert results["prompts"]["digest"] == result.prompt_set.digest
    assert results["packages"]["torch"].startswith("2.")
    assert results["metrics"]["clip"]["version"] == "2"
    assert results["device"] == "cpu" and results["dtype"] == "float32"
    assert "kandinsky-2.2" in (tmp_path / "leaderboard.md").read_text()


def test_second_run_computes_nothing(tmp_path: Path) -> None:
    run(tmp_path)
    again = run(tmp_path)
    assert again.counts.images_generated == 0
    assert again.counts.embeddings_computed == 0
    assert again.counts.scores_computed == 0
    assert again.counts.images_reused == 8 and again.counts.scores_reused == 8


def test_growing_a_run_generates_only_the_new_images(tmp_path: Path) -> None:
    run(tmp_path)
    grown = run(tmp_path, images_per_prompt=3)
    assert grown.counts.images_generated == 4  # one new seed × 2 priors × 2 prompts
    assert grown.counts.images_reused == 8


def _pixels(folder: Path) -> dict[tuple[str, str, int], np.ndarray]:
    scores = pd.read_csv(folder / "scores.csv")
    return {
        (row.prior, row.prompt_id, row.seed): np.asarray(Image.open(folder / row.image), dtype=np.int16)
        for row in scores.itertuples()
    }


def test_same_spec_gives_identical_images_and_scores(tmp_path: Path) -> None:
    run(tmp_path / "a")
    run(tmp_path / "b")
    first, second = _pixels(tmp_path / "a"), _pixels(tmp_path / "b")
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "a" / "leaderboard.csv"), pd.read_csv(tmp_path / "b" / "leaderboard.csv")
    )


def test_batch_composition_does_not_change_results(tmp_path: Path) -> None:
    run(tmp_path / "batched", prior_batch_size=16, decoder_batch_size=8, metric_batch_size=16)
    run(tmp_path / "single", prior_batch_size=1, decoder_batch_size=1, metric_batch_size=1)
    batched, single = _pixels(tmp_path / "batched"), _pixels(tmp_path / "single")
    for key in batched:
        # Per-sample generators make batching a float-rounding matter: at most one grey level in 8-bit pixels.
        assert np.abs(batched[key] - single[key]).max() <= 1, key
    scores_batched = pd.read_csv(tmp_path / "batched" / "scores.csv").score
    scores_single = pd.read_csv(tmp_path / "single" / "scores.csv").score
    np.testing.assert_allclose(scores_batched, scores_single, atol=5e-3)


def _assert_same_image(png: bytes, reference: bytes) -> None:
    """Regenerated alone rather than in its first batch: equal up to one grey level (see batch composition)."""
    pixels = np.asarray(Image.open(io.BytesIO(png)), dtype=np.int16)
    expected = np.asarray(Image.open(io.BytesIO(reference)), dtype=np.int16)
    assert np.abs(pixels - expected).max() <= 1


def test_corrupt_image_is_detected_and_regenerated(tmp_path: Path) -> None:
    run(tmp_path)
    scores = pd.read_csv(tmp_path / "scores.csv")
    victim = tmp_path / scores.image[0]
    original = victim.read_bytes()
    victim.write_bytes(b"\x89PNG not really")
    again = run(tmp_path)
    assert again.counts.images_generated == 1
    _assert_same_image(victim.read_bytes(), original)


def test_same_size_tampering_is_caught_by_the_hash(tmp_path: Path) -> None:
    run(tmp_path)
    scores = pd.read_csv(tmp_path / "scores.csv")
    victim = tmp_path / scores.image[3]
    original = victim.read_bytes()
    tampered = bytearray(original)
    tampered[-20] ^= 0xFF
    victim.write_bytes(bytes(tampered))
    os.utime(victim, ns=(10**9, 10**9))
    again = run(tmp_path)
    assert again.counts.images_generated == 1
    _assert_same_image(victim.read_bytes(), original)


def test_corrupt_embedding_is_recomputed(tmp_path: Path) -> None:
    run(tmp_path)
    embeddings = sorted((tmp_path / "embeddings").rglob("*.safetensors"))
    images = sorted((tmp_path / "images").rglob("*.png"))
    embeddings[0].write_bytes(b"garbage")
    for image in images:
        image.unlink()  # force decoding, which reads the embeddings
    again = run(tmp_path)
    assert again.counts.embeddings_computed == 1
    assert again.counts.images_generated == 8


def _write_spec(path: Path, **overrides: Any) -> Path:
    path.write_text(tomli_w.dumps(tiny_spec(**overrides)))
    return path


def test_killed_run_resumes_and_generates_only_what_is_missing(tmp_path: Path) -> None:
    spec_path = _write_spec(
        tmp_path / "spec.toml",
        prompts={"source": "builtin", "categories": ["color", "shape", "texture"], "limit": 2},
        decoder={"params": {"model": "tiny"}, "steps": 8, "height": 32, "width": 32},
        decoder_batch_size=1,
    )
    out = tmp_path / "run"
    total = 2 * 3 * 2 * 2
    process = subprocess.Popen(
        [sys.executable, "-m", "ovi_bench", "run", str(spec_path), "--out", str(out), "--quiet"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if manifest.is_file() and len(manifest.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len({json.loads(line)["image_key"] for line in manifest.read_text().splitlines()})
    assert 3 <= done < total
    # No partial file under a real name: an interrupted write can only leave a hidden temporary file.
    for png in (out / "images").rglob("*.png"):
        if not png.name.startswith("."):
            Image.open(png).load()
    result = Runner(load_spec(spec_path), out, show_progress=False).run()
    assert result.counts.images_generated == total - done
    assert result.counts.images_reused == done
    assert len(result.score_rows) == total


def test_cli_second_run_says_it_generated_nothing(tmp_path: Path) -> None:
    spec_path = _write_spec(tmp_path / "spec.toml")
    command = [sys.executable, "-m", "ovi_bench", "run", str(spec_path), "--out", str(tmp_path / "run")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    first = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    assert "generated 8 image(s)" in first.stderr
    second = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    assert "generated 0 image(s) (8 already in the store)" in second.stderr
    assert "text-embedding" in second.stdout and "kandinsky-2.2" in second.stdout


def test_cli_reports_bad_spec_without_traceback(tmp_path: Path) -> None:
    spec_path = _write_spec(tmp_path / "spec.toml", priors=[{"name": "ovi-typo"}])
    completed = subprocess.run(
        [sys.executable, "-m", "ovi_bench", "run", str(spec_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
    )
    assert completed.returncode == 2
    assert "unknown prior 'ovi-typo'" in completed.stderr
    assert "Traceback" not in completed.stderr


OFFICIAL_DIR = ROOT.parent / "shared" / "data" / "t2i-compbench"


@pytest.mark.skipif(
    not OFFICIAL_DIR.is_dir(), reason=f"official T2I-CompBench++ prompt files not found at {OFFICIAL_DIR}"
)
def test_run_on_the_official_prompt_files(tmp_path: Path) -> None:
    spec = parse_spec(
        tiny_spec(
            images_per_prompt=1,
            prompts={"source": "t2i-compbench", "limit": 1},
            priors=[{"name": "text-embedding", "params": {"model": "tiny"}}],
        )
    )
    result = Runner(spec, tmp_path, data_dir=OFFICIAL_DIR, show_progress=False).run()
    write_results(result)
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert len(board) == 8 and (board.n == 1).all()
    provenance = json.loads((tmp_path / "results.json").read_text())["prompts"]
    assert provenance["source"] == "t2i-compbench"
    assert set(provenance["files"]) == {f"{category}_val.txt" for category in board.category}


def test_diagnostics_and_prior_facts_reach_the_results(tmp_path: Path) -> None:
    overrides = {
        "priors": [
            {"name": "text-embedding", "params": {"model": "tiny"}},
            {"name": "ovi", "params": {"model": "tiny", "steps": 40, "early_stopping": True, "patience": 5}},
        ],
        "diagnostics": {"model": "tiny", "bank": "tiny"},
    }
    first = run(tmp_path, **overrides)
    assert first.counts.diagnostics_computed == 8
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert {"text_cosine", "norm", "mahalanobis", "nn_cosine"} <= set(board.columns)
    embeddings = pd.read_csv(tmp_path / "embeddings.csv")
    assert len(embeddings) == 8
    ovi_rows = embeddings[embeddings.prior == "ovi"]
    assert ovi_rows.prior_steps.between(1, 40).all()
    # The diagnostic is the cosine the optimisation itself reported for its final tokens.
    np.testing.assert_allclose(ovi_rows.text_cosine, ovi_rows.prior_text_cosine, atol=1e-5)
    # The text-embedding baseline is its own text embedding: cosine 1.
    np.testing.assert_allclose(embeddings[embeddings.prior == "text-embedding"].text_cosine, 1.0, atol=1e-5)
    for record in board.itertuples():
        mine = embeddings[(embeddings.prior == record.prior) & (embeddings.category == record.category)]
        assert record.mahalanobis == pytest.approx(mine.mahalanobis.mean())
    again = run(tmp_path, **overrides)
    assert again.counts.diagnostics_computed == 0 and again.counts.embeddings_computed == 0


def test_without_diagnostics_there_are_no_diagnostic_columns(tmp_path: Path) -> None:
    run(tmp_path)
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert "mahalanobis" not in board.columns and "text_cosine" not in board.columns


def test_official_suite_scores_every_category_and_3_in_1_combines_the_runs_own_scores(tmp_path: Path) -> None:
    detector = {"detector_model": "tiny", "text_analyzer": "builtin"}
    metrics = [
        {"name": "b-vqa", "params": {"model": "tiny", "text_analyzer": "builtin", "image_size": 64}},
        {"name": "spatial-2d", "params": detector},
        {"name": "spatial-3d", "params": {**detector, "depth_model": "tiny", "depth_input_size": 32}},
        {"name": "numeracy", "params": {**detector, "lexicon": "builtin"}},
        {"name": "clip", "params": {"model": "tiny", "text_analyzer": "builtin"}},
        {"name": "3-in-1"},
    ]
    run(
        tmp_path,
        images_per_prompt=1,
        prompts={"source": "builtin", "limit": 1},
        priors=[{"name": "text-embedding", "params": {"model": "tiny"}}],
        metrics=metrics,
    )
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    official = board[board.official]
    assert dict(zip(official.category, official.metric, strict=True)) == {
        "color": "b-vqa",
        "shape": "b-vqa",
        "texture": "b-vqa",
        "spatial": "spatial-2d",
        "3d_spatial": "spatial-3d",
        "numeracy": "numeracy",
        "non_spatial": "clip",
        "complex": "3-in-1",
    }
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert scores.score.between(-1, 1).all() and scores.reason.str.len().gt(0).all()
    complex_scores = scores[scores.category == "complex"].set_index("metric").score
    # The built-in complex prompt 0 routes "spatialaction": the mean of the three.
    expected = (complex_scores["b-vqa"] + complex_scores["spatial-2d"] + complex_scores["clip"]) / 3
    assert complex_scores["3-in-1"] == pytest.approx(expected)


def test_cli_error_keeps_bracketed_field_paths(tmp_path: Path) -> None:
    spec_path = _write_spec(
        tmp_path / "spec.toml", priors=[{"name": "ovi", "params": {"model": "tiny", "stesp": 3}}]
    )
    completed = subprocess.run(
        [sys.executable, "-m", "ovi_bench", "run", str(spec_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "300"},
    )
    assert completed.returncode == 2
    assert "priors[ovi].params.stesp" in completed.stderr
    assert "Did you mean 'steps'?" in completed.stderr


# -- metric kinds: a plugin metric says how it runs, the runner never names its class --------------------------------


class _BrightnessMetric(Metric):
    """An image metric without a model: an image's mean brightness."""

    def score(self, batch: Sequence[ScoreInput]) -> list[ScoreRow]:
        return [ScoreRow(float(np.asarray(item.image).mean() / 255), "mean brightness") for item in batch]


class _TwiceBrightness(DerivedMetric):
    inputs = ("test-brightness",)

    def combine(self, category: str, subset: str | None, scores: dict[str, float]) -> ScoreRow:
        return ScoreRow(2 * scores["test-brightness"], "twice the brightness")


class _ReferenceParams(Params):
    reference: str


class _BrightnessGap(SetMetric):
    """A set metric: the gap between the mean brightness of the generated and the reference images."""

    Params = _ReferenceParams
    feature_space = "brightness"

    def extractor_fingerprint(self) -> str:
        return "brightness-v1"

    def features(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return torch.tensor([[float(np.asarray(image).mean())] for image in images])

    def reference_identity(self) -> str:
        return self.params.reference

    def reference_image_paths(self) -> list[Path]:
        return sorted(Path(self.params.reference).glob("*.png"))

    def compare(self, generated: torch.Tensor, reference: torch.Tensor) -> SetScore:
        return SetScore(abs(float(generated.mean() - reference.mean())))


def test_a_plugin_metric_runs_as_the_kind_it_declares(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    reference.mkdir()
    for value in (0, 255):
        Image.new("RGB", (8, 8), (value, value, value)).save(reference / f"{value}.png")
    plugins = {
        "test-brightness": _BrightnessMetric,
        "test-twice": _TwiceBrightness,
        "test-gap": _BrightnessGap,
    }
    with contextlib.ExitStack() as registrations:
        for name, metric_class in plugins.items():
            registrations.enter_context(METRICS.registered_while(name, metric_class))
        spec = tiny_spec(
            prompts={"source": "builtin", "categories": ["color"], "limit": 1},
            priors=[{"name": "text-embedding", "params": {"model": "tiny"}}],
            metrics=[
                {"name": "test-twice"},
                {"name": "test-brightness"},
                {"name": "test-gap", "params": {"reference": str(reference)}},
            ],
        )
        result = Runner(parse_spec(spec), tmp_path / "run", show_progress=False).run()
    assert result is not None
    scores = pd.DataFrame(result.score_rows).pivot(index="image", columns="metric", values="score")
    assert len(scores) == 2
    np.testing.assert_allclose(scores["test-twice"], 2 * scores["test-brightness"])
    # Only the image metric computes (and caches) scores; the derived one is combined from them.
    assert result.counts.scores_computed == 2 and len(list((tmp_path / "run" / "scores").iterdir())) == 1
    sets = pd.DataFrame(result.set_rows)
    assert set(sets.category) == {"color", "all"} and (sets.metric == "test-gap[brightness]").all()
    assert (sets.n_generated == 2).all() and (sets.n_reference == 2).all()
    assert result.counts.features_computed == 2
    recorded = result.set_metrics["test-gap"]
    assert recorded["reference"] == str(reference) and recorded["resize"] is None
    assert recorded["leaderboard_name"] == "test-gap[brightness]" and recorded["higher_is_better"] is True
