"""Baselines and `check`: the verdict rules on hand-made scores, and ovi-bench's own regression check.

`test_the_smoke_run_passes_the_committed_baseline` is ovi-bench's CI regression check: the session's smoke run
(configs/smoke.toml, made in-process with one torch thread) against tests/baselines/smoke.json, made with the locked
versions (requirements/test-constraints.txt) and one torch thread, so that on the same kind of machine the two agree
exactly. It asserts only what a check asserts, that nothing regressed, is incomplete or went missing: another CPU
or thread count moves float rounding, which can flip a detector's score on an image (by up to 1.0 for spatial-2d)
and move a row's mean past the tolerance, and that must not fail the suite (the interval keeps it `ok` or, if it
goes up, `improved`; `test_a_single_flipped_image_is_not_a_regression`).

Every other test that compares the smoke run with a baseline builds that baseline from the same run
(`own_baseline`), so every unchanged image differs by exactly 0 and the test can demand an exact verdict per row
on any machine. Refresh the committed baseline when outputs change on purpose, with the one command in docs/ci.md
("Refreshing the committed baseline"):

    OMP_NUM_THREADS=1 ovi-bench run configs/smoke.toml --out /tmp/smoke-base -q \
        && ovi-bench baseline /tmp/smoke-base --out tests/baselines/smoke.json
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from ovi_bench.cli import app
from ovi_bench.errors import DataError
from ovi_bench.results.baseline import load_baseline, write_baseline
from ovi_bench.results.records import ProtocolMismatchError, load_run
from ovi_bench.results.regression import (
    IMPROVED,
    INCOMPLETE,
    MISSING,
    NEW,
    OK,
    REGRESSED,
    check_run,
    parse_tolerance_overrides,
    verdict_table,
)
from ovi_bench.spec import load_spec

COMMITTED_BASELINE = Path(__file__).resolve().parent / "baselines" / "smoke.json"
DECODER = "kandinsky-2.2-decoder"
"""One of the smoke run's decoders, rendering `ovi`, `ovi-nn` and the other ViT-bigG/14 priors (as sdxl-ip-adapter
does too): a baseline of several decoders nests its scores by decoder first."""


def ovi_bench(*arguments: str) -> subprocess.CompletedProcess[str]:
    """The real command in a subprocess, so that its exit code is the one CI would see."""
    return subprocess.run(
        [sys.executable, "-m", "ovi_bench", *arguments], capture_output=True, text=True, check=False
    )


def table_rows(output: str) -> list[str]:
    """The body rows of the Markdown table in a command's output (header and rule left out)."""
    lines = [line for line in output.splitlines() if line.startswith("|")]
    return lines[2:]


def baseline_document() -> dict[str, Any]:
    return json.loads(COMMITTED_BASELINE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def own_baseline_document(smoke_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The baseline of the session's smoke run itself: every unchanged image pairs with a difference of exactly 0."""
    path = write_baseline(smoke_run, tmp_path_factory.mktemp("own-baseline") / "smoke.json")
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture
def own_baseline(own_baseline_document: dict[str, Any]) -> dict[str, Any]:
    """A fresh copy of `own_baseline_document` for a test to edit."""
    return copy.deepcopy(own_baseline_document)


def write_document(document: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def shifted(document: dict[str, Any], category: str, shift: float) -> dict[str, Any]:
    """A copy with every score of one category (every decoder, prior and metric) moved by `shift`."""
    changed = copy.deepcopy(document)
    for priors in changed["scores"].values():
        for categories in priors.values():
            for images in categories.get(category, {}).values():
                for image in images:
                    image[2] += shift
    return changed


# ---------------------------------------------------------------------------------------------------------------------
# The verdict rules.


def image_scores(
    differences: list[float], *, seeds_per_prompt: int = 2, base: float = 0.5
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(baseline, run) frames of one prior × category × metric; image k of the run is off by differences[k]."""
    keys = [
        {
            "prior": "p",
            "category": "color",
            "metric": "m",
            "prompt_id": f"c-{k // seeds_per_prompt:03d}",
            "seed": 42 + k % seeds_per_prompt,
        }
        for k in range(len(differences))
    ]
    baseline = pd.DataFrame([key | {"score": base} for key in keys])
    run = pd.DataFrame(
        [key | {"score": base + difference} for key, difference in zip(keys, differences, strict=True)]
    )
    return baseline, run


def one_verdict(
    baseline: pd.DataFrame, run: pd.DataFrame, *, tolerance: float = 0.01, higher_is_better: bool = True
) -> pd.Series:
    table = verdict_table(
        baseline,
        run,
        higher_is_better=lambda metric: higher_is_better,
        tolerance_for=lambda metric: tolerance,
    )
    assert len(table) == 1
    return table.iloc[0]


def test_a_consistent_drop_beyond_the_tolerance_regresses() -> None:
    row = one_verdict(*image_scores([-0.05] * 40))
    assert row["status"] == REGRESSED
    assert row["difference"] == pytest.approx(-0.05) and row["ci_high"] == pytest.approx(-0.05)
    assert row["max_abs_difference"] == pytest.approx(0.05)
    assert (row["n_pairs"], row["n_prompts"], row["n_missing"]) == (40, 20, 0)


def test_a_consistent_drop_within_the_tolerance_is_ok_and_a_rise_is_an_improvement() -> None:
    assert one_verdict(*image_scores([-0.005] * 40))["status"] == OK
    assert one_verdict(*image_scores([-0.05] * 40), tolerance=0.1)["status"] == OK
    assert one_verdict(*image_scores([0.05] * 40))["status"] == IMPROVED


def test_lower_is_better_metrics_regress_when_they_rise() -> None:
    rise = one_verdict(*image_scores([0.05] * 40), higher_is_better=False)
    assert rise["status"] == REGRESSED and rise["difference"] == pytest.approx(
        -0.05
    )  # oriented: positive = better
    assert one_verdict(*image_scores([-0.05] * 40), higher_is_better=False)["status"] == IMPROVED


def test_a_single_flipped_image_is_not_a_regression() -> None:
    # One image of 24 prompts × 2 seeds drops by 0.5 (a detector score flipping): the mean drop, 0.0104, is beyond
    # the tolerance, but over a third of the resamples leave that prompt out, so the interval reaches 0.
    differences = [0.0] * 48
    differences[17] = -0.5
    row = one_verdict(*image_scores(differences))
    assert row["difference"] < -0.01
    assert row["ci_high"] == 0.0
    assert row["status"] == OK
    # The same drop on every image of a third of the prompts is systematic: it regresses.
    assert one_verdict(*image_scores([-0.5 if k % 6 < 2 else 0.0 for k in range(48)]))["status"] == REGRESSED


def test_missing_and_new_rows() -> None:
    baseline, run = image_scores([0.0] * 8)
    other_prior = run.assign(prior="q")
    table = verdict_table(
        baseline.assign(metric="gone"),
        pd.concat([run, other_prior]),
        higher_is_better=lambda metric: True,
        tolerance_for=lambda metric: 0.01,
    )
    statuses = dict(zip(zip(table.prior, table.metric, strict=True), table.status, strict=True))
    assert statuses == {("p", "gone"): MISSING, ("p", "m"): NEW, ("q", "m"): NEW}
    assert table.loc[table.status == MISSING, "n_missing"].item() == 8


def test_allow_missing_is_a_fraction_of_each_rows_images() -> None:
    # 6 of 8 images (4 prompts × 2 seeds) have no score in the run: incomplete up to allow_missing 0.75.
    baseline, run = image_scores([0.0] * 8)
    lost = run.assign(score=[float("nan")] * 6 + [0.5] * 2)
    for allow_missing, expected in [(0.0, INCOMPLETE), (0.74, INCOMPLETE), (0.75, OK)]:
        row = verdict_table(
            baseline,
            lost,
            higher_is_better=lambda metric: True,
            tolerance_for=lambda metric: 0.01,
            allow_missing=allow_missing,
        ).iloc[0]
        assert (row["status"], row["n_missing"], row["n_pairs"]) == (expected, 6, 2)


# ---------------------------------------------------------------------------------------------------------------------
# ovi-bench's own regression check, and what `check` does with a changed, foreign or broken baseline.


def test_the_smoke_run_passes_the_committed_baseline(smoke_run: Path) -> None:
    report = check_run(smoke_run, COMMITTED_BASELINE)
    verdicts = report.verdicts
    # What CI needs: nothing regressed, incomplete or missing. Not "every row ok": a detector score flipping on one
    # image of another machine can make a row `improved`, and that is no failure.
    assert report.exit_code == 0, report.summary()
    assert not set(verdicts.status) & {REGRESSED, INCOMPLETE, MISSING, NEW}
    baseline = load_baseline(COMMITTED_BASELINE)
    assert len(verdicts) == len(baseline.scores.groupby(["prior", "decoder", "category", "metric"]))
    assert verdicts.n_pairs.sum() == len(baseline.scores) and verdicts.n_missing.sum() == 0


def test_the_check_command_passes_on_the_smoke_run(smoke_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "verdicts.csv"
    done = ovi_bench("check", str(smoke_run), "--baseline", str(COMMITTED_BASELINE), "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("check passed:")
    assert set(pd.read_csv(out).status) <= {OK, IMPROVED}


def test_raising_one_category_in_the_baseline_regresses_that_category_only(
    smoke_run: Path, tmp_path: Path, own_baseline: dict[str, Any]
) -> None:
    raised = write_document(shifted(own_baseline, "spatial", 0.05), tmp_path / "raised.json")
    report = check_run(smoke_run, raised)
    assert report.exit_code == 1
    assert report.regressed_categories == ["spatial"]
    verdicts = report.verdicts
    assert set(verdicts[verdicts.category == "spatial"].status) == {REGRESSED}
    assert set(verdicts[verdicts.category != "spatial"].status) == {OK}

    done = ovi_bench("check", str(smoke_run), "--baseline", str(raised))
    assert done.returncode == 1, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert summary.startswith("check FAILED: regressed in spatial (")
    assert not any(f" {category} " in summary for category in ("color", "3d_spatial", "complex", "numeracy"))
    # Only the rows that are not ok are printed (a Markdown table, as stdout is no terminal), then how many are not.
    spatial_rows = int((verdicts.category == "spatial").sum())
    printed = table_rows(done.stdout)
    assert len(printed) == spatial_rows and all(" spatial " in row and "REGRESSED" in row for row in printed)
    assert f"({len(verdicts) - spatial_rows} ok row(s) not shown; --every-row prints them)" in done.stdout


def test_a_raise_within_the_tolerance_passes_and_per_metric_tolerances_apply(
    smoke_run: Path, tmp_path: Path, own_baseline: dict[str, Any]
) -> None:
    assert (
        check_run(
            smoke_run, write_document(shifted(own_baseline, "color", 0.005), tmp_path / "a.json")
        ).exit_code
        == 0
    )
    raised = write_document(shifted(own_baseline, "color", 0.05), tmp_path / "b.json")
    report = check_run(smoke_run, raised, tolerances={"b-vqa": 0.1})
    color = report.verdicts[report.verdicts.category == "color"]
    assert set(color[color.metric == "b-vqa"].status) == {OK}
    assert set(color[color.metric != "b-vqa"].status) == {REGRESSED}
    with pytest.raises(DataError, match="Did you mean 'b-vqa'"):
        check_run(smoke_run, raised, tolerances={"bvqa": 0.1})


def test_a_lowered_baseline_is_an_improvement_and_passes(
    smoke_run: Path, tmp_path: Path, own_baseline: dict[str, Any]
) -> None:
    report = check_run(
        smoke_run, write_document(shifted(own_baseline, "numeracy", -0.05), tmp_path / "b.json")
    )
    assert report.exit_code == 0
    assert set(report.verdicts[report.verdicts.category == "numeracy"].status) == {IMPROVED}


def test_a_prior_missing_from_the_run_fails_and_a_new_one_does_not(
    smoke_run: Path, tmp_path: Path, own_baseline: dict[str, Any]
) -> None:
    with_extra = copy.deepcopy(own_baseline)
    with_extra["scores"][DECODER]["retired-prior"] = copy.deepcopy(with_extra["scores"][DECODER]["ovi"])
    report = check_run(smoke_run, write_document(with_extra, tmp_path / "extra.json"))
    assert report.exit_code == 1
    retired = report.verdicts[report.verdicts.prior == "retired-prior"]
    assert set(retired.status) == {MISSING} and set(retired.decoder) == {DECODER}
    assert set(report.verdicts[report.verdicts.prior != "retired-prior"].status) == {OK}
    assert f"missing from the run: retired-prior ({DECODER})" in report.summary()

    # ovi-nn gone from one decoder's scores: new with that decoder only, still compared with the other.
    without_one = own_baseline
    del without_one["scores"][DECODER]["ovi-nn"]
    report = check_run(smoke_run, write_document(without_one, tmp_path / "fewer.json"))
    assert report.exit_code == 0
    ovi_nn = report.verdicts[report.verdicts.prior == "ovi-nn"]
    assert set(ovi_nn[ovi_nn.decoder == DECODER].status) == {NEW}
    assert set(ovi_nn[ovi_nn.decoder != DECODER].status) == {OK} and (ovi_nn.decoder != DECODER).any()


@pytest.mark.parametrize(
    ("field", "change"),
    [
        (f"decoders[{DECODER}].steps", lambda value: value + 1),
        ("metrics[clip].version", lambda value: f"{value}-changed"),
    ],
)
def test_a_baseline_of_another_protocol_is_refused_naming_the_field(
    smoke_run: Path, tmp_path: Path, own_baseline: dict[str, Any], field: str, change: Any
) -> None:
    document = own_baseline
    document["protocol"][field] = change(document["protocol"][field])
    with pytest.raises(ProtocolMismatchError) as caught:
        check_run(smoke_run, write_document(document, tmp_path / "other.json"))
    assert [line.split(":")[0] for line in caught.value.differences] == [field]
    assert field in str(caught.value)


def test_the_check_command_exits_2_on_another_protocol(
    smoke_run: Path, tmp_path: Path, own_baseline: dict[str, Any]
) -> None:
    document = own_baseline
    field = f"decoders[{DECODER}].steps"
    document["protocol"][field] += 1
    done = ovi_bench(
        "check", str(smoke_run), "--baseline", str(write_document(document, tmp_path / "other.json"))
    )
    assert done.returncode == 2
    assert field in done.stderr and "Traceback" not in done.stderr


def test_the_check_command_exits_2_on_a_corrupt_baseline(smoke_run: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text(COMMITTED_BASELINE.read_text(encoding="utf-8")[:5000], encoding="utf-8")  # cut short
    done = ovi_bench("check", str(smoke_run), "--baseline", str(corrupt))
    assert done.returncode == 2
    message = " ".join(done.stderr.split())  # rich wraps long lines at the console width
    assert message.startswith("error: baseline file") and "is not valid JSON" in message
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda document: document.update(format_version=99), "format version 99"),
        (lambda document: document.update(format="something-else"), "not an ovi-bench baseline file"),
        (lambda document: document.pop("protocol"), "no 'protocol' field"),
        (
            lambda document: document["scores"][DECODER]["ovi"]["color"]["clip"].append(
                ["color-builtin-0000"]
            ),
            rf"scores\.{re.escape(DECODER)}\.ovi\.color\.clip",
        ),
        (
            lambda document: document["scores"][DECODER]["ovi"]["color"]["clip"].append(
                document["scores"][DECODER]["ovi"]["color"]["clip"][0]
            ),
            "listed twice",
        ),
    ],
)
def test_malformed_baselines_are_refused_with_the_reason(tmp_path: Path, edit: Any, message: str) -> None:
    document = baseline_document()
    edit(document)
    with pytest.raises(DataError, match=message):
        load_baseline(write_document(document, tmp_path / "broken.json"))
    with pytest.raises(DataError, match="does not exist"):
        load_baseline(tmp_path / "absent.json")


def test_a_baseline_round_trips_every_score_exactly(smoke_run: Path, tmp_path: Path) -> None:
    path = write_baseline(smoke_run, tmp_path / "baseline.json")
    stored = load_baseline(path)
    run_scores = load_run(smoke_run).scores
    keys = ["prior", "decoder", "category", "metric", "prompt_id", "seed"]
    merged = stored.scores.merge(run_scores[[*keys, "score"]], on=keys, how="outer", validate="one_to_one")
    assert (
        len(merged) == len(run_scores) and (merged.score_x == merged.score_y).all()
    )  # exact, not approximate
    assert len(path.read_text().splitlines()) > len(run_scores)  # one image per line: diffs stay readable
    assert not any(
        field.startswith(("metrics[fid]", "metrics[kid]", "metrics[cmmd]")) for field in stored.protocol
    )
    report = check_run(smoke_run, path)
    assert set(report.verdicts.status) == {OK} and (report.verdicts.max_abs_difference == 0).all()


def test_the_baseline_command_writes_a_checkable_file(smoke_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "nested" / "smoke.json"
    runner = CliRunner()
    result = runner.invoke(app, ["baseline", str(smoke_run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "1710 image scores of 9 prior(s)" in result.output
    result = runner.invoke(
        app, ["check", str(smoke_run), "--baseline", str(out), "--tolerance-for", "clip=0.02"]
    )
    assert result.exit_code == 0, result.output
    assert not table_rows(result.output) and "(855 ok row(s) not shown;" in result.output
    result = runner.invoke(app, ["check", str(smoke_run), "--baseline", str(out), "--every-row"])
    assert result.exit_code == 0, result.output
    assert len(table_rows(result.output)) == 855 and "not shown" not in result.output


# ---------------------------------------------------------------------------------------------------------------------
# Lost images and unusable baselines.


def run_with_images_removed(run: Path, folder: Path, keep: Any) -> Path:
    """A copy of a run folder's results.json and scores.csv (all `check` reads) keeping the score rows `keep`
    selects: a run that lost images or whose metric returned no score for some."""
    folder.mkdir()
    shutil.copy(run / "results.json", folder / "results.json")
    scores = pd.read_csv(run / "scores.csv", keep_default_na=False, na_values=[""])
    keep(scores).to_csv(folder / "scores.csv", index=False)
    return folder


# Every row of the smoke run has 2 images (2 prompts × 1 seed), so half is the one fraction of each row it can lose
# without a row going missing; other fractions are `test_allow_missing_is_a_fraction_of_each_rows_images`.
@pytest.mark.parametrize("lost", [0.5])
def test_a_run_that_lost_images_of_every_row_fails_unless_allowed(
    smoke_run: Path, tmp_path: Path, own_baseline: dict[str, Any], lost: float
) -> None:
    baseline = write_document(own_baseline, tmp_path / "own.json")
    per_row = ["prior", "decoder", "category", "metric"]

    def keep_the_first(scores: pd.DataFrame) -> pd.DataFrame:
        rank = scores.sort_values(["prompt_id", "seed"]).groupby(per_row).cumcount()
        size = scores.groupby(per_row)["score"].transform("size")
        return scores[rank.reindex(scores.index) < size * (1 - lost)]

    run = run_with_images_removed(smoke_run, tmp_path / "run", keep_the_first)
    report = check_run(run, baseline)
    assert report.exit_code == 1 and set(report.verdicts.status) == {INCOMPLETE}
    verdicts = report.verdicts
    assert (verdicts.n_missing == lost * (verdicts.n_missing + verdicts.n_pairs)).all()
    assert report.summary().startswith(
        f"check FAILED: images missing from the run in {len(verdicts)} row(s): "
    )
    assert check_run(run, baseline, allow_missing=lost - 0.01).exit_code == 1
    allowed = check_run(run, baseline, allow_missing=lost)
    assert allowed.exit_code == 0 and set(allowed.verdicts.status) == {OK}

    done = ovi_bench("check", str(run), "--baseline", str(baseline))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1].endswith(f"({len(verdicts)} incomplete)")
    done = ovi_bench("check", str(run), "--baseline", str(baseline), "--allow-missing", str(lost))
    assert done.returncode == 0, done.stdout + done.stderr


def test_one_lost_image_or_one_missing_score_fails_its_row_only(
    smoke_run: Path, tmp_path: Path, own_baseline: dict[str, Any]
) -> None:
    baseline = write_document(own_baseline, tmp_path / "own.json")
    first_clip = ("ovi", "color", "clip")
    first_b_vqa = ("eclipse", "shape", "b-vqa")

    def is_first_of(scores: pd.DataFrame, row: tuple[str, str, str]) -> pd.Series:
        prior, category, metric = row
        where = (scores.prior == prior) & (scores.category == category) & (scores.metric == metric)
        return where & (scores.index == scores[where].index[0])

    def damage(scores: pd.DataFrame) -> pd.DataFrame:
        scores.loc[is_first_of(scores, first_b_vqa), "score"] = float("nan")  # the metric returned no score
        return scores[~is_first_of(scores, first_clip)]  # the image is gone

    report = check_run(run_with_images_removed(smoke_run, tmp_path / "run", damage), baseline)
    failing = report.verdicts[report.verdicts.status != OK]
    assert list(zip(failing.prior, failing.category, failing.metric, strict=True)) == [
        first_b_vqa,
        first_clip,
    ]
    assert set(failing.status) == {INCOMPLETE} and set(failing.n_missing) == {1}
    assert report.exit_code == 1


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda document: document.update(scores={}), "holds no image scores"),
        (
            lambda document: document.update(scores={DECODER: {"ovi": {"color": {"clip": []}}}}),
            "holds no image scores",
        ),
        (
            lambda document: document["scores"][DECODER]["ovi"]["color"]["clip"][0].__setitem__(
                2, float("nan")
            ),
            "nan",
        ),
        (
            lambda document: document["scores"][DECODER]["ovi"]["color"]["clip"][1].__setitem__(
                2, float("inf")
            ),
            "inf",
        ),
    ],
    ids=["empty", "empty-metric", "nan", "infinity"],
)
def test_an_empty_or_nan_baseline_is_a_protocol_error(
    smoke_run: Path, tmp_path: Path, own_baseline: dict[str, Any], edit: Any, message: str
) -> None:
    edit(own_baseline)
    broken = write_document(own_baseline, tmp_path / "broken.json")  # json.dumps writes NaN and Infinity
    with pytest.raises(DataError, match=message):
        load_baseline(broken)
    if message == "nan":  # one run of the command, as CI sees it: exit 2, one error line, no verdicts
        done = ovi_bench("check", str(smoke_run), "--baseline", str(broken))
        assert done.returncode == 2, done.stdout + done.stderr
        message = " ".join(done.stderr.split())  # rich wraps long lines at the console width
        assert message.startswith("error: baseline file") and "not a finite number" in message
        assert "Traceback" not in done.stderr and "check passed" not in done.stdout


@pytest.mark.parametrize("fraction", [-0.1, 1.0, float("nan")])
def test_allow_missing_is_a_fraction_below_1(smoke_run: Path, fraction: float) -> None:
    with pytest.raises(DataError, match="--allow-missing"):
        check_run(smoke_run, COMMITTED_BASELINE, allow_missing=fraction)


def test_tolerance_overrides_are_parsed_strictly() -> None:
    assert parse_tolerance_overrides(["clip=0.02", " b-vqa = 0.1"]) == {"clip": 0.02, "b-vqa": 0.1}
    for bad in ("clip", "clip=", "=0.1", "clip=much"):
        with pytest.raises(DataError, match="METRIC=VALUE"):
            parse_tolerance_overrides([bad])


def test_the_gpu_ci_config_is_the_real_protocol_on_a_prompt_subset() -> None:
    configs = Path(__file__).resolve().parents[1] / "configs"
    real, subset = load_spec(configs / "compbench-kandinsky22.toml"), load_spec(configs / "ci-gpu.toml")
    assert subset.priors == real.priors and subset.decoder == real.decoder and subset.metrics == real.metrics
    assert (subset.dtype, subset.first_seed, subset.prompts.source, subset.prompts.split) == (
        real.dtype,
        real.first_seed,
        real.prompts.source,
        real.prompts.split,
    )
    assert (subset.prompts.limit, subset.images_per_prompt) == (10, 2)
