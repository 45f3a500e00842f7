"""Finished run folders read back: provenance, leaderboard, per-image scores, and what makes two runs comparable.

Everything after `ovi-bench run` (the merged leaderboard, the report, `compare`, `baseline`, `check`) starts here,
from the files a run wrote, so it never needs the models again.

The **protocol** of a run is what a number depends on other than the prior itself: the prompts (per category, by
content digest), the seeds, the decoder and its settings, the dtype, and every metric's version, parameters and
fingerprint. Numbers are put side by side only when the protocols agree on every field both runs have.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ovi_bench.errors import DataError
from ovi_bench.io import read_csv
from ovi_bench.prompts.base import CATEGORIES
from ovi_bench.spec import DecoderSpec

RESULTS_FILE = "results.json"
LEADERBOARD_COLUMNS = [
    "prior",
    "decoder",
    "category",
    "metric",
    "official",
    "mean",
    "ci_low",
    "ci_high",
    "std",
    "n_prompts",
    "n",
    "higher_is_better",
]
"""The leaderboard's own columns; diagnostics (text_cosine, ...), `feature_space` (set-level rows) and `audit` may
follow. `higher_is_better` is the metric's direction, written at run time from the metric class: everything after
the run (summary, comparison, regression, report) reads it here, never from a registry or a metric's name."""
SCORES_FILE = "scores.csv"
AUDIT_FILE = "audit.csv"


class ProtocolMismatchError(DataError):
    """Two runs (or a run and a baseline) were made under different protocols."""

    def __init__(self, message: str, differences: list[str]) -> None:
        super().__init__(message)
        self.differences = differences


@dataclass
class RunRecord:
    """One finished run folder, as its result files describe it."""

    path: Path
    provenance: dict[str, Any]
    """results.json: spec, fingerprint, versions, device, dtype, seeds, prompt digests, components, leaderboard."""
    _scores: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return str(self.provenance.get("spec", {}).get("name") or self.path.name)

    @property
    def fingerprint(self) -> str:
        return str(self.provenance.get("spec_fingerprint", ""))

    @property
    def priors(self) -> list[str]:
        """Display names in the spec's order."""
        return list(self.provenance.get("priors", {}))

    @property
    def decoders(self) -> list[str]:
        """Decoder display names in the spec's order (one for a [decoder] run)."""
        return [display_name(decoder) for decoder in spec_decoders(self.provenance.get("spec", {}))]

    @property
    def leaderboard(self) -> pd.DataFrame:
        """The leaderboard rows, each with its metric's `higher_is_better` (filled in from the provenance for runs
        written before the rows carried it) and its `decoder` (filled in from the spec for runs written before
        runs had several decoders)."""
        board = pd.DataFrame(self.provenance.get("leaderboard", []))
        board = with_directions(board, recorded_directions(self.provenance), self.path / RESULTS_FILE)
        return with_decoder(board, self)

    def higher_is_better(self, metric: str) -> bool:
        """The direction of `metric` (a leaderboard name: `clip`, `fid[dinov2]`) from the run's own rows."""
        directions = {**recorded_directions(self.provenance), **metric_directions(self.leaderboard)}
        if metric not in directions:
            raise DataError(
                f"{self.path / RESULTS_FILE} records no direction (higher or lower is better) for the metric "
                f"{metric!r}; {_REWRITE}"
            )
        return directions[metric]

    @property
    def scores(self) -> pd.DataFrame:
        """scores.csv: one row per image and per-image metric (read on first use)."""
        if self._scores is None:
            self._scores = with_decoder(read_scores(self.path / SCORES_FILE), self)
        return self._scores

    @property
    def audits(self) -> pd.DataFrame:
        path = self.path / AUDIT_FILE
        if not path.is_file():
            return pd.DataFrame()
        try:
            return with_decoder(read_csv(path), self)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
            raise DataError(
                f"{path} is not a readable CSV file ({error}); run `ovi-bench run` again."
            ) from error


def spec_decoders(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The decoder tables of a spec as results.json stores it: its [[decoders]], else its one [decoder] (a spec
    without one renders with the default decoder)."""
    decoders = spec.get("decoders")
    if isinstance(decoders, list) and decoders:
        return [decoder for decoder in decoders if isinstance(decoder, dict)]
    decoder = spec.get("decoder")
    return [decoder] if isinstance(decoder, dict) else [{"name": DecoderSpec.model_fields["name"].default}]


def display_name(decoder: dict[str, Any]) -> str:
    """A decoder table's display name: its label, else its registered name."""
    return str(decoder.get("label") or decoder.get("name") or "")


def with_decoder(frame: pd.DataFrame, run: RunRecord) -> pd.DataFrame:
    """`frame` with a `decoder` column: kept where the rows have it; for a run written before runs had several
    decoders (no column), its one decoder, from the spec. A run with several decoders and no column cannot be read
    that way: a DataError names the fix."""
    if "decoder" in frame.columns or ("prior" not in frame.columns and "metric" not in frame.columns):
        return frame
    decoders = run.decoders
    if len(decoders) != 1:
        raise DataError(
            f"{run.path} has {len(decoders)} decoders but its result files have no `decoder` column; {_REWRITE}"
        )
    frame = frame.copy()
    frame.insert(1 if "prior" in frame.columns else 0, "decoder", decoders[0])
    return frame


_REWRITE = "run `ovi-bench run` into the folder again to rewrite its result files (finished work is reused)."


def metric_directions(board: pd.DataFrame) -> dict[str, bool]:
    """Metric -> whether higher is better, from the rows' own `higher_is_better` column."""
    if board.empty:
        return {}
    if "higher_is_better" not in board.columns or board["higher_is_better"].isna().any():
        raise DataError(
            "the leaderboard rows lack `higher_is_better` (whether their metric's higher values are better): give "
            "every row its metric's direction (the leaderboard of a run folder read with `load_run` carries it)."
        )
    return {
        str(metric): bool(higher)
        for metric, higher in zip(board["metric"], board["higher_is_better"], strict=True)
    }


def recorded_directions(provenance: dict[str, Any]) -> dict[str, bool]:
    """Metric -> whether higher is better, as results.json's provenance records it: each metric of the spec by its
    name, each set metric by its leaderboard name (`fid[dinov2]`). What runs written before the leaderboard rows
    carried the direction fall back on."""
    directions = {
        str(name): bool(entry["higher_is_better"])
        for name, entry in (provenance.get("metrics") or {}).items()
        if isinstance(entry, dict) and "higher_is_better" in entry
    }
    for entry in (provenance.get("set_metrics") or {}).values():
        if isinstance(entry, dict) and "higher_is_better" in entry and "leaderboard_name" in entry:
            directions[str(entry["leaderboard_name"])] = bool(entry["higher_is_better"])
    return directions


def with_directions(board: pd.DataFrame, directions: dict[str, bool], source: Path) -> pd.DataFrame:
    """`board` with every row's `higher_is_better` set: kept where the row has it, else from `directions`.

    A row whose metric is in neither is a DataError naming the metric: a silent default would rank a lower-is-better
    metric's worst prior first.
    """
    if board.empty or "metric" not in board.columns:
        return board
    recorded = (
        board["higher_is_better"]
        if "higher_is_better" in board.columns
        else pd.Series(None, index=board.index)
    )
    if recorded.notna().all():
        return board
    unknown = sorted({str(metric) for metric in board.loc[recorded.isna(), "metric"]} - set(directions))
    if unknown:
        raise DataError(
            f"{source} records no direction (higher or lower is better) for the metric(s) {', '.join(unknown)}; "
            + _REWRITE
        )
    filled = [
        bool(higher) if pd.notna(higher) else directions[str(metric)]
        for metric, higher in zip(board["metric"], recorded, strict=True)
    ]
    return board.assign(higher_is_better=filled)


SCORE_COLUMNS = ("prior", "category", "metric", "prompt_id", "prompt", "seed", "score")


def read_scores(path: Path) -> pd.DataFrame:
    """scores.csv with its columns checked; prompt text and ids are kept as text (never parsed as numbers)."""
    if not path.is_file():
        raise DataError(
            f"{path} is missing: the run folder is incomplete. Run `ovi-bench run` again to rewrite it."
        )
    try:
        scores = read_csv(
            path,
            dtype={
                "prior": str,
                "category": str,
                "metric": str,
                "prompt_id": str,
                "prompt": str,
                "reason": str,
            },
            keep_default_na=False,
            na_values={"score": ["", "nan", "NaN"]},
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
        raise DataError(
            f"{path} is not a readable scores file ({error}); run `ovi-bench run` again."
        ) from error
    missing = [column for column in SCORE_COLUMNS if column not in scores.columns]
    if missing and not scores.empty:
        raise DataError(f"{path} lacks the column(s) {', '.join(missing)}; run `ovi-bench run` again.")
    for column in SCORE_COLUMNS:
        if column not in scores.columns:
            scores[column] = pd.Series(dtype=float if column in ("seed", "score") else str)
    return scores


def load_run(path: str | Path) -> RunRecord:
    """Read a run folder written by `ovi-bench run`; every problem is a DataError that names the fix."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"run folder {folder} does not exist; give the folder `ovi-bench run` wrote (its --out)."
        )
    results = folder / RESULTS_FILE
    if not results.is_file():
        raise DataError(
            f"{folder} has no {RESULTS_FILE}: it is not a finished run folder. Run `ovi-bench run CONFIG --out "
            f"{folder}` (finished work is reused)."
        )
    try:
        provenance = json.loads(results.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(
            f"{results} is not valid JSON ({error}); run `ovi-bench run` again to rewrite it."
        ) from error
    if not isinstance(provenance, dict) or "spec_fingerprint" not in provenance:
        raise DataError(f"{results} is not an ovi-bench results file (no spec_fingerprint).")
    return RunRecord(folder, provenance)


# ---------------------------------------------------------------------------------------------------------------------
# The protocol: field path -> value.

_DECODER_FIELDS = ("name", "steps", "guidance", "height", "width", "params")


def protocol(provenance: dict[str, Any]) -> dict[str, Any]:
    """The fields a score depends on besides the prior, flattened to `path -> value` for comparison and display.

    Per-category and per-metric fields (`prompts[color].digest`, `metrics[clip].version`) are compared only where
    both sides have that category or metric: runs over different categories or metrics merge side by side.
    """
    spec = provenance.get("spec", {})
    prompts = spec.get("prompts", {})
    fields: dict[str, Any] = {
        "prompts.source": provenance.get("prompts", {}).get("source", prompts.get("source")),
        "prompts.split": prompts.get("split"),
        "prompts.limit": prompts.get("limit"),
        "images_per_prompt": spec.get("images_per_prompt"),
        "first_seed": spec.get("first_seed"),
        "dtype": provenance.get("dtype"),
    }
    decoders = spec_decoders(spec)
    if "decoders" not in spec:  # one [decoder]: the fields every run had before runs had several decoders
        for name in _DECODER_FIELDS:
            fields[f"decoder.{name}"] = decoders[0].get(name) if decoders else None
        fields["decoder.fingerprint"] = provenance.get("decoder", {}).get("fingerprint")
    # Per decoder, by display name: a run with several decoders compares with another where both have a decoder.
    fingerprints = provenance.get("decoders") or {}
    for decoder in decoders:
        where = f"decoders[{display_name(decoder)}]"
        for name in _DECODER_FIELDS:
            fields[f"{where}.{name}"] = decoder.get(name)
        fields[f"{where}.fingerprint"] = (fingerprints.get(display_name(decoder)) or {}).get(
            "fingerprint", provenance.get("decoder", {}).get("fingerprint") if len(decoders) == 1 else None
        )
    for category, digest in (provenance.get("prompts", {}).get("category_digests") or {}).items():
        fields[f"prompts[{category}].digest"] = digest
    for metric, entry in provenance.get("metrics", {}).items():
        for name in ("version", "params", "content", "fingerprint"):
            fields[f"metrics[{metric}].{name}"] = entry.get(name)
    return fields


def _is_optional(path: str) -> bool:
    """Fields that one side may lack (another category, metric or decoder) without a mismatch. `decoder.*` are a
    one-decoder run's; a run with several has `decoders[...]` only, compared decoder by decoder."""
    return path.startswith(("prompts[", "metrics[", "decoders[", "decoder."))


def protocol_differences(
    first: dict[str, Any], second: dict[str, Any], names: tuple[str, str] = ("first", "second")
) -> list[str]:
    """One line per differing field, `path: value in A, value in B`; fingerprints only when nothing else explains them."""
    lines = []
    # Two one-decoder runs: their `decoder.*` fields say it all, and `decoders[...]` would say it twice.
    both_single = any(path.startswith("decoder.") for path in first) and any(
        path.startswith("decoder.") for path in second
    )
    for path in dict.fromkeys([*first, *second]):
        if (path not in first or path not in second) and _is_optional(path):
            continue
        if both_single and path.startswith("decoders["):
            continue
        a, b = first.get(path), second.get(path)
        if a == b or path.endswith(".fingerprint"):
            continue
        lines.append(f"{path}: {_show(a)} in {names[0]}, {_show(b)} in {names[1]}")
    for path in first:
        if both_single and path.startswith("decoders["):
            continue
        if path.endswith(".fingerprint") and path in second and first[path] != second[path]:
            component = path.rsplit(".", 1)[0]
            if not any(line.startswith(f"{component}.") for line in lines):
                lines.append(
                    f"{component}: fingerprint {str(first[path])[:12]} in {names[0]}, {str(second[path])[:12]} in "
                    f"{names[1]} (same settings, other version or dtype)"
                )
    return lines


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, str) and len(value) == 64:  # a digest
        return value[:12]
    return str(value)


def check_same_protocol(
    runs: list[RunRecord], *, allow_mismatch: bool = False, ignore_metrics: Iterable[str] = ()
) -> list[str]:
    """The differences between the first run's protocol and each other's; raises unless `allow_mismatch`.

    `ignore_metrics`: metrics whose fields do not matter to the caller (set metrics, for a per-image comparison).
    """
    if not runs:
        return []
    ignored = tuple(f"metrics[{metric}]" for metric in ignore_metrics)
    reference = protocol(runs[0].provenance)
    differences = []
    for run in runs[1:]:
        lines = protocol_differences(reference, protocol(run.provenance), (str(runs[0].path), str(run.path)))
        differences += [line for line in lines if not (ignored and line.startswith(ignored))]
    if differences and not allow_mismatch:
        raise ProtocolMismatchError(
            "these runs were made under different protocols, so their numbers are not comparable:\n  "
            + "\n  ".join(differences)
            + "\nRe-run them with the same settings, or pass --allow-protocol-mismatch to put them side by side anyway "
            "(the differences are then recorded with the result).",
            differences,
        )
    return differences


def contributed_priors(
    runs: list[RunRecord], *, protocols_differ: bool
) -> tuple[list[dict[tuple[str, str], str]], list[str]]:
    """Which (prior, decoder) pairs each run contributes to a combined table, under which prior name; and notes on
    those left out.

    A prior rendered by one decoder in two runs of one protocol with the same fingerprint (the baselines re-run beside
    a new prior) gives the same numbers, so it is taken from the first run only; with different fingerprints it is an
    error, since one name would stand for two models. Under protocols that differ (allowed by the caller) each copy is
    kept, as `prior @ run`. The same prior rendered by another decoder is another pair, kept.
    """
    first_run: dict[tuple[str, str], RunRecord] = {}
    contributions: list[dict[tuple[str, str], str]] = []
    notes: list[str] = []
    for run in runs:
        names: dict[tuple[str, str], str] = {}
        for pair in run_pairs(run):
            prior, decoder = pair
            first = first_run.get(pair)
            if first is None:
                first_run[pair] = run
                names[pair] = prior
            elif protocols_differ:
                names[pair] = f"{prior} @ {run.name}"
            elif _prior_fingerprint(first, prior) == _prior_fingerprint(run, prior):
                shown = prior if len(run.decoders) == 1 else f"{prior} ({decoder})"
                notes.append(
                    f"'{shown}' from {run.path} left out: the same prior and protocol as in {first.path}"
                )
            else:
                raise DataError(
                    f"prior '{prior}' is in {first.path} and in {run.path} with different parameters or versions; "
                    "give one of them a `label` in its spec so that they can be told apart."
                )
        contributions.append(names)
    return contributions, notes


def run_pairs(run: RunRecord) -> list[tuple[str, str]]:
    """The run's (prior, decoder) pairs: priors in the spec's order, each with the decoders that rendered it (every
    decoder, for a prior without leaderboard rows)."""
    board = run.leaderboard
    rendered: dict[str, list[str]] = {}
    if not board.empty:
        for prior, decoder in dict.fromkeys(zip(board["prior"], board["decoder"], strict=True)):
            rendered.setdefault(str(prior), []).append(str(decoder))
    priors = list(dict.fromkeys([*run.priors, *rendered]))
    return [(prior, decoder) for prior in priors for decoder in rendered.get(prior, run.decoders)]


def contributed_rows(frame: pd.DataFrame, names: dict[tuple[str, str], str]) -> pd.DataFrame:
    """The rows of `frame` (leaderboard or scores) that a run contributes (`contributed_priors`), priors renamed."""
    pairs = list(zip(frame["prior"], frame["decoder"], strict=True))
    kept = frame[[pair in names for pair in pairs]]
    return kept.assign(prior=[names[pair] for pair in zip(kept["prior"], kept["decoder"], strict=True)])


def _prior_fingerprint(run: RunRecord, prior: str) -> str:
    return str(run.provenance.get("priors", {}).get(prior, {}).get("fingerprint", ""))


def in_board_order(table: pd.DataFrame, prior_order: list[str]) -> pd.DataFrame:
    """Rows in the given prior order (others after), each prior's decoders in order of appearance, the benchmark's
    category order (others after), then metric."""
    category_rank = {category: rank for rank, category in enumerate(CATEGORIES)}
    prior_rank = {prior: rank for rank, prior in enumerate(dict.fromkeys([*prior_order, *table["prior"]]))}
    decoders = table["decoder"] if "decoder" in table.columns else pd.Series("", index=table.index)
    decoder_rank = {decoder: rank for rank, decoder in enumerate(dict.fromkeys(decoders))}
    keys = pd.DataFrame(
        {
            "prior": table["prior"].map(prior_rank),
            "decoder": decoders.map(decoder_rank),
            "category": table["category"].map(lambda category: category_rank.get(category, len(CATEGORIES))),
            "name": table["category"],
            "metric": table["metric"],
        }
    )
    order = keys.sort_values(["prior", "decoder", "category", "name", "metric"], kind="stable").index
    return table.loc[order].reset_index(drop=True)
