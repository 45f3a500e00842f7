"""The preflight: what a run needs is resolved before anything is generated, and a missing thing fails in seconds."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import constants

from ovi_bench.availability import ModelCheck, hub_reachability, probe, resolve_model
from ovi_bench.errors import PreflightError
from ovi_bench.metrics.clip import OFFICIAL_CLIP_ID
from ovi_bench.models.aesthetic import tiny_aesthetic_dir
from ovi_bench.models.clip import tiny_clip_dir
from ovi_bench.models.dinov2 import tiny_dinov2_dir
from ovi_bench.models.eclipse import tiny_eclipse_prior_dir
from ovi_bench.models.evaluators import (
    tiny_blip_vqa_dir,
    tiny_depth_anything_dir,
    tiny_dpt_hybrid_dir,
    tiny_grounding_dino_dir,
    tiny_owlv2_dir,
)
from ovi_bench.models.hub import hub_offline
from ovi_bench.models.instructblip import tiny_instructblip_dir
from ovi_bench.models.kandinsky import (
    KANDINSKY22_DECODER_ID,
    KANDINSKY22_PRIOR_ID,
    tiny_kandinsky_decoder_dir,
    tiny_kandinsky_prior_dir,
)
from ovi_bench.models.llava import tiny_llava_dir
from ovi_bench.preflight import preflight
from ovi_bench.registry import DECODERS, METRICS, PRIORS
from ovi_bench.runner import Runner
from ovi_bench.spec import parse_spec
from tests.tiny_runs import run, tiny_spec

CLOSED_PORT = "http://127.0.0.1:9"
"""The discard port on loopback: nothing listens there, so a connection is refused at once."""

REAL_SPEC: dict[str, Any] = {
    "priors": [
        {"name": "text-embedding", "params": {"model": KANDINSKY22_PRIOR_ID}},
        {"name": "kandinsky-2.2"},
    ],
    "decoder": {"params": {}, "steps": 2, "height": 64, "width": 64},
    "metrics": [{"name": "clip"}, {"name": "b-vqa"}],
}
"""The tiny spec with real hub ids for every model."""


@pytest.fixture
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty Hugging Face cache. huggingface_hub reads HF_HOME once, at import, into its constants: a new
    process started with HF_HOME=<tmp> sees what these two settings give."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    return tmp_path / "hf" / "hub"


@pytest.fixture
def hub_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def hub_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Online mode, with the hub endpoint on a closed loopback port (as HF_ENDPOINT=http://127.0.0.1:9 gives)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", CLOSED_PORT)
    monkeypatch.setattr(constants, "ENDPOINT", CLOSED_PORT)


def _run_real_spec(out: Path, **overrides: Any) -> tuple[str, float]:
    spec = parse_spec(tiny_spec(**(REAL_SPEC | overrides)))
    started = time.perf_counter()
    with pytest.raises(PreflightError) as raised:
        Runner(spec, out, show_progress=False).run()
    return str(raised.value), time.perf_counter() - started


EXPECTED_IDS = (
    KANDINSKY22_PRIOR_ID,
    KANDINSKY22_DECODER_ID,
    OFFICIAL_CLIP_ID,
    "Salesforce/blip-vqa-capfilt-large",
)


def test_offline_with_an_empty_cache_fails_in_seconds_listing_every_model_and_its_fetch_command(
    tmp_path: Path, empty_hub_cache: Path, hub_off: None
) -> None:
    message, seconds = _run_real_spec(tmp_path / "run")
    assert seconds < 10, f"the preflight took {seconds:.1f} s"
    for model_id in EXPECTED_IDS:
        assert f"model {model_id} for " in message
        assert f"\n  hf download {model_id}\n" in message + "\n"
    assert (
        message.count(f"model {KANDINSKY22_PRIOR_ID} for") == 1
    )  # one line, naming both priors that load it
    assert "prior 'text-embedding'" in message and "prior 'kandinsky-2.2'" in message
    assert f"not in the Hugging Face cache ({empty_hub_cache})" in message
    assert "HF_HUB_OFFLINE=1 forbids downloading it" in message
    assert not (tmp_path / "run" / "images").exists() and not (tmp_path / "run" / "embeddings").exists()


def test_an_unreachable_hub_is_named_and_the_failure_is_fast(
    tmp_path: Path, empty_hub_cache: Path, hub_unreachable: None
) -> None:
    message, seconds = _run_real_spec(tmp_path / "run")
    # Before the preflight, the first model load retried the hub for minutes, then said "no vocabulary found".
    assert seconds < 10, f"the preflight took {seconds:.1f} s"
    assert f"the hub is unreachable ({CLOSED_PORT}" in message
    assert "on a machine with internet" in message and f"hf download {KANDINSKY22_PRIOR_ID}" in message
    assert "no vocabulary found" not in message
    assert not (tmp_path / "run" / "images").exists()


def test_reachability_of_a_closed_port_is_fast_and_named(hub_unreachable: None) -> None:
    started = time.perf_counter()
    state = hub_reachability()
    assert time.perf_counter() - started < 3
    assert state.state == "unreachable" and state.detail.startswith(CLOSED_PORT)


def test_reachability_is_not_probed_when_the_hub_is_off(
    hub_off: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(constants, "ENDPOINT", CLOSED_PORT)
    assert hub_reachability().state == "off"


def test_reachability_of_a_silent_server_is_bounded_by_the_timeout() -> None:
    with socket.socket() as server:  # accepts connections (backlog) but never answers
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        started = time.perf_counter()
        state = probe(f"http://127.0.0.1:{server.getsockname()[1]}", timeout=0.5)
    assert state.state == "unreachable" and time.perf_counter() - started < 2


@pytest.fixture
def local_http_server() -> Iterator[str]:
    handler = http.server.SimpleHTTPRequestHandler
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_server_that_answers_is_reachable(local_http_server: str) -> None:
    assert probe(local_http_server).state == "reachable"


class _FakeHub(http.server.BaseHTTPRequestHandler):
    """A loopback stand-in for the hub's model API: two repositories, one without weights."""

    REPOSITORIES: dict[str, list[str]] = {  # noqa: RUF012
        "ovi-bench-tests/half": ["config.json"],
        "ovi-bench-tests/whole": ["config.json", "model.safetensors"],
    }

    def log_message(self, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.end_headers()

    def do_GET(self) -> None:
        repository = self.path.split("?")[0].removeprefix("/api/models/").split("/revision")[0]
        if repository not in self.REPOSITORIES:
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.end_headers()
            return
        siblings = [{"rfilename": name} for name in self.REPOSITORIES[repository]]
        body = json.dumps({"id": repository, "siblings": siblings}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)


def test_on_a_reachable_hub_an_uncached_model_must_exist_with_its_files(
    empty_hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        hub = hub_reachability()
        assert hub.state == "reachable"
        files = ["config.json", "*.safetensors|*.bin"]
        assert resolve_model(ModelCheck("ovi-bench-tests/whole", None, files), hub)[0] == "download"
        status, detail = resolve_model(ModelCheck("ovi-bench-tests/half", None, files), hub)
        assert status == "missing" and detail.endswith("has no *.safetensors or *.bin")
        status, detail = resolve_model(ModelCheck("ovi-bench-tests/typo", None, files), hub)
        assert status == "missing" and "there is no model 'ovi-bench-tests/typo' on the hub" in detail
    finally:
        server.shutdown()
        server.server_close()


def _cache_model(cache: Path, model_id: str, folder: Path, drop: tuple[str, ...] = ()) -> Path:
    """Lay a local model folder out in the hub cache as `hf download` does: refs/main -> snapshots/<commit>/."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repository = cache / f"models--{model_id.replace('/', '--')}"
    snapshot = repository / "snapshots" / commit
    shutil.copytree(folder, snapshot, ignore=shutil.ignore_patterns(*drop))
    (repository / "refs").mkdir(parents=True)
    (repository / "refs" / "main").write_text(commit)
    return snapshot


def test_with_the_hub_unreachable_a_fully_cached_run_proceeds_offline(
    tmp_path: Path, empty_hub_cache: Path, hub_unreachable: None, capsys: pytest.CaptureFixture[str]
) -> None:
    _cache_model(empty_hub_cache, "ovi-bench-tests/tiny-clip", tiny_clip_dir())
    spec = parse_spec(
        tiny_spec(
            priors=[{"name": "text-embedding", "params": {"model": "tiny"}}],
            metrics=[{"name": "clip", "params": {"model": "ovi-bench-tests/tiny-clip"}}],
        )
    )
    started = time.perf_counter()
    result = Runner(spec, tmp_path / "run", show_progress=True).run()
    seconds = time.perf_counter() - started
    assert result is not None and result.counts.scores_computed == len(result.items) == 4
    assert "the Hugging Face hub is unreachable" in capsys.readouterr().err
    # Without the offline switch, every file of the CLIP model waits out the hub's retries: 318 s in all.
    assert seconds < 60, f"the run took {seconds:.1f} s"
    # The switch holds for the run only.
    assert "HF_HUB_OFFLINE" not in os.environ and constants.HF_HUB_OFFLINE is False and not hub_offline()


def test_an_incomplete_cached_copy_counts_as_missing_and_names_the_files(
    empty_hub_cache: Path, hub_off: None
) -> None:
    # `model_file` fetches single config files (the zero-image embedding's key): a snapshot can hold only those.
    _cache_model(empty_hub_cache, KANDINSKY22_PRIOR_ID, tiny_kandinsky_prior_dir(), drop=("*.safetensors",))
    check = ModelCheck(
        KANDINSKY22_PRIOR_ID, None, ["image_encoder/config.json", "text_encoder/*.safetensors|a"]
    )
    status, detail = resolve_model(check, hub_reachability())
    assert status == "missing"
    assert "incomplete in the Hugging Face cache" in detail and "no text_encoder/*.safetensors or a" in detail


def test_a_metric_for_none_of_the_categories_is_refused_before_any_image(tmp_path: Path) -> None:
    # Before the preflight this wrote an empty leaderboard for the metric and exited 0.
    spec = parse_spec(
        tiny_spec(
            prompts={"source": "builtin", "categories": ["color"], "limit": 1},
            metrics=[
                {"name": "clip", "params": {"model": "tiny"}},
                {"name": "spatial-2d", "params": {"detector_model": "tiny", "text_analyzer": "builtin"}},
                {"name": "b-vqa", "params": {"model": "tiny"}, "categories": ["texture"]},
            ],
        )
    )
    with pytest.raises(PreflightError) as raised:
        Runner(spec, tmp_path / "run", show_progress=False).run()
    message = str(raised.value)
    assert (
        "metric 'spatial-2d' applies to none of the run's categories (color): it scores spatial, complex"
        in message
    )
    assert "metric 'b-vqa' applies to none of the run's categories (color)" in message
    assert "narrowed by its spec to texture" in message
    assert "metric 'clip'" not in message
    assert not (tmp_path / "run" / "images").exists()


def test_a_derived_metric_whose_input_skips_its_category_is_refused_before_any_image(tmp_path: Path) -> None:
    # Before the preflight, every image was generated and scored first, and then 3-in-1 found no spatial-2d scores.
    analyzer = {"text_analyzer": "builtin"}
    spec = parse_spec(
        tiny_spec(
            prompts={"source": "builtin", "categories": ["complex", "spatial"], "limit": 1},
            metrics=[
                {"name": "clip", "params": {"model": "tiny", **analyzer}},
                {"name": "b-vqa", "params": {"model": "tiny", **analyzer}},
                {
                    "name": "spatial-2d",
                    "params": {"detector_model": "tiny", **analyzer},
                    "categories": ["spatial"],
                },
                {"name": "3-in-1"},
            ],
        )
    )
    with pytest.raises(PreflightError) as raised:
        Runner(spec, tmp_path / "run", show_progress=False).run()
    message = str(raised.value)
    assert "metric '3-in-1' needs the spatial-2d score of complex images" in message
    assert "b-vqa score" not in message and "clip score" not in message
    assert not (tmp_path / "run" / "images").exists()


def test_a_missing_lexicon_is_found_before_any_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "official"
    empty.mkdir()
    monkeypatch.setenv("OVI_BENCH_COMPBENCH_DIR", str(empty))
    detector = {"detector_model": "tiny", "text_analyzer": "builtin"}
    spec = parse_spec(
        tiny_spec(
            prompts={"source": "builtin", "categories": ["numeracy"], "limit": 1},
            metrics=[
                {"name": "numeracy", "params": detector},
                {"name": "clip", "params": {"model": "tiny"}},
            ],
        )
    )
    with pytest.raises(PreflightError) as raised:
        Runner(spec, tmp_path / "run", show_progress=False).run()
    message = str(raised.value)
    assert "numeracy lexicon new_objects.txt for metric 'numeracy'" in message
    assert "--compbench-dir" in message
    assert not (tmp_path / "run" / "images").exists()


def test_missing_banks_of_a_prior_and_of_the_diagnostics_are_found_before_any_image(tmp_path: Path) -> None:
    # The diagnostics read their bank after every image was made; the preflight names both banks at once.
    half_built = tmp_path / "half-built"
    half_built.mkdir()
    spec = parse_spec(
        tiny_spec(
            priors=[
                {"name": "ovi-mahalanobis", "params": {"model": "tiny", "bank": str(tmp_path / "no-bank")}}
            ],
            diagnostics={"model": "tiny", "bank": str(half_built)},
        )
    )
    with pytest.raises(PreflightError) as raised:
        Runner(spec, tmp_path / "run", show_progress=False).run()
    message = str(raised.value)
    assert f"embedding bank {tmp_path / 'no-bank'} for prior 'ovi-mahalanobis': the folder" in message
    assert f"embedding bank {half_built} for diagnostics: the folder {half_built} has no bank.json" in message
    assert "build it with `ovi-bench bank build" in message
    assert not (tmp_path / "run").exists()


def test_a_model_only_finished_work_needs_may_be_gone(tmp_path: Path) -> None:
    # A run scored with a CLIP folder that was deleted afterwards: re-running it computes nothing, so it passes.
    folder = tmp_path / "clip"
    shutil.copytree(tiny_clip_dir(), folder)
    metrics = [{"name": "clip", "params": {"model": str(folder)}}]
    run(tmp_path / "run", metrics=metrics)
    shutil.rmtree(folder)
    again = run(tmp_path / "run", metrics=metrics)
    assert again.counts.scores_computed == 0 and again.counts.images_generated == 0
    # A new image would need it: the preflight refuses before generating anything.
    with pytest.raises(PreflightError, match=rf"the local folder {folder} does not exist"):
        run(tmp_path / "run", metrics=metrics, images_per_prompt=3)
    assert len(list((tmp_path / "run" / "images").rglob("*.png"))) == 8


def test_dry_run_of_the_smoke_config_prints_the_plan_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ovi_bench.cli import main

    out = tmp_path / "smoke"
    config = Path(__file__).resolve().parents[1] / "configs" / "smoke.toml"
    monkeypatch.setattr(sys, "argv", ["ovi-bench", "run", str(config), "--out", str(out), "--dry-run"])
    main()  # returns: exit code 0
    printed = capsys.readouterr().out
    assert "dry run: nothing is generated" in printed and "hub: unused" in printed
    # ViT-bigG/14 priors: 2 prompts × 1 seed × 2 decoders per category, 8 categories; ViT-L/14 ones: 1 decoder.
    assert "| ovi-mahalanobis  | 0/4 " in printed and "| 0/32    |" in printed
    assert "| ovi-l            | 0/2 " in printed and "| 0/16    |" in printed
    assert "built in code" in printed and "missing" not in printed
    assert "| numeracy    | numeracy " in printed
    assert not out.exists()


def test_dry_run_of_a_run_that_cannot_start_prints_the_plan_then_the_error(
    tmp_path: Path,
    empty_hub_cache: Path,
    hub_off: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ovi_bench.cli import main

    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(
        'device = "cpu"\nimages_per_prompt = 2\n\n[prompts]\nsource = "builtin"\ncategories = ["color"]\nlimit = 1\n\n'
        '[[priors]]\nname = "text-embedding"\n\n[decoder]\nparams = { model = "tiny" }\n\n'
        '[[metrics]]\nname = "clip"\nparams = { model = "tiny" }\n'
    )
    monkeypatch.setattr(
        sys, "argv", ["ovi-bench", "run", str(spec_path), "--out", str(tmp_path / "run"), "--dry-run"]
    )
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    assert exited.value.code == 2
    assert f"| {KANDINSKY22_PRIOR_ID} | missing " in captured.out and "| 0/2 " in captured.out
    error = " ".join(captured.err.split())
    assert error.startswith("error: the run cannot start") and f"hf download {KANDINSKY22_PRIOR_ID}" in error
    assert "Traceback" not in captured.err and not (tmp_path / "run").exists()


TINY_FOLDERS = {
    ("priors", "text-embedding", "model"): tiny_kandinsky_prior_dir,
    ("priors", "kandinsky-2.2", "model"): tiny_kandinsky_prior_dir,
    ("priors", "ovi", "model"): tiny_kandinsky_prior_dir,
    ("priors", "eclipse", "model"): tiny_kandinsky_prior_dir,
    ("priors", "eclipse", "checkpoint"): tiny_eclipse_prior_dir,
    ("decoders", "kandinsky-2.2-decoder", "model"): tiny_kandinsky_decoder_dir,
    ("metrics", "b-vqa", "model"): tiny_blip_vqa_dir,
    ("metrics", "clip", "model"): tiny_clip_dir,
    ("metrics", "spatial-2d", "detector_model"): tiny_owlv2_dir,
    ("metrics", "numeracy", "detector_model"): tiny_grounding_dino_dir,
    ("metrics", "spatial-3d", "depth_model"): tiny_dpt_hybrid_dir,
    ("metrics", "fid", "feature_model"): tiny_clip_dir,
    ("metrics", "kid", "feature_model"): tiny_dinov2_dir,
    ("metrics", "aesthetic", "clip_model"): lambda: tiny_aesthetic_dir() / "clip",
    ("metrics", "vqascore", "model"): tiny_instructblip_dir,
}
EXTRA_PARAMS = {
    "numeracy": {"detector": "grounding-dino"},
    "kid": {"features": "dinov2", "reference": "tiny"},
    "fid": {"reference": "tiny"},
    "aesthetic": {"weights": "tiny"},
}


@pytest.mark.parametrize("where", sorted(TINY_FOLDERS), ids=lambda where: f"{where[1]}.{where[2]}")
def test_declared_files_are_those_save_pretrained_writes(where: tuple[str, str, str]) -> None:
    # The tiny models are saved with `save_pretrained`, in the layout of the hub repositories they stand in for: a
    # declaration that a real download would not satisfy fails here, on the tiny folder.
    kind, name, parameter = where
    registry = {"priors": PRIORS, "decoders": DECODERS, "metrics": METRICS}[kind]
    component = registry.get(name)
    folder = str(TINY_FOLDERS[where]())
    params = component.Params.model_validate({**EXTRA_PARAMS.get(name, {}), parameter: folder})
    needs = [need for need in component.required_models(params) if need.ref == folder]
    assert needs, f"{name} declares no model for its '{parameter}'"
    for need in needs:
        assert resolve_model(ModelCheck(folder, None, list(need.files)), hub_reachability()) == (
            "folder",
            f"local folder {Path(folder).resolve()}",
        )


def test_the_llava_family_and_a_depth_alternative_are_declared_too() -> None:
    for component, params, folder in (
        (METRICS.get("vqascore"), {"model_family": "llava"}, tiny_llava_dir()),
        (METRICS.get("spatial-3d"), {"detector_model": "tiny"}, tiny_depth_anything_dir()),
    ):
        key = "model" if "model_family" in params else "depth_model"
        needs = component.required_models(component.Params.model_validate({**params, key: str(folder)}))
        files = next(need.files for need in needs if need.ref == str(folder))
        assert resolve_model(ModelCheck(str(folder), None, list(files)), hub_reachability())[0] == "folder"


def test_preflight_of_a_tiny_run_asks_no_server_and_finds_nothing_missing(tmp_path: Path) -> None:
    report = preflight(Runner(parse_spec(tiny_spec()), tmp_path / "run", show_progress=False), with_plan=True)
    assert report.hub.state == "unused" and not report.blocking and report.error() is None
    assert {check.status for check in report.models} == {"tiny"}
    assert report.items is not None and len(report.items) == 8 and not report.stored
