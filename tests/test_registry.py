"""The registry: built-ins, "did you mean", and plugins from a real installed distribution's entry points."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ovi_bench.errors import UnknownNameError
from ovi_bench.registry import DECODERS, METRICS, PRIORS, Registry


def test_builtins_are_registered() -> None:
    assert {"text-embedding", "kandinsky-2.2"} <= set(PRIORS.names())
    assert "kandinsky-2.2-decoder" in DECODERS.names()
    assert "clip" in METRICS.names()


def test_unknown_name_lists_known_names_and_nearest_match() -> None:
    with pytest.raises(UnknownNameError) as caught:
        PRIORS.get("text-embeding")
    message = str(caught.value)
    assert "Did you mean 'text-embedding'?" in message
    assert "kandinsky-2.2" in message


def test_unknown_name_without_near_match_has_no_guess() -> None:
    with pytest.raises(UnknownNameError) as caught:
        METRICS.get("zzzzzz")
    assert "Did you mean" not in str(caught.value)


def test_registering_two_objects_under_one_name_fails() -> None:
    registry: Registry = Registry("widget", "ovi_bench.test_widgets")
    registry.register("a")(int)
    with pytest.raises(Exception, match="registered twice"):
        registry.register("a")(float)


def _install_plugin_distribution(site: Path) -> None:
    """Lay out what `pip install` leaves in site-packages: a module plus a dist-info with entry points."""
    (site / "acme_prior.py").write_text(
        textwrap.dedent(
            '''
            import torch
            from ovi_bench.priors.base import Prior, PriorOutput

            class AcmePrior(Prior):
                """A third-party prior: the zero embedding."""

                def embed(self, texts, generators):
                    zeros = torch.zeros(len(texts), 4)
                    return PriorOutput(zeros, zeros)
            '''
        )
    )
    dist_info = site / "acme_prior-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-prior\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[ovi_bench.priors]\nacme = acme_prior:AcmePrior\n")
    (dist_info / "RECORD").write_text("")


def test_entry_point_plugin_is_found_and_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_plugin_distribution(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry: Registry = Registry("prior", "ovi_bench.priors")
    assert "acme" in registry.names()
    plugin = registry.get("acme")
    assert plugin.__name__ == "AcmePrior"
    assert plugin.__module__ == "acme_prior"


def test_cli_lists_plugin_priors(tmp_path: Path) -> None:
    _install_plugin_distribution(tmp_path)
    root = Path(__file__).resolve().parents[1]
    listing = subprocess.run(
        [sys.executable, "-m", "ovi_bench", "priors"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": f"{tmp_path}:{root}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        check=True,
    )
    first_column = [line.split("\t")[0] for line in listing.stdout.splitlines()]
    assert "acme" in first_column
    assert {"text-embedding", "kandinsky-2.2"} <= set(first_column)


def test_broken_plugin_gives_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist_info = tmp_path / "broken-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[ovi_bench.metrics]\nbroken = no_such_module:Thing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry: Registry = Registry("metric", "ovi_bench.metrics")
    with pytest.raises(Exception, match="no_such_module:Thing"):
        registry.get("broken")
