"""Set-level metrics: the distances (FID, KID, CMMD) on known distributions, reference caching, and a Runner run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_runs import tiny_spec

from ovi_bench.errors import OviBenchError
from ovi_bench.metrics.functional.distances import (
    cmmd,
    feature_statistics,
    frechet_distance,
    kernel_inception_distance,
)
from ovi_bench.provenance import write_results
from ovi_bench.registry import METRICS
from ovi_bench.runner import Runner
from ovi_bench.spec import parse_spec

CPU = torch.device("cpu")


def gaussian(n: int, dim: int = 8, shift: float = 0.0, scale: float = 1.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, scale, size=(n, dim))


def fd(x: np.ndarray, y: np.ndarray) -> float:
    return frechet_distance(*feature_statistics(x), *feature_statistics(y))


def test_frechet_distance_of_a_set_with_itself_is_zero() -> None:
    x = gaussian(200)
    assert fd(x, x) == pytest.approx(0.0, abs=1e-6)
    # Singular covariance (fewer samples than dimensions): still finite and ≈ 0 thanks to the eps offset.
    small = gaussian(5, dim=16)
    assert abs(fd(small, small)) < 1e-3


def test_frechet_distance_grows_with_a_mean_shift() -> None:
    x = gaussian(300)
    values = [fd(x, gaussian(300, shift=shift, seed=1)) for shift in (0.0, 0.5, 1.0, 2.0)]
    assert values == sorted(values) and values[-1] > values[0]


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians() -> None:
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 0.5, 0.0])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 9.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-9)


def test_kid_and_cmmd_agree_in_sign_with_fid() -> None:
    x, same, shifted = gaussian(300), gaussian(300, seed=1), gaussian(300, shift=1.0, seed=2)
    kid_same, _ = kernel_inception_distance(x, same, subsets=20, subset_size=100)
    kid_shifted, kid_std = kernel_inception_distance(x, shifted, subsets=20, subset_size=100)
    assert abs(kid_same) < 0.05 < kid_shifted and kid_std >= 0
    assert fd(x, same) < fd(x, shifted)
    # CMMD's σ = 10 is made for CLIP-scale distances; scaled-up features give it something to see.
    assert abs(cmmd(x * 5, same * 5)) < cmmd(x * 5, shifted * 5)
    assert cmmd(x, x, unbiased=False) == pytest.approx(0.0, abs=1e-9)
    assert cmmd(x * 5, shifted * 5) > 0


def test_kid_is_unbiased_for_two_samples_of_one_distribution() -> None:
    values = [
        kernel_inception_distance(gaussian(100, seed=seed), gaussian(100, seed=seed + 100), subsets=10)[0]
        for seed in range(10)
    ]
    assert abs(np.mean(values)) < 3 * np.std(values) / np.sqrt(len(values)) + 1e-3
    assert min(values) < 0 < max(values) or abs(np.mean(values)) < 1e-3


def make_metric(name: str, **params: object):
    metric_class = METRICS.get(name)
    return metric_class(
        metric_class.Params.model_validate({"feature_model": "tiny", "reference": "tiny", **params}),
        device=CPU,
        dtype=torch.float32,
    )


def test_reference_features_are_computed_once_and_cached_on_disk() -> None:
    first = make_metric("fid", max_reference_images=16)
    features = first.reference_features()
    assert features.shape[0] == 16 and first.reference_features_computed == 16
    assert first.reference_cache_path().is_file()
    assert "reference-features" in str(first.reference_cache_path())
    second = make_metric("kid", max_reference_images=16)  # same extractor and reference: same cache file
    assert second.reference_cache_path() == first.reference_cache_path()
    assert torch.equal(second.reference_features(), features) and second.reference_features_computed == 0
    # Another extractor (DINOv2) is another feature space and another cache file.
    dino = make_metric("fid", features="dinov2", max_reference_images=16)
    assert dino.reference_cache_path() != first.reference_cache_path()
    assert dino.feature_space == "dinov2@tiny" and first.feature_space == "clip-vit-l-14@tiny"


def test_set_metric_refuses_per_image_scoring_and_inception_names_the_extra() -> None:
    metric = make_metric("fid", max_reference_images=4)
    with pytest.raises(TypeError, match="whole set"):
        metric.score([])
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        with pytest.raises(OviBenchError, match="torch-fidelity"):
            make_metric("fid", features="inception", feature_model=None).features([object()])


def test_a_run_has_set_rows_per_prior_category_and_all_and_resumes_without_features(tmp_path: Path) -> None:
    spec = tiny_spec(
        metrics=[
            {"name": "clip", "params": {"model": "tiny"}},
            {"name": "fid", "params": {"feature_model": "tiny", "reference": "tiny"}},
            {"name": "cmmd", "params": {"feature_model": "tiny", "reference": "tiny"}},
        ]
    )
    result = Runner(parse_spec(spec), tmp_path, show_progress=False).run()
    write_results(result)
    # fid and cmmd use different CLIP feature spaces (cmmd: ViT-L/14-336), so each featurises the 8 images.
    assert result.counts.features_computed == 16
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    for metric in ("fid[clip-vit-l-14@tiny]", "cmmd[clip-vit-l-14-336@tiny]"):
        rows = board[board.metric == metric]
        assert set(zip(rows.prior, rows.category, strict=True)) == {
            (prior, category)
            for prior in ("text-embedding", "kandinsky-2.2")
            for category in ("color", "spatial", "all")
        }
        assert rows["mean"].notna().all() and not rows.official.any()
        assert set(rows.n) == {2, 4}  # 1 prompt × 2 seeds per category; 4 over both categories
    assert (board[board.metric.str.startswith("fid")]["mean"] >= -1e-6).all()
    set_scores = pd.read_csv(tmp_path / "set_scores.csv")
    assert len(set_scores) == 12 and (set_scores.n_reference == 64).all()
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["set_metrics"]["fid"]["feature_space"] == "clip-vit-l-14@tiny"
    assert results["set_metrics"]["fid"]["resize"] == "bicubic-pil"
    assert results["set_metrics"]["cmmd"]["n_reference"] == 64
    # Re-run: every image's features come from the run folder's cache.
    again = Runner(parse_spec(spec), tmp_path, show_progress=False).run()
    assert again.counts.features_computed == 0 and again.counts.features_reused == 16
    assert [row["value"] for row in again.set_rows] == [row["value"] for row in result.set_rows]


def test_a_set_of_one_image_gets_no_value_and_a_warning(tmp_path: Path) -> None:
    spec = tiny_spec(
        images_per_prompt=1,
        priors=[{"name": "text-embedding", "params": {"model": "tiny"}}],
        metrics=[{"name": "fid", "params": {"feature_model": "tiny", "reference": "tiny"}}],
    )
    result = Runner(parse_spec(spec), tmp_path, show_progress=False).run()
    board = write_results(result)
    by_category = {row["category"]: row for row in result.set_rows}
    assert (
        by_category["color"]["value"] is None and "at least 2" in by_category["color"]["details"]["warning"]
    )
    assert by_category["all"]["value"] is not None and by_category["all"]["n_generated"] == 2
    assert board[board.category == "color"]["mean"].isna().all()
