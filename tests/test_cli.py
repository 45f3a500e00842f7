"""The command line as users meet it: usage errors, run-time mistakes, --version, --quiet and output in pipes.

Every mistake ends with one `error:` line (and at most a usage hint), exit code 2 and no traceback. The usage
errors and --version run through the real command (`python -m ovi_bench`, and the installed `ovi-bench` script when
it is on PATH): they import neither torch nor the model libraries, so each costs well under a second. The
mistakes that need a spec or torch run through the same `main()` in this process, where those imports are already
paid for, and one of them again in a real process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from command_line import run_main
from tiny_runs import tiny_spec

import ovi_bench
from ovi_bench import cli

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "80"}


def run_command(*args: str, script: str | None = None) -> subprocess.CompletedProcess[str]:
    """`ovi-bench ARGS` in a new process, its output through pipes (as in CI); this checkout's code."""
    command = [script] if script else [sys.executable, "-m", "ovi_bench"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=ENV, timeout=120, check=False
    )


def assert_clean_error(code: int, output: str, *expected: str, max_lines: int = 2) -> None:
    """Exit 2, an `error:` first line that holds each expected text, at most a usage line after it."""
    assert code == 2, output
    assert "Traceback" not in output, output
    lines = output.strip().splitlines()
    assert lines and lines[0].startswith("error: "), output
    assert len(lines) <= max_lines, output
    for text in expected:
        assert text in lines[0], output


@pytest.fixture(autouse=True)
def keep_library_bars(monkeypatch: pytest.MonkeyPatch) -> None:
    """`-q` in this process would switch the libraries' bars off for the rest of the session: count it instead
    (the switch itself is tested on its own, below)."""
    monkeypatch.setattr(cli.run_commands, "silence_library_progress", lambda: None)


# -- usage errors, through the real command ---------------------------------------------------------------------

USAGE_ERRORS: dict[str, tuple[list[str], list[str]]] = {
    "mistyped command": (["chek"], ["No such command 'chek'", "Did you mean 'check'?"]),
    "mistyped subcommand": (["bank", "biuld"], ["No such command 'biuld'", "Did you mean 'build'?"]),
    "missing argument": (["run"], ["Missing argument"]),
    "unknown option": (["--bogus"], ["No such option: --bogus"]),
    "mistyped option": (["run", "spec.toml", "--plugin", "x"], ["--plugin", "--plugins"]),
    "missing option": (["check", "runs/x"], ["Missing option '--baseline'"]),
    "bad value": (["report", "runs/x", "--thumbnail-px", "many"], ["--thumbnail-px"]),
}


@pytest.mark.parametrize("case", sorted(USAGE_ERRORS))
def test_a_usage_error_is_one_error_line_and_exit_2(case: str) -> None:
    args, expected = USAGE_ERRORS[case]
    done = run_command(*args)
    assert_clean_error(done.returncode, done.stderr, *expected)
    assert done.stdout == ""
    usage = done.stderr.strip().splitlines()[1]
    assert usage.startswith("usage: ovi-bench") and "--help" in usage


def test_the_installed_script_reports_a_usage_error_the_same_way() -> None:
    script = shutil.which("ovi-bench")
    if script is None:
        pytest.skip("the ovi-bench script is not on PATH (package not installed)")
    done = run_command("chek", script=script)
    assert_clean_error(done.returncode, done.stderr, "Did you mean 'check'?")


def test_no_command_prints_the_help() -> None:
    done = run_command()
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr
    assert "Usage: ovi-bench" in done.stdout + done.stderr and "check" in done.stdout + done.stderr


def test_version_names_the_package_and_the_model_libraries() -> None:
    from importlib.metadata import version

    done = run_command("--version")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"ovi-bench {ovi_bench.__version__}"
    assert lines[1] == f"python {sys.version.split()[0]}"
    for library in ("torch", "diffusers", "transformers"):
        assert f"{library} {version(library)}" in lines


def test_a_long_message_stays_one_line_in_a_pipe() -> None:
    # rich wraps at 80 columns when the output is not a terminal; a CI log must keep each message whole.
    name = "x" * 150 + "-end"
    done = run_command(name)
    assert_clean_error(done.returncode, done.stderr, f"No such command '{name}'")


# -- usage errors whatever click typer raises them with ---------------------------------------------------------


def test_click_usage_errors_are_caught_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Older typer parses with the installed click and raises click's exceptions; code may raise them too.
    click = pytest.importorskip("click")

    def raise_click_error(*args: Any, **kwargs: Any) -> None:
        raise click.UsageError("No such command 'chek'.")

    monkeypatch.setattr(cli, "app", raise_click_error)
    code, _, err = run_main(monkeypatch, capsys, "chek")
    assert_clean_error(code, err, "No such command 'chek'.")


def test_ctrl_c_says_what_is_kept(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.application, "list_registry", interrupted)
    code, _, err = run_main(monkeypatch, capsys, "priors")
    assert code == 130 and err.startswith("interrupted:") and "Traceback" not in err


# -- run-time mistakes -------------------------------------------------------------------------------------------


def write_spec(path: Path, **overrides: Any) -> Path:
    path.write_text(tomli_w.dumps(tiny_spec(**overrides)))
    return path


SPEC_MISTAKES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "meta device": ({"device": "meta"}, ["device:", "meta device holds tensors with shapes but no values"]),
    "unsupported device type": ({"device": "xla"}, ["device:", "does not run on 'xla' devices"]),
    "huge image": (
        {"decoder": {"params": {"model": "tiny"}, "height": 100000, "width": 100000}},
        ["decoder.height:", "decoder.width:", "from 8 to 4096 pixels", "(got 100000)"],
    ),
    "image side not a multiple of 8": (
        {"decoder": {"params": {"model": "tiny"}, "height": 100, "width": 64}},
        ["decoder.height:", "multiple of 8, e.g. 96"],
    ),
}


@pytest.mark.parametrize("case", sorted(SPEC_MISTAKES))
def test_a_spec_mistake_is_a_clean_error_before_anything_is_written(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides, expected = SPEC_MISTAKES[case]
    spec = write_spec(tmp_path / "spec.toml", **overrides)
    code, _, err = run_main(monkeypatch, capsys, "run", str(spec), "--out", str(tmp_path / "run"), "-q")
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    assert not (tmp_path / "run").exists()


def test_the_device_override_is_checked_like_the_spec_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path / "spec.toml")
    out = tmp_path / "run"
    code, _, err = run_main(
        monkeypatch, capsys, "run", str(spec), "--out", str(out), "--device", "meta", "-q"
    )
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err, err
    assert "device:" in err and "meta device holds tensors" in err
    assert not out.exists()


def test_the_largest_allowed_image_is_accepted() -> None:
    from ovi_bench.spec import MAX_IMAGE_SIDE, parse_spec

    spec = parse_spec(tiny_spec(decoder={"params": {"model": "tiny"}, "height": MAX_IMAGE_SIDE, "width": 8}))
    assert (spec.decoder.height, spec.decoder.width) == (MAX_IMAGE_SIDE, 8)


def test_mps_without_an_apple_gpu_is_a_clean_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    if torch.backends.mps.is_available():
        pytest.skip("this machine has an Apple-silicon GPU")
    spec = write_spec(tmp_path / "spec.toml", device="mps")
    code, _, err = run_main(monkeypatch, capsys, "run", str(spec), "--out", str(tmp_path / "run"), "-q")
    assert_clean_error(code, err, "device 'mps'", "torch.backends.mps.is_available() is false", max_lines=1)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("device", "expected"),
    [("meta", "meta device holds tensors"), ("mps", "no usable Apple-silicon GPU"), ("gpu0", "not a device")],
)
def test_bank_build_refuses_a_device_it_cannot_use(
    device: str,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import torch
    from PIL import Image

    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has an Apple-silicon GPU")
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "a.png")
    out = tmp_path / "bank"
    code, _, err = run_main(
        monkeypatch,
        capsys,
        "bank",
        "build",
        str(images),
        "--encoder",
        "tiny",
        "--out",
        str(out),
        "--device",
        device,
    )
    assert_clean_error(code, err, f"device '{device}'", expected, max_lines=1)
    assert not out.exists()


def test_the_real_command_refuses_the_meta_device(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    done = run_command(
        "bank", "build", str(images), "--encoder", "tiny", "--out", str(tmp_path / "bank"), "--device", "meta"
    )
    assert_clean_error(done.returncode, done.stderr, "device 'meta'", max_lines=1)


@pytest.mark.gpu
def test_a_cuda_index_beyond_the_machine_is_a_clean_error() -> None:
    import torch

    from ovi_bench.components import resolve_device
    from ovi_bench.errors import OviBenchError

    count = torch.cuda.device_count()
    assert resolve_device(f"cuda:{count - 1}").index == count - 1
    with pytest.raises(OviBenchError, match=f"has {count} CUDA device"):
        resolve_device(f"cuda:{count}")


# -- quiet and pipe-friendly output ------------------------------------------------------------------------------


def test_the_consoles_keep_long_lines_whole_in_a_pipe(capsys: pytest.CaptureFixture[str]) -> None:
    # capsys stands in for a pipe: not a terminal, so rich would wrap at 80 columns.
    message = " ".join(f"/runs/some-long-folder-name-{index}" for index in range(12))
    assert len(message) > 300
    cli.console.print(message)
    cli.errors.print(f"error: {message}")
    captured = capsys.readouterr()
    assert captured.out == f"{message}\n"
    assert captured.err == f"error: {message}\n"


def test_quiet_silences_the_model_libraries_bars(capfd: pytest.CaptureFixture[str]) -> None:
    import diffusers.utils.logging as diffusers_logging
    import huggingface_hub.utils as hub_utils
    import transformers.utils.logging as transformers_logging

    from ovi_bench.progress import silence_library_progress

    bars = {
        "transformers": lambda: transformers_logging.tqdm(range(3), desc="Loading weights"),
        "diffusers": lambda: diffusers_logging.tqdm(range(3), desc="Loading pipeline components"),
        "huggingface_hub": lambda: hub_utils.tqdm(range(3), desc="Fetching 3 files"),
    }
    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS"):
        pytest.skip("HF_HUB_DISABLE_PROGRESS_BARS is set: the bars are off whatever ovi-bench does")
    try:
        hub_utils.enable_progress_bars()  # as in a fresh process, whatever ran before in this session
        transformers_logging.enable_progress_bar()
        diffusers_logging.enable_progress_bar()
        for bar in bars.values():
            list(bar())
        shown = capfd.readouterr().err
        assert all(text in shown for text in ("Loading weights", "Loading pipeline", "Fetching 3 files")), (
            shown
        )
        silence_library_progress()
        for bar in bars.values():
            list(bar())
        assert capfd.readouterr().err == ""
    finally:
        hub_utils.enable_progress_bars()
        transformers_logging.enable_progress_bar()
        diffusers_logging.enable_progress_bar()


@pytest.mark.parametrize("command", ["run", "bank build"])
def test_quiet_commands_silence_the_libraries_before_they_load(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Called first thing, so that it precedes the libraries' imports; the inputs here are missing, so the
    # command stops with an error right after.
    calls: list[str] = []
    monkeypatch.setattr(cli.run_commands, "silence_library_progress", lambda: calls.append("silenced"))
    args = [*command.split(), str(tmp_path / "missing")]
    if command == "bank build":
        args += ["--encoder", "tiny", "--out", str(tmp_path / "bank")]
    code, _, err = run_main(monkeypatch, capsys, *args, "-q")
    assert code == 2 and err.startswith("error: ") and calls == ["silenced"]
    calls.clear()
    run_main(monkeypatch, capsys, *args)
    assert calls == []
