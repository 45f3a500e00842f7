"""What a run produced and where it came from: counts, result rows, the provenance stamped on every result file, and
the writing of the run's result files.

The runner fills a `RunResult`; `provenance` turns it into the record of fingerprints, package versions, model
revisions and prompt digests that the result files carry, and `write_results` writes them into the run folder:

    scores.csv          one row per image and metric, with its reason (and its prior and decoder)
    embeddings.csv      one row per prior × prompt × seed: the prior's facts and the embedding diagnostics
    leaderboard.csv     one row per prior × decoder × category × metric (mean, 95% interval, std, prompts, images,
                        direction)
    leaderboard.md      the official-metric table (priors × categories), the generalisation view when two decoders
                        share a space (`ovi_bench.results.generalisation`), the human judgements when the folder
                        holds this run's human.json (`ovi-bench human`), then every row; headed by the fingerprint
    leaderboard.tex     the official-metric table for a paper (booktabs)
    leaderboard.json    every row plus the provenance
    set_scores.csv      set-level metrics (FID, KID, CMMD): one row per prior × decoder × category and per prior ×
                        decoder ("all")
    audit.csv           the metric audits, when configured
    results.json        the leaderboard plus provenance: fingerprint, spec, versions, device, dtype, prompt digest,
                        and the set scores and audits: what every later command reads (ovi_bench.results.records)

With a [rating.simulation] table, simulated raters then vote through the rating app into ratings.sqlite and the
judgements are analysed into human.csv and human.json (`ovi_bench.results.human`).

Everything after the run reads these files (`ovi_bench.results`), never a `RunResult`.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ovi_bench.components import RunData, run_keywords
from ovi_bench.diagnostics import DIAGNOSTIC_COLUMNS
from ovi_bench.interrupts import stop_signals_deferred
from ovi_bench.io import atomic_write_text, write_csv
from ovi_bench.models.clip import load_token_counter
from ovi_bench.models.hub import is_model_parameter, model_revision
from ovi_bench.plan import WorkItem, decoder_fingerprint, metric_fingerprint, prior_fingerprint
from ovi_bench.prompts import PromptSet
from ovi_bench.prompts.base import prompt_set_digest
from ovi_bench.rate.simulate import simulate_ratings
from ovi_bench.registry import DECODERS, METRICS
from ovi_bench.results.generalisation import generalisation, generalisation_records
from ovi_bench.results.human import read_human_payload, write_human
from ovi_bench.results.leaderboard import (
    LeaderboardHeader,
    leaderboard_frame,
    set_score_frame,
    with_audits,
    with_diagnostics,
    with_set_scores,
    write_leaderboard,
)
from ovi_bench.results.prompt_length import (
    PromptLength,
    count_prompt_tokens,
    prompt_length_records,
    prompt_length_summary,
    prompt_length_view,
)
from ovi_bench.spec import RunSpec, component_space
from ovi_bench.text import markdown_text
from ovi_bench.version import __version__

PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "safetensors", "numpy", "pandas", "pillow")


@dataclass
class RunCounts:
    """What a run computed and what it found already done."""

    embeddings_computed: int = 0
    images_generated: int = 0
    images_reused: int = 0
    images_regenerated_corrupt: int = 0
    scores_computed: int = 0
    scores_reused: int = 0
    diagnostics_computed: int = 0
    features_computed: int = 0
    """Images run through a set metric's feature extractor (set metrics sharing an extractor share features)."""
    features_reused: int = 0


@dataclass
class RunResult:
    output_dir: Path
    spec: RunSpec
    prompt_set: PromptSet
    items: list[WorkItem]
    score_rows: list[dict[str, Any]]
    embedding_rows: list[dict[str, Any]] = field(default_factory=list)
    """One row per prior × prompt × seed: the prior's own facts and, when configured, the diagnostics."""
    counts: RunCounts = field(default_factory=RunCounts)
    device: str = "cpu"
    set_rows: list[dict[str, Any]] = field(default_factory=list)
    """Set-level metrics (FID, KID, CMMD): one row per prior × category and per prior over all its images ("all")."""
    set_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Provenance of each set metric: feature space, extractor fingerprint, resize policy, reference set and size."""
    audit_rows: list[dict[str, Any]] = field(default_factory=list)
    """Metric audits (prompt-shuffle gap, canaries): one row per metric × category × audit, when configured."""
    run_data: RunData = field(default_factory=RunData)
    """What the run handed its components (the official files' folder), for their content identities."""


def package_versions() -> dict[str, str]:
    versions = {"ovi-bench": __version__, "python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def model_revisions(spec: RunSpec) -> dict[str, dict[str, str]]:
    """Every model a component's parameters name, with the revision it resolved to (see `model_revision`)."""
    components = [(f"priors[{prior.display_name}]", prior.params) for prior in spec.priors]
    if spec.decoders is None:
        components.append(("decoder", spec.decoder.params))
    else:
        components += [(f"decoders[{decoder.display_name}]", decoder.params) for decoder in spec.decoders]
    components += [(f"metrics[{metric.name}]", metric.params) for metric in spec.metrics]
    return {
        f"{where}.{name}": model_revision(value)
        for where, params in components
        for name, value in params.items()
        if is_model_parameter(name) and isinstance(value, str)
    }


def provenance(result: RunResult) -> dict[str, Any]:
    spec = result.spec
    return {
        "spec_fingerprint": spec.fingerprint(),
        "spec": spec.model_dump(mode="json"),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": result.device,
        "dtype": spec.dtype,
        "seeds": spec.seeds,
        "packages": package_versions(),
        "prompts": {
            "source": result.prompt_set.source,
            "digest": result.prompt_set.digest,
            "files": result.prompt_set.files,
            "n_prompts": len(result.prompt_set.prompts),
            **({"licence": result.prompt_set.licence} if result.prompt_set.licence else {}),
            # Per category, so that runs over different categories can still be checked for the same prompts.
            "category_digests": {
                category: prompt_set_digest(prompts)
                for category, prompts in result.prompt_set.by_category().items()
            },
        },
        "models": model_revisions(spec),
        "priors": {
            prior.display_name: {
                "name": prior.name,
                "params": prior.params,
                "fingerprint": prior_fingerprint(spec, prior),
            }
            for prior in spec.priors
        },
        "decoder": {
            "name": spec.decoder.name,
            "params": spec.decoder.params,
            "fingerprint": decoder_fingerprint(spec),
        },
        # Every decoder by display name (the first is `decoder` above, which runs before [[decoders]] had alone).
        "decoders": {
            decoder.display_name: {
                "name": decoder.name,
                "params": decoder.params,
                "embedding_space": component_space(DECODERS, decoder.name, decoder.params),
                "fingerprint": decoder_fingerprint(spec, decoder),
            }
            for decoder in spec.decoder_specs
        },
        "metrics": {
            metric.name: {
                "version": METRICS.get(metric.name).version,
                "higher_is_better": METRICS.get(metric.name).higher_is_better,
                "params": metric.params,
                "content": METRICS.get(metric.name).content_identity(
                    metric.params, **run_keywords(METRICS.get(metric.name), result.run_data)
                ),
                "fingerprint": metric_fingerprint(spec, metric, result.run_data),
            }
            for metric in spec.metrics
        },
    }


def leaderboard_directions(record: dict[str, Any], set_metrics: dict[str, dict[str, Any]]) -> dict[str, bool]:
    """Leaderboard name -> whether higher is better, from the metric classes as `provenance` and the runner's set
    metric record hold them: what every leaderboard row carries, so that nothing after the run looks it up."""
    directions = {name: bool(entry["higher_is_better"]) for name, entry in record["metrics"].items()}
    for entry in set_metrics.values():
        directions[entry["leaderboard_name"]] = bool(entry["higher_is_better"])
    return directions


def write_results(result: RunResult) -> pd.DataFrame:
    """Write the run's result files (module docstring) into the run folder; return the leaderboard.

    A stop signal waits until every file is written (milliseconds): raised inside a library's C code (pandas' JSON
    writer), it can crash the process instead of stopping it cleanly."""
    with stop_signals_deferred():
        board = _write_results(result)
    _rating_session(result)
    return board


def _rating_session(result: RunResult) -> None:
    """The spec's simulated raters ([rating.simulation]) vote through the rating app, then every judgement in the
    folder is analysed (human.csv, human.json, the "Human judgements" section of leaderboard.md): the smoke run's
    rating session. Idempotent: the raters are topped up to their number of judgements, so a re-run stores no vote
    twice and rewrites the same analysis. Outside the deferred stop signals: every vote is committed on its own."""
    rating = result.spec.rating
    if rating is None or rating.simulation is None:
        return
    out = Path(result.output_dir)
    simulate_ratings(
        out,
        rating.simulation,
        question=rating.question,
        attention_every=rating.attention_every,
        seed=rating.seed,
    )
    write_human(out, question=rating.question, resamples=rating.bootstrap, seed=rating.seed)


def _write_results(result: RunResult) -> pd.DataFrame:
    out = Path(result.output_dir)
    scores = pd.DataFrame(result.score_rows)
    if scores.empty:
        scores = pd.DataFrame(
            columns=["prior", "decoder", "category", "metric", "prompt_id", "prompt", "seed", "score"]
        )
    embeddings = pd.DataFrame(result.embedding_rows)
    run_provenance = provenance(result)
    directions = leaderboard_directions(run_provenance, result.set_metrics)
    board = leaderboard_frame(scores, [prior.display_name for prior in result.spec.priors], directions)
    board = with_diagnostics(board, embeddings, DIAGNOSTIC_COLUMNS)
    set_scores = set_score_frame(result.set_rows)
    board = with_set_scores(board, set_scores, directions)
    audits = pd.DataFrame(result.audit_rows)
    board = with_audits(board, audits)
    fingerprint = result.spec.fingerprint()
    spaces = {name: entry["embedding_space"] for name, entry in run_provenance["decoders"].items()}
    view = generalisation(scores, spaces, directions)
    if result.audit_rows:
        write_csv(audits.assign(spec_fingerprint=fingerprint), out / "audit.csv")
    write_csv(scores, out / "scores.csv")
    if result.set_rows:
        write_csv(set_scores.assign(spec_fingerprint=fingerprint), out / "set_scores.csv")
    write_csv(embeddings.assign(spec_fingerprint=fingerprint), out / "embeddings.csv")
    prompts = result.prompt_set
    decoders = [f"{markdown_text(name)} ({space or 'undeclared space'})" for name, space in spaces.items()]
    header = LeaderboardHeader(
        title=result.spec.name,
        lines=[
            f"spec fingerprint `{fingerprint}` · prompts {markdown_text(prompts.source)} ({prompts.digest[:12]}) · "
            f"{result.spec.images_per_prompt} image(s) per prompt · seeds {_seed_range(result.spec.seeds)}"
            + (f" · decoders {', '.join(decoders)}" if len(decoders) > 1 else "")
        ],
        caption=f"{prompts.source} prompts, {result.spec.images_per_prompt} image(s) per prompt; "
        f"spec {fingerprint[:12]}",
    )
    lengths = _prompt_length(result, scores, directions)
    write_leaderboard(
        out,
        board.assign(spec_fingerprint=fingerprint),
        header,
        {"provenance": run_provenance},
        view,
        lengths,
        # A run resumed into a folder with judgements keeps their section (when they are of this very run).
        human=read_human_payload(out, fingerprint),
    )
    payload = {
        **run_provenance,
        "counts": vars(result.counts),
        "leaderboard": json.loads(board.to_json(orient="records")),
    }
    if result.set_rows:
        # Feature space, extractor, resize policy and reference set per set metric; sample counts per row.
        payload["set_metrics"] = result.set_metrics
        payload["set_scores"] = result.set_rows
    if result.audit_rows:
        payload["audits"] = result.audit_rows
    if not view.empty:
        payload["generalisation"] = generalisation_records(view)
    if lengths is not None:
        payload["prompt_length"] = prompt_length_records(lengths)
    # Last: a folder with results.json is a finished run (see ovi_bench.results.records.load_run).
    atomic_write_text(out / "results.json", json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return board


def _prompt_length(
    result: RunResult, scores: pd.DataFrame, directions: dict[str, bool | None]
) -> PromptLength | None:
    """The prompt-length view when the spec asks for it ([prompt_length]); its tokenizer passed the preflight."""
    if result.spec.prompt_length is None or scores.empty:
        return None
    counts = count_prompt_tokens(scores, load_token_counter(result.spec.prompt_length.tokenizer))
    return PromptLength(prompt_length_view(scores, counts, directions), prompt_length_summary(scores, counts))


def _seed_range(seeds: list[int]) -> str:
    return f"{seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
