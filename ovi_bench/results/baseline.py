"""Baseline files: a finished run's protocol and every image's score, kept for `ovi-bench check`.

`ovi-bench baseline RUN_DIR --out FILE` writes one (`write_baseline`): the run's protocol (without the fields of set
metrics, which have no per-image scores), its package versions and prior fingerprints, each metric's direction, and
per prior, category and metric the list `[prompt_id, seed, score]` of every scored image, one image per line so that
a diff of two baselines is readable. `load_baseline` reads one back and refuses, with a DataError that names the fix,
anything a check could not trust (another format version, no scores, a score that is not a finite number). The check
itself is `ovi_bench.results.regression`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ovi_bench.errors import DataError
from ovi_bench.io import atomic_write_text
from ovi_bench.results.records import RunRecord, load_run, protocol

BASELINE_FORMAT = "ovi-bench-baseline"
BASELINE_FORMAT_VERSION = 1
SCORE_KEYS = ["prior", "decoder", "category", "metric", "prompt_id", "seed"]
"""What identifies one image's score (paired on these between a baseline and a run)."""


@dataclass(frozen=True)
class Baseline:
    """A baseline file, read back and checked."""

    path: Path | None
    protocol: dict[str, Any]
    scores: pd.DataFrame
    """One row per image: prior, decoder, category, metric, prompt_id, seed, score."""
    higher_is_better: dict[str, bool]
    prior_fingerprints: dict[str, str]
    packages: dict[str, str]
    spec_fingerprint: str
    created: str


def baseline_document(run: RunRecord) -> dict[str, Any]:
    """What a baseline file holds, as a JSON-ready dict."""
    scores = run.scores.dropna(subset=["score"])
    nested: dict[str, dict[str, dict[str, dict[str, list[list[Any]]]]]] = {}
    for (decoder, prior, category, metric), group in scores.groupby(
        ["decoder", "prior", "category", "metric"], sort=False
    ):
        images = group.sort_values(["prompt_id", "seed"])
        nested.setdefault(decoder, {}).setdefault(prior, {}).setdefault(category, {})[metric] = [
            [str(prompt_id), int(seed), float(score)]
            for prompt_id, seed, score in zip(
                images["prompt_id"], images["seed"], images["score"], strict=True
            )
        ]
    metrics = dict.fromkeys(scores["metric"])
    return {
        "format": BASELINE_FORMAT,
        "format_version": BASELINE_FORMAT_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "run": {
            "name": run.name,
            "spec_fingerprint": run.fingerprint,
            "created": run.provenance.get("created"),
        },
        "protocol": scored_protocol(run.provenance, metrics),
        "packages": run.provenance.get("packages", {}),
        "priors": {
            prior: entry.get("fingerprint") for prior, entry in run.provenance.get("priors", {}).items()
        },
        "higher_is_better": {metric: run.higher_is_better(metric) for metric in metrics},
        # `decoders` says that `scores` nests by decoder first; baselines written before runs had several decoders
        # lack it and nest by prior (their decoder is the protocol's one).
        "decoders": list(nested),
        "scores": nested,
    }


def scored_protocol(provenance: dict[str, Any], scored_metrics: Iterable[str]) -> dict[str, Any]:
    """The run's protocol without the fields of metrics that have no per-image scores in it (fid, kid, cmmd).

    A baseline holds per-image scores only, and set metrics' fields must not fail a check that never looks at them:
    a folder reference set is identified by file names, sizes and mtimes, which differ on every machine.
    """
    keep = {f"metrics[{metric}]." for metric in scored_metrics}
    return {
        path: value
        for path, value in protocol(provenance).items()
        if not path.startswith("metrics[") or path.startswith(tuple(keep))
    }


def write_baseline(run: RunRecord | str | Path, path: str | Path) -> Path:
    """Write the baseline of a finished run to `path` (JSON, written atomically); returns the path."""
    record = run if isinstance(run, RunRecord) else load_run(run)
    document = baseline_document(record)
    if not document["scores"]:
        raise DataError(f"{record.path} has no per-image scores: there is nothing to keep as a baseline.")
    target = Path(path).expanduser()
    atomic_write_text(target, _json_one_row_per_line(document) + "\n")
    return target


def _json_one_row_per_line(value: Any, indent: int = 0) -> str:
    """Indented JSON in which every list of plain values stays on one line: one image per line, readable diffs."""
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, dict) and value:
        items = [
            f"{inner}{json.dumps(key)}: {_json_one_row_per_line(item, indent + 2)}"
            for key, item in value.items()
        ]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        items = [f"{inner}{_json_one_row_per_line(item, indent + 2)}" for item in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(value)


def load_baseline(path: str | Path) -> Baseline:
    """Read and check a baseline file; every problem is a DataError that says what is wrong and how to fix it."""
    source = Path(path).expanduser()
    fix = f"write a new one with `ovi-bench baseline RUN_DIR --out {source}`"
    if not source.is_file():
        raise DataError(f"baseline file {source} does not exist; {fix}.")
    try:
        document = json.loads(source.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"baseline file {source} is not valid JSON ({error}); {fix}.") from error
    except OSError as error:
        raise DataError(f"baseline file {source} cannot be read ({error.strerror}).") from error
    if not isinstance(document, dict) or document.get("format") != BASELINE_FORMAT:
        raise DataError(
            f'{source} is not an ovi-bench baseline file (no "format": "{BASELINE_FORMAT}"); {fix}.'
        )
    version = document.get("format_version")
    if version != BASELINE_FORMAT_VERSION:
        raise DataError(
            f"baseline file {source} has format version {version}; this ovi-bench reads version "
            f"{BASELINE_FORMAT_VERSION}. {fix[0].upper()}{fix[1:]} (from a run made under the same protocol)."
        )
    try:
        return _parse_baseline(document, source)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise DataError(f"baseline file {source} is malformed ({_describe(error)}); {fix}.") from error


def _parse_baseline(document: dict[str, Any], source: Path | None) -> Baseline:
    protocol_fields = _mapping(document["protocol"], "protocol")
    if "decoders" in document:
        by_decoder = {
            str(decoder): (priors, f"scores.{decoder}")
            for decoder, priors in _mapping(document["scores"], "scores").items()
        }
    else:  # written before runs had several decoders: the protocol's one decoder
        by_decoder = {str(protocol_fields.get("decoder.name")): (document["scores"], "scores")}
    rows = []
    for decoder, (priors, at) in by_decoder.items():
        for prior, categories in _mapping(priors, at).items():
            for category, metrics in _mapping(categories, f"{at}.{prior}").items():
                for metric, images in _mapping(metrics, f"{at}.{prior}.{category}").items():
                    where = f"{at}.{prior}.{category}.{metric}"
                    rows += [
                        (prior, decoder, category, metric, *_image_row(image, where)) for image in images
                    ]
    scores = pd.DataFrame(rows, columns=[*SCORE_KEYS, "score"])
    if scores.empty:
        # A check against no scores would call every row `new` and pass whatever the run did.
        raise ValueError("it holds no image scores")
    if scores.duplicated(SCORE_KEYS).any():
        raise ValueError("an image is listed twice")
    run = _mapping(document.get("run", {}), "run")
    return Baseline(
        path=source,
        protocol=dict(protocol_fields),
        scores=scores,
        higher_is_better={
            str(k): bool(v) for k, v in _mapping(document["higher_is_better"], "higher_is_better").items()
        },
        prior_fingerprints={
            str(k): str(v) for k, v in _mapping(document.get("priors", {}), "priors").items()
        },
        packages={str(k): str(v) for k, v in _mapping(document.get("packages", {}), "packages").items()},
        spec_fingerprint=str(run.get("spec_fingerprint", "")),
        created=str(document.get("created", "")),
    )


def _image_row(image: Any, where: str) -> tuple[str, int, float]:
    if (
        not isinstance(image, list)
        or len(image) != 3
        or not isinstance(image[0], str)
        or not isinstance(image[1], int)
        or not isinstance(image[2], (int, float))
    ):
        raise ValueError(f"{where} has {json.dumps(image)} where [prompt_id, seed, score] belongs")
    if not np.isfinite(image[2]):
        # A baseline is written from scored images only; a NaN would drop the image from the pairing unseen.
        raise ValueError(
            f"{where} has the score {image[2]} for {image[0]} seed {image[1]}: not a finite number"
        )
    return image[0], image[1], float(image[2])


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{where} should be an object, not {type(value).__name__}")
    return value


def _describe(error: Exception) -> str:
    if isinstance(error, KeyError):
        return f"no {error.args[0]!r} field"
    return str(error)
