"""The registry: lazy built-ins, "did you mean", base-class checks, and plugins from a real installed distribution's
entry points."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ovi_bench.errors import OviBenchError, UnknownNameError
from ovi_bench.registry import DECODERS, METRICS, PRIORS, PROMPTS, REGISTRIES, Registry

ROOT = Path(__file__).resolve().parents[1]


def test_builtins_are_registered() -> None:
    assert {"text-embedding", "kandinsky-2.2"} <= set(PRIORS.names())
    assert "kandinsky-2.2-decoder" in DECODERS.names()
    assert "clip" in METRICS.names()
    assert {"t2i-compbench", "builtin"} <= set(PROMPTS.names())


@pytest.mark.parametrize("registry", REGISTRIES, ids=lambda registry: registry.kind)
def test_every_builtin_reference_resolves_to_a_subclass_of_the_base(registry: Registry) -> None:
    from ovi_bench.registry import _import_object

    base = _import_object(registry._base)
    for name, reference in registry._builtins.items():
        component = registry.get(name)
        assert f"{component.__module__}:{component.__qualname__}" == reference
        assert issubclass(component, base) and component is not base


_PRINT_MODULES = (
    "print('MODULES', *[name for name in sys.modules if name.startswith('ovi_bench')], file=sys.stderr)"
)
"""A line of Python that prints the ovi_bench modules imported so far, as one line of stderr."""


def _run_python(script: str, *import_paths: Path) -> tuple[str, list[set[str]]]:
    """Run `script` in a fresh interpreter that finds ovi_bench (and `import_paths`): its stdout, and the module sets
    its `_PRINT_MODULES` lines printed, in order."""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={
            "PYTHONPATH": ":".join(str(path) for path in (*import_paths, ROOT)),
            "PATH": "/usr/bin:/bin",
            "HOME": str(import_paths[0] if import_paths else ROOT),
            "OMP_NUM_THREADS": "1",
        },
        check=True,
    )
    snapshots = [set(line.split()[1:]) for line in result.stderr.splitlines() if line.startswith("MODULES")]
    return result.stdout, snapshots


def test_names_and_one_lookup_import_only_what_they_need() -> None:
    _, (after_names, after_lookup) = _run_python(
        "import sys\nfrom ovi_bench.registry import REGISTRIES, METRICS\n"
        "for registry in REGISTRIES:\n    registry.names()\n"
        f"{_PRINT_MODULES}\nMETRICS.get('3-in-1')\n{_PRINT_MODULES}"
    )
    assert not [name for name in after_names if name.startswith(("ovi_bench.metrics", "ovi_bench.priors"))]
    assert "ovi_bench.metrics.three_in_one" in after_lookup
    other_components = {
        "ovi_bench.metrics.vqascore",
        "ovi_bench.metrics.clip",
        "ovi_bench.metrics.fid",
        "ovi_bench.metrics.spatial",
        "ovi_bench.priors.base",
        "ovi_bench.decoders.base",
    }
    assert not after_lookup & other_components


def test_registering_a_class_of_another_kind_names_it_and_the_base() -> None:
    from ovi_bench.metrics.clip import CLIPMetric

    with pytest.raises(OviBenchError) as raised:
        PRIORS.register("not-a-prior")(CLIPMetric)
    message = str(raised.value)
    assert "ovi_bench.metrics.clip.CLIPMetric" in message and "ovi_bench.priors.base.Prior" in message
    with pytest.raises(OviBenchError, match="not a class"):
        METRICS.register("not-a-class")(len)
    assert "not-a-prior" not in PRIORS.names() and "not-a-class" not in METRICS.names()


def test_a_plugin_cannot_take_a_builtin_name() -> None:
    from ovi_bench.priors.base import Prior

    class Impostor(Prior):
        """Not the text-embedding prior."""

    with pytest.raises(OviBenchError, match="registered twice"):
        PRIORS.register("text-embedding")(Impostor)
    assert PRIORS.get("text-embedding").__name__ == "TextEmbeddingPrior"


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
    registry: Registry = Registry("prior", "ovi_bench.priors", base="ovi_bench.priors.base:Prior")
    assert "acme" in registry.names()
    plugin = registry.get("acme")
    assert plugin.__name__ == "AcmePrior"
    assert plugin.__module__ == "acme_prior"


def test_cli_lists_plugin_priors(tmp_path: Path) -> None:
    _install_plugin_distribution(tmp_path)
    # `python -m ovi_bench priors`, then the modules it imported: the listing shows each prior's docstring, so it
    # imports the prior modules, but no metric or decoder.
    stdout, (modules,) = _run_python(
        "import runpy, sys\nsys.argv = ['ovi-bench', 'priors']\n"
        f"try:\n    runpy.run_module('ovi_bench', run_name='__main__')\nfinally:\n    {_PRINT_MODULES}",
        tmp_path,
    )
    first_column = [line.split("\t")[0] for line in stdout.splitlines()]
    assert "acme" in first_column
    assert {"text-embedding", "kandinsky-2.2"} <= set(first_column)
    assert "ovi_bench.priors.eclipse" in modules
    assert not [name for name in modules if name.startswith(("ovi_bench.metrics", "ovi_bench.decoders"))]


def test_broken_plugin_gives_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist_info = tmp_path / "broken-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[ovi_bench.metrics]\nbroken = no_such_module:Thing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry: Registry = Registry("metric", "ovi_bench.metrics")
    with pytest.raises(Exception, match="no_such_module:Thing"):
        registry.get("broken")


def test_entry_point_of_the_wrong_kind_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_plugin_distribution(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    # The same distribution's prior, offered as a metric.
    (tmp_path / "acme_prior-1.0.dist-info" / "entry_points.txt").write_text(
        "[ovi_bench.metrics]\nacme = acme_prior:AcmePrior\n"
    )
    registry: Registry = Registry("metric", "ovi_bench.metrics", base="ovi_bench.metrics.base:Metric")
    with pytest.raises(OviBenchError) as raised:
        registry.get("acme")
    message = str(raised.value)
    assert "acme_prior:AcmePrior" in message and "acme_prior.AcmePrior" in message
    assert "ovi_bench.metrics.base.Metric" in message
