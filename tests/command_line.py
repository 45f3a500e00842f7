"""`ovi-bench ARGS` through `cli.main` in the test process, for tests of the command's messages and exit codes."""

from __future__ import annotations

import sys

import pytest


def run_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """`ovi-bench ARGS` in this process: (exit code, stdout, stderr)."""
    from ovi_bench.cli import main

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["ovi-bench", *args])
    code = 0
    try:
        main()
    except SystemExit as exited:
        # sys.exit(None) is success; sys.exit("message") a failure, as Python itself reports them.
        code = 0 if exited.code is None else exited.code if isinstance(exited.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err
