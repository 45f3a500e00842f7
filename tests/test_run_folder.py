"""The run folder: refusals (foreign folder, a file, an uncreatable path, a second run), orphan temporaries, SIGTERM,
`verify`, a deleted embedding, and the tiny-model cache error. Paced stand-in components (tests/paced_components.py)
keep every run here to a fraction of a second."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import tomli_w
from paced_components import paced_spec, temporaries

from ovi_bench import cli, run_folder
from ovi_bench.errors import OviBenchError
from ovi_bench.provenance import write_results
from ovi_bench.run_folder import claim_run_folder, verify_run_folder
from ovi_bench.runner import Runner
from ovi_bench.spec import parse_spec
from ovi_bench.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def _run(out: Path, **overrides) -> None:
    result = Runner(parse_spec(paced_spec(**overrides)), out, show_progress=False).run()
    write_results(result)


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`ovi-bench ARGV` through the console script's entry point, in this process: exit code and stdout + stderr."""
    old = sys.argv
    sys.argv = ["ovi-bench", *argv]
    code = 0
    try:
        cli.main()
    except SystemExit as exited:
        code = int(exited.code or 0)
    finally:
        sys.argv = old
    captured = capsys.readouterr()
    # Whitespace normalised: the console wraps long lines at its width.
    return code, " ".join((captured.out + captured.err).split())


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(tomli_w.dumps(paced_spec(prompts=1, seeds=1)))
    return path


@pytest.fixture(autouse=True)
def short_lock_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A held lock is refused after 0.2 s here, not after the seconds a real run waits for a dying holder."""
    monkeypatch.setattr(run_folder, "LOCK_WAIT_SECONDS", 0.2)


def _plugins() -> list[str]:
    return ["--plugins", "paced_components"]


def test_a_foreign_non_empty_folder_is_refused(
    tmp_path: Path, spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("precious")
    code, err = _cli(["run", str(spec_file), "--out", str(home), "-q", *_plugins()], capsys)
    assert code == 2 and err.startswith("error:") and "not an ovi-bench run folder" in err, err
    assert "Traceback" not in err and sorted(path.name for path in home.iterdir()) == ["thesis.tex"]
    # An empty folder and an existing run folder are fine.
    empty = tmp_path / "empty"
    empty.mkdir()
    _run(empty, prompts=1, seeds=1)
    _run(empty, prompts=1, seeds=1)
    assert (empty / "results.json").is_file()


@pytest.mark.parametrize("case", ["file", "proc", "under-a-file"])
def test_an_unusable_out_is_one_error_line(
    tmp_path: Path, spec_file: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    existing = tmp_path / "results.csv"
    existing.write_text("a,b\n")
    out = {"file": existing, "proc": Path("/proc/ovi-bench-run"), "under-a-file": existing / "run"}[case]
    code, err = _cli(["run", str(spec_file), "--out", str(out), "-q", *_plugins()], capsys)
    assert code == 2, err
    assert (
        err.startswith("error:")
        and "Traceback" not in err
        and str(out).replace("/", "") in err.replace("/", "").replace(" ", "")
    ), err
    assert existing.read_text() == "a,b\n"


def test_a_second_run_into_a_held_folder_is_refused_naming_the_holder(
    tmp_path: Path, spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    with claim_run_folder(out):  # this process stands for a run in progress
        code, err = _cli(["run", str(spec_file), "--out", str(out), "-q", *_plugins()], capsys)
        assert code == 2 and "in use by another ovi-bench run" in err, err
        assert f"pid {os.getpid()}" in err and "Traceback" not in err
        with pytest.raises(OviBenchError, match="in use"):
            verify_run_folder(out)
    assert not (out / "run.json").exists()
    code, err = _cli(["run", str(spec_file), "--out", str(out), "-q", *_plugins()], capsys)
    assert code == 0, err


def test_a_single_process_run_is_refused_while_a_shard_of_a_launch_runs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    with claim_run_folder(out, "rank1", alone=False), pytest.raises(OviBenchError, match="rank1"):
        _run(out, prompts=1, seeds=1)
    # Shards of one launch hold their own locks side by side.
    with claim_run_folder(out, "rank1", alone=False), claim_run_folder(out, "", alone=False):
        pass


def test_orphan_temporaries_are_removed_on_start_and_each_shard_removes_its_own(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _run(out, prompts=1, seeds=1)
    image = next((out / "images").rglob("*.png"))
    orphans = [
        image.with_name(f".{image.name}.main.abc123.tmp"),
        image.with_name(f".{image.name}.rank1.def456.tmp"),
        out / ".results.json.k2j3h4.tmp",  # an atomic result write cut short
        out / "embeddings" / "ab" / ".x.safetensors.main.zz.tmp",
    ]
    for orphan in orphans:
        orphan.parent.mkdir(parents=True, exist_ok=True)
        orphan.write_bytes(b"half")
    with claim_run_folder(out, "rank1", alone=False):  # a shard removes its own temporaries only
        pass
    assert sorted(temporaries(out)) == sorted(orphans[:1] + orphans[2:])
    _run(out, prompts=1, seeds=1)  # alone in the folder: every orphan goes
    assert temporaries(out) == []


def test_sigterm_commits_the_finished_group_then_exits_143(tmp_path: Path) -> None:
    """SIGTERM in the middle of decoding: every image that was finished is kept (committed, listed), no temporary
    file is left, the exit code is 143, and the rerun makes only what was missing."""
    spec = tmp_path / "spec.toml"
    # 32 images at 30 ms; groups never due by time, so without the SIGTERM path the finished images stay pending.
    spec.write_text(tomli_w.dumps(paced_spec(prompts=5, seeds=2, seconds=0.03)))
    out = tmp_path / "run"
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]),
        "OMP_NUM_THREADS": "1",
    }
    code = (
        "import ovi_bench.store as s; s.COMMIT_SECONDS = s.COMMIT_COST_RATIO = float('inf'); "
        "s.COMMIT_ITEMS = 10**9; from ovi_bench.cli import main; main()"
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            "run",
            str(spec),
            "--out",
            str(out),
            "-q",
            "--plugins",
            "paced_components",
        ],
        env=environment,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while sum(1 for path in temporaries(out) if path.name.startswith(".") and ".png." in path.name) < 5:
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it was signalled"
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "terminated" in stderr and "Traceback" not in stderr
    assert temporaries(out) == []
    kept = RunStore(out).manifest
    assert len(kept) >= 5 and all(RunStore(out).has_image(key) for key in kept)
    result = Runner(parse_spec(paced_spec(prompts=5, seeds=2, seconds=0.03)), out, show_progress=False).run()
    assert result is not None and result.counts.images_generated == len(result.items) - len(kept)


def test_verify_finds_a_same_size_same_mtime_png_and_a_corrupt_embedding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    _run(out, prompts=1, seeds=2)
    before = pd.read_csv(out / "scores.csv")
    store = RunStore(out)
    record = next(iter(store.manifest.values()))
    image = out / record.path
    status = image.stat()
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: the same size, and the mtime put back
    image.write_bytes(bytes(data))
    os.utime(image, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert RunStore(out).has_image(record.image_key), "size and mtime alone cannot see this damage"
    embedding = next((out / "embeddings").rglob("*.safetensors"))
    data = bytearray(embedding.read_bytes())
    data[-3] ^= 0x01  # a tensor byte: the file still parses
    embedding.write_bytes(bytes(data))

    code, printed = _cli(["verify", str(out)], capsys)
    assert code == 1, printed
    assert "1 damaged image(s), 1 damaged embedding(s)" in printed and record.path in printed
    assert "content hash differs" in printed
    code, printed = _cli(["verify", str(out)], capsys)
    assert code == 0 and "0 damaged image(s), 0 damaged embedding(s)" in printed, printed

    result = Runner(parse_spec(paced_spec(prompts=1, seeds=2)), out, show_progress=False).run()
    assert result is not None and result.counts.images_generated == 1
    assert result.counts.embeddings_computed >= 1
    write_results(result)
    pd.testing.assert_frame_equal(pd.read_csv(out / "scores.csv"), before)


def test_run_verify_regenerates_what_differs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _run(out, prompts=1, seeds=1)
    record = next(iter(RunStore(out).manifest.values()))
    image = out / record.path
    status = image.stat()
    image.write_bytes(b"\0" * status.st_size)
    os.utime(image, ns=(status.st_atime_ns, status.st_mtime_ns))
    plain = Runner(parse_spec(paced_spec(prompts=1, seeds=1)), out, show_progress=False).run()
    assert plain is not None and plain.counts.images_generated == 0  # what a rerun without --verify sees
    verified = Runner(parse_spec(paced_spec(prompts=1, seeds=1)), out, show_progress=False, verify=True).run()
    assert verified is not None and verified.counts.images_generated == 1
    assert RunStore(out).verify().damaged == 0


def test_a_deleted_embedding_is_computed_again_with_its_facts(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _run(out, prompts=1, seeds=2)
    before = pd.read_csv(out / "embeddings.csv")
    assert before["prior_norm"].notna().all()
    for path in list((out / "embeddings").rglob("*.safetensors"))[:2]:
        path.unlink()
    result = Runner(parse_spec(paced_spec(prompts=1, seeds=2)), out, show_progress=False).run()
    assert result is not None and result.counts.embeddings_computed == 2
    assert result.counts.images_generated == 0
    write_results(result)
    pd.testing.assert_frame_equal(pd.read_csv(out / "embeddings.csv"), before)


def test_a_corrupt_tiny_model_cache_names_the_folder_and_the_fix(ovi_bench_cache: Path) -> None:
    from transformers import CLIPTextModelWithProjection

    from ovi_bench.errors import ModelLoadError
    from ovi_bench.models.hub import load_pretrained

    # A folder of its own (a corrupt copy of a real tiny folder would break the session's other tests).
    folder = ovi_bench_cache / "tiny" / "corrupt-for-test-v1"
    (folder / "text_encoder").mkdir(parents=True)
    (folder / "text_encoder" / "config.json").write_text("{ cut short")
    with pytest.raises(ModelLoadError) as raised:
        load_pretrained(CLIPTextModelWithProjection, str(folder), subfolder="text_encoder")
    message = str(raised.value)
    assert f"tiny-model cache folder {folder}" in message and "delete it" in message and "rebuilt" in message
    assert "hf download" not in message
