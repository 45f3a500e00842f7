"""Kill a run with SIGKILL at seeded moments in every stage, ten times, resuming it each time.

After every kill: no file under a real name is partial, and every manifest line names a whole image of its size and
sha256. Across the kills, nothing the store already held is generated again; what a kill loses is only what was in
flight (see `test_killed_and_resumed_run_ends_as_an_uninterrupted_one`). At the end, the scores and images equal
those of a run into a fresh folder that was never interrupted.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import tomli_w
from generation_log import LOG_ENVIRONMENT_VARIABLE, Event, read_events
from paced_components import paced_spec, temporaries
from PIL import Image
from safetensors.torch import load_file
from tiny_runs import tiny_spec

from ovi_bench import cli
from ovi_bench.plan import load_run_prompts, plan
from ovi_bench.spec import parse_spec
from ovi_bench.store import COMMIT_ITEMS, COMMIT_SECONDS

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

# Batch size 1 everywhere: a resumed run regroups what is left into other batches, and one-sample batches make the
# composition irrelevant, so the final scores must equal the uninterrupted run's exactly, not up to float rounding.
SPEC = tiny_spec(
    prompts={"source": "builtin", "categories": ["color", "spatial"], "limit": 2},
    decoder={"params": {"model": "tiny"}, "steps": 4, "height": 32, "width": 32},
    prior_batch_size=1,
    decoder_batch_size=1,
    metric_batch_size=1,
)
ITEMS = 2 * 2 * 2 * 2  # priors × categories × prompts × seeds
STAGES = ("embedding", "image", "score", "result")
"""What a run writes, in the order it writes them (tests/generation_log.py logs each)."""
KILL_STAGES = ["embedding"] * 3 + ["image"] * 3 + ["score"] * 2 + ["result"] * 2
"""One kill per entry, in stage order. A stage left with no work moves its kill to the next stage; the result files
are rewritten by every run, so every kill happens."""
SLACK_SECONDS = 0.25
"""Beyond COMMIT_SECONDS: between a write's log line and the store's clock reading for it."""


@dataclass
class Kill:
    stage: str
    event: int
    """Killed right after the run logged its `event`-th write of this kind (1-based), plus `delay` seconds."""
    delay: float
    run_events: list[Event]
    """Everything the killed run logged."""
    images_before: set[str]
    images_after: set[str]
    embeddings_before: set[str]
    embeddings_after: set[str]
    scores_after: set[str]


def _manifest_lines(out: Path) -> tuple[list[dict], list[str]]:
    """The parseable lines of every manifest file, and the lines that do not parse (cut by a kill)."""
    rows, cut = [], []
    for path in sorted(out.glob("manifest*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                cut.append(line)
    return rows, cut


def _score_keys(out: Path) -> set[str]:
    keys = set()
    for path in (out / "scores").glob("*.jsonl") if (out / "scores").is_dir() else []:
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                keys.add(json.loads(line)["key"])
            except json.JSONDecodeError:
                continue
    return keys


def _embedding_keys(out: Path) -> set[str]:
    folder = out / "embeddings"
    return {path.stem for path in folder.rglob("*.safetensors") if not path.name.startswith(".")}


def assert_store_whole_and_consistent(out: Path, when: str) -> None:
    """No partial file under a real name; every manifest line names its whole file; cut lines are tolerated."""
    rows, cut = _manifest_lines(out)
    listed = {}
    for row in rows:
        path = out / row["path"]
        assert path.is_file(), f"{when}: the manifest lists {row['path']}, which does not exist"
        data = path.read_bytes()
        assert len(data) == row["bytes"], (
            f"{when}: {row['path']} has {len(data)} bytes, its line says {row['bytes']}"
        )
        assert hashlib.sha256(data).hexdigest() == row["sha256"], (
            f"{when}: {row['path']} differs from its sha256"
        )
        listed[row["path"]] = row
    for line in cut:
        assert line.startswith("{"), f"{when}: a manifest line is neither JSON nor a cut JSON line: {line!r}"
    for png in (out / "images").rglob("*.png") if (out / "images").is_dir() else []:
        if png.name.startswith("."):
            continue  # a temporary file of a write in flight: never read as an image
        with Image.open(png) as image:
            image.load()  # a partial PNG fails here
        relative = png.relative_to(out).as_posix()
        if relative in listed:
            assert hashlib.sha256(png.read_bytes()).hexdigest() == listed[relative]["sha256"]
    for embedding in (out / "embeddings").rglob("*.safetensors") if (out / "embeddings").is_dir() else []:
        if not embedding.name.startswith("."):
            tensors = load_file(str(embedding))  # a partial safetensors file fails here
            assert set(tensors) == {"image_embeds", "negative_image_embeds"}, f"{when}: {embedding}"
    for jsonl in out.rglob("*.jsonl"):
        lines = jsonl.read_text(encoding="utf-8").splitlines()
        for line in lines:
            try:
                json.loads(line)
            except json.JSONDecodeError:
                # Only a write that a kill cut short; the next append starts on a fresh line after it.
                assert line.startswith("{"), f"{when}: {jsonl.name} holds a line that is not JSON: {line!r}"


def _remaining(stage: str, out: Path, image_keys: dict[str, str], result_files: int) -> int:
    """How many writes of `stage` the next run will log at least (what the store lacks; every result file, since
    each run writes them all)."""
    images = {row["image_key"] for row in _manifest_lines(out)[0]}
    missing = [key for key in image_keys if key not in images]
    if stage == "embedding":
        embeddings = _embedding_keys(out)
        return sum(image_keys[key] not in embeddings for key in missing)
    if stage == "image":
        return len(missing)
    if stage == "score":
        return ITEMS - len(_score_keys(out))
    return result_files


def _command(spec_path: Path, out: Path) -> list[str]:
    # `python -m ovi_bench run SPEC --out DIR --quiet`, with the store's writes logged (tests/generation_log.py).
    code = "import generation_log; generation_log.run_cli()"
    return [sys.executable, "-c", code, "run", str(spec_path), "--out", str(out), "--quiet"]


def _environment(log: Path) -> dict[str, str]:
    # One thread in every run (and the reference): results are bitwise equal only under the same thread count.
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]),
        "OMP_NUM_THREADS": "1",
        LOG_ENVIRONMENT_VARIABLE: str(log),
    }


def _run_and_kill(spec_path: Path, out: Path, log: Path, stage: str, event: int, delay: float) -> list[Event]:
    """Start a run; SIGKILL it `delay` seconds after it logged its `event`-th write of `stage`."""
    offset = log.stat().st_size if log.exists() else 0
    process = subprocess.Popen(
        _command(spec_path, out), env=_environment(log), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    seen = 0
    deadline = time.monotonic() + 240
    try:
        while seen < event:
            assert time.monotonic() < deadline, f"no {stage} write #{event} within 240 s"
            # Polled before the log is read: a run that logs its write and exits between the two is still counted.
            finished = process.poll() is not None
            with open(log, "rb") as handle:
                handle.seek(offset)
                new = handle.read()
            complete = new[: new.rfind(b"\n") + 1]
            offset += len(complete)
            for line in complete.decode().splitlines():
                pid, _, kind, _ = line.split(" ", 3)
                seen += int(pid) == process.pid and kind == stage
            if finished and seen < event:
                pytest.fail(
                    f"the run finished (exit {process.returncode}) before its {stage} write #{event}, where it was "
                    f"to be killed; stderr:\n{process.stderr.read().decode() if process.stderr else ''}"
                )
            time.sleep(0.002)
        time.sleep(delay)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        if process.stderr:
            process.stderr.close()
    return [entry for entry in read_events(log) if entry.pid == process.pid]


def _assert_lost_only_in_flight(kill: Kill, kind: str, before: set[str], after: set[str]) -> None:
    """A kill loses only the writes still waiting for their commit, and nothing the store held before the run is
    made again.

    "In flight" means exactly: the store commits a group of writes at the first write made when the group's oldest
    has waited COMMIT_SECONDS (or sooner, see ovi_bench/store.py), or when it holds COMMIT_ITEMS writes. So the lost
    writes are a contiguous tail of the run's log, at most COMMIT_ITEMS of them, and all but the last (which may be
    the one whose commit the kill cut short) were made within COMMIT_SECONDS of the first. Batches of one here: one
    write per store call."""
    events = [entry for entry in kill.run_events if entry.kind == kind]
    where = f"kill in {kill.stage} (write #{kill.event} + {kill.delay * 1000:.0f} ms), {kind}s"
    keys = [entry.key for entry in events]
    assert not set(keys) & before, f"{where}: made again although the store held them: {set(keys) & before}"
    assert len(keys) == len(set(keys)), f"{where}: one run made the same item twice"
    lost = [index for index, entry in enumerate(events) if entry.key not in after]
    if lost:
        assert lost == list(range(lost[0], len(events))), (
            f"{where}: lost writes are not the last ones: {lost}"
        )
        assert len(lost) <= COMMIT_ITEMS, f"{where}: {len(lost)} lost, more than a group ({COMMIT_ITEMS})"
        span = events[-2].seconds - events[lost[0]].seconds if len(lost) >= 2 else 0.0
        assert span <= COMMIT_SECONDS + SLACK_SECONDS, (
            f"{where}: lost writes span {span:.2f} s, more than a group"
        )


@pytest.mark.slow
def test_killed_and_resumed_run_ends_as_an_uninterrupted_one(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(tomli_w.dumps(SPEC))
    spec = parse_spec(SPEC)
    image_keys = {item.image_key: item.embedding_key for item in plan(spec, load_run_prompts(spec))}
    assert len(image_keys) == ITEMS

    # The reference, never interrupted, in a fresh folder (it also builds the tiny models the others load).
    reference = tmp_path / "reference"
    subprocess.run(
        _command(spec_path, reference),
        env=_environment(tmp_path / "reference.log"),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    # scores.csv, embeddings.csv, leaderboard.{csv,md,tex,json}, results.json: counted, not listed here.
    result_files = sum(entry.kind == "result" for entry in read_events(tmp_path / "reference.log"))
    assert result_files >= 6, f"the reference run logged {result_files} result files"
    log = tmp_path / "generation.log"
    log.touch()

    out = tmp_path / "killed"
    rng = random.Random(20240611)
    kills: list[Kill] = []
    stages = list(KILL_STAGES)
    while stages:
        stage = stages.pop(0)
        remaining = _remaining(stage, out, image_keys, result_files)
        if remaining == 0:
            stages.insert(0, STAGES[STAGES.index(stage) + 1])
            continue
        event, delay = rng.randint(1, remaining), rng.uniform(0.0, 0.02)
        images_before = {row["image_key"] for row in _manifest_lines(out)[0]}
        embeddings_before = _embedding_keys(out)
        run_events = _run_and_kill(spec_path, out, log, stage, event, delay)
        kills.append(
            Kill(
                stage,
                event,
                delay,
                run_events,
                images_before,
                {row["image_key"] for row in _manifest_lines(out)[0]},
                embeddings_before,
                _embedding_keys(out),
                _score_keys(out),
            )
        )
        assert_store_whole_and_consistent(out, f"after kill {len(kills)} ({stage}, write #{event})")

    images_before = {row["image_key"] for row in _manifest_lines(out)[0]}
    killed_events = len(read_events(log))
    finished = subprocess.run(
        _command(spec_path, out), env=_environment(log), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert finished.returncode == 0, finished.stderr.decode()
    last_run = [entry.key for entry in read_events(log)[killed_events:] if entry.kind == "image"]
    summary = ", ".join(
        f"{kill.stage} #{kill.event}: lost {sum(e.kind == 'image' and e.key not in kill.images_after for e in kill.run_events)} "
        f"image(s), {sum(e.kind == 'embedding' and e.key not in kill.embeddings_after for e in kill.run_events)} embedding(s)"
        for kill in kills
    )
    print(f"{len(kills)} kills: {summary}")  # shown with `pytest -s` or on failure
    assert len(kills) >= 10, f"only {len(kills)} kills: {summary}"
    assert {kill.stage for kill in kills} == {"embedding", "image", "score", "result"}, summary
    assert_store_whole_and_consistent(out, "after the last run")

    # Nothing generated twice except what was in flight at a kill.
    for kill in kills:
        _assert_lost_only_in_flight(kill, "image", kill.images_before, kill.images_after)
        _assert_lost_only_in_flight(kill, "embedding", kill.embeddings_before, kill.embeddings_after)
        scored = [entry for entry in kill.run_events if entry.kind == "score"]
        lost_scores = [entry for entry in scored if entry.key not in kill.scores_after]
        # Score lines are appended as each batch (one image here) is scored: only the one being written is lost.
        assert lost_scores in ([], scored[-1:]), f"kill in {kill.stage}: lost scores {lost_scores}"
    assert sorted(last_run) == sorted(set(image_keys) - images_before), (
        "the last run made other images than the missing"
    )
    rows, cut = _manifest_lines(out)
    lines_per_image = Counter(row["image_key"] for row in rows)
    assert set(lines_per_image) == set(image_keys), "the finished run lacks images"
    assert max(lines_per_image.values()) == 1, f"images listed twice: {lines_per_image.most_common(3)}"
    assert len(cut) <= len(kills)

    # The same scores and images as the run that was never interrupted, exactly.
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "scores.csv"), pd.read_csv(reference / "scores.csv"), check_exact=True
    )
    reference_rows = {row["image_key"]: row["sha256"] for row in _manifest_lines(reference)[0]}
    assert {row["image_key"]: row["sha256"] for row in rows} == reference_rows


# -- 30 kills, SIGTERM and SIGKILL mixed, with paced stand-in components --------------------------------------------

MIX_KILLS = {"embedding": 9, "image": 9, "score": 6, "result": 6}
"""Kills per stage, 30 in all; each one is SIGTERM or SIGKILL by a seeded coin."""
MIX_SPEC = paced_spec(prompts=4, seeds=4, seconds=0.01)
"""2 priors × 2 categories × 4 prompts × 4 seeds = 64 items at 10 ms per embedding, image and score."""


def _mix_child(argv: list[str], log: str) -> None:
    """A forked `ovi-bench ARGV` with the store's writes logged: the parent has imported everything already, so a
    start costs milliseconds, not the seconds a fresh interpreter spends importing torch."""
    import generation_log

    os.environ[LOG_ENVIRONMENT_VARIABLE] = log
    generation_log._install(log)
    sys.argv = ["ovi-bench", *argv]
    cli.main()


def _mix_start(spec_path: Path, out: Path, log: Path) -> multiprocessing.process.BaseProcess:
    argv = ["run", str(spec_path), "--out", str(out), "--quiet", "--plugins", "paced_components"]
    process = multiprocessing.get_context("fork").Process(target=_mix_child, args=(argv, str(log)))
    process.start()
    return process


def _mix_remaining(stage: str, out: Path, items: dict[str, str], result_files: int) -> int:
    images = {row["image_key"] for row in _manifest_lines(out)[0]}
    missing = [key for key in items if key not in images]
    if stage == "embedding":
        embeddings = _embedding_keys(out)
        return sum(items[key] not in embeddings for key in missing)
    if stage == "image":
        return len(missing)
    if stage == "score":
        return len(items) - len(_score_keys(out))
    return result_files


@pytest.mark.slow
def test_thirty_sigterm_and_sigkill_kills_lose_at_most_a_group_each_and_leave_no_temporaries(
    tmp_path: Path,
) -> None:
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(tomli_w.dumps(MIX_SPEC))
    spec = parse_spec(MIX_SPEC)
    items = {item.image_key: item.embedding_key for item in plan(spec, load_run_prompts(spec))}
    assert len(items) == 64

    reference = tmp_path / "reference"
    log = tmp_path / "generation.log"
    process = _mix_start(spec_path, reference, tmp_path / "reference.log")
    process.join(120)
    assert process.exitcode == 0
    result_files = sum(entry.kind == "result" for entry in read_events(tmp_path / "reference.log"))

    out = tmp_path / "killed"
    rng = random.Random(20261203)
    kills: list[tuple[int, Kill]] = []
    for stage, count in MIX_KILLS.items():
        for left in range(count, 0, -1):
            remaining = _mix_remaining(stage, out, items, result_files)
            if remaining == 0:
                continue  # the stage is done: its kill lands in no write (counted below)
            # Spread the stage's kills over its writes, so that each one finds work left.
            event = rng.randint(1, max(1, remaining // left))
            delay = rng.uniform(0.0, 0.02)
            signum = rng.choice([signal.SIGTERM, signal.SIGKILL])
            images_before = {row["image_key"] for row in _manifest_lines(out)[0]}
            embeddings_before = _embedding_keys(out)
            offset = log.stat().st_size if log.exists() else 0
            process = _mix_start(spec_path, out, log)
            deadline = time.monotonic() + 120
            while process.is_alive() and time.monotonic() < deadline:
                mine = [e for e in read_events(log, offset) if e.pid == process.pid and e.kind == stage]
                if len(mine) >= event:
                    break
                time.sleep(0.002)
            time.sleep(delay)
            if process.is_alive():
                os.kill(process.pid, signum)
            process.join(60)
            assert process.exitcode is not None, "a signalled run did not end"
            if signum == signal.SIGTERM:
                # 143: the run stopped cleanly; 0: it finished first. A signal that lands after the command has
                # returned, while the process shuts down, meets the default handler again (-15, which a shell
                # shows as 143 too): only a run that wrote all its result files may end that way.
                written = [e for e in read_events(log, offset) if e.pid == process.pid and e.kind == "result"]
                finished = len(written) == result_files
                allowed = (0, 143, -signal.SIGTERM) if finished else (0, 143)
                assert process.exitcode in allowed, f"SIGTERM: exit code {process.exitcode}"
                # Everything finished was committed or deleted: no temporary file is left.
                assert temporaries(out) == [], f"SIGTERM in {stage} left {temporaries(out)}"
            run_events = [e for e in read_events(log, offset) if e.pid == process.pid]
            kill = Kill(
                stage,
                event,
                delay,
                run_events,
                images_before,
                {row["image_key"] for row in _manifest_lines(out)[0]},
                embeddings_before,
                _embedding_keys(out),
                _score_keys(out),
            )
            kills.append((signum, kill))
            when = f"after kill {len(kills)} ({signal.Signals(signum).name} in {stage}, write #{event})"
            assert_store_whole_and_consistent(out, when)

    assert len(kills) >= 24, f"only {len(kills)} runs were stopped"
    assert {signum for signum, _ in kills} == {signal.SIGTERM, signal.SIGKILL}
    for signum, kill in kills:
        for kind, before, after in (
            ("image", kill.images_before, kill.images_after),
            ("embedding", kill.embeddings_before, kill.embeddings_after),
        ):
            if signum == signal.SIGKILL:  # at most the group in flight
                _assert_lost_only_in_flight(kill, kind, before, after)
            else:  # SIGTERM: nothing finished is lost, only the write the signal interrupted
                events = [e.key for e in kill.run_events if e.kind == kind]
                lost = [key for key in events if key not in after]
                assert lost in ([], events[-1:]), f"SIGTERM in {kill.stage} lost {kind}s {lost}"

    process = _mix_start(spec_path, out, log)
    process.join(120)
    assert process.exitcode == 0
    assert temporaries(out) == [], "the resumed run left temporary files"
    rows, _ = _manifest_lines(out)
    lines_per_image = Counter(row["image_key"] for row in rows)
    assert set(lines_per_image) == set(items) and max(lines_per_image.values()) == 1
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "scores.csv"), pd.read_csv(reference / "scores.csv"), check_exact=True
    )
