"""Sharding a run over processes: a stable partition, per-process files, markers, and torchrun end to end."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import tomli_w
from tiny_runs import tiny_spec

from ovi_bench.caches import RowCache
from ovi_bench.provenance import write_results
from ovi_bench.results.regression import check_run
from ovi_bench.runner import Runner
from ovi_bench.sharding import Shard, shard_index
from ovi_bench.spec import load_spec
from ovi_bench.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = shutil.which("torchrun")


def test_every_item_belongs_to_exactly_one_shard_for_any_count() -> None:
    items = [
        (prior, f"color-val-{index:04d}", seed)
        for prior in ("ovi", "eclipse")
        for index in range(150)
        for seed in (42, 43)
    ]
    for count in (1, 2, 3, 8):
        owners = [[Shard(index, count).owns(*item) for index in range(count)] for item in items]
        assert all(sum(owned) == 1 for owned in owners)
        sizes = Counter(shard_index(*item, count) for item in items)
        # A hash, not round robin: balanced like a fair die (within 4 standard deviations), whatever the plan's order.
        expected = len(items) / count
        assert all(abs(size - expected) < 4 * expected**0.5 + 1 for size in sizes.values()), sizes


def test_the_shard_of_an_item_never_changes() -> None:
    # Golden: a changed hash would silently re-shard every interrupted run, so shards would redo each other's work.
    assert shard_index("ovi", "color-val-0007", 42, 1000) == 575
    text = json.dumps(["ovi", "color-val-0007", 42], separators=(",", ":")).encode()
    assert shard_index("ovi", "color-val-0007", 42, 7) == int(hashlib.sha256(text).hexdigest()[:16], 16) % 7


def test_each_process_appends_to_its_own_files_and_readers_see_all(tmp_path: Path) -> None:
    metadata = {"prior": "p", "prompt_id": "color-x-0000", "category": "color", "prompt": "a cat", "seed": 1}
    RunStore(tmp_path).put_images([("k0", b"png zero", metadata)])
    RunStore(tmp_path, "rank1").put_images([("k1", b"png one", metadata)])
    assert {path.name for path in tmp_path.glob("manifest*.jsonl")} == {
        "manifest.jsonl",
        "manifest.rank1.jsonl",
    }
    assert set(RunStore(tmp_path).manifest) == {"k0", "k1"}
    scores = tmp_path / "scores" / "abc.jsonl"
    RowCache(scores).add([{"key": "a", "score": 0.1}])
    RowCache(scores, "rank3").add([{"key": "b", "score": 0.2}])
    assert set(RowCache(scores).rows) == {"a", "b"}
    assert (tmp_path / "scores" / "abc.rank3.jsonl").is_file()


def test_markers_of_another_launch_do_not_count(tmp_path: Path) -> None:
    first, second = Shard(1, 2, launch="launch-a"), Shard(0, 2, launch="launch-b")
    first.mark_done(tmp_path, "f" * 64, items=5)
    # Shard 1 finished in an earlier launch; this launch's shard 1 has not said so yet.
    assert second.unfinished(tmp_path, "f" * 64) == [0, 1]
    Shard(1, 2, launch="launch-b").mark_done(tmp_path, "f" * 64, items=5)
    messages: list[str] = []
    assert second.wait_for_others(
        tmp_path, "f" * 64, say=messages.append, poll_seconds=0.01, timeout_seconds=0.05
    ) == [0]
    second.mark_done(tmp_path, "f" * 64, items=3)
    assert second.wait_for_others(tmp_path, "f" * 64, say=messages.append, poll_seconds=0.01) == []
    assert messages and "waiting for shard(s) 0 of 2" in messages[0]


def _torchrun(spec: Path, out: Path) -> list[str]:
    assert TORCHRUN is not None
    return [
        TORCHRUN,
        "--nproc_per_node",
        "2",
        "-m",
        "ovi_bench",
        "run",
        str(spec),
        "--out",
        str(out),
        "--quiet",
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants: torchrun starts each worker in a session of its own, so killing
    torchrun's process group would leave the workers running."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    for member in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def _manifest_keys(folder: Path) -> Counter[str]:
    return Counter(
        json.loads(line)["image_key"]
        for path in folder.glob("manifest*.jsonl")
        for line in path.read_text().splitlines()
        if line.strip()
    )


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun (installed with torch) is not on PATH")
def test_a_killed_two_process_run_resumes_in_one_process_with_exactly_the_same_results(
    tmp_path: Path,
) -> None:
    # Batch size 1 everywhere: no batch differs between the launches, so the results must be identical, bit for bit.
    spec = tiny_spec(
        prompts={"source": "builtin", "categories": ["color", "shape", "spatial"], "limit": 2},
        decoder={"params": {"model": "tiny"}, "steps": 6, "height": 32, "width": 32},
        prior_batch_size=1,
        decoder_batch_size=1,
        metric_batch_size=1,
    )
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(tomli_w.dumps(spec))
    out = tmp_path / "sharded"
    launch = subprocess.Popen(_torchrun(spec_path, out), env=_env())
    deadline = time.monotonic() + 240
    # Kill the whole launch once both processes have stored images of their own.
    while time.monotonic() < deadline and launch.poll() is None:
        files = list(out.glob("manifest*.jsonl"))
        if len(files) == 2 and all(len(path.read_text().splitlines()) >= 2 for path in files):
            break
        time.sleep(0.05)
    assert launch.poll() is None, "the launch finished before it could be killed"
    _kill_tree(launch.pid)
    launch.wait()
    done = _manifest_keys(out)
    total = 2 * 3 * 2 * 2  # priors × categories × prompts × seeds
    assert 4 <= len(done) < total

    resumed = Runner(load_spec(spec_path), out, show_progress=False).run()
    assert resumed is not None
    write_results(resumed)
    assert resumed.counts.images_generated == total - len(done)
    assert max(_manifest_keys(out).values()) == 1  # nothing made twice
    reference = tmp_path / "single"
    write_results(Runner(load_spec(spec_path), reference, show_progress=False).run())
    columns = ["prior", "category", "metric", "prompt_id", "seed", "score", "reason", "image"]
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "scores.csv")[columns], pd.read_csv(reference / "scores.csv")[columns]
    )


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun (installed with torch) is not on PATH")
def test_the_smoke_run_in_two_processes_gives_the_single_process_results(
    smoke_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "smoke-2"
    done = subprocess.run(
        _torchrun(ROOT / "configs" / "smoke.toml", out),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    keys = _manifest_keys(out)
    assert len(keys) == 240 and max(keys.values()) == 1
    assert {path.name for path in out.glob("manifest*.jsonl")} == {"manifest.jsonl", "manifest.rank1.jsonl"}
    # The decoder too: the same prior, prompt and seed has one image per decoder of its space.
    columns = ["prior", "decoder", "category", "metric", "prompt_id", "seed"]
    sharded = pd.read_csv(out / "scores.csv").sort_values(columns).reset_index(drop=True)
    single = pd.read_csv(smoke_run / "scores.csv").sort_values(columns).reset_index(drop=True)
    pd.testing.assert_frame_equal(sharded[[*columns, "image"]], single[[*columns, "image"]])
    # Each process batches other images together, and batch composition is a float-rounding matter (see
    # test_runner's batch test), which 300 OVI steps amplify; now and then that tips one image's detector score
    # (2.1e-2 seen once, 6.6e-3 typical). So: nearly every score agrees closely, and the project's own regression
    # check passes; with batch size 1 they are identical (the test above).
    differences = (sharded.score - single.score).abs()
    assert differences.median() < 1e-3
    assert (differences < 1e-2).mean() >= 0.99, differences.describe()
    report = check_run(out, ROOT / "tests" / "baselines" / "smoke.json")
    assert report.exit_code == 0, report.summary()
    assert (
        json.loads((out / "results.json").read_text())["spec_fingerprint"]
        == load_spec(ROOT / "configs" / "smoke.toml").fingerprint()
    )
