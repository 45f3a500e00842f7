"""The ratings store: votes stored once, read back in the agreed shape, exported and imported (all-or-nothing), and a
damaged database reported by name."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from command_line import run_main
from rating_runs import make_rating_run

from ovi_bench.errors import DataError
from ovi_bench.rate.judgements import JUDGEMENT_COLUMNS, RATINGS_FILE
from ovi_bench.rate.sampling import PairSampler, load_items
from ovi_bench.rate.storage import (
    RatingStoreError,
    export_judgements,
    import_judgements,
    read_judgements,
    record_vote,
    serve_trial,
)


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    """A fresh rating run for a test that writes ratings into it."""
    return make_rating_run(tmp_path / "run")


def vote(run_dir: Path, rater: str, count: int, *, attention_every: int = 3) -> None:
    """`count` votes of `rater`, cast as the app casts them (served trial, then the vote)."""
    sampler = PairSampler(load_items(run_dir), attention_every=attention_every, seed=1)
    for number in range(count):
        trial = serve_trial(
            run_dir, rater, "overall", lambda frame: sampler.next_trial(rater, "overall", frame)
        )
        assert trial is not None
        record_vote(
            run_dir, trial.trial_id, ("left", "right", "tie", "skip")[number % 4], 100 + number, "local"
        )


def test_a_folder_without_ratings_reads_as_an_empty_frame_and_stays_untouched(run_folder: Path) -> None:
    judgements = read_judgements(run_folder)
    assert list(judgements.columns) == list(JUDGEMENT_COLUMNS)
    assert judgements.empty
    assert not (run_folder / RATINGS_FILE).exists()


def test_votes_are_stored_once_in_the_agreed_shape(run_folder: Path) -> None:
    sampler = PairSampler(load_items(run_folder), attention_every=0)
    trial = serve_trial(
        run_folder, "ann", "overall", lambda frame: sampler.next_trial("ann", "overall", frame)
    )
    assert trial is not None
    again = serve_trial(
        run_folder, "ann", "overall", lambda frame: pytest.fail("a pending trial is served again")
    )
    assert again == trial
    assert record_vote(run_folder, trial.trial_id, "left", 812, "local") is True
    assert record_vote(run_folder, trial.trial_id, "right", 5, "local") is False  # a double click
    judgements = read_judgements(run_folder)
    assert list(judgements.columns) == list(JUDGEMENT_COLUMNS)
    assert len(judgements) == 1
    row = judgements.iloc[0]
    assert (row["judgement_id"], row["choice"], row["response_ms"], row["source"]) == (
        trial.trial_id,
        "left",
        812,
        "local",
    )
    assert judgements["seed"].dtype == "int64" and judgements["response_ms"].dtype == "int64"
    assert (row["expected"], row["repeat_of"]) == ("", "")
    with sqlite3.connect(run_folder / RATINGS_FILE) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert (
            connection.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 0
        )  # answered: no longer pending


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_export_and_import_round_trip_and_a_second_import_adds_nothing(
    run_folder: Path, tmp_path: Path, suffix: str
) -> None:
    vote(run_folder, "ann", 7)
    exported = tmp_path / f"crowd{suffix}"
    assert export_judgements(run_folder, exported) == 7
    other = make_rating_run(tmp_path / "other")
    assert import_judgements(other, exported) == (7, 0)
    assert import_judgements(other, exported) == (0, 7)
    original, imported = read_judgements(run_folder), read_judgements(other)
    assert set(imported["source"]) == {exported.name}  # an imported row says where it came from
    columns = [column for column in JUDGEMENT_COLUMNS if column != "source"]
    pd.testing.assert_frame_equal(original[columns], imported[columns])
    assert set(original["kind"]) == {"pair", "repeat", "canary"}


def test_a_prompt_that_looks_like_a_formula_survives_the_csv_round_trip(
    run_folder: Path, tmp_path: Path
) -> None:
    vote(run_folder, "=cmd|' /C calc'!A0", 2, attention_every=0)
    exported = tmp_path / "out.csv"
    export_judgements(run_folder, exported)
    assert "\n'=cmd" not in exported.read_text() and ",'=cmd" in exported.read_text()
    other = make_rating_run(tmp_path / "other")
    import_judgements(other, exported)
    assert set(read_judgements(other)["rater"]) == {"=cmd|' /C calc'!A0"}


def _rows(run_dir: Path, tmp_path: Path) -> list[dict[str, object]]:
    vote(run_dir, "ann", 4, attention_every=0)
    path = tmp_path / "rows.jsonl"
    export_judgements(run_dir, path)
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"choice": "maybe"}, r"line 3: choice 'maybe' is not one of left, right, tie, skip"),
        ({"kind": "pairs"}, r"line 3: kind 'pairs' is not one of .*Did you mean 'pair'"),
        ({"colour": "red"}, r"line 3: unknown column 'colour'"),
        ({"judgement_id": "not-an-id"}, r"line 3: judgement_id .* is not 32 hex digits"),
        ({"seed": "forty"}, r"line 3: seed must be a whole number"),
        ({"expected": "left"}, r"line 3: expected is set only on a canary"),
        ({"left_image": "../../etc/passwd"}, r"line 3: left_image .* is not a run-relative image path"),
    ],
)
def test_import_refuses_a_bad_row_and_writes_nothing(
    run_folder: Path, tmp_path: Path, change: dict[str, str], message: str
) -> None:
    rows = _rows(run_folder, tmp_path)
    rows[2] = {**rows[2], **change}
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(row) + "\n" for row in rows))
    other = make_rating_run(tmp_path / "other")
    with pytest.raises(DataError, match=message) as raised:
        import_judgements(other, bad)
    assert "nothing was imported" in str(raised.value)
    assert read_judgements(other).empty


def test_import_of_a_csv_with_a_missing_column_names_it(run_folder: Path, tmp_path: Path) -> None:
    vote(run_folder, "ann", 2, attention_every=0)
    exported = tmp_path / "out.csv"
    export_judgements(run_folder, exported)
    frame = pd.read_csv(exported, dtype=str, keep_default_na=False).drop(columns=["response_ms"])
    frame.to_csv(exported, index=False)
    with pytest.raises(DataError, match=r"missing column\(s\) response_ms.*nothing was imported"):
        import_judgements(make_rating_run(tmp_path / "other"), exported)


def test_an_unknown_file_format_is_named(run_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"name the file \*\.csv or \*\.jsonl"):
        export_judgements(run_folder, tmp_path / "ratings.xlsx")


def test_a_damaged_database_is_a_clear_error_and_no_traceback(
    run_folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (run_folder / RATINGS_FILE).write_bytes(b"this is not a database " * 100)
    with pytest.raises(
        RatingStoreError, match=rf"{RATINGS_FILE} is not a readable ratings database.*Move it aside"
    ):
        read_judgements(run_folder)
    code, _, err = run_main(
        monkeypatch, capsys, "ratings", "export", str(run_folder), str(run_folder / "x.csv")
    )
    assert code == 2
    assert "is not a readable ratings database" in err and "Traceback" not in err


def test_a_foreign_sqlite_database_is_refused_by_name(run_folder: Path) -> None:
    with sqlite3.connect(run_folder / RATINGS_FILE) as connection:
        connection.execute("CREATE TABLE judgements (id INTEGER)")
    with pytest.raises(RatingStoreError, match="without the column"):
        read_judgements(run_folder)


def test_the_cli_exports_and_imports(
    run_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    vote(run_folder, "ann", 3, attention_every=0)
    exported = tmp_path / "all.csv"
    code, out, _ = run_main(monkeypatch, capsys, "ratings", "export", str(run_folder), str(exported))
    assert code == 0 and "3 judgement(s) written" in out
    code, out, _ = run_main(monkeypatch, capsys, "ratings", "import", str(run_folder), str(exported))
    assert code == 0 and "0 judgement(s) added, 3 already stored" in out
