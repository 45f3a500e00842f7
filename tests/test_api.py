"""`ovi_bench.evaluate`: the docs' example, overrides as in the CLI, Prior instances without registration."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import torch
from tiny_runs import tiny_spec

import ovi_bench
from ovi_bench.api import _InstancePrior, _resolve_spec
from ovi_bench.components import Params
from ovi_bench.errors import OviBenchError
from ovi_bench.priors.base import Prior, PriorOutput
from ovi_bench.registry import PRIORS
from ovi_bench.spec import parse_spec

PYTHON_API_DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


class ConstantPrior(Prior):
    """The same embedding for every text (a scaled basis vector)."""

    class Params(Params):
        width: int = 32
        scale: float = 1.0

    def embed(self, texts: Sequence[str], generators: Sequence[torch.Generator]) -> PriorOutput:
        image_embeds = torch.zeros(len(texts), self.params.width)
        image_embeds[:, 0] = self.params.scale
        return PriorOutput(image_embeds=image_embeds, negative_image_embeds=torch.zeros_like(image_embeds))


class OtherConstantPrior(ConstantPrior):
    """Another class with the same parameters: must not share ConstantPrior's cache."""


def _constant(scale: float = 1.0, dtype: torch.dtype = torch.float32) -> ConstantPrior:
    return ConstantPrior(ConstantPrior.Params(scale=scale), device=torch.device("cpu"), dtype=dtype)


def _one_image_spec(**fields: Any) -> dict[str, Any]:
    """One prompt of one category, one seed, text-embedding only: one image."""
    return tiny_spec(
        images_per_prompt=1,
        prompts={"source": "builtin", "categories": ["color"], "limit": 1},
        priors=[{"name": "text-embedding", "params": {"model": "tiny"}}],
        **fields,
    )


def _counts(run_dir: Path) -> dict[str, int]:
    return json.loads((run_dir / "results.json").read_text())["counts"]


def test_the_documented_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    section = PYTHON_API_DOC.read_text()
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None, "docs/python-api.md has no ```python example"
    monkeypatch.chdir(tmp_path)  # the example writes runs/notebook relative to the working directory
    namespace: dict[str, Any] = {"__name__": "documented_example"}
    exec(compile(code.group(1), "<docs/python-api.md: example>", "exec"), namespace)
    result = namespace["result"]
    assert isinstance(result, ovi_bench.Evaluation)
    assert (
        result.output_dir == Path("runs/notebook") and (tmp_path / "runs/notebook/leaderboard.csv").is_file()
    )
    assert list(result.leaderboard.prior.unique()) == ["text-embedding", "random"]
    assert set(result.leaderboard.category) == {"color", "non_spatial"}
    assert len(result.scores) == 2 * 2 * 2  # priors × categories × seeds, one prompt each (limit=1)
    assert list(result.summary.index) == ["text-embedding", "random"]
    assert "random" not in PRIORS.names()  # registered only while evaluate ran


def test_evaluate_takes_a_toml_path_and_the_cli_overrides(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(tomli_w.dumps(tiny_spec(images_per_prompt=1)))
    result = ovi_bench.evaluate(
        spec_path,
        priors=["text-embedding"],
        categories=["color"],
        limit=1,
        batch_size=2,
        device="cpu",
        output_dir=tmp_path / "run",
        progress=False,
    )
    assert result is not None
    expected = parse_spec(
        _one_image_spec(prior_batch_size=2, decoder_batch_size=2, metric_batch_size=2)
    ).fingerprint()
    assert result.fingerprint == expected
    assert json.loads((tmp_path / "run" / "run.json").read_text())["fingerprint"] == expected
    assert list(result.leaderboard.prior) == ["text-embedding"] and len(result.scores) == 1


def test_a_bad_override_raises_the_field_named_spec_error(tmp_path: Path) -> None:
    with pytest.raises(OviBenchError, match=r"prompts\.limit: Input should be greater than or equal to 1"):
        ovi_bench.evaluate(_one_image_spec(), limit=0, output_dir=tmp_path / "run", progress=False)
    with pytest.raises(OviBenchError, match=r"Did you mean 'text-embedding'\?"):
        ovi_bench.evaluate(_one_image_spec(), priors=["text-embeding"], output_dir=tmp_path / "run")


def test_an_instance_is_cached_by_class_version_and_params(tmp_path: Path) -> None:
    out = tmp_path / "run"
    prior = _constant()
    ovi_bench.evaluate(_one_image_spec(), priors=[("constant", prior)], output_dir=out, progress=False)
    assert _counts(out)["embeddings_computed"] == 1
    # The same class, version and params: the stored embedding is reused.
    ovi_bench.evaluate(_one_image_spec(), priors=[("constant", _constant())], output_dir=out, progress=False)
    assert _counts(out)["embeddings_computed"] == 0
    # A new version (weights changed in the session, say): computed again.
    prior.version = "2"
    ovi_bench.evaluate(_one_image_spec(), priors=[("constant", prior)], output_dir=out, progress=False)
    assert _counts(out)["embeddings_computed"] == 1
    assert "constant" not in PRIORS.names()


def test_the_instance_fingerprint_holds_its_class() -> None:
    params = ConstantPrior.Params()
    other = OtherConstantPrior(params, device=torch.device("cpu"), dtype=torch.float32)
    same_class = _InstancePrior(_constant()).fingerprint("constant", params, "float32")
    assert same_class == _InstancePrior(_constant()).fingerprint("constant", params, "float32")
    assert same_class != _InstancePrior(other).fingerprint("constant", params, "float32")
    assert same_class != ConstantPrior.fingerprint("constant", params, "float32")
    other_params = ConstantPrior.Params(scale=2.0)
    assert same_class != _InstancePrior(_constant()).fingerprint("constant", other_params, "float32")
    assert same_class != _InstancePrior(_constant()).fingerprint("constant", params, "bfloat16")


def test_instances_need_a_free_name_and_the_run_dtype(tmp_path: Path) -> None:
    spec = _one_image_spec()
    with pytest.raises(OviBenchError, match="has no name"):
        ovi_bench.evaluate(spec, priors=[_constant()], output_dir=tmp_path / "a")
    with pytest.raises(OviBenchError, match="'text-embedding' is already registered"):
        ovi_bench.evaluate(spec, priors=[("text-embedding", _constant())], output_dir=tmp_path / "b")
    with pytest.raises(OviBenchError, match="built with dtype bfloat16, but the run's dtype is float32"):
        ovi_bench.evaluate(
            spec, priors=[("half", _constant(dtype=torch.bfloat16))], output_dir=tmp_path / "c"
        )
    assert "half" not in PRIORS.names()  # unregistered after a failure too
    named = _constant()
    named.name = "named"  # type: ignore[attr-defined]
    with PRIORS.registered_while("named", _InstancePrior(named)):
        resolved = _resolve_spec(spec, ["text-embedding", named], {"named": named})
    assert [prior.display_name for prior in resolved.priors] == ["text-embedding", "named"]


def test_a_dict_spec_without_priors_takes_registered_names() -> None:
    protocol = {key: value for key, value in _one_image_spec().items() if key != "priors"}
    resolved = _resolve_spec(protocol, ["text-embedding", {"name": "ovi", "label": "ovi-tiny"}], {})
    assert [prior.display_name for prior in resolved.priors] == ["text-embedding", "ovi-tiny"]
    assert (
        resolved.priors[0].params
        == parse_spec(tiny_spec(priors=[{"name": "text-embedding"}])).priors[0].params
    )  # the registered defaults


def test_progress_false_is_silent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    ovi_bench.evaluate(_one_image_spec(), output_dir=out, progress=False)
    assert capsys.readouterr().err == ""
    ovi_bench.evaluate(_one_image_spec(), output_dir=out)
    assert "generated 0 image(s)" in capsys.readouterr().err


def test_import_ovi_bench_stays_light() -> None:
    import subprocess
    import sys

    code = "import sys, ovi_bench; print('torch' in sys.modules, 'ovi_bench.api' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
