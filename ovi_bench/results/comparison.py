"""Two priors head to head on the same images' prompts and seeds: `ovi-bench compare`.

A leaderboard puts each prior's mean next to the other's with its own interval; those intervals overlap long after the
priors are distinguishable, because most of the spread comes from the prompts (a hard prompt is hard for both). Here
the two priors' images are paired on (category, prompt_id, seed), and the difference `second − first` gets a 95%
bootstrap interval that resamples prompts with their images (`ovi_bench.results.statistics.paired_difference`). A verdict
names a winner only when that interval excludes 0.

`compare_scores` is the pure computation on a scores frame (the columns of scores.csv); `compare_priors` reads it from
one or more run folders.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ovi_bench.errors import DataError
from ovi_bench.io import atomic_write_text, write_csv
from ovi_bench.prompts import CATEGORIES
from ovi_bench.results.records import RunRecord, check_same_protocol, contributed_priors, contributed_rows
from ovi_bench.results.statistics import PairedDifference, paired_difference
from ovi_bench.results.summary import markdown_table
from ovi_bench.spec import OFFICIAL_METRICS
from ovi_bench.text import did_you_mean, short_repr

PAIR_KEYS = ["decoder", "category", "metric", "prompt_id", "seed"]
"""Two priors' images are paired when one decoder rendered both, for the same prompt and seed."""
COMPARISON_COLUMNS = [
    "first",
    "second",
    "decoder",
    "category",
    "metric",
    "official",
    "higher_is_better",
    "n_prompts",
    "n_pairs",
    "unpaired",
    "mean_first",
    "mean_second",
    "difference",
    "ci_low",
    "ci_high",
    "wins",
    "ties",
    "losses",
    "win_rate",
    "verdict",
]
"""`difference` = mean_second − mean_first over the pairs (raw score units, whatever the metric's direction);
`wins`/`ties`/`losses` and `win_rate` (ties counted half) are from `second`'s side, where a win is a *better* score:
higher, or lower for a lower-is-better metric; `unpaired` counts both priors' images without a partner (not used)."""

NO_CLEAR_DIFFERENCE = "no clear difference"
TOO_FEW_PROMPTS = "too few prompts"
NO_PAIRS = "no paired images"

HigherIsBetter = Callable[[str], bool] | Mapping[str, bool]


@dataclass(frozen=True)
class CombinedScores:
    """The per-image scores of one or more runs of one protocol, with what is needed to read them."""

    scores: pd.DataFrame
    priors: list[str]
    higher_is_better: dict[str, bool]
    protocol_differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------------
# The pure computation.


def compare_scores(
    scores: pd.DataFrame,
    first: str,
    second: str,
    *,
    metrics: Sequence[str] | None = None,
    higher_is_better: HigherIsBetter | None = None,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per decoder × category × metric: `second` against `first` on paired images (COMPARISON_COLUMNS).

    `scores` has the columns of scores.csv (prior, decoder, category, metric, prompt_id, seed, score; without a
    `decoder` column, all of one decoder). `higher_is_better` maps a metric to its direction (default: every metric
    higher is better).
    """
    if "decoder" not in scores.columns:
        scores = scores.assign(decoder="")
    check_priors(scores, [first, second])
    chosen_metrics = choose_metrics(scores, metrics)
    usable = scores[scores["metric"].isin(chosen_metrics) & scores["score"].notna()]
    first_scores = _one_prior(usable, first)
    second_scores = _one_prior(usable, second)
    pairs = first_scores.merge(second_scores, on=PAIR_KEYS, how="outer", suffixes=("_first", "_second"))
    rows = [
        _comparison_row(
            group, (first, second), _direction(higher_is_better, metric), resamples, confidence, seed
        )
        for (_, _, metric), group in pairs.groupby(["decoder", "category", "metric"], sort=False)
    ]
    table = pd.DataFrame(rows, columns=COMPARISON_COLUMNS[2:])
    table.insert(0, "second", second)
    table.insert(0, "first", first)
    return in_comparison_order(table)


def check_priors(scores: pd.DataFrame, names: Sequence[str]) -> None:
    """Refuse names the scores do not have (listing those they have), and a prior compared with itself."""
    known = list(dict.fromkeys(scores["prior"]))
    for name in names:
        if name not in known:
            raise DataError(
                f"prior {short_repr(name)} is not in the run(s): they have {', '.join(known) or 'no scores'}."
                + did_you_mean(name, known)
            )
    if len(set(names)) < len(names):
        raise DataError(f"compare two different priors (got {short_repr(names[0])} twice).")


def choose_metrics(scores: pd.DataFrame, metrics: Sequence[str] | None) -> list[str]:
    """The requested per-image metrics (default: all in the scores), each checked against what the scores hold."""
    known = list(dict.fromkeys(scores["metric"]))
    if not metrics:
        return known
    for metric in metrics:
        if metric not in known:
            raise DataError(
                f"metric {short_repr(metric)} has no per-image scores in the run(s): they have {', '.join(known)} "
                "(set metrics such as fid are compared in the leaderboard, not here)."
                + did_you_mean(metric, known)
            )
    return list(dict.fromkeys(metrics))


def verdict(difference: PairedDifference, first: str, second: str, higher_is_better: bool) -> str:
    """ "<prior> better" when the interval of `second − first` excludes 0, else "no clear difference"."""
    if difference.n_pairs == 0:
        return NO_PAIRS
    if difference.n_prompts < 2:
        # One prompt gives a zero-width interval, which would exclude 0 without any evidence across prompts.
        return TOO_FEW_PROMPTS
    if difference.low > 0 or difference.high < 0:
        second_scored_higher = difference.estimate > 0
        return f"{second if second_scored_higher == higher_is_better else first} better"
    return NO_CLEAR_DIFFERENCE


def in_comparison_order(table: pd.DataFrame) -> pd.DataFrame:
    """Decoders in order of appearance, then the benchmark's category order; within a category the official metric
    first, then the others by name."""
    category_rank = {category: rank for rank, category in enumerate(CATEGORIES)}
    decoder_rank = {decoder: rank for rank, decoder in enumerate(dict.fromkeys(table["decoder"]))}
    keys = pd.DataFrame(
        {
            "decoder": table["decoder"].map(decoder_rank),
            "category": table["category"].map(
                lambda category: category_rank.get(category, len(category_rank))
            ),
            "category_name": table["category"],
            "not_official": ~table["official"].astype(bool),
            "metric": table["metric"],
        }
    )
    order = keys.sort_values(
        ["decoder", "category", "category_name", "not_official", "metric"], kind="stable"
    ).index
    return table.loc[order].reset_index(drop=True)


def _one_prior(scores: pd.DataFrame, prior: str) -> pd.DataFrame:
    images = scores.loc[scores["prior"] == prior, [*PAIR_KEYS, "score"]]
    duplicated = images.duplicated(PAIR_KEYS)
    if duplicated.any():
        example = images[duplicated].iloc[0]
        raise DataError(
            f"prior '{prior}' has more than one score for {example.category} / {example.metric} / "
            f"{example.prompt_id} / seed {example.seed}: the scores mix runs that should have been told apart."
        )
    return images


def _direction(higher_is_better: HigherIsBetter | None, metric: str) -> bool:
    if higher_is_better is None:
        return True
    if callable(higher_is_better):
        return bool(higher_is_better(metric))
    return bool(higher_is_better.get(metric, True))


def _comparison_row(
    group: pd.DataFrame,
    names: tuple[str, str],
    higher_is_better: bool,
    resamples: int,
    confidence: float,
    seed: int,
) -> dict[str, object]:
    decoder, category, metric = group["decoder"].iloc[0], group["category"].iloc[0], group["metric"].iloc[0]
    paired = group.dropna(subset=["score_first", "score_second"]).sort_values(["prompt_id", "seed"])
    result = paired_difference(
        list(paired["prompt_id"]),
        list(paired["score_first"]),
        list(paired["score_second"]),
        resamples=resamples,
        confidence=confidence,
        seed=seed,
    )
    # paired_difference counts a win as "second scored higher"; for a lower-is-better metric a win is a lower score.
    wins, losses = (result.wins, result.losses) if higher_is_better else (result.losses, result.wins)
    return {
        "decoder": decoder,
        "category": category,
        "metric": metric,
        "official": OFFICIAL_METRICS.get(category) == metric,
        "higher_is_better": higher_is_better,
        "n_prompts": result.n_prompts,
        "n_pairs": result.n_pairs,
        "unpaired": len(group) - len(paired),
        "mean_first": paired["score_first"].mean() if len(paired) else float("nan"),
        "mean_second": paired["score_second"].mean() if len(paired) else float("nan"),
        "difference": result.estimate,
        "ci_low": result.low,
        "ci_high": result.high,
        "wins": wins,
        "ties": result.ties,
        "losses": losses,
        "win_rate": (wins + 0.5 * result.ties) / result.n_pairs if result.n_pairs else float("nan"),
        "verdict": verdict(result, *names, higher_is_better),
    }


# ---------------------------------------------------------------------------------------------------------------------
# From run folders.


def compare_priors(
    run_or_runs: RunRecord | Sequence[RunRecord],
    first: str,
    second: str,
    metrics: Sequence[str] | None = None,
    *,
    allow_protocol_mismatch: bool = False,
    resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """`second` against `first` per category × per-image metric, from one run or several runs of one protocol.

    Several runs are checked for the same protocol first (a ProtocolMismatchError names the differing fields; see
    `combine_run_scores`); `allow_protocol_mismatch` compares them anyway. See COMPARISON_COLUMNS for the columns.
    """
    combined = combine_run_scores(run_or_runs, allow_protocol_mismatch=allow_protocol_mismatch)
    return compare_scores(
        combined.scores,
        first,
        second,
        metrics=metrics,
        higher_is_better=combined.higher_is_better,
        resamples=resamples,
        seed=seed,
    )


def combine_run_scores(
    run_or_runs: RunRecord | Sequence[RunRecord], *, allow_protocol_mismatch: bool = False
) -> CombinedScores:
    """The runs' scores.csv stacked, each prior once (as in the merged leaderboard: `contributed_priors`).

    The protocols are compared on what per-image scores depend on: set metrics (fid, kid, cmmd) have no per-image
    scores to pair, and a folder reference set is identified by file names, sizes and mtimes, which differ between
    two machines holding the same images.
    """
    runs = [run_or_runs] if isinstance(run_or_runs, RunRecord) else list(run_or_runs)
    if not runs:
        raise DataError("give at least one run folder.")
    scored = {metric for run in runs for metric in run.scores["metric"]}
    unscored = {metric for run in runs for metric in run.provenance.get("metrics", {})} - scored
    differences = check_same_protocol(runs, allow_mismatch=allow_protocol_mismatch, ignore_metrics=unscored)
    contributions, notes = contributed_priors(runs, protocols_differ=bool(differences))
    frames = []
    for run, names in zip(runs, contributions, strict=True):
        frames.append(contributed_rows(run.scores, names))
    directions: dict[str, bool] = {}
    for run in runs:
        for metric in dict.fromkeys(run.scores["metric"]):
            directions.setdefault(metric, run.higher_is_better(metric))
    priors = list(dict.fromkeys(name for names in contributions for name in names.values()))
    return CombinedScores(pd.concat(frames, ignore_index=True), priors, directions, differences, notes)


# ---------------------------------------------------------------------------------------------------------------------
# Presentation.


def comparison_display(table: pd.DataFrame) -> pd.DataFrame:
    """The comparison as people read it: prior names in the headers, the interval and W/T/L in one cell each."""
    if table.empty:
        return pd.DataFrame(columns=["category", "metric", "verdict"])
    first, second = table["first"].iloc[0], table["second"].iloc[0]
    # The decoder column only where there is a choice: a one-decoder comparison reads as it always did.
    decoder = {"decoder": table["decoder"]} if table["decoder"].nunique() > 1 else {}
    return pd.DataFrame(
        {
            **decoder,
            "category": table["category"],
            "metric": table["metric"] + table["official"].map({True: " *", False: ""}),
            "prompts": table["n_prompts"],
            "pairs": table["n_pairs"],
            f"mean {first}": table["mean_first"],
            f"mean {second}": table["mean_second"],
            f"{second} − {first}": table["difference"],
            "95% interval": [
                _interval(low, high) for low, high in zip(table["ci_low"], table["ci_high"], strict=True)
            ],
            "W/T/L": table["wins"].astype(str)
            + "/"
            + table["ties"].astype(str)
            + "/"
            + table["losses"].astype(str),
            "win rate": table["win_rate"],
            "verdict": table["verdict"],
        }
    )


def _interval(low: float, high: float) -> str:
    return "" if pd.isna(low) else f"[{low:+.4f}, {high:+.4f}]"


def write_comparison(table: pd.DataFrame, path: Path, meta: Mapping[str, object]) -> None:
    """`.csv` (every column), `.json` (rows plus `meta`: runs, protocol differences) or `.md` (the display table)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        write_csv(table, path)
    elif suffix == ".json":
        rows = json.loads(table.to_json(orient="records"))  # NaN becomes null, numpy numbers plain numbers
        atomic_write_text(path, json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    elif suffix == ".md":
        atomic_write_text(path, markdown_table(comparison_display(table), floatfmt=".4f") + "\n")
    else:
        raise DataError(f"--out {path}: give a .csv, .json or .md file name.")
