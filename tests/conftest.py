"""Shared test setup: a private ovi-bench cache per test session, no network, one CPU thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def ovi_bench_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point OVI_BENCH_CACHE at a fresh folder, so tiny models are built, saved and loaded anew in every session.

    HF_HUB_OFFLINE=1 too: a test that reaches for the hub fails at once instead of waiting on the network.
    """
    cache = tmp_path_factory.mktemp("ovi-bench-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OVI_BENCH_CACHE", str(cache))
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield cache


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from a second thread, and while another process keeps one of the 2 cores busy,
    torch's spin-waiting threads made the tiny-model tests 5x slower (measured: 37 s against 7.6 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def smoke_run(
    tmp_path_factory: pytest.TempPathFactory, ovi_bench_cache: Path, one_torch_thread: None
) -> Path:
    """The README's main job, `configs/smoke.toml`, run once per session (about a minute); its folder, read-only.

    The report, compare, baseline and check tests all read this one run, as users do after `ovi-bench run`.
    """
    from ovi_bench.provenance import write_results
    from ovi_bench.runner import Runner
    from ovi_bench.spec import load_spec

    out = tmp_path_factory.mktemp("smoke-run")
    spec = load_spec(Path(__file__).resolve().parents[1] / "configs" / "smoke.toml")
    write_results(Runner(spec, out, show_progress=False).run())
    return out
