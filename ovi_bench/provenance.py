"""What a run produced and where it came from: counts, result rows, and the provenance stamped on every result file.

The runner fills a `RunResult`; `provenance` turns it into the record of fingerprints, package versions, model
revisions and prompt digests that the result files carry.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ovi_bench import __version__
from ovi_bench.components import RunData, run_keywords
from ovi_bench.models.hub import is_model_parameter, model_revision
from ovi_bench.plan import WorkItem, decoder_fingerprint, metric_fingerprint, prior_fingerprint
from ovi_bench.prompts import PromptSet
from ovi_bench.prompts.base import prompt_set_digest
from ovi_bench.registry import METRICS
from ovi_bench.spec import RunSpec

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
    components.append(("decoder", spec.decoder.params))
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
