"""`ovi-bench run --limit/--priors/--categories/--device/--dtype/--batch-size`: spec overrides that enter the
fingerprint exactly like the spec fields they replace, validated like a spec file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from tiny_runs import tiny_spec
from typer.testing import CliRunner

from ovi_bench.cli import app
from ovi_bench.errors import SpecError
from ovi_bench.overrides import SpecOverrides, apply_overrides
from ovi_bench.spec import parse_spec


def _spec_with(**fields: Any) -> dict[str, Any]:
    """The tiny spec with fields set as a spec file would set them (`prompts` merged, not replaced)."""
    data = tiny_spec()
    prompts = fields.pop("prompts", {})
    return data | fields | {"prompts": data["prompts"] | prompts}


@pytest.mark.parametrize(
    ("overrides", "spec_fields"),
    [
        ({"limit": 2}, {"prompts": {"limit": 2}}),
        ({"categories": ["spatial"]}, {"prompts": {"categories": ["spatial"]}}),
        ({"device": "auto"}, {"device": "auto"}),
        ({"dtype": "bfloat16"}, {"dtype": "bfloat16"}),
        (
            {"batch_size": 3},
            {"prior_batch_size": 3, "decoder_batch_size": 3, "metric_batch_size": 3},
        ),
        ({"priors": ["kandinsky-2.2"]}, {"priors": [tiny_spec()["priors"][1]]}),
    ],
)
def test_an_override_gives_the_fingerprint_of_the_spec_field_it_replaces(
    overrides: dict[str, Any], spec_fields: dict[str, Any]
) -> None:
    original = parse_spec(tiny_spec())
    overridden = apply_overrides(original, **overrides)
    assert overridden.fingerprint() == parse_spec(_spec_with(**spec_fields)).fingerprint()
    # Every one of these fields is part of the fingerprint today (the batch sizes too), so each override changes it.
    assert overridden.fingerprint() != original.fingerprint()


def test_no_override_leaves_the_spec_unchanged() -> None:
    spec = parse_spec(tiny_spec())
    assert SpecOverrides().apply(spec) is spec
    assert SpecOverrides().describe(spec) == []


def test_priors_select_by_label_or_name_in_the_spec_order() -> None:
    spec = parse_spec(
        tiny_spec(
            priors=[
                {"name": "text-embedding", "params": {"model": "tiny"}},
                {"name": "kandinsky-2.2", "label": "k-3", "params": {"model": "tiny", "steps": 3}},
                {"name": "kandinsky-2.2", "label": "k-5", "params": {"model": "tiny", "steps": 5}},
            ]
        )
    )
    assert [p.display_name for p in apply_overrides(spec, priors=["k-5", "text-embedding"]).priors] == [
        "text-embedding",
        "k-5",
    ]
    # A registered name keeps every table of that prior.
    assert [p.display_name for p in apply_overrides(spec, priors=["kandinsky-2.2"]).priors] == ["k-3", "k-5"]


def test_an_unknown_prior_names_the_spec_priors_and_the_nearest_match() -> None:
    with pytest.raises(SpecError, match=r"no prior 'kandinsky-22'\. Did you mean 'kandinsky-2\.2'\?"):
        apply_overrides(parse_spec(tiny_spec()), priors=["kandinsky-22"])


@pytest.mark.parametrize(
    ("overrides", "field_error"),
    [
        ({"limit": 0}, "prompts.limit: Input should be greater than or equal to 1"),
        ({"dtype": "float64"}, "dtype: Input should be 'float32', 'float16' or 'bfloat16'"),
        ({"device": "gpu0"}, "device: 'gpu0' is not a device"),
        ({"categories": ["no space"]}, "prompts.categories[0]: category 'no space' is not allowed"),
        ({"batch_size": 0}, "prior_batch_size: Input should be greater than or equal to 1"),
        (
            {"categories": []},
            None,
        ),  # an empty list means "none", which no prompt source accepts: checked later
    ],
)
def test_a_bad_override_gets_the_field_named_error_of_the_spec(
    overrides: dict[str, Any], field_error: str | None
) -> None:
    spec = parse_spec(tiny_spec())
    if field_error is None:
        assert apply_overrides(spec, **overrides).prompts.categories == []
        return
    with pytest.raises(SpecError) as raised:
        apply_overrides(spec, **overrides)
    assert field_error in str(raised.value)
    assert "(with the overrides " in str(raised.value)


def test_describe_says_what_each_override_replaces() -> None:
    spec = parse_spec(tiny_spec())
    lines = SpecOverrides(limit=3, priors=["text-embedding"], batch_size=2).describe(spec)
    assert "prompts.limit = 3 (spec: 1)" in lines
    assert "priors = text-embedding (spec: text-embedding,kandinsky-2.2)" in lines
    assert "decoder_batch_size = 2 (spec: 8)" in lines


def test_run_command_applies_prints_and_records_the_overrides(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(tomli_w.dumps(tiny_spec(images_per_prompt=1)))
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(spec_path),
            "--out",
            str(out),
            "--priors",
            "text-embedding",
            "--categories",
            "color",
            "--limit",
            "1",
            "--batch-size",
            "1",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "override: priors = text-embedding (spec: text-embedding,kandinsky-2.2)" in result.output
    assert "override: prompts.categories = color (spec: color,spatial)" in result.output
    recorded = json.loads((out / "run.json").read_text())
    expected = parse_spec(
        _spec_with(
            images_per_prompt=1,
            priors=[tiny_spec()["priors"][0]],
            prompts={"categories": ["color"]},
            prior_batch_size=1,
            decoder_batch_size=1,
            metric_batch_size=1,
        )
    )
    assert recorded["fingerprint"] == expected.fingerprint()
    board = json.loads((out / "results.json").read_text())["leaderboard"]
    assert {(row["prior"], row["category"]) for row in board} == {("text-embedding", "color")}


def test_run_command_refuses_a_bad_override_before_running(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(tomli_w.dumps(tiny_spec()))
    result = CliRunner().invoke(
        app, ["run", str(spec_path), "--out", str(tmp_path / "run"), "--priors", "text-embeding"]
    )
    assert isinstance(result.exception, SpecError)
    assert "Did you mean 'text-embedding'?" in str(result.exception)
    assert not (tmp_path / "run").exists()
