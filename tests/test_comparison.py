"""`compare`: paired differences of two priors on hand-made scores with known answers, and end to end on the smoke run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ovi_bench.cli import app
from ovi_bench.errors import DataError
from ovi_bench.results.comparison import (
    NO_CLEAR_DIFFERENCE,
    TOO_FEW_PROMPTS,
    compare_priors,
    compare_scores,
)
from ovi_bench.results.records import ProtocolMismatchError, load_run
from ovi_bench.spec import OFFICIAL_METRICS


def scores_frame(
    first: list[float],
    second: list[float],
    *,
    seeds_per_prompt: int = 2,
    category: str = "color",
    metric: str = "b-vqa",
) -> pd.DataFrame:
    """Images k = 0, 1, … of both priors "A" and "B": prompt k // seeds_per_prompt, seed 42 + k % seeds_per_prompt."""
    rows = []
    for prior, values in (("A", first), ("B", second)):
        for k, score in enumerate(values):
            rows.append(
                {
                    "prior": prior,
                    "category": category,
                    "metric": metric,
                    "prompt_id": f"{category}-{k // seeds_per_prompt:04d}",
                    "seed": 42 + k % seeds_per_prompt,
                    "score": score,
                }
            )
    return pd.DataFrame(rows)


def only_row(table: pd.DataFrame) -> pd.Series:
    assert len(table) == 1
    return table.iloc[0]


# ---------------------------------------------------------------------------------------------------------------------
# Known answers.


def test_difference_and_means_are_exact() -> None:
    first = [0.1, 0.2, 0.3, 0.4]
    second = [0.2, 0.3, 0.4, 0.7]  # differences 0.1, 0.1, 0.1, 0.3
    row = only_row(compare_scores(scores_frame(first, second), "A", "B"))
    assert row["difference"] == pytest.approx(0.15, abs=1e-12)
    assert row["mean_first"] == pytest.approx(0.25, abs=1e-12)
    assert row["mean_second"] == pytest.approx(0.4, abs=1e-12)
    assert (row["n_prompts"], row["n_pairs"], row["unpaired"]) == (2, 4, 0)
    assert (row["first"], row["second"]) == ("A", "B")


def test_wins_ties_losses_and_win_rate_are_counted_for_the_second_prior() -> None:
    first = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    second = [0.6, 0.5, 0.3, 0.9, 0.5, 0.7]  # win, tie, loss, win, tie, win
    row = only_row(compare_scores(scores_frame(first, second), "A", "B"))
    assert (row["wins"], row["ties"], row["losses"]) == (3, 2, 1)
    assert row["win_rate"] == pytest.approx((3 + 0.5 * 2) / 6)


def test_a_consistent_shift_has_an_interval_that_excludes_zero() -> None:
    base = np.random.default_rng(1).uniform(0.2, 0.8, size=40)  # 20 prompts × 2 seeds
    shifted = base + 0.05 + np.random.default_rng(2).normal(0.0, 0.005, size=40)
    row = only_row(compare_scores(scores_frame(list(base), list(shifted)), "A", "B"))
    assert row["ci_low"] > 0
    assert row["ci_low"] < row["difference"] < row["ci_high"]
    assert row["verdict"] == "B better"
    reverse = only_row(compare_scores(scores_frame(list(base), list(shifted)), "B", "A"))
    assert reverse["ci_high"] < 0
    assert reverse["verdict"] == "B better"  # the same prior wins whichever side it is on


def test_noise_without_a_shift_has_an_interval_that_includes_zero() -> None:
    # Per-prompt differences of alternating sign and equal size: the true difference is 0.
    per_prompt = [0.1, -0.1, 0.2, -0.2, 0.05, -0.05, 0.15, -0.15, 0.3, -0.3]
    base = [0.5] * 20
    second = [0.5 + per_prompt[k // 2] for k in range(20)]
    row = only_row(compare_scores(scores_frame(base, second), "A", "B"))
    assert row["difference"] == pytest.approx(0.0, abs=1e-12)
    assert row["ci_low"] < 0 < row["ci_high"]
    assert row["verdict"] == NO_CLEAR_DIFFERENCE


def test_unpaired_and_unscored_images_are_left_out_and_counted() -> None:
    scores = scores_frame([0.1, 0.2, 0.3, 0.4], [0.3, 0.4, 0.5, 0.6])
    scores = scores.drop(
        index=scores[(scores.prior == "B") & (scores.prompt_id == "color-0001") & (scores.seed == 43)].index
    )
    extra_seed = {
        "prior": "A",
        "category": "color",
        "metric": "b-vqa",
        "prompt_id": "color-0000",
        "seed": 44,
        "score": 9.0,
    }
    unscored = {
        "prior": "B",
        "category": "color",
        "metric": "b-vqa",
        "prompt_id": "color-0002",
        "seed": 42,
        "score": np.nan,
    }
    partner = {
        "prior": "A",
        "category": "color",
        "metric": "b-vqa",
        "prompt_id": "color-0002",
        "seed": 42,
        "score": 9.0,
    }
    scores = pd.concat([scores, pd.DataFrame([extra_seed, unscored, partner])], ignore_index=True)
    row = only_row(compare_scores(scores, "A", "B"))
    # Pairs left: (0000, 42), (0000, 43), (0001, 42); unpaired: A's (0001, 43), A's seed 44, A's partner of the NaN.
    assert (row["n_pairs"], row["n_prompts"], row["unpaired"]) == (3, 2, 3)
    assert row["difference"] == pytest.approx(0.2, abs=1e-12)
    assert row["mean_first"] == pytest.approx((0.1 + 0.2 + 0.3) / 3)


def test_lower_is_better_turns_the_verdict_and_the_wins_around() -> None:
    base = list(np.linspace(10.0, 20.0, 20))
    lower = [value - 1.0 for value in base]  # B lower on every image
    scores = scores_frame(base, lower, metric="distance")
    lower_better = only_row(compare_scores(scores, "A", "B", higher_is_better={"distance": False}))
    assert lower_better["difference"] == pytest.approx(-1.0)  # raw second − first, whatever the direction
    assert lower_better["verdict"] == "B better"
    assert (lower_better["wins"], lower_better["losses"], lower_better["win_rate"]) == (20, 0, 1.0)
    higher_better = only_row(compare_scores(scores, "A", "B"))
    assert higher_better["verdict"] == "A better"
    assert (higher_better["wins"], higher_better["losses"], higher_better["win_rate"]) == (0, 20, 0.0)


def test_a_run_folders_own_rows_give_the_direction(tmp_path: Path) -> None:
    # "distance" is in no registry and its provenance says nothing of its direction: the leaderboard rows do.
    folder = tmp_path / "run"
    folder.mkdir()
    base = list(np.linspace(10.0, 20.0, 20))
    scores_frame(base, [value - 1.0 for value in base], metric="distance").assign(prompt="p").to_csv(
        folder / "scores.csv", index=False
    )
    rows = [
        {"prior": prior, "category": "color", "metric": "distance", "higher_is_better": False}
        for prior in "AB"
    ]
    results = {
        "spec_fingerprint": "0" * 64,
        "priors": {"A": {"fingerprint": "a"}, "B": {"fingerprint": "b"}},
        "metrics": {"distance": {"version": "1"}},
        "leaderboard": rows,
    }
    (folder / "results.json").write_text(json.dumps(results))
    assert only_row(compare_priors(load_run(folder), "A", "B"))["verdict"] == "B better"


def test_one_prompt_gives_no_verdict() -> None:
    # One prompt: a zero-width interval, which must not count as evidence.
    row = only_row(compare_scores(scores_frame([0.1, 0.1], [0.9, 0.9]), "A", "B"))
    assert row["difference"] == pytest.approx(0.8)
    assert row["verdict"] == TOO_FEW_PROMPTS


def test_rows_follow_category_order_with_the_official_metric_first() -> None:
    frames = [
        scores_frame([0.1] * 4, [0.2] * 4, category=category, metric=metric)
        for category, metric in [
            ("spatial", "clip"),
            ("color", "clip"),
            ("spatial", "spatial-2d"),
            ("color", "b-vqa"),
        ]
    ]
    table = compare_scores(pd.concat(frames, ignore_index=True), "A", "B")
    assert list(zip(table.category, table.metric, strict=True)) == [
        ("color", "b-vqa"),
        ("color", "clip"),
        ("spatial", "spatial-2d"),
        ("spatial", "clip"),
    ]
    assert list(table.official) == [True, False, True, False]


def test_metrics_can_be_chosen() -> None:
    frames = [scores_frame([0.1] * 4, [0.2] * 4, metric=metric) for metric in ("b-vqa", "clip")]
    table = compare_scores(pd.concat(frames, ignore_index=True), "A", "B", metrics=["clip"])
    assert list(table.metric) == ["clip"]
    with pytest.raises(DataError, match=r"metric 'clipp'.*Did you mean 'clip'"):
        compare_scores(pd.concat(frames, ignore_index=True), "A", "B", metrics=["clipp"])


def test_unknown_prior_lists_the_known_ones_and_suggests_the_nearest() -> None:
    scores = scores_frame([0.1] * 4, [0.2] * 4).replace({"prior": {"A": "kandinsky-2.2", "B": "ovi"}})
    with pytest.raises(
        DataError,
        match=r"prior 'ovii' is not in the run\(s\): they have kandinsky-2.2, ovi\. Did you mean 'ovi'\?",
    ):
        compare_scores(scores, "kandinsky-2.2", "ovii")
    with pytest.raises(DataError, match="two different priors"):
        compare_scores(scores, "ovi", "ovi")


def test_duplicate_scores_for_one_image_are_refused() -> None:
    scores = scores_frame([0.1] * 4, [0.2] * 4)
    with pytest.raises(DataError, match="more than one score"):
        compare_scores(pd.concat([scores, scores.iloc[:1]], ignore_index=True), "A", "B")


# ---------------------------------------------------------------------------------------------------------------------
# On the smoke run.


def test_compare_priors_on_the_smoke_run(smoke_run: Path) -> None:
    run = load_run(smoke_run)
    table = compare_priors(run, "text-embedding", "ovi")
    both = run.scores[run.scores.prior.isin(["text-embedding", "ovi"])]
    per_image = both.groupby(["decoder", "category", "metric"]).size()
    # Every decoder × category × per-image metric of the two priors (both ViT-bigG/14: two decoders), nothing else.
    assert len(table) == len(per_image)
    assert set(table.decoder) == {"kandinsky-2.2-decoder", "sdxl-ip-adapter"}
    assert set(table.metric) == set(run.scores.metric)
    # 2 prompts × 1 image per prompt of each category, per decoder.
    assert (table.n_pairs == 2).all() and (table.n_prompts == 2).all() and (table.unpaired == 0).all()
    official = table[table.official]
    for _, rows in official.groupby("decoder"):
        assert dict(zip(rows.category, rows.metric, strict=True)) == OFFICIAL_METRICS
    # One row recomputed by hand from scores.csv.
    scores = both[
        (both.decoder == "sdxl-ip-adapter") & (both.category == "spatial") & (both.metric == "spatial-2d")
    ]
    by_image = scores.pivot_table(index=["prompt_id", "seed"], columns="prior", values="score")
    row = table[
        (table.decoder == "sdxl-ip-adapter") & (table.category == "spatial") & (table.metric == "spatial-2d")
    ].iloc[0]
    assert row["difference"] == pytest.approx(
        (by_image["ovi"] - by_image["text-embedding"]).mean(), abs=1e-12
    )
    assert row["wins"] == int((by_image["ovi"] > by_image["text-embedding"]).sum())


def _results_only_copy(run: Path, folder: Path) -> Path:
    """The two files compare reads; the images are not needed."""
    folder.mkdir()
    for name in ("results.json", "scores.csv"):
        shutil.copy(run / name, folder / name)
    return folder


def test_two_runs_of_one_protocol_are_combined_and_mismatches_refused(
    smoke_run: Path, tmp_path: Path
) -> None:
    first = load_run(smoke_run)
    same = load_run(_results_only_copy(smoke_run, tmp_path / "same"))
    # Each prior once: the copy's identical priors are left out, so the result is the single run's.
    pd.testing.assert_frame_equal(
        compare_priors([first, same], "eclipse", "ovi"), compare_priors(first, "eclipse", "ovi")
    )

    other = _results_only_copy(smoke_run, tmp_path / "other")
    results = json.loads((other / "results.json").read_text())
    results["spec"]["decoders"][0]["steps"] += 1
    (other / "results.json").write_text(json.dumps(results))
    with pytest.raises(ProtocolMismatchError, match=r"decoders\[kandinsky-2\.2-decoder\]\.steps"):
        compare_priors([first, load_run(other)], "eclipse", "ovi")
    # Allowed: the second run's priors are kept under their own names, so a prior meets its copy, image by image.
    table = compare_priors([first, load_run(other)], "ovi", "ovi @ smoke", allow_protocol_mismatch=True)
    assert (table.difference == 0).all() and (table.ties == table.n_pairs).all()


def test_compare_command_prints_and_writes_the_table(smoke_run: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    for suffix in ("csv", "json", "md"):
        out = tmp_path / f"comparison.{suffix}"
        result = runner.invoke(
            app,
            [
                "compare",
                str(smoke_run),
                "--priors",
                "text-embedding,ovi",
                "--metric",
                "clip",
                "--out",
                str(out),
            ],
        )
        assert result.exit_code == 0, result.output
        assert "ovi − text-embedding" in result.output
        assert out.is_file()
    written = pd.read_csv(tmp_path / "comparison.csv")
    # clip scores every category, on each of the two decoders both priors were rendered by
    assert list(written.metric.unique()) == ["clip"] and len(written) == 2 * 8
    assert set(written.decoder) == {"kandinsky-2.2-decoder", "sdxl-ip-adapter"}
    document = json.loads((tmp_path / "comparison.json").read_text())
    assert document["runs"] == [str(smoke_run)] and len(document["rows"]) == 2 * 8
    assert "| verdict" in (tmp_path / "comparison.md").read_text()


def test_compare_command_with_an_unknown_prior_exits_2_with_a_suggestion(smoke_run: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ovi_bench", "compare", str(smoke_run), "--priors", "text-embedding,ovii"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    message = " ".join(done.stderr.split())  # rich wraps long lines at the console width
    assert "Did you mean 'ovi'?" in message and "Traceback" not in message
