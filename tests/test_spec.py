"""Run specs: validation messages that name the field and the fix; a fingerprint that tracks what matters."""

from __future__ import annotations

from pathlib import Path

import pytest

from ovi_bench.errors import SpecError, UnknownNameError
from ovi_bench.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]

MINIMAL = {"priors": [{"name": "text-embedding", "params": {"model": "tiny"}}]}


def test_shipped_configs_are_valid() -> None:
    smoke = load_spec(ROOT / "configs" / "smoke.toml")
    assert smoke.device == "cpu"
    assert [prior.display_name for prior in smoke.priors] == [
        "text-embedding",
        "kandinsky-2.2",
        "eclipse",
        "ovi",
        "ovi-mahalanobis",
        "ovi-nn",
        "karlo",
        "text-embedding-l",
        "ovi-l",
    ]
    # Two decoders of one space and one of another, each prior rendered by the decoders of its own space.
    routes = {
        prior.display_name: [d.display_name for d in smoke.decoders_for(prior)] for prior in smoke.priors
    }
    big_g = ["text-embedding", "kandinsky-2.2", "eclipse", "ovi", "ovi-mahalanobis", "ovi-nn"]
    assert {name: routes[name] for name in big_g} == {
        name: ["kandinsky-2.2-decoder", "sdxl-ip-adapter"] for name in big_g
    }
    assert {name: routes[name] for name in ("karlo", "text-embedding-l", "ovi-l")} == {
        name: ["karlo-decoder"] for name in ("karlo", "text-embedding-l", "ovi-l")
    }
    cross = load_spec(ROOT / "configs" / "cross-decoder.toml")
    assert {len(cross.decoders_for(prior)) for prior in cross.priors} == {2}
    sweep = load_spec(ROOT / "configs" / "sweep-ovi-constraints.toml")
    assert {prior.name for prior in sweep.priors} == {"ovi", "ovi-mahalanobis", "ovi-nn"}
    assert len({prior.display_name for prior in sweep.priors}) == len(sweep.priors) == 14
    real = load_spec(ROOT / "configs" / "compbench-kandinsky22.toml")
    assert real.seeds == list(range(42, 52))
    assert real.prompts.split == "val" and real.prompts.limit is None
    assert (real.decoder.height, real.decoder.width) == (512, 512)


def test_defaults_follow_the_official_protocol() -> None:
    spec = parse_spec(MINIMAL)
    assert spec.seeds == list(range(42, 52))
    assert spec.prompts.source == "t2i-compbench" and spec.prompts.split == "val"
    assert [metric.name for metric in spec.metrics] == [
        "b-vqa",
        "spatial-2d",
        "spatial-3d",
        "numeracy",
        "clip",
        "3-in-1",
    ]


def test_component_defaults_are_filled_in() -> None:
    spec = parse_spec({"priors": [{"name": "kandinsky-2.2", "params": {"model": "tiny"}}]})
    assert spec.priors[0].params["steps"] >= 1
    assert "guidance" in spec.priors[0].params


def test_fingerprint_ignores_output_dir_but_not_protocol() -> None:
    base = parse_spec(MINIMAL)
    assert parse_spec({**MINIMAL, "output_dir": "elsewhere"}).fingerprint() == base.fingerprint()
    assert parse_spec({**MINIMAL, "images_per_prompt": 4}).fingerprint() != base.fingerprint()
    assert parse_spec({**MINIMAL, "decoder": {"steps": 20}}).fingerprint() != base.fingerprint()
    # Spelling out a default is the same protocol as leaving it out.
    explicit = {"priors": [{"name": "text-embedding", "params": {"model": "tiny", "rescale": "none"}}]}
    assert parse_spec(explicit).fingerprint() == base.fingerprint()


def test_a_rating_study_is_outside_the_fingerprint_and_dumps_only_when_given() -> None:
    base = parse_spec(MINIMAL)
    rated = parse_spec(
        {**MINIMAL, "rating": {"question": "text", "simulation": {"raters": 2, "utility": "clip"}}}
    )
    assert rated.fingerprint() == base.fingerprint()
    assert "rating" not in base.model_dump(mode="json")  # specs without the table dump as they always did
    dumped = rated.model_dump(mode="json")
    assert dumped["rating"]["question"] == "text" and dumped["rating"]["simulation"]["raters"] == 2
    assert parse_spec({**MINIMAL, **dumped}) == rated


def test_a_bad_rating_question_names_the_field_and_the_choices() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({**MINIMAL, "rating": {"question": "prettier"}})
    message = str(caught.value)
    assert "rating.question" in message and "prettier" in message and "realism" in message


def test_misspelled_top_level_field_suggests_the_right_one() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({**MINIMAL, "images_per_promt": 3})
    assert "images_per_promt" in str(caught.value)
    assert "Did you mean 'images_per_prompt'?" in str(caught.value)


def test_misspelled_nested_field_suggests_the_right_one() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({**MINIMAL, "decoder": {"stesp": 3}})
    assert "decoder.stesp" in str(caught.value)
    assert "Did you mean 'steps'?" in str(caught.value)


def test_bad_value_names_field_and_value() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({**MINIMAL, "decoder": {"steps": -1}})
    assert "decoder.steps" in str(caught.value) and "-1" in str(caught.value)


def test_bad_prior_parameter_names_the_prior() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({"priors": [{"name": "kandinsky-2.2", "params": {"steps": 0}}]})
    assert "priors[kandinsky-2.2].params.steps" in str(caught.value)


def test_unknown_prior_name_suggests_nearest() -> None:
    with pytest.raises(UnknownNameError, match=r"Did you mean 'kandinsky-2\.2'"):
        parse_spec({"priors": [{"name": "kandinsky-22"}]})


def test_missing_priors_and_duplicate_labels_are_refused() -> None:
    with pytest.raises(SpecError, match="priors: this field is required"):
        parse_spec({})
    twice = {"priors": [{"name": "text-embedding"}, {"name": "text-embedding"}]}
    with pytest.raises(SpecError, match="label"):
        parse_spec(twice)
    labelled = {"priors": [{"name": "text-embedding"}, {"name": "text-embedding", "label": "te-2"}]}
    assert len(parse_spec(labelled).priors) == 2


def test_bad_device_and_dtype() -> None:
    with pytest.raises(SpecError, match="device"):
        parse_spec({**MINIMAL, "device": "gpu0"})
    with pytest.raises(SpecError, match="dtype"):
        parse_spec({**MINIMAL, "dtype": "float8"})


def test_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "x"\n[[priors]\nname = 1\n')
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(broken)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SpecError, match="UTF-8"):
        load_spec(binary)
    wrong_type = tmp_path / "wrong.toml"
    wrong_type.write_text('priors = "text-embedding"\n')
    with pytest.raises(SpecError, match=str(wrong_type.name)):
        load_spec(wrong_type)


def test_cuda_on_a_machine_without_it_is_a_clear_error() -> None:
    import torch

    from ovi_bench.components import resolve_device
    from ovi_bench.errors import OviBenchError

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(OviBenchError, match='device = "cpu"'):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"
