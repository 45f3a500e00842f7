"""Fuzzing the run spec: whatever the input, `parse_spec` and `load_spec` return a RunSpec or raise an
OviBenchError with a message; never a TypeError, KeyError, RecursionError, UnicodeDecodeError or pydantic internals.

Deterministic (`derandomize=True`, no example database) so that CI cannot flake, and small enough to take a few
seconds. Exploring with more examples: `OVI_BENCH_FUZZ_EXAMPLES=5000 python -m pytest tests/test_spec_fuzz.py`.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ovi_bench.errors import OviBenchError
from ovi_bench.io import canonical_json
from ovi_bench.registry import DECODERS, METRICS, PRIORS
from ovi_bench.spec import _FALLBACK_MARKER, RunSpec, load_spec, parse_spec
from ovi_bench.spec_messages import MAX_NESTING

EXAMPLES = int(os.environ.get("OVI_BENCH_FUZZ_EXAMPLES", "120"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

VALID: dict[str, Any] = {
    "name": "fuzz",
    "device": "cpu",
    "images_per_prompt": 1,
    "priors": [{"name": "text-embedding", "label": "te", "params": {"model": "tiny"}}],
    "decoder": {"params": {"model": "tiny"}, "steps": 2, "height": 32, "width": 32},
    "prompts": {"source": "builtin", "categories": ["color"], "limit": 1},
    "metrics": [{"name": "clip", "params": {"model": "tiny", "text_analyzer": "builtin"}}],
    "audits": {"seed": 1, "bootstrap": 100},
    "diagnostics": {"model": "tiny"},
}

NASTY_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "\udfff",
    "\x1b[31m",
    "\u202eevil",
    "line\nbreak",
    "\r",
    "\ufeff",
    "../../etc/passwd",
    "/",
    "\\",
    "~",
    "~/x",
    "~nosuchuser-ovi/x",
    "C:\\Windows",
    "con",
    "nan",
    "inf",
    "-1",
    "1e999",
    "true",
    "{}",
    "{",
    "[[priors]]",
    "tiny",
    "builtin",
    "t2i-compbench",
    "auto",
    "cuda:99999999999999999999",
    "x" * 5000,
    "é" * 100,
    "😀",
]
NASTY_NUMBERS = [0, -1, 1, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**400, 1e308, -0.0, 5e-324]

text = st.one_of(
    st.sampled_from(NASTY_TEXT), st.text(max_size=12), st.text(st.characters(codec=None), max_size=6)
)
numbers = st.one_of(
    st.sampled_from(NASTY_NUMBERS),
    st.integers(),
    st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf]),
)
scalars = st.one_of(
    text, numbers, st.booleans(), st.none(), st.datetimes(), st.dates(), st.times(), st.binary(max_size=4)
)
garbage = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(text, st.integers()), children, max_size=4),
        st.tuples(children, children),
    ),
    max_leaves=10,
)

COMPONENT_NAMES = {
    "prior": PRIORS.names(),
    "decoder": DECODERS.names(),
    "metric": METRICS.names(),
}
REGISTRIES = {"prior": PRIORS, "decoder": DECODERS, "metric": METRICS}


def _component_name(kind: str) -> st.SearchStrategy[Any]:
    known = COMPONENT_NAMES[kind]
    near_misses = [name[:-1] for name in known] + [name.upper() for name in known] + [f" {known[0]}"]
    return st.one_of(st.sampled_from(known), st.sampled_from(near_misses), garbage)


def _params_value(kind: str, name: Any) -> st.SearchStrategy[dict[str, Any]]:
    """A params table for `name`: its real field names with garbage values, unknown fields, or garbage itself."""
    fields: list[str] = []
    if isinstance(name, str) and name in COMPONENT_NAMES[kind]:
        fields = list(REGISTRIES[kind].get(name).Params.model_fields)
    keys = st.sampled_from([*fields, "modle", "unknown", ""]) if fields else text
    return st.one_of(st.dictionaries(keys, garbage, max_size=3), garbage)


# Where a single mutation lands: (path from the top, what the error message must mention when it is refused).
TOP_LEVEL_FIELDS = [*RunSpec.model_fields, "nmae", "output", "Priors", ""]


def _table(spec: dict[str, Any], key: str) -> dict[str, Any]:
    """spec[key], put back to its valid form when an earlier mutation replaced it by something that is no table."""
    if not isinstance(spec.get(key), dict):
        spec[key] = copy.deepcopy(VALID[key])
    return spec[key]


def _first_table(spec: dict[str, Any], key: str) -> dict[str, Any]:
    if not (isinstance(spec.get(key), list) and spec[key] and isinstance(spec[key][0], dict)):
        spec[key] = copy.deepcopy(VALID[key])
    return spec[key][0]


@st.composite
def mutated_specs(draw: st.DrawFn, mutations: int = 1) -> tuple[dict[str, Any], list[str]]:
    """VALID with `mutations` values replaced by garbage; also returns the top-level fields touched."""
    spec = copy.deepcopy(VALID)
    touched = []
    for _ in range(mutations):
        target = draw(
            st.sampled_from(
                [
                    "top",
                    "prior",
                    "prior-params",
                    "decoder",
                    "prompts",
                    "metric",
                    "metric-params",
                    "audits",
                    "diag",
                ]
            )
        )
        if target == "top":
            field = draw(st.sampled_from(TOP_LEVEL_FIELDS))
            spec[field] = draw(garbage)
            touched.append(field)
        elif target in ("prior", "prior-params"):
            kind, table = "prior", _first_table(spec, "priors")
            name = draw(_component_name(kind)) if target == "prior" else table.get("name")
            table["name"] = name
            table["params"] = draw(_params_value(kind, name))
            if target == "prior":
                table[draw(st.sampled_from(["label", "lable", "params"]))] = draw(garbage)
            touched.append("priors")
        elif target in ("metric", "metric-params"):
            kind, table = "metric", _first_table(spec, "metrics")
            name = draw(_component_name(kind)) if target == "metric" else table.get("name")
            table["name"] = name
            table["params"] = draw(_params_value(kind, name))
            if target == "metric":
                table[draw(st.sampled_from(["categories", "params", "nmae"]))] = draw(garbage)
            touched.append("metrics")
        elif target == "decoder":
            field = draw(st.sampled_from(["name", "params", "steps", "guidance", "height", "width", "stesp"]))
            value = draw(_component_name("decoder")) if field == "name" else draw(garbage)
            decoder = _table(spec, "decoder")
            decoder[field] = value
            if field == "params" or draw(st.booleans()):
                decoder["params"] = draw(_params_value("decoder", decoder.get("name")))
            touched.append("decoder")
        else:
            table_name, fields = {
                "prompts": ("prompts", ["source", "categories", "split", "limit", "data_dir", "sorce"]),
                "audits": ("audits", ["shuffle", "canaries", "seed", "bootstrap", "sed"]),
                "diag": ("diagnostics", ["model", "bank", "modl"]),
            }[target]
            field = draw(st.sampled_from(fields))
            table = _table(spec, table_name)
            if field == "categories" and draw(st.booleans()):
                table[field] = draw(st.lists(text, max_size=3))
            else:
                table[field] = draw(garbage)
            touched.append(table_name)
    return spec, touched


def _words_a_message_may_use(touched: list[str]) -> list[str]:
    words = [field or "''" for field in touched]
    for field in touched:
        words += {
            "priors": ["prior"],
            "metrics": ["metric"],
            "decoder": ["decoder"],
            "first_seed": ["seed"],
            "images_per_prompt": ["seed"],  # the last seed's bound involves both
        }.get(field, [])
    return [*words, "(top level)"]


def expect_spec_or_clean_error(call: Callable[[], RunSpec]) -> str | None:
    """Run `call`; a RunSpec must be fingerprintable and serialisable as a run writes it. Returns the error message
    (None on success). Any exception other than an OviBenchError escapes and fails the test."""
    try:
        spec = call()
    except OviBenchError as error:
        message = str(error)
        assert message.strip(), f"{type(error).__name__} without a message"
        assert _FALLBACK_MARKER not in message, f"a built-in component's validator crashed: {message}"
        return message
    assert isinstance(spec, RunSpec)
    assert len(spec.fingerprint()) == 64
    canonical_json(spec.model_dump(mode="json"))  # what run.json and results.json hold
    spec.model_dump_json()
    return None


def test_the_valid_base_spec_is_valid() -> None:
    assert expect_spec_or_clean_error(lambda: parse_spec(copy.deepcopy(VALID))) is None


@FUZZ
@given(mutated_specs())
def test_one_bad_field_gives_a_clean_error_that_names_it(case: tuple[dict[str, Any], list[str]]) -> None:
    data, touched = case
    message = expect_spec_or_clean_error(lambda: parse_spec(data))
    if message is not None:
        words = _words_a_message_may_use(touched)
        assert any(word and word in message for word in words), f"{message!r} names none of {words}"


@FUZZ
@given(mutated_specs(mutations=4))
def test_several_bad_fields_give_a_clean_error(case: tuple[dict[str, Any], list[str]]) -> None:
    expect_spec_or_clean_error(lambda: parse_spec(case[0]))


@FUZZ
@given(garbage)
def test_arbitrary_data_gives_a_clean_error(data: Any) -> None:
    expect_spec_or_clean_error(lambda: parse_spec(data))


@FUZZ
@given(st.dictionaries(st.sampled_from(TOP_LEVEL_FIELDS), garbage, max_size=6))
def test_arbitrary_top_level_tables_give_a_clean_error(data: dict[str, Any]) -> None:
    expect_spec_or_clean_error(lambda: parse_spec(data))


def _nested(depth: int, kind: str) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


@pytest.mark.parametrize("kind", ["list", "dict"])
@pytest.mark.parametrize("depth", [MAX_NESTING - 5, MAX_NESTING + 5, 10 * sys.getrecursionlimit()])
def test_deep_nesting_is_refused_by_name(kind: str, depth: int) -> None:
    data = copy.deepcopy(VALID)
    data["priors"][0]["params"]["model"] = _nested(depth, kind)
    message = expect_spec_or_clean_error(lambda: parse_spec(data))
    # Index or name: the walk before validation counts tables, the component's own check names the component.
    assert message is not None and (
        "priors[0].params.model" in message or "priors[text-embedding].params.model" in message
    )


def test_self_referencing_data_is_refused() -> None:
    data: dict[str, Any] = copy.deepcopy(VALID)
    data["decoder"]["params"]["loop"] = data["decoder"]["params"]
    assert "nested more than" in (expect_spec_or_clean_error(lambda: parse_spec(data)) or "")


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("decoder", "guidance"), math.inf, "decoder.guidance: inf is not allowed"),
        (("priors", 0, "params", "rescale"), math.nan, "priors[0].params.rescale: nan is not allowed"),
        (("priors", 0, "label"), "a\x00b", "priors[0].label: the text 'a\\x00b' holds a NUL"),
        (("priors", 0, "label"), "\x1b[2Jgone", "control character"),
        (("priors", 0, "label"), "two\nlines", "priors[0].label"),
        (("priors", 0, "label"), "\u202eevil", "priors[0].label"),
        (("name",), "\ud800", "lone surrogate"),
        (("first_seed",), 2**64, "first_seed"),
        (("images_per_prompt",), 10**30, "images_per_prompt"),
        (("output_dir",), "", "output_dir"),
        (("prompts", "categories"), ["../x"], "prompts.categories[0]: category '../x' is not allowed"),
        (("prompts", "data_dir"), " ", "prompts.data_dir: an empty path"),
        (("trust_remote_code",), "yes", "trust_remote_code"),
        (("metrics", 0, "name"), "vqascore", None),
        (("device",), "cuda:99999999999999999999", "is not a device"),
    ],
)
def test_known_nasty_values_name_the_field(
    path: tuple[str | int, ...], value: Any, expected: str | None
) -> None:
    data: Any = copy.deepcopy(VALID)
    target = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    if path == ("metrics", 0, "name"):  # found by the fuzzer: a list where a family name belongs
        target["params"] = {"model_family": ["llava"]}
        expected = "metrics[vqascore].params.model_family"
    message = expect_spec_or_clean_error(lambda: parse_spec(data))
    assert message is not None and expected in message, message


def test_the_last_seed_must_fit_in_64_bits() -> None:
    assert parse_spec({**copy.deepcopy(VALID), "first_seed": 2**63 - 1}).seeds == [2**63 - 1]
    message = expect_spec_or_clean_error(
        lambda: parse_spec({**copy.deepcopy(VALID), "first_seed": 2**63 - 1, "images_per_prompt": 2})
    )
    assert message is not None and "choose a smaller first_seed" in message


def test_a_leading_tilde_in_output_dir_is_expanded() -> None:
    spec = parse_spec({**copy.deepcopy(VALID), "output_dir": "~/runs/x"})
    assert spec.output_dir == str(Path("~/runs/x").expanduser())
    # Path.expanduser raises RuntimeError for an unknown user; the spec keeps such a path as written.
    assert (
        parse_spec({**copy.deepcopy(VALID), "output_dir": "~nosuchuser-ovi/x"}).output_dir
        == "~nosuchuser-ovi/x"
    )


def test_labels_with_path_characters_are_allowed_text() -> None:
    # Labels never become file names (artifacts are content addressed); tests/test_hardening.py checks a run.
    data = copy.deepcopy(VALID)
    data["priors"][0]["label"] = "../../ovi λ=0.1/k=8\\x"
    assert parse_spec(data).priors[0].display_name == "../../ovi λ=0.1/k=8\\x"


# -- raw text through load_spec ---------------------------------------------------------------------------------

VALID_TOML = tomli_w.dumps(VALID)
_FILES = Path(tempfile.mkdtemp(prefix="ovi-bench-fuzz-"))


def _load_bytes(raw: bytes) -> str | None:
    path = _FILES / "spec.toml"
    path.write_bytes(raw)
    return expect_spec_or_clean_error(lambda: load_spec(path))


def _cut(data: st.DataObject, text: str) -> str:
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    return (
        text[:start]
        + data.draw(st.sampled_from(["", "[", "]]", "=", '"', "\\", "\n[[priors]]\n"]))
        + text[end:]
    )


@FUZZ
@given(st.data())
def test_raw_text_gives_a_spec_or_a_clean_error(data: st.DataObject) -> None:
    kind = data.draw(
        st.sampled_from(["binary", "text", "cut", "utf-16", "latin-1", "bom", "mutated-toml", "nesting"])
    )
    if kind == "binary":
        raw = data.draw(st.binary(max_size=300))
    elif kind == "text":
        raw = data.draw(st.text(st.characters(codec="utf-8"), max_size=200)).encode("utf-8")
    elif kind == "cut":
        raw = _cut(data, VALID_TOML).encode("utf-8")
    elif kind == "utf-16":
        raw = VALID_TOML.encode(data.draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32"])))
    elif kind == "latin-1":
        raw = VALID_TOML.replace('"fuzz"', '"café"').encode("latin-1")
    elif kind == "bom":
        raw = b"\xef\xbb\xbf" + _cut(data, VALID_TOML).encode("utf-8")
    elif kind == "mutated-toml":
        spec, _ = data.draw(mutated_specs())
        try:
            raw = tomli_w.dumps(spec).encode("utf-8")
        except (TypeError, ValueError):  # None, bytes, tuples or int keys: no TOML can hold them
            return
    else:
        depth = data.draw(st.sampled_from([10, MAX_NESTING + 1, 1000, 100_000]))
        opener, closer = data.draw(st.sampled_from([("[", "]"), ("{a=", "}")]))
        raw = f"name = {opener * depth}1{closer * depth}\n".encode()
    _load_bytes(raw)


def test_a_byte_order_mark_is_accepted() -> None:
    assert _load_bytes(b"\xef\xbb\xbf" + VALID_TOML.encode()) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (VALID_TOML.encode("utf-16"), "UTF-16"),
        (b'name = "caf\xe9"\n', "not UTF-8 text (byte 11"),
        (b"name = " + b"[" * 100_000 + b"\n", "spec.toml"),
        (b'name = "a\\u0000b"\n[[priors]]\nname = "ovi"\n', "NUL"),
        (b"images_per_prompt = nan\n", "nan is not allowed"),
        (b"first_seed = 99999999999999999999\n", "spec.toml"),
        (b"[[priors]]\nname = 1979-05-27\n", "priors[0].name"),
        (b"priors = {name = 'ovi'}\n", "priors: Input should be a valid list"),
    ],
)
def test_known_nasty_files(raw: bytes, expected: str) -> None:
    message = _load_bytes(raw)
    assert message is not None and expected in message, message


def test_an_unreadable_spec_is_a_clean_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Tests run as root in CI, where chmod cannot make a file unreadable: the read itself fails here.
    path = tmp_path / "spec.toml"
    path.write_text(VALID_TOML)

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    message = expect_spec_or_clean_error(lambda: load_spec(path))
    assert message is not None and "cannot read the run spec" in message and "Permission denied" in message


# -- the command line ---------------------------------------------------------------------------------------------

NASTIEST_FILES = {
    "deep.toml": b"name = " + b"[" * 50_000 + b"1" + b"]" * 50_000 + b"\n",
    "binary.toml": bytes(range(256)),
    "bom-utf16.toml": VALID_TOML.encode("utf-16"),
    "inf.toml": VALID_TOML.replace("steps = 2", "steps = 2\nguidance = inf").encode(),
    "nul-label.toml": VALID_TOML.replace('label = "te"', 'label = "te\\u0000"').encode(),
    "huge-seed.toml": VALID_TOML.replace(
        "images_per_prompt = 1", "first_seed = 9223372036854775807\nimages_per_prompt = 2"
    ).encode(),
    "list-for-table.toml": b"decoder = [1, 2]\n[[priors]]\nname = 'ovi'\n",
    "unknown-prior.toml": VALID_TOML.replace('name = "text-embedding"', 'name = "text-embeding"').encode(),
}


@pytest.mark.parametrize("name", sorted(NASTIEST_FILES))
def test_the_command_line_exits_2_with_a_one_line_cause(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ovi_bench.cli import main

    path = tmp_path / name
    path.write_bytes(NASTIEST_FILES[name])
    monkeypatch.setattr(sys, "argv", ["ovi-bench", "run", str(path), "--out", str(tmp_path / "run"), "-q"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    assert exited.value.code == 2, captured.err
    assert captured.err.startswith("error:") and "Traceback" not in captured.err
    assert not (tmp_path / "run").exists()  # nothing is written for a spec that does not parse


def test_the_real_command_exits_2_on_the_deepest_file(tmp_path: Path) -> None:
    import subprocess

    path = tmp_path / "deep.toml"
    path.write_bytes(NASTIEST_FILES["deep.toml"])
    completed = subprocess.run(
        [sys.executable, "-m", "ovi_bench", "run", str(path)], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 2, completed.stderr
    assert "error:" in completed.stderr and "Traceback" not in completed.stderr
