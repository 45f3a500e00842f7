"""What ovi-bench refuses to run or write: unsafe deserialisation, remote code, code named by a spec, and files
outside the run folder.

* a source audit (ast) of the package: no `torch.load` without `weights_only=True`, no pickle, no eval/exec, and
  dynamic imports only where the registry loads built-ins and `--plugins` modules;
* `trust_remote_code`: a default-off spec field, the only way `trust_remote_code=True` reaches `from_pretrained`;
* `--plugins MODULE`: the one way besides installed entry points to bring in third-party components;
* labels and categories full of path syntax never create a file outside the run folder.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from command_line import run_main

import ovi_bench
from ovi_bench.components import Component
from ovi_bench.errors import ModelLoadError, OviBenchError, SpecError, UnknownNameError
from ovi_bench.models.hub import load_pretrained, remote_code_policy, remote_code_trusted
from ovi_bench.registry import PRIORS, load_plugins
from ovi_bench.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(ovi_bench.__file__).resolve().parent

# -- the source audit ---------------------------------------------------------------------------------------------

UNPICKLING_CALLS = {
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "cPickle.load",
    "cPickle.loads",
    "dill.load",
    "dill.loads",
    "cloudpickle.load",
    "cloudpickle.loads",
    "joblib.load",
    "marshal.load",
    "marshal.loads",
    "shelve.open",
    "pd.read_pickle",
    "pandas.read_pickle",
    "numpy.load",  # allowed only without allow_pickle, checked below
}
TORCH_LOADS = {"torch.load", "torch.serialization.load"}
CODE_RUNNING_BUILTINS = {"eval", "exec", "compile", "__import__"}
DYNAMIC_IMPORTS = {
    "importlib.import_module",
    "import_module",
    "importlib.util.spec_from_file_location",
    "importlib.machinery.SourceFileLoader",
    "runpy.run_path",
    "runpy.run_module",
}
# Where importing a module by a name held in a variable is deliberate: the registry's built-in "module:Class" tables
# and the modules named with --plugins. Anything new here needs a review of where the name comes from.
ALLOWED_DYNAMIC_IMPORTS = {("registry.py", "_import_object"), ("registry.py", "load_plugins")}


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _keyword_is(call: ast.Call, name: str, value: object) -> bool:
    return any(
        keyword.arg == name and isinstance(keyword.value, ast.Constant) and keyword.value.value is value
        for keyword in call.keywords
    )


def _innermost_functions(tree: ast.AST) -> dict[ast.AST, str]:
    """Each node's innermost enclosing function name."""
    names: dict[ast.AST, str] = {}

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            names[child] = function
            is_function = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            visit(child, child.name if is_function else function)

    visit(tree, "")
    return names


def audit_source(source: str, file_name: str) -> list[str]:
    """Every unsafe loading or code-running construct in `source`, as "file:line: what"."""
    tree = ast.parse(source)
    problems: list[str] = []
    enclosing = _innermost_functions(tree)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = (
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            )
            imported = [alias.name for alias in node.names]
            for module in modules:
                if module.split(".")[0] in ("dill", "cloudpickle", "joblib", "marshal", "shelve", "runpy"):
                    problems.append(f"{file_name}:{node.lineno}: imports {module}")
            if isinstance(node, ast.ImportFrom) and node.module in ("torch", "pickle") and "load" in imported:
                problems.append(f"{file_name}:{node.lineno}: `from {node.module} import load` hides the call")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        where = f"{file_name}:{node.lineno}"
        if name in TORCH_LOADS and not _keyword_is(node, "weights_only", True):
            problems.append(f"{where}: {name}(...) without weights_only=True")
        elif name in UNPICKLING_CALLS - {"numpy.load"}:
            problems.append(f"{where}: {name}(...) unpickles")
        elif name in CODE_RUNNING_BUILTINS:
            problems.append(f"{where}: {name}(...) runs code from a string")
        elif name in DYNAMIC_IMPORTS and (file_name, enclosing.get(node, "")) not in ALLOWED_DYNAMIC_IMPORTS:
            problems.append(f"{where}: {name}(...) imports a module chosen at run time")
        for flag, unsafe_value in (
            ("allow_pickle", True),
            ("weights_only", False),
            ("trust_remote_code", True),
        ):
            if _keyword_is(node, flag, unsafe_value):
                problems.append(f"{where}: {flag}={unsafe_value}")
    return problems


def test_the_audit_catches_each_unsafe_construct() -> None:
    planted = textwrap.dedent(
        """
        import pickle, torch, importlib, numpy as np
        from torch import load
        torch.load("w.pth")
        torch.load("w.pth", weights_only=False)
        torch.load("w.pth", map_location="cpu", weights_only=True)
        pickle.loads(b"")
        eval("1")
        model.eval()
        np.load("x.npy", allow_pickle=True)
        AutoModel.from_pretrained("x", trust_remote_code=True)
        def plugin(name):
            return importlib.import_module(name)
        """
    )
    problems = audit_source(planted, "planted.py")
    for expected in [
        "planted.py:3: `from torch import load`",
        "planted.py:4: torch.load(...) without weights_only=True",
        "planted.py:5: torch.load(...) without weights_only=True",
        "planted.py:5: weights_only=False",
        "planted.py:7: pickle.loads(...) unpickles",
        "planted.py:8: eval(...) runs code",
        "planted.py:10: allow_pickle=True",
        "planted.py:11: trust_remote_code=True",
        "planted.py:13: importlib.import_module(...) imports a module chosen at run time",
    ]:
        assert any(problem.startswith(expected) for problem in problems), (expected, problems)
    assert len(problems) == 9, problems  # the safe torch.load and model.eval() pass


def test_the_package_loads_no_weights_or_code_unsafely() -> None:
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 40
    problems = [
        problem
        for path in sources
        for problem in audit_source(path.read_text(encoding="utf-8"), path.relative_to(PACKAGE).as_posix())
    ]
    assert problems == []


# -- trust_remote_code ----------------------------------------------------------------------------------------------

MINIMAL = {"priors": [{"name": "text-embedding", "params": {"model": "tiny"}}]}


class _RemoteCodeModel:
    """Stands in for a model class: `from_pretrained` returns what it was given."""

    @classmethod
    def from_pretrained(cls, ref: str, **kwargs: Any) -> dict[str, Any]:
        return kwargs


class AutoStandIn(_RemoteCodeModel):
    """Looks like one of transformers' Auto classes, which decide from a repository whether to run its code."""


AutoStandIn.__module__ = "transformers.models.auto.modeling_auto"


def test_the_spec_field_is_off_by_default_strict_and_fingerprinted_only_when_on() -> None:
    default = parse_spec(MINIMAL)
    assert default.trust_remote_code is False
    assert (
        default.model_dump(mode="json")["trust_remote_code"] is False
    )  # recorded in run.json and results.json
    on = parse_spec({**MINIMAL, "trust_remote_code": True})
    assert on.fingerprint() != default.fingerprint()
    # Specs written before the field existed keep their fingerprints: false is left out of the canonical form.
    from ovi_bench.io import canonical_json, sha256_text

    legacy = sha256_text(
        canonical_json(default.model_dump(mode="json", exclude={"output_dir", "name", "trust_remote_code"}))
    )
    assert default.fingerprint() == legacy
    for loose in ("true", "yes", 1, "on"):
        with pytest.raises(SpecError, match="trust_remote_code"):
            parse_spec({**MINIMAL, "trust_remote_code": loose})


def test_remote_code_is_refused_unless_the_spec_allows_it() -> None:
    with pytest.raises(ModelLoadError) as caught:
        load_pretrained(_RemoteCodeModel, "acme/remote-model", trust_remote_code=True)
    assert "trust_remote_code = true" in str(caught.value) and "acme/remote-model" in str(caught.value)
    with remote_code_policy(False), pytest.raises(ModelLoadError):
        load_pretrained(_RemoteCodeModel, "acme/remote-model", trust_remote_code=True)
    with remote_code_policy(True):
        assert load_pretrained(_RemoteCodeModel, "acme/remote-model", trust_remote_code=True)[
            "trust_remote_code"
        ]
    assert not remote_code_trusted()  # the policy ends with its block
    with pytest.raises(ModelLoadError):
        load_pretrained(_RemoteCodeModel, "acme/remote-model", trust_remote_code=True)


def test_auto_classes_are_told_no_explicitly_and_concrete_classes_are_left_alone() -> None:
    # trust_remote_code=None makes transformers' Auto classes prompt on a terminal: ovi-bench never leaves it unset.
    assert load_pretrained(AutoStandIn, "acme/model")["trust_remote_code"] is False
    with remote_code_policy(True):
        assert load_pretrained(AutoStandIn, "acme/model")["trust_remote_code"] is False  # never unasked
    assert "trust_remote_code" not in load_pretrained(_RemoteCodeModel, "acme/model")


def test_components_see_the_policy_and_other_threads_do_not() -> None:
    component = Component()
    assert component.trust_remote_code is False
    seen_by_thread: list[bool] = []
    with remote_code_policy(True):
        assert component.trust_remote_code is True
        thread = threading.Thread(target=lambda: seen_by_thread.append(Component().trust_remote_code))
        thread.start()
        thread.join()
    assert seen_by_thread == [False]  # fails closed: a thread started elsewhere is refused, never trusted
    assert component.trust_remote_code is False


# -- plugins ------------------------------------------------------------------------------------------------------

LISTED_PLUGIN = '''
import torch
from ovi_bench.priors.base import Prior, PriorOutput
from ovi_bench.registry import PRIORS


@PRIORS.register("acme-listed")
class AcmeListed(Prior):
    """A plugin prior brought in with --plugins."""

    def embed(self, texts, generators):
        zeros = torch.zeros(len(texts), 4)
        return PriorOutput(zeros, zeros)
'''

REMOTE_CODE_PLUGIN = '''
import json
import os

from ovi_bench.models.hub import load_pretrained
from ovi_bench.priors.text_embedding import TextEmbeddingPrior
from ovi_bench.registry import PRIORS


class RemoteCodeModel:
    @classmethod
    def from_pretrained(cls, ref, **kwargs):
        return kwargs


@PRIORS.register("acme-remote")
class AcmeRemote(TextEmbeddingPrior):
    """The text-embedding prior, plus a model that ships its own code (so it asks for trust_remote_code)."""

    def embed(self, texts, generators):
        kwargs = load_pretrained(RemoteCodeModel, "acme/remote-model", trust_remote_code=True)
        with open(os.environ["ACME_RECORD"], "w") as record:
            json.dump({"component_sees": self.trust_remote_code, "from_pretrained_got": kwargs}, record)
        return super().embed(texts, generators)
'''


@pytest.fixture
def plugin_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path with plugin modules; the registry and sys.modules are restored afterwards."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "acme_listed.py").write_text(LISTED_PLUGIN)
    (folder / "acme_remote.py").write_text(REMOTE_CODE_PLUGIN)
    (folder / "acme_broken.py").write_text("raise RuntimeError('the plugin is broken')\n")
    (folder / "acme_needs.py").write_text("import acme_not_installed_dependency\n")
    (folder / "acme_empty.py").write_text("VALUE = 1\n")
    (folder / "acme_canary.py").write_text("import os\nopen(os.environ['ACME_CANARY'], 'w').close()\n")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(PRIORS, "_entries", dict(PRIORS._entries))
    for name in ("acme_listed", "acme_remote", "acme_broken", "acme_needs", "acme_empty", "acme_canary"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield folder
    for name in ("acme_listed", "acme_remote", "acme_broken", "acme_needs", "acme_empty", "acme_canary"):
        sys.modules.pop(name, None)


def test_a_plugin_module_is_listed_only_with_plugins(
    plugin_folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_main(monkeypatch, capsys, "priors")
    assert code == 0 and "acme-listed" not in out and "acme_listed" not in sys.modules
    code, out, _ = run_main(monkeypatch, capsys, "priors", "--plugins", "acme_listed")
    first_column = [line.split("\t")[0] for line in out.splitlines()]
    assert code == 0 and "acme-listed" in first_column and "text-embedding" in first_column
    assert "A plugin prior brought in with --plugins." in out


def test_a_spec_can_use_a_plugin_only_after_it_is_loaded(plugin_folder: Path) -> None:
    spec = {"priors": [{"name": "acme-listed"}]}
    with pytest.raises(UnknownNameError, match="unknown prior 'acme-listed'"):
        parse_spec(spec)
    assert load_plugins(["acme_listed"]) == ["acme_listed"]
    assert parse_spec(spec).priors[0].name == "acme-listed"
    with pytest.raises(UnknownNameError, match="Did you mean 'acme-listed'"):
        parse_spec({"priors": [{"name": "acme-liste"}]})


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("acme_missing", "cannot import the plugin module 'acme_missing': no module named 'acme_missing'"),
        ("acme_listed.missing", "no module named 'acme_listed.missing'"),
        ("./acme_listed.py", "is not a module name"),
        ("/tmp/acme_listed", "is not a module name"),
        ("acme_broken", "failed with RuntimeError: the plugin is broken"),
        ("acme_needs", "needs the module 'acme_not_installed_dependency'"),
        ("acme_empty", "registered no prior, decoder, metric or prompt source"),
    ],
)
def test_a_bad_plugin_module_exits_2_with_its_name(
    plugin_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    module: str,
    expected: str,
) -> None:
    for command in ("priors", "metrics"):
        code, _, err = run_main(monkeypatch, capsys, command, "--plugins", f"acme_listed,{module}")
        unwrapped = " ".join(err.split())
        assert code == 2 and unwrapped.startswith("error: --plugins") and expected in unwrapped, err
        assert "Traceback" not in err
        sys.modules.pop(module, None)


def test_a_plugin_reusing_a_built_in_name_is_reported_at_its_import(
    plugin_folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (plugin_folder / "acme_clash.py").write_text(LISTED_PLUGIN.replace('"acme-listed"', '"ovi"'))
    code, _, err = run_main(monkeypatch, capsys, "priors", "--plugins", "acme_clash")
    sys.modules.pop("acme_clash", None)
    unwrapped = " ".join(err.split())
    assert code == 2 and "acme_clash" in unwrapped and "'ovi' is registered twice" in unwrapped
    assert "register it under another name" in unwrapped


def test_no_spec_field_imports_the_module_it_names(
    plugin_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = tmp_path / "imported"
    monkeypatch.setenv("ACME_CANARY", str(canary))
    from ovi_bench.plan import load_run_prompts

    names = ["acme_canary", "acme_canary:Prior", "acme_canary.Prior", "acme_canary.py", "acme_canary.txt"]
    for name in names:
        for spec in (
            {"priors": [{"name": name}]},
            {"priors": [{"name": "text-embedding", "params": {"model": name}}], "metrics": [{"name": name}]},
            {**MINIMAL, "decoder": {"name": name}},
        ):
            with pytest.raises(OviBenchError):
                parse_spec(spec)
        # Fields that name files or models are only ever opened as files or loaded as weights, at run time.
        spec = parse_spec(
            {**MINIMAL, "prompts": {"source": name}, "diagnostics": {"model": name, "bank": name}}
        )
        with pytest.raises(OviBenchError):
            load_run_prompts(spec)
    assert not canary.exists() and "acme_canary" not in sys.modules


def test_the_installed_command_takes_plugins(plugin_folder: Path, tmp_path: Path) -> None:
    listing = subprocess.run(
        [sys.executable, "-m", "ovi_bench", "priors", "--plugins", "acme_listed"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": f"{plugin_folder}:{ROOT}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        timeout=120,
    )
    assert listing.returncode == 0, listing.stderr
    assert "acme-listed" in [line.split("\t")[0] for line in listing.stdout.splitlines()]


REMOTE_SPEC: dict[str, Any] = {
    "name": "remote",
    "device": "cpu",
    "images_per_prompt": 1,
    "prompts": {"source": "builtin", "categories": ["color"], "limit": 1},
    "priors": [{"name": "acme-remote", "params": {"model": "tiny"}}],
    "decoder": {"params": {"model": "tiny"}, "steps": 2, "height": 32, "width": 32},
    "metrics": [{"name": "clip", "params": {"model": "tiny", "text_analyzer": "builtin"}}],
}


def test_a_plugin_gets_remote_code_only_when_the_spec_says_so(
    plugin_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    record = tmp_path / "record.json"
    monkeypatch.setenv("ACME_RECORD", str(record))
    default = tmp_path / "default.toml"
    default.write_text(tomli_w.dumps(REMOTE_SPEC))
    code, _, err = run_main(
        monkeypatch,
        capsys,
        "run",
        str(default),
        "--out",
        str(tmp_path / "run-default"),
        "-q",
        "--plugins",
        "acme_remote",
    )
    unwrapped = " ".join(err.split())
    assert code == 2 and "remote code" in unwrapped and "trust_remote_code = true" in unwrapped, err
    assert not record.exists()

    trusting = tmp_path / "trusting.toml"
    trusting.write_text(tomli_w.dumps({**REMOTE_SPEC, "trust_remote_code": True}))
    code, _, err = run_main(
        monkeypatch,
        capsys,
        "run",
        str(trusting),
        "--out",
        str(tmp_path / "run-trusting"),
        "-q",
        "--plugins",
        "acme_remote",
    )
    assert code == 0, err
    assert "warning: trust_remote_code = true" in " ".join(err.split())
    assert json.loads(record.read_text()) == {
        "component_sees": True,
        "from_pretrained_got": {"local_files_only": True, "trust_remote_code": True},
    }
    results = json.loads((tmp_path / "run-trusting" / "results.json").read_text())
    assert results["spec"]["trust_remote_code"] is True
    assert not remote_code_trusted()


# -- paths: nothing outside the run folder -------------------------------------------------------------------------


def test_labels_full_of_path_syntax_write_nothing_outside_the_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ovi_bench.provenance import write_results
    from ovi_bench.results.report import write_report
    from ovi_bench.runner import Runner

    # Deep enough that a label used as a path, against the run folder or the working directory, lands in tmp_path.
    work = tmp_path / "l1" / "l2" / "l3" / "l4" / "work"
    out = work / "runs" / "labels"
    prompts = work / "prompts.csv"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    prompts.write_text("prompt,category\na red cube,colour_1\n")
    hostile_labels = [
        "../../../escaped",
        f"{tmp_path}/absolute",
        "..\\..\\windows",
        "a/../../b",
        "~/home",
        ".",
        "..",
        "./runs",
    ]
    spec = parse_spec(
        {
            "name": "../../run-name",
            "device": "cpu",
            "images_per_prompt": 1,
            "prompts": {"source": str(prompts)},
            "priors": [
                {"name": "text-embedding", "label": label, "params": {"model": "tiny"}}
                for label in hostile_labels
            ],
            "decoder": {"params": {"model": "tiny"}, "steps": 2, "height": 32, "width": 32},
            "metrics": [{"name": "clip", "params": {"model": "tiny", "text_analyzer": "builtin"}}],
        }
    )
    before = {path for path in tmp_path.rglob("*")}
    write_results(Runner(spec, out, show_progress=False).run())
    write_report(out)
    # The run folder's own parents are made for it; anything else new must lie inside it.
    created = {path for path in tmp_path.rglob("*") if not out.is_relative_to(path)} - before
    assert created and all(path.is_relative_to(out) for path in created), sorted(
        str(path) for path in created if not path.is_relative_to(out)
    )
    names = {path.name for path in created}
    assert not any(label.strip("./\\~") and label.strip("./\\~") in names for label in hostile_labels)
    scores = (out / "scores.csv").read_text()
    assert "../../../escaped" in scores  # the labels are kept as text in the result rows


@pytest.mark.parametrize("category", ["../x", "a/b", "a\\b", "x\x00", "..", "ｆｕｌｌ", "a b"])
def test_custom_category_names_cannot_hold_path_syntax(tmp_path: Path, category: str) -> None:
    from ovi_bench.prompts import load_prompts

    csv_file = tmp_path / "prompts.csv"
    csv_file.write_text(f"prompt,category\na red cube,{category}\n", encoding="utf-8")
    with pytest.raises(OviBenchError, match="letters, digits and '_' only"):
        load_prompts(str(csv_file))
    with pytest.raises(SpecError):
        parse_spec({**MINIMAL, "prompts": {"categories": [category]}})


def test_an_unknown_users_home_is_a_missing_path_not_a_crash() -> None:
    from ovi_bench.prompts import load_prompts

    with pytest.raises(ModelLoadError, match="the local folder '~nosuchuser-ovi/model' does not exist"):
        load_pretrained(_RemoteCodeModel, "~nosuchuser-ovi/model")
    with pytest.raises(OviBenchError, match="does not exist"):
        load_prompts("~nosuchuser-ovi/prompts.txt")


def test_home_relative_prompt_paths_expand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ovi_bench.prompts import load_prompts

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "mine.txt").write_text("a red cube\n")
    assert [prompt.text for prompt in load_prompts("~/mine.txt").prompts] == ["a red cube"]
    with pytest.raises(OviBenchError, match=f"color_val.txt is missing from {re.escape(str(tmp_path))} "):
        load_prompts("t2i-compbench", categories=["color"], data_dir="~")
