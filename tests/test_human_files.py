"""`ovi-bench human` on a run folder: human.csv, human.json, the leaderboard.md section, the report section and the
command's messages. The run folder is written in code (scores of simulated images, no models)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest
from command_line import run_main
from human_simulation import Study, judgements_of

from ovi_bench.io import write_csv
from ovi_bench.results.human import (
    HUMAN_JSON,
    SECTION_TITLE,
    STRENGTH_COLUMNS,
    read_human_payload,
    write_human,
)
from ovi_bench.results.leaderboard import LeaderboardHeader, leaderboard_frame, write_leaderboard
from ovi_bench.results.report import write_report

STRENGTHS = {"text-embedding": -0.8, "kandinsky-2.2": 0.2, "ovi": 0.6}
DIRECTIONS = {"utility": True, "random": True, "constant": True}
FINGERPRINT = "f" * 64


def _run_folder(folder: Path, study: Study) -> Path:
    """A finished run folder as `ovi-bench run` leaves it, for the files `human` and `report` read."""
    folder.mkdir(parents=True)
    scores = study.scores().assign(reason="")
    write_csv(scores, folder / "scores.csv")
    board = leaderboard_frame(scores, list(STRENGTHS), DIRECTIONS)
    write_leaderboard(folder, board, LeaderboardHeader("tiny", [f"spec `{FINGERPRINT}`"], "tiny"), {})
    results = {
        "spec_fingerprint": FINGERPRINT,
        "spec": {"name": "tiny", "decoder": {"name": study.decoder}, "images_per_prompt": 1},
        "priors": {prior: {"name": prior, "params": {}} for prior in STRENGTHS},
        "metrics": {metric: {"higher_is_better": higher} for metric, higher in DIRECTIONS.items()},
        "seeds": [0],
        "leaderboard": json.loads(board.to_json(orient="records")),
    }
    (folder / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return folder


@pytest.fixture
def study_run(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    study = Study(STRENGTHS, prompts=12, image_noise=0.5, seed=11)
    judgements = judgements_of(
        study.judge("simulated-1", 120, mode="exact"),
        study.judge("simulated-2", 120, mode="exact"),
        study.canaries("simulated-1", 2, 0),
    )
    return _run_folder(tmp_path / "run", study), judgements


def test_human_writes_its_files_and_rewrites_the_leaderboard_section_in_place(
    study_run: tuple[Path, pd.DataFrame],
) -> None:
    folder, judgements = study_run
    payload = write_human(folder, judgements=judgements, resamples=50, target_width=0.3)
    table = pd.read_csv(folder / "human.csv")
    assert list(table.columns) == STRENGTH_COLUMNS
    assert len(table) == len(STRENGTHS) * 3  # overall, color, shape
    assert set(table["scope"]) == {"overall", "color", "shape"}
    stored = json.loads((folder / HUMAN_JSON).read_text(encoding="utf-8"))
    assert stored == json.loads(json.dumps(payload))
    for key in ("strengths", "agreement", "raters", "metric_agreement", "plan", "counts", "win_rates"):
        assert key in stored
    assert stored["counts"]["used"] == 240 and stored["counts"]["simulated"] == 240
    assert stored["plan"][0]["target_width"] == 0.3
    board = (folder / "leaderboard.md").read_text(encoding="utf-8")
    assert board.count(SECTION_TITLE) == 1
    assert board.index("# tiny") < board.index(SECTION_TITLE) < board.index("## Every metric")
    assert "**Simulated judgements**" in board
    write_human(folder, judgements=judgements.iloc[:100], resamples=20)
    again = (folder / "leaderboard.md").read_text(encoding="utf-8")
    assert again.count(SECTION_TITLE) == 1 and "100 judgements used" in again


def test_the_leaderboard_and_report_show_the_section_only_with_this_runs_human_json(
    study_run: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    folder, judgements = study_run
    write_human(folder, judgements=judgements, resamples=50)
    page = _report(folder, tmp_path / "with")
    assert 'id="human-section"' in page and 'id="human-simulated"' in page
    assert page.count('class="interval-plot"') >= 1 and 'id="human-metric-agreement"' in page
    assert "<td>utility</td><td>tiny-decoder</td><td>1.00</td>" in page
    # What `write_results` passes on when the run is written again into the folder: the same section.
    payload = read_human_payload(folder, FINGERPRINT)
    assert payload is not None and read_human_payload(folder, "0" * 64) is None
    board = pd.read_csv(folder / "leaderboard.csv")
    write_leaderboard(tmp_path / "board", board, LeaderboardHeader("tiny", [], "tiny"), {}, human=payload)
    assert SECTION_TITLE in (tmp_path / "board" / "leaderboard.md").read_text(encoding="utf-8")
    # An analysis of another run (a folder reused for a new spec) is never shown.
    (folder / HUMAN_JSON).write_text(json.dumps({**payload, "spec_fingerprint": "0" * 64}), encoding="utf-8")
    assert 'id="human-section"' not in _report(folder, tmp_path / "stale")


def _report(folder: Path, out: Path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the simulated images were never rendered
        return write_report(folder, out).read_text(encoding="utf-8")


def test_human_without_judgements_names_the_commands_that_collect_them(
    study_run: tuple[Path, pd.DataFrame], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = study_run
    code, _, err = run_main(monkeypatch, capsys, "human", str(folder))
    message = " ".join(err.split())
    assert code != 0 and "Traceback" not in err
    assert "ovi-bench rate" in message and "ovi-bench ratings import" in message


def test_human_command_prints_the_strengths_and_the_agreement_table(
    study_run: tuple[Path, pd.DataFrame], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = pytest.importorskip("ovi_bench.rate.storage")
    folder, judgements = study_run
    write_csv(judgements, folder.parent / "crowd.csv")
    storage.import_judgements(folder, folder.parent / "crowd.csv")
    code, out, err = run_main(
        monkeypatch, capsys, "human", str(folder), "--bootstrap", "30", "--target-width", "0.4"
    )
    assert code == 0, err
    assert "Bradley–Terry strengths" in out and "Metric–human agreement" in out and "utility" in out
    assert "simulated" in err
    stored = json.loads((folder / HUMAN_JSON).read_text(encoding="utf-8"))
    assert stored["settings"]["resamples"] == 30 and stored["plan"][0]["target_width"] == 0.4
