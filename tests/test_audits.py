"""Metric audits: the prompt-shuffle gap and its interval, canaries, and their wiring through a run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ovi_bench.audits import canary_images, canary_rank, cyclic_derangement, shuffle_gap
from ovi_bench.components import RunData
from ovi_bench.metrics.base import ScoreInput
from ovi_bench.metrics.clip import CLIPMetric
from ovi_bench.provenance import write_results
from ovi_bench.runner import Runner
from ovi_bench.scoring import score_cache_path
from ovi_bench.spec import parse_spec


def test_a_metric_that_ignores_the_prompt_has_no_gap() -> None:
    prompt_ids = [f"p{index // 3}" for index in range(30)]
    scores = np.random.default_rng(0).normal(size=30).tolist()
    gap = shuffle_gap(prompt_ids, scores, scores)
    assert gap.gap == 0 and gap.ci_low == 0 and gap.ci_high == 0
    assert not gap.discriminates and gap.n_prompts == 10


def test_a_metric_that_reads_the_prompt_has_a_positive_gap() -> None:
    rng = np.random.default_rng(1)
    prompt_ids = [f"p{index // 4}" for index in range(80)]
    shuffled = rng.normal(0.20, 0.05, size=80)
    matched = shuffled + 0.10 + rng.normal(0, 0.02, size=80)
    gap = shuffle_gap(prompt_ids, matched.tolist(), shuffled.tolist(), seed=3)
    assert gap.gap == pytest.approx(0.10, abs=0.02)
    assert gap.ci_low > 0 and gap.discriminates
    # For a lower-is-better metric the same numbers mean the matched prompt scores worse.
    assert not shuffle_gap(
        prompt_ids, matched.tolist(), shuffled.tolist(), higher_is_better=False
    ).discriminates


def test_gap_interval_covers_the_true_gap_at_about_its_nominal_rate() -> None:
    rng = np.random.default_rng(2)
    covered = 0
    for trial in range(200):
        prompt_ids = [f"p{index // 2}" for index in range(60)]
        shuffled = rng.normal(0, 1, size=60)
        matched = shuffled + 0.3 + rng.normal(0, 1, size=60)
        gap = shuffle_gap(prompt_ids, matched.tolist(), shuffled.tolist(), resamples=400, seed=trial)
        covered += gap.ci_low <= 0.3 <= gap.ci_high
    assert 0.88 <= covered / 200 <= 0.99


def test_canary_rank() -> None:
    real = [0.1, 0.2, 0.3, 0.4]
    assert canary_rank([0.25, 0.25], real) == 0.5
    assert canary_rank([0.0], real) == 0.0
    assert canary_rank([0.35], real, higher_is_better=False) == 0.25


def test_cyclic_derangement_moves_every_prompt() -> None:
    keys = [f"k{index}" for index in range(7)]
    mapping = cyclic_derangement(keys, seed=5)
    assert sorted(mapping) == sorted(keys) and sorted(mapping.values()) == sorted(keys)
    assert all(source != target for source, target in mapping.items())
    assert mapping == cyclic_derangement(list(reversed(keys)), seed=5)
    assert cyclic_derangement(["only"], seed=0) == {}


def test_canaries_are_what_they_say() -> None:
    images = canary_images(16, 8)
    assert images["black"].getextrema() == ((0, 0), (0, 0), (0, 0))
    assert all(image.size == (16, 8) for image in images.values())
    assert np.asarray(images["noise"]).std() > 50


def _audited_spec() -> dict:
    return {
        "device": "cpu",
        "images_per_prompt": 2,
        "prompts": {"source": "builtin", "categories": ["color", "non_spatial"], "limit": 3},
        "priors": [{"name": "text-embedding", "params": {"model": "tiny"}}],
        "decoder": {"params": {"model": "tiny"}, "steps": 2, "height": 32, "width": 32},
        "metrics": [
            {"name": "clip", "params": {"model": "tiny", "text_analyzer": "builtin"}},
            {"name": "aesthetic", "params": {"weights": "tiny", "clip_model": "tiny"}},
        ],
        "audits": {"seed": 7, "bootstrap": 200},
    }


def test_audits_through_a_run(tmp_path: Path) -> None:
    spec = parse_spec(_audited_spec())
    result = Runner(spec, tmp_path, show_progress=False).run()
    board = write_results(result)
    audits = pd.read_csv(tmp_path / "audit.csv")
    assert set(zip(audits.metric, audits.audit, strict=True)) == {
        (metric, kind) for metric in ("clip", "aesthetic") for kind in ("prompt-shuffle", "canaries")
    }
    # The aesthetic predictor never reads the prompt: its gap is zero (to float rounding) and it is flagged.
    aesthetic = audits[(audits.metric == "aesthetic") & (audits.audit == "prompt-shuffle")]
    assert (aesthetic.value.abs() < 1e-6).all() and aesthetic.flagged.all()
    assert (board.audit != "").all()

    # The clip gap is the mean per prompt of matched − shuffled, recomputed here with the metric itself.
    scores = pd.read_csv(tmp_path / "scores.csv")
    clip_rows = scores[(scores.metric == "clip") & (scores.category == "color")]
    mapping = cyclic_derangement(list(clip_rows.prompt_id.unique()), seed=7)
    text = dict(zip(clip_rows.prompt_id, clip_rows.prompt, strict=False))
    metric = CLIPMetric(
        CLIPMetric.Params(model="tiny", text_analyzer="builtin"),
        device=torch.device("cpu"),
        dtype=torch.float32,
    )
    shuffled = [
        metric.score(
            [
                ScoreInput(
                    Image.open(tmp_path / row.image).convert("RGB"), text[mapping[row.prompt_id]], "color"
                )
            ]
        )[0].score
        for row in clip_rows.itertuples()
    ]
    expected = shuffle_gap(list(clip_rows.prompt_id), list(clip_rows.score), shuffled, resamples=200, seed=7)
    measured = audits[
        (audits.metric == "clip") & (audits.category == "color") & (audits.audit == "prompt-shuffle")
    ]
    assert measured.value.iloc[0] == pytest.approx(expected.gap, abs=1e-5)

    # Every audit pair went through its metric's score cache: the real images' scores, one shuffled pair per image,
    # and the seven canaries against every prompt of the category.
    caches = {
        metric_spec.name: score_cache_path(tmp_path, spec, metric_spec, RunData())
        for metric_spec in spec.metrics
    }
    cached_rows = {name: len(path.read_text().splitlines()) for name, path in caches.items()}
    for name, count in cached_rows.items():
        mine = scores[scores.metric == name]
        canary_pairs = len(canary_images(32, 32)) * mine.prompt_id.nunique()
        assert count == 2 * len(mine) + canary_pairs, name
    cached_bytes = {name: path.read_bytes() for name, path in caches.items()}

    # A re-run computes no audit score again: the caches are untouched, and the audits come out the same.
    again = Runner(spec, tmp_path, show_progress=False).run()
    assert again is not None and again.counts.scores_computed == 0
    assert {name: path.read_bytes() for name, path in caches.items()} == cached_bytes
    rerun = pd.DataFrame(again.audit_rows)
    pd.testing.assert_frame_equal(rerun, audits[list(rerun.columns)], check_dtype=False)
    # Audit scores are cached with the metric's scores: a re-run recomputes nothing and reports the same audits.
    assert [row["value"] for row in again.audit_rows] == pytest.approx(
        [row["value"] for row in result.audit_rows]
    )
