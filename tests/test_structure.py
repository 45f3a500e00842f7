"""The shape of the package: no import cycle, no module reaching above its place in the data flow, short modules,
and fingerprints that a reorganisation of the code never moves.

The import graph is read from the source with `ast`, so an import inside a function or under `if TYPE_CHECKING:`
counts as much as one at the top of a module: each of them is a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

import ovi_bench
from ovi_bench.plan import decoder_fingerprint, metric_fingerprint, prior_fingerprint
from ovi_bench.spec import load_spec

PACKAGE_DIR = Path(ovi_bench.__file__).parent
REPOSITORY = PACKAGE_DIR.parent
MAX_MODULE_LINES = 600
MAX_RUNNER_LINES = 300
MAX_README_BYTES = 8 * 1024

# Lower layers may not import these (prefix match on dotted names). The data flow runs
# spec → plan → prior → decoder → metric → results; the run machinery (runner, scoring, audits, provenance) sits on
# top of the components, and results read finished run folders only.
RUN_MACHINERY = (
    "ovi_bench.runner",
    "ovi_bench.scoring",
    "ovi_bench.audits",
    "ovi_bench.provenance",
    "ovi_bench.preflight",
    "ovi_bench.api",
    "ovi_bench.cli",
)
FORBIDDEN_IMPORTS: dict[str, tuple[str, ...]] = {
    "ovi_bench.results": (*RUN_MACHINERY, "ovi_bench.plan"),
    "ovi_bench.metrics": (
        *RUN_MACHINERY,
        "ovi_bench.plan",
        "ovi_bench.results",
        "ovi_bench.priors",
        "ovi_bench.decoders",
    ),
    "ovi_bench.decoders": (
        *RUN_MACHINERY,
        "ovi_bench.plan",
        "ovi_bench.results",
        "ovi_bench.metrics",
        "ovi_bench.priors",
    ),
    "ovi_bench.priors": (
        *RUN_MACHINERY,
        "ovi_bench.plan",
        "ovi_bench.results",
        "ovi_bench.metrics",
        "ovi_bench.decoders",
    ),
    "ovi_bench.models": (
        *RUN_MACHINERY,
        "ovi_bench.plan",
        "ovi_bench.results",
        "ovi_bench.metrics",
        "ovi_bench.priors",
        "ovi_bench.decoders",
    ),
    "ovi_bench.bank": (
        *RUN_MACHINERY,
        "ovi_bench.plan",
        "ovi_bench.results",
        "ovi_bench.metrics",
        "ovi_bench.priors",
        "ovi_bench.decoders",
    ),
    "ovi_bench.prompts": (
        *RUN_MACHINERY,
        "ovi_bench.plan",
        "ovi_bench.results",
        "ovi_bench.metrics",
        "ovi_bench.priors",
        "ovi_bench.decoders",
        "ovi_bench.models",
        "ovi_bench.bank",
    ),
    "ovi_bench.spec": (*RUN_MACHINERY, "ovi_bench.plan", "ovi_bench.results", "ovi_bench.rate"),
    # The rating app reads finished run folders (as results code does) and never runs models.
    "ovi_bench.rate": (
        *RUN_MACHINERY,
        "ovi_bench.plan",
        "ovi_bench.priors",
        "ovi_bench.decoders",
        "ovi_bench.metrics",
    ),
    "ovi_bench.plan": (*RUN_MACHINERY, "ovi_bench.results"),
}


@cache
def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by the name of its `__init__.py`)."""
    found = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(REPOSITORY).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path) -> set[str]:
    """The package's modules that `name` imports anywhere in its source."""
    known = modules()
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            for alias in node.names:
                # `from package import module` depends on that module; `from module import name` on the module.
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {target for target in targets if target in known and target != name}


@cache
def import_graph() -> dict[str, set[str]]:
    return {name: _imports(name, path) for name, path in modules().items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for neighbour in sorted(graph[node]):
            if neighbour not in index:
                visit(neighbour)
                low[node] = min(low[node], low[neighbour])
            elif neighbour in on_stack:
                low[node] = min(low[node], index[neighbour])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_reader_sees_imports_inside_functions(tmp_path: Path) -> None:
    imports = import_graph()["ovi_bench.cli.run_commands"]
    # cli imports the runner only inside its command functions, to keep `--help` fast.
    assert "ovi_bench.runner" in imports


def test_the_package_has_no_import_cycle() -> None:
    cycles = _cycles(import_graph())
    assert not cycles, "import cycles (each a group of modules that import one another):\n" + "\n".join(
        " ↔ ".join(cycle) for cycle in cycles
    )


def test_no_module_imports_one_above_it_in_the_data_flow() -> None:
    problems = []
    for name, imports in import_graph().items():
        for layer, forbidden in FORBIDDEN_IMPORTS.items():
            if name == layer or name.startswith(layer + "."):
                problems += [
                    f"{name} imports {target}"
                    for target in sorted(imports)
                    if any(target == above or target.startswith(above + ".") for above in forbidden)
                ]
    assert not problems, "\n".join(problems)


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def test_only_the_metric_package_asks_what_kind_of_metric_a_class_is() -> None:
    offenders = []
    for name, path in modules().items():
        if name.startswith("ovi_bench.metrics"):
            continue
        source = path.read_text(encoding="utf-8")
        for call in _calls(ast.parse(source)):
            if isinstance(call.func, ast.Name) and call.func.id == "issubclass":
                text = ast.get_source_segment(source, call) or ""
                if "Metric" in text:
                    offenders.append(f"{name}:{call.lineno}: {text}")
    assert not offenders, "metric kinds are described by the metric classes themselves:\n" + "\n".join(
        offenders
    )


def _is_os_environ(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def _environment_writes(source: str) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        if any(isinstance(target, ast.Subscript) and _is_os_environ(target.value) for target in targets):
            lines.append(node.lineno)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method = node.func
            if _is_os_environ(method.value) and method.attr in {
                "setdefault",
                "pop",
                "update",
                "clear",
                "popitem",
            }:
                lines.append(node.lineno)
            if (
                isinstance(method.value, ast.Name)
                and method.value.id == "os"
                and method.attr in {"putenv", "unsetenv"}
            ):
                lines.append(node.lineno)
    return sorted(lines)


def test_the_environment_reader_finds_writes() -> None:
    source = 'import os\nos.environ["A"] = "1"\nos.environ.pop("A")\ndel os.environ["B"]\nx = os.environ.get("C")\n'
    assert _environment_writes(source) == [2, 3, 4]


def test_the_package_never_writes_the_process_environment() -> None:
    # Data folders and offline mode travel as arguments: an environment variable set by one component is a hidden
    # side channel to another, and leaks into everything else in the process.
    offenders = [
        f"{name}:{line}"
        for name, path in modules().items()
        for line in _environment_writes(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, offenders


def test_modules_stay_short() -> None:
    lengths = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules().items()}
    too_long = {name: lines for name, lines in lengths.items() if lines > MAX_MODULE_LINES}
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines: {too_long}"
    assert lengths["ovi_bench.runner"] < MAX_RUNNER_LINES


def test_the_readme_is_short() -> None:
    readme = REPOSITORY / "README.md"
    if not readme.is_file():
        pytest.skip("no README.md beside the package (installed from a wheel)")
    assert len(readme.read_bytes()) < MAX_README_BYTES


# Fingerprints are cache keys and provenance stamps: moving code must never move them. Values recorded from the
# shipped configs; a change here invalidates every stored run and must come with a version bump, on purpose.
SPEC_FINGERPRINTS = {
    "smoke": "e46d243d257f93e5a04cabbecafd4e709e4acef3d558471f9431d7ceaa4ba028",
    "compbench-kandinsky22": "ced77efb2576f932c2838211fd03fc4b31a4eef018acb5d2ec1a74ef3bab3008",
    "cross-decoder": "a8900c3bc48119f26ff2c8f4889c5730e67b5f88129dea3abe13610a62cfb548",
    "ci-gpu": "d004d4eff079564a8c6b1c03fadf4d0fdd32460c3224c4f139b90cce21f20330",
    "sweep-ovi-constraints": "0ecad54f28743ab7cab7273e63a0d4badf3e1f86f890be5b35c4cc8db3e59f62",
}
SMOKE_COMPONENT_FINGERPRINTS = {
    "decoder kandinsky-2.2-decoder": "4c72137a71d4e9756fd6f85b5663eb4791bfdc0db865dd485a616aacfa1a8013",
    "decoder sdxl-ip-adapter": "ce0c32323406e1a0e7db9964a0869d94258e1edcf14fe11e4bee2bc844a0c74a",
    "decoder karlo-decoder": "f5e9953a8362ce8d7ff4e9b9ad527e22ec908bb85862a3351c61b9f2dcec4ffa",
    "prior text-embedding": "5b7a5defb2bc0649c98cfef47ed1280043357c34facf1da4b3e70ec041ebde23",
    "prior kandinsky-2.2": "460f894f91ff7d2a4760f84c36c3076cdddb6cb4117862763a739ffbb39c62ec",
    "prior eclipse": "9256fdbc7bbc3d2837153f65bbad5000606ab4ef88e660a56a08d823343a0359",
    "prior ovi": "022ae44cc70b11b4e5d54913f2c77e1838f8287b48c79211a3f800e74987ac92",
    "prior ovi-mahalanobis": "48213bc48baebb5fe30c4dfac548713e22a1f1613ab436535d688ac90ab25620",
    "prior ovi-nn": "23b305fda2da59af55d4a13b6f7ba84c60dcf58454c2726682cb7619a1f0144b",
    "prior karlo": "87645789c47c9d1013a4589611887d75e1d8cf2a70f83aeac0ea588a33a2cd1c",
    "prior text-embedding-l": "fc07a9c5f5d25c5a7eea4b37d7d0a461c630cdca89ee0a3162e4175751b2a7a7",
    "prior ovi-l": "477c94f31ddfa47979d92583ccfc208c34abb57450d5c8c7009b8f7bcf2bf56c",
    "metric b-vqa": "55e5d6240cd07573f9991231aca1b21e3133fc70a355bbbcb86f8bd4752b8ae4",
    "metric spatial-2d": "aacd6b571676de7fadbfe34f0a4c72b61709b339fcfdade73d3d773aecf6b7c1",
    "metric spatial-3d": "61e79becde2991ba11572bb1504eb7a346b7f63ae23e4c9a6dcee04d15c2dee8",
    "metric numeracy": "d93296d53393ade4c1f14ae8a8dc15f31078fe4690c33c069da1cf566b64d2ce",
    "metric clip": "ecaac1fd4a057ed1a140ca07674d5b580a4f830cbf79466bd92f5d96db38138c",
    "metric 3-in-1": "e851d40e3938aedefbfcbeac9fffa2ae2fe27ce9b28528883a82e68fac9f4a78",
    "metric fid": "2946d66719f258fb243f49de02764dea087f67bef906ac83f919249185011eff",
    "metric cmmd": "1ed274e58e8de407d67edf8e127b7f26879330551aec7d0b8517d14a4d947c20",
    "metric kid": "16b204e08c1ab47146306b4c779e4b9a06c4f430d07d1de315bc56eee39472d1",
    "metric aesthetic": "18023c882f5ee5be2b5bb8d2495dee0ceac922158443d5a3c0e5f51f34e9799b",
    "metric vqascore": "781a6d73dc8ca2fef999bbc106f941b6ae1ee5b64727734cd9e54b8043985f83",
    "metric pickscore": "cf7c74c69aae09a6c0bc5fb30a3ee919ec5cc04214a6c7b23b84e23153fd6ea6",
    "metric hpsv2": "9d904d5c7148b7c0f1d21d78381d35701a63100ec8ddce88e268dc047a41e7e7",
    "metric imagereward": "71e5435bd0375e1a394824a1cf5d0a902b671ec0fb56c789ec28de60611f2713",
}


@pytest.mark.parametrize("config", sorted(SPEC_FINGERPRINTS))
def test_spec_fingerprints_do_not_move(config: str) -> None:
    assert load_spec(REPOSITORY / "configs" / f"{config}.toml").fingerprint() == SPEC_FINGERPRINTS[config]


def test_smoke_component_fingerprints_do_not_move() -> None:
    spec = load_spec(REPOSITORY / "configs" / "smoke.toml")
    found = {
        f"decoder {decoder.display_name}": decoder_fingerprint(spec, decoder)
        for decoder in spec.decoder_specs
    }
    found |= {f"prior {prior.display_name}": prior_fingerprint(spec, prior) for prior in spec.priors}
    found |= {f"metric {metric.name}": metric_fingerprint(spec, metric) for metric in spec.metrics}
    assert found == SMOKE_COMPONENT_FINGERPRINTS
