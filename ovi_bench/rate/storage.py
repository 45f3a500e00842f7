"""The ratings store: `ratings.sqlite` in the run folder, one row per judgement, plus the trials shown but not yet
answered.

Why SQLite in WAL mode with `synchronous=FULL`: every vote is committed (and on disk) before the app answers the
request that cast it, so killing the server at any moment loses nothing; readers (`ovi-bench human`, an export)
never block the raters. Every operation opens its own connection (SQLite connections must not cross threads, and
uvicorn runs handlers in a thread pool); a busy timeout makes concurrent writers wait rather than fail.

Why a table of pending trials: a restarted server (or a reloaded page) shows a rater the trial they had not answered
yet, rather than sampling a new one, and a vote names its trial, whose id becomes the judgement's id, so a trial
answered twice (a double click, a resent request) is stored once.

`read_judgements`, `export_judgements` and `import_judgements` are the functions other modules and the CLI call; the
import validates every row before writing any (a crowd study merged from a file either goes in whole or not at all).
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Final

import pandas as pd

from ovi_bench.errors import DataError
from ovi_bench.io import atomic_write_text, read_csv, write_csv
from ovi_bench.rate.judgements import (
    CANARY_PRIOR,
    CHOICES,
    JUDGEMENT_COLUMNS,
    KINDS,
    QUESTIONS,
    RATINGS_FILE,
)
from ovi_bench.rate.trials import TRIAL_COLUMNS, Trial
from ovi_bench.text import did_you_mean

BUSY_TIMEOUT_S: Final = 30.0
"""How long a write waits for another writer before giving up (votes are tiny; this is only ever reached when
something holds the database for a long time)."""

_INTEGER_COLUMNS: Final = ("seed", "response_ms")
_OPTIONAL_COLUMNS: Final = ("expected", "repeat_of")
_ID_PATTERN: Final = re.compile(r"[0-9a-f]{32}")
_FORMATS: Final = (".csv", ".jsonl")
_REPORTED_ROWS: Final = 5


def _column_type(column: str) -> str:
    if column in _INTEGER_COLUMNS:
        return "INTEGER NOT NULL"
    if column in _OPTIONAL_COLUMNS:
        return "TEXT NOT NULL DEFAULT ''"
    return "TEXT NOT NULL"


_SCHEMA: Final = f"""
CREATE TABLE IF NOT EXISTS judgements (
    {", ".join(f"{column} {_column_type(column)}" for column in JUDGEMENT_COLUMNS)},
    PRIMARY KEY (judgement_id)
);
CREATE TABLE IF NOT EXISTS trials (
    {", ".join(f"{column} {_column_type(column)}" for column in TRIAL_COLUMNS)},
    served_at TEXT NOT NULL,
    PRIMARY KEY (trial_id)
);
"""
_INDEXES: Final = """
CREATE INDEX IF NOT EXISTS judgements_by_rater ON judgements (rater, question);
CREATE INDEX IF NOT EXISTS trials_by_rater ON trials (rater, question);
"""


class RatingStoreError(DataError):
    """`ratings.sqlite` cannot be read or written (not a database, damaged, or busy)."""


class UnknownTrialError(DataError):
    """A vote names a trial the store never served."""


def ratings_path(run_dir: str | Path) -> Path:
    return Path(run_dir).expanduser() / RATINGS_FILE


def now_iso() -> str:
    """The time of a vote as stored: ISO 8601 in UTC, milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _damaged(path: Path, error: sqlite3.Error) -> RatingStoreError:
    if isinstance(error, sqlite3.OperationalError) and "locked" in str(error).lower():
        return RatingStoreError(
            f"{path} is busy: another process held it for over {BUSY_TIMEOUT_S:.0f} s ({error}). Stop the other "
            "process (another `ovi-bench rate` or an open SQLite shell) and try again."
        )
    message = str(error).lower()
    if isinstance(error, sqlite3.OperationalError) and ("readonly" in message or "unable to open" in message):
        return RatingStoreError(
            f"cannot open {path} for writing ({error}): ratings are stored in the run folder, which must be "
            "writable. Fix its permissions, or copy the run folder somewhere writable and rate the copy."
        )
    return RatingStoreError(
        f"{path} is not a readable ratings database ({error}). Move it aside (its judgements cannot be read by "
        "ovi-bench), then start again: a new, empty one is created; judgements exported earlier come back with "
        "`ovi-bench ratings import`."
    )


@contextlib.contextmanager
def connect(run_dir: str | Path) -> Iterator[sqlite3.Connection]:
    """A connection to the run's ratings database (created when missing), in autocommit mode: a block that writes
    wraps itself in `write_transaction`. Every SQLite error inside the block becomes a RatingStoreError that names
    the file and the fix."""
    path = ratings_path(run_dir)
    if not path.parent.is_dir():
        raise DataError(f"run folder {path.parent} does not exist; give the folder `ovi-bench run` wrote.")
    connection: sqlite3.Connection | None = None
    try:
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.executescript(_SCHEMA)
        _check_columns(connection, path)
        connection.executescript(_INDEXES)
        yield connection
    except sqlite3.Error as error:
        raise _damaged(path, error) from error
    finally:
        if connection is not None:
            connection.close()


def _check_columns(connection: sqlite3.Connection, path: Path) -> None:
    """A database written by something else (or an older layout) with the same table names is refused by name."""
    for table, expected in (("judgements", JUDGEMENT_COLUMNS), ("trials", TRIAL_COLUMNS)):
        present = {row["name"] for row in connection.execute(f"PRAGMA table_info({table})")}
        missing = [column for column in expected if column not in present]
        if missing:
            raise RatingStoreError(
                f"{path} has a `{table}` table without the column(s) {', '.join(missing)}: it was not written by "
                "this version of ovi-bench. Move it aside and start again (a new one is created)."
            )


@contextlib.contextmanager
def write_transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT: the write lock is taken up front, so two requests that both read-then-write (two
    raters asking for a trial at once) are serialised instead of one failing at commit; rolled back on any error."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


# ---------------------------------------------------------------------------------------------------------------------
# Reading.


def _frame(rows: list[sqlite3.Row]) -> pd.DataFrame:
    frame = pd.DataFrame([tuple(row) for row in rows], columns=list(JUDGEMENT_COLUMNS))
    for column in JUDGEMENT_COLUMNS:
        if column in _INTEGER_COLUMNS:
            frame[column] = frame[column].astype("int64")
        else:
            frame[column] = frame[column].fillna("").astype(str) if len(frame) else frame[column].astype(str)
    return frame


def select_judgements(connection: sqlite3.Connection) -> pd.DataFrame:
    """Every judgement in the order they were stored."""
    columns = ", ".join(JUDGEMENT_COLUMNS)
    return _frame(connection.execute(f"SELECT {columns} FROM judgements ORDER BY rowid").fetchall())


def read_judgements(run_dir: str | Path) -> pd.DataFrame:
    """The run's judgements, one row each, with exactly the JUDGEMENT_COLUMNS in order: `seed` and `response_ms`
    integers, every other column text (`expected` and `repeat_of` empty strings where they do not apply). An empty
    frame with those columns when the run has no ratings database yet (reading never creates one)."""
    if not ratings_path(run_dir).is_file():
        return _frame([])
    with connect(run_dir) as connection:
        return select_judgements(connection)


def find_trial(connection: sqlite3.Connection, trial_id: str) -> Trial | None:
    """A trial the store served, pending or answered (its images stay viewable after the vote)."""
    columns = ", ".join(TRIAL_COLUMNS)
    row = connection.execute(f"SELECT {columns} FROM trials WHERE trial_id = ?", (trial_id,)).fetchone()
    if row is None:
        answered = ", ".join(f"{column} AS {column}" for column in TRIAL_COLUMNS[1:])
        row = connection.execute(
            f"SELECT judgement_id AS trial_id, {answered} FROM judgements WHERE judgement_id = ?", (trial_id,)
        ).fetchone()
    return None if row is None else Trial.from_row(row)


def pending_trial(connection: sqlite3.Connection, rater: str, question: str) -> Trial | None:
    """The trial this rater was shown last and has not answered, if any."""
    columns = ", ".join(TRIAL_COLUMNS)
    row = connection.execute(
        f"SELECT {columns} FROM trials WHERE rater = ? AND question = ? ORDER BY rowid LIMIT 1",
        (rater, question),
    ).fetchone()
    return None if row is None else Trial.from_row(row)


# ---------------------------------------------------------------------------------------------------------------------
# Writing.


def serve_trial(
    run_dir: str | Path, rater: str, question: str, sample: Callable[[pd.DataFrame], Trial | None]
) -> Trial | None:
    """The rater's pending trial, else a new one from `sample(every judgement so far)`, stored as pending before it
    is returned. One write transaction: two requests of the same rater at once get the same trial."""
    with connect(run_dir) as connection, write_transaction(connection):
        trial = pending_trial(connection, rater, question)
        if trial is not None:
            return trial
        trial = sample(select_judgements(connection))
        if trial is not None:
            row = trial.as_row()
            columns = ", ".join([*TRIAL_COLUMNS, "served_at"])
            marks = ", ".join("?" for _ in range(len(TRIAL_COLUMNS) + 1))
            connection.execute(
                f"INSERT INTO trials ({columns}) VALUES ({marks})",
                [*(row[column] for column in TRIAL_COLUMNS), now_iso()],
            )
        return trial


def record_vote(run_dir: str | Path, trial_id: str, choice: str, response_ms: int, source: str) -> bool:
    """Store the answer to a served trial as a judgement (id = trial id) and drop it from the pending trials, in one
    transaction committed before this returns. True when stored now; False when the trial was answered already (the
    first answer is kept). UnknownTrialError for a trial the store never served."""
    if choice not in CHOICES:
        raise DataError(f"choice {choice!r} is not one of {', '.join(CHOICES)}.")
    columns = ", ".join(JUDGEMENT_COLUMNS)
    with connect(run_dir) as connection, write_transaction(connection):
        if connection.execute("SELECT 1 FROM judgements WHERE judgement_id = ?", (trial_id,)).fetchone():
            return False
        found = connection.execute(
            f"SELECT {', '.join(TRIAL_COLUMNS)} FROM trials WHERE trial_id = ?", (trial_id,)
        ).fetchone()
        if found is None:
            raise UnknownTrialError(f"trial {trial_id!r} was never served; ask for a trial first.")
        row = {**Trial.from_row(found).as_row(), "judgement_id": trial_id}
        row.update(choice=choice, created_at=now_iso(), response_ms=int(response_ms), source=source)
        marks = ", ".join("?" for _ in JUDGEMENT_COLUMNS)
        connection.execute(
            f"INSERT INTO judgements ({columns}) VALUES ({marks})",
            [row[column] for column in JUDGEMENT_COLUMNS],
        )
        connection.execute("DELETE FROM trials WHERE trial_id = ?", (trial_id,))
        return True


# ---------------------------------------------------------------------------------------------------------------------
# Export and import.


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise DataError(
            f"{path}: unknown judgement file format {path.suffix or '(no suffix)'!r}; name the file *.csv or "
            "*.jsonl."
        )
    return suffix


def export_judgements(run_dir: str | Path, path: str | Path) -> int:
    """Write every judgement of the run to `path` (.csv: JUDGEMENT_COLUMNS as the header, text cells that a
    spreadsheet would evaluate quoted; .jsonl: one JSON object per line); returns the number of rows written."""
    target = Path(path).expanduser()
    suffix = _format_of(target)
    frame = read_judgements(run_dir)
    if suffix == ".csv":
        write_csv(frame, target)
    else:
        lines = (json.dumps(row, ensure_ascii=False) for row in frame.to_dict(orient="records"))
        atomic_write_text(target, "".join(f"{line}\n" for line in lines))
    return len(frame)


def _read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, raw row) for every row of a judgement file, as written."""
    if not path.is_file():
        raise DataError(f"{path} does not exist; give a .csv or .jsonl file of judgements.")
    if _format_of(path) == ".csv":
        try:
            frame = read_csv(path, dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            return []
        except (pd.errors.ParserError, UnicodeDecodeError) as error:
            raise DataError(f"{path} is not a readable CSV file ({error}).") from error
        _check_header(path, list(frame.columns))
        return [(number + 2, row) for number, row in enumerate(frame.to_dict(orient="records"))]
    rows: list[tuple[int, dict[str, Any]]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text ({error}).") from error
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(
                f"{path}, line {number}: not a JSON object ({error}); nothing was imported."
            ) from error
        if not isinstance(row, dict):
            raise DataError(f"{path}, line {number}: not a JSON object; nothing was imported.")
        rows.append((number, row))
    return rows


def _column_problem(columns: list[str]) -> str | None:
    unknown = [column for column in columns if column not in JUDGEMENT_COLUMNS]
    missing = [column for column in JUDGEMENT_COLUMNS if column not in columns]
    problems = [
        f"unknown column {column!r}.{did_you_mean(column, JUDGEMENT_COLUMNS)}".rstrip(".")
        for column in unknown
    ]
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    return "; ".join(problems) or None


def _check_header(path: Path, columns: list[str]) -> None:
    problem = _column_problem(columns)
    if problem:
        raise DataError(
            f"{path}: {problem}. A judgement file has exactly the columns {', '.join(JUDGEMENT_COLUMNS)} (as "
            "`ovi-bench ratings export` writes them); nothing was imported."
        )


def _integer(value: Any, column: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{column} must be a whole number, not {value!r}")
    whole_float = isinstance(value, float) and value.is_integer()
    digits = isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value) is not None
    if isinstance(value, int) or whole_float or digits:
        number = int(value)
    else:
        raise ValueError(f"{column} must be a whole number ≥ 0, not {value!r}")
    if number < 0:
        raise ValueError(f"{column} must be ≥ 0, not {number}")
    return number


def clean_judgement(raw: dict[str, Any]) -> dict[str, Any]:
    """One judgement row checked and normalised (ids lower-case, integers as int, null optional fields as "");
    ValueError naming the first problem."""
    problem = _column_problem(list(raw))
    if problem:
        raise ValueError(problem)
    row: dict[str, Any] = {}
    for column in JUDGEMENT_COLUMNS:
        value = raw[column]
        if column in _INTEGER_COLUMNS:
            row[column] = _integer(value, column)
        elif value is None and column in _OPTIONAL_COLUMNS:
            row[column] = ""
        elif not isinstance(value, str):
            raise ValueError(f"{column} must be text, not {value!r}")
        else:
            row[column] = value
    for column in ("judgement_id", "repeat_of"):
        row[column] = row[column].strip().lower()
    if not _ID_PATTERN.fullmatch(row["judgement_id"]):
        raise ValueError(
            f"judgement_id {raw['judgement_id']!r} is not 32 hex digits (give each row a unique one, e.g. Python's "
            "uuid.uuid4().hex)"
        )
    for column, allowed in (("question", tuple(QUESTIONS)), ("kind", KINDS), ("choice", CHOICES)):
        if row[column] not in allowed:
            raise ValueError(
                f"{column} {row[column]!r} is not one of {', '.join(allowed)}.{did_you_mean(row[column], allowed)}"
            )
    for column in ("rater", "decoder", "category", "prompt_id", "left_prior", "right_prior"):
        if not row[column].strip():
            raise ValueError(f"{column} is empty")
    for column in ("left_image", "right_image"):
        image = PurePosixPath(row[column].replace("\\", "/"))
        if not row[column] or image.is_absolute() or ".." in image.parts:
            raise ValueError(f"{column} {row[column]!r} is not a run-relative image path (images/...)")
    _check_kind(row)
    try:
        datetime.fromisoformat(row["created_at"])
    except ValueError:
        raise ValueError(f"created_at {row['created_at']!r} is not an ISO 8601 time") from None
    return row


def _check_kind(row: dict[str, Any]) -> None:
    """The fields that only some kinds carry are present exactly where they belong."""
    broken = [side for side in ("left", "right") if row[f"{side}_prior"] == CANARY_PRIOR]
    if row["kind"] == "canary":
        if len(broken) != 1:
            raise ValueError(f"a canary has {CANARY_PRIOR!r} as exactly one side's prior")
        intact = "right" if broken == ["left"] else "left"
        if row["expected"] != intact:
            raise ValueError(f"a canary's expected is its intact side ({intact!r}), not {row['expected']!r}")
    else:
        if broken:
            raise ValueError(f"only a canary has the prior {CANARY_PRIOR!r}")
        if row["expected"]:
            raise ValueError("expected is set only on a canary (leave it empty)")
        if row["left_prior"] == row["right_prior"]:
            raise ValueError("left_prior and right_prior are the same prior")
    if row["kind"] == "repeat" and not _ID_PATTERN.fullmatch(row["repeat_of"]):
        raise ValueError("a repeat names the judgement it repeats in repeat_of (32 hex digits)")
    if row["kind"] != "repeat" and row["repeat_of"]:
        raise ValueError("repeat_of is set only on a repeat (leave it empty)")


def import_judgements(run_dir: str | Path, path: str | Path) -> tuple[int, int]:
    """Merge the judgements of a .csv or .jsonl file (the export's shape) into the run's store; returns (added,
    skipped): rows whose judgement_id is already stored are skipped, so importing a file twice adds nothing.

    Every row is checked first; any bad row (unknown or missing columns, a choice, kind or question that does not
    exist, ...) is a DataError naming its line, and nothing is written. Imported rows get `source` = the file's
    name, so that their origin stays visible; rows marked "simulated" keep that mark.
    """
    source = Path(path).expanduser()
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    for number, raw in _read_rows(source):
        try:
            row = clean_judgement(raw)
        except ValueError as error:
            problems.append(f"line {number}: {error}")
            continue
        if row["judgement_id"] in first_line:
            problems.append(
                f"line {number}: judgement_id {row['judgement_id']} is also on line {first_line[row['judgement_id']]}"
            )
            continue
        first_line[row["judgement_id"]] = number
        if row["source"] != "simulated":
            row["source"] = source.name
        rows.append(row)
    if problems:
        shown = "; ".join(problems[:_REPORTED_ROWS])
        more = f" (and {len(problems) - _REPORTED_ROWS} more)" if len(problems) > _REPORTED_ROWS else ""
        raise DataError(
            f"{source}: {len(problems)} bad row(s), nothing was imported: {shown}{more}. Fix those rows (the "
            "columns and values are described in docs: `ovi-bench ratings export` writes the same shape) and "
            "import again."
        )
    columns = ", ".join(JUDGEMENT_COLUMNS)
    marks = ", ".join("?" for _ in JUDGEMENT_COLUMNS)
    added = 0
    with connect(run_dir) as connection, write_transaction(connection):
        for row in rows:
            cursor = connection.execute(
                f"INSERT OR IGNORE INTO judgements ({columns}) VALUES ({marks})",
                [row[column] for column in JUDGEMENT_COLUMNS],
            )
            added += cursor.rowcount
    return added, len(rows) - added
