"""Leaderboard files (csv, md, tex, json) and merging runs: same protocol side by side, differing ones refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from tiny_runs import run

from ovi_bench.errors import DataError, OviBenchError
from ovi_bench.results.leaderboard import merge_runs
from ovi_bench.results.records import ProtocolMismatchError, load_run, protocol
from ovi_bench.results.summary import latex_escape, official_summary, summary_latex

# clip is the official metric of non_spatial only: the tiny run gets one official column and one extra category.
PROMPTS = {"source": "builtin", "categories": ["non_spatial", "color"], "limit": 1}
TEXT_EMBEDDING = [{"name": "text-embedding", "params": {"model": "tiny"}}]
KANDINSKY = [{"name": "kandinsky-2.2", "params": {"model": "tiny", "steps": 3}}]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two runs of one protocol with different priors: what a researcher merges."""
    first, second = tmp_path_factory.mktemp("first"), tmp_path_factory.mktemp("second")
    run(first, name="baselines", prompts=PROMPTS, priors=TEXT_EMBEDDING)
    run(second, name="new-prior", prompts=PROMPTS, priors=KANDINSKY + TEXT_EMBEDDING)
    return first, second


def test_a_run_writes_every_leaderboard_format_with_its_provenance(two_runs: tuple[Path, Path]) -> None:
    folder = two_runs[1]
    board = pd.read_csv(folder / "leaderboard.csv")
    assert {"mean", "ci_low", "ci_high", "n_prompts", "n", "official"} <= set(board.columns)
    markdown = (folder / "leaderboard.md").read_text()
    assert "## Official metric per category" in markdown and "non_spatial (clip)" in markdown
    tex = (folder / "leaderboard.tex").read_text()
    assert (
        "\\begin{tabular}{lc}" in tex and "Non-Spatial" in tex and "Color" not in tex
    )  # color has no official
    official = board[board.official & (board.prior == "kandinsky-2.2")].iloc[0]
    assert f"{official['mean']:.4f}" in tex and f"[{official.ci_low:.4f}, {official.ci_high:.4f}]" in tex
    payload = json.loads((folder / "leaderboard.json").read_text())
    provenance = payload["provenance"]
    assert provenance["spec_fingerprint"] == board.spec_fingerprint[0]
    assert set(provenance["prompts"]["category_digests"]) == {"non_spatial", "color"}
    assert provenance["models"]["priors[kandinsky-2.2].model"]["kind"] == "tiny"
    assert provenance["metrics"]["clip"]["version"] and provenance["seeds"] == [42, 43]
    assert len(payload["leaderboard"]) == len(board)


def test_runs_of_one_protocol_merge_and_a_repeated_prior_is_taken_once(two_runs: tuple[Path, Path]) -> None:
    merged = merge_runs([load_run(path) for path in two_runs])
    assert merged.protocol_differences == []
    assert list(dict.fromkeys(merged.board.prior)) == ["text-embedding", "kandinsky-2.2"]
    text_embedding = merged.board[merged.board.prior == "text-embedding"]
    assert set(text_embedding.run) == {"baselines"} and len(text_embedding) == 2  # once per category
    assert len(merged.notes) == 1 and "text-embedding" in merged.notes[0]
    summary = official_summary(merged.board)
    assert (
        list(summary.prior) == ["text-embedding", "kandinsky-2.2"] and summary["non_spatial.best"].sum() == 1
    )


def _edited_copy(source: Path, target: Path, edit) -> Path:
    shutil.copytree(source, target)
    results = json.loads((target / "results.json").read_text())
    edit(results)
    (target / "results.json").write_text(json.dumps(results))
    return target


def test_differing_protocols_are_refused_naming_each_field_unless_allowed(
    two_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    def other_protocol(results: dict) -> None:
        results["spec"]["decoder"]["steps"] = 50
        results["metrics"]["clip"]["version"] = "99"
        results["prompts"]["category_digests"]["color"] = "0" * 64

    other = _edited_copy(two_runs[1], tmp_path / "other", other_protocol)
    runs = [load_run(two_runs[0]), load_run(other)]
    with pytest.raises(ProtocolMismatchError) as caught:
        merge_runs(runs)
    assert [line.split(":")[0] for line in caught.value.differences] == [
        "decoder.steps",
        "prompts[color].digest",
        "metrics[clip].version",
    ]
    assert "--allow-protocol-mismatch" in str(caught.value)
    merged = merge_runs(runs, allow_protocol_mismatch=True)
    assert len(merged.protocol_differences) == 3
    # Under different protocols the same prior gives different numbers: both are kept, told apart by run.
    assert {"text-embedding", "text-embedding @ new-prior", "kandinsky-2.2"} == set(merged.board.prior)


def test_runs_over_other_categories_still_merge(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    def drop_color(results: dict) -> None:
        del results["prompts"]["category_digests"]["color"]

    fewer = _edited_copy(two_runs[1], tmp_path / "fewer", drop_color)
    assert "prompts[color].digest" not in protocol(load_run(fewer).provenance)
    assert merge_runs([load_run(two_runs[0]), load_run(fewer)]).protocol_differences == []


def test_one_name_for_two_different_priors_is_an_error(tmp_path: Path, two_runs: tuple[Path, Path]) -> None:
    def retuned(results: dict) -> None:
        results["priors"]["text-embedding"]["fingerprint"] = "f" * 64

    other = _edited_copy(two_runs[1], tmp_path / "retuned", retuned)
    with pytest.raises(OviBenchError, match="give one of them a `label`"):
        merge_runs([load_run(two_runs[0]), load_run(other)])


def test_latex_escapes_user_text_and_marks_the_best_by_the_metrics_direction() -> None:
    assert latex_escape(r"ovi_nn & 50% #1 {x} ~^ \ $") == (
        r"ovi\_nn \& 50\% \#1 \{x\} \textasciitilde{}\textasciicircum{} \textbackslash{} \$"
    )
    # cmmd is lower-is-better (as its rows say): the smaller mean is the best of its column.
    board = pd.DataFrame(
        {
            "prior": ["a_b", "c"],
            "category": ["color", "color"],
            "metric": ["cmmd", "cmmd"],
            "official": [True, True],
            "mean": [0.2, 0.1],
            "ci_low": [0.1, 0.05],
            "ci_high": [0.3, 0.15],
            "higher_is_better": [False, False],
        }
    )
    summary = official_summary(board)
    assert list(summary["color.best"]) == [False, True]
    tex = summary_latex(summary, "a 100% caption")
    assert "a\\_b & 0.2000" in tex and "c & \\textbf{0.1000}" in tex and "a 100\\% caption" in tex


def test_the_direction_of_a_row_comes_from_its_own_column() -> None:
    # "my-distance" is in no registry: only the rows say that lower is better, and the summary believes them.
    board = pd.DataFrame(
        {
            "prior": ["near", "far"],
            "category": ["color", "color"],
            "metric": ["my-distance", "my-distance"],
            "official": [True, True],
            "mean": [0.1, 0.9],
            "ci_low": [0.0, 0.8],
            "ci_high": [0.2, 1.0],
            "higher_is_better": [False, False],
        }
    )
    assert list(official_summary(board)["color.best"]) == [True, False]
    assert list(official_summary(board.assign(higher_is_better=True))["color.best"]) == [False, True]
    # A table without the column is refused, never ranked by a guessed direction.
    with pytest.raises(DataError, match="higher_is_better"):
        official_summary(board.drop(columns="higher_is_better"))


def test_the_smoke_runs_rows_carry_each_metrics_direction_and_feature_space(smoke_run: Path) -> None:
    results = json.loads((smoke_run / "results.json").read_text())
    board = pd.DataFrame(results["leaderboard"])
    for name, entry in results["metrics"].items():
        assert set(board.loc[board.metric == name, "higher_is_better"]) <= {entry["higher_is_better"]}
    assert results["set_metrics"]  # fid, kid and cmmd: lower is better, each in its feature space
    for entry in results["set_metrics"].values():
        rows = board[board.metric == entry["leaderboard_name"]]
        assert len(rows) and set(rows.higher_is_better) == {False}
        assert set(rows.feature_space) == {entry["feature_space"]}
    on_disk = pd.read_csv(smoke_run / "leaderboard.csv")
    assert list(on_disk.higher_is_better) == list(board.higher_is_better)


def _old_run_folder(folder: Path, metrics: dict, set_metrics: dict) -> Path:
    """A results.json as runs wrote it before the leaderboard rows carried `higher_is_better`."""
    folder.mkdir()
    row = {"prior": "p", "category": "color", "official": False, "mean": 0.5}
    results = {
        "spec_fingerprint": "0" * 64,
        "metrics": metrics,
        "set_metrics": set_metrics,
        "leaderboard": [row | {"metric": "clip"}, row | {"metric": "fid[dinov2]", "category": "all"}],
    }
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_an_old_run_folder_takes_the_direction_from_its_provenance(tmp_path: Path) -> None:
    clip = {"clip": {"version": "1", "higher_is_better": True}}
    fid = {"fid": {"leaderboard_name": "fid[dinov2]", "feature_space": "dinov2", "higher_is_better": False}}
    old = load_run(_old_run_folder(tmp_path / "old", clip, fid))
    assert list(old.leaderboard.higher_is_better) == [True, False]
    assert old.higher_is_better("clip") and not old.higher_is_better("fid[dinov2]")
    # Neither the rows nor the provenance say it (a hand-made file): an error naming the metric and the fix.
    unknown = load_run(_old_run_folder(tmp_path / "unknown", clip, {}))
    with pytest.raises(DataError, match=r"fid\[dinov2\].*ovi-bench run"):
        unknown.leaderboard  # noqa: B018 (the property reads and checks the rows)


def test_missing_or_corrupt_run_folders_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(OviBenchError, match="does not exist"):
        load_run(tmp_path / "nowhere")
    with pytest.raises(OviBenchError, match="not a finished run folder"):
        load_run(tmp_path)
    (tmp_path / "results.json").write_text("{ half a file")
    with pytest.raises(OviBenchError, match="not valid JSON"):
        load_run(tmp_path)


def test_the_leaderboard_command_writes_the_merged_files_or_exits_2_on_a_mismatch(
    two_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "ovi_bench", "leaderboard", *map(str, two_runs)]
    done = subprocess.run([*command, "--out", str(tmp_path / "merged")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert {path.name for path in (tmp_path / "merged").iterdir()} == {
        f"leaderboard.{suffix}" for suffix in ("csv", "md", "tex", "json")
    }
    merged = json.loads((tmp_path / "merged" / "leaderboard.json").read_text())
    assert [entry["name"] for entry in merged["runs"]] == ["baselines", "new-prior"]

    other = _edited_copy(
        two_runs[1], tmp_path / "other", lambda results: results["spec"].update(first_seed=7)
    )
    refused = subprocess.run([*command[:-1], str(other)], capture_output=True, text=True)
    assert (
        refused.returncode == 2 and "first_seed: 42" in refused.stderr and "Traceback" not in refused.stderr
    )
