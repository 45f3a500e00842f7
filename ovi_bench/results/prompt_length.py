"""The prompt-length view: every per-image metric broken down by the prompt's CLIP token count, per prior (and per
decoder when the scores carry a `decoder` column), with the share of prompts that CLIP truncates.

CLIP text towers read 77 token positions, start and end tokens included: a longer prompt is cut, and whatever the
prior does with the rest, the CLIP-based metrics never see it. So "is a prior stable on longer prompts?" needs the
scores split by length, and the share of prompts beyond 77 next to them.

A prompt's count is `clip_tokens`: its CLIP BPE tokens before truncation, start and end tokens included (so a count
above 77 means truncated). Every CLIP ViT-L/H/bigG text tower uses the same BPE vocabulary, so the count does not
depend on which tower a run used. The counts come from a `clip_tokens` column of the scores when it has one, else
from `token_counts` (prompt text -> count), which the caller computes with a CLIP tokenizer
(`ovi_bench.models.clip.clip_token_counts`; a run's tokenizer is its spec's `[prompt_length] tokenizer`). This module is the
pure computation: it reads frames and never loads a model.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ovi_bench.errors import DataError
from ovi_bench.results.records import RunRecord
from ovi_bench.results.statistics import prompt_bootstrap_interval
from ovi_bench.results.summary import markdown_table
from ovi_bench.text import short_repr

CLIP_CONTEXT_LENGTH = 77
"""Token positions a CLIP text tower reads, start and end tokens included; longer prompts are truncated."""
TOKEN_COLUMN = "clip_tokens"
"""The tokenizer the counts are taken with by default (any CLIP ViT-L/H/bigG tokenizer gives the same counts)."""


@dataclass(frozen=True)
class LengthBucket:
    """Prompts of `low` to `high` CLIP tokens, both included (`high` None: no upper end)."""

    low: int
    high: int | None

    @property
    def label(self) -> str:
        return f">{self.low - 1}" if self.high is None else f"{self.low}–{self.high}"

    def holds(self, tokens: int) -> bool:
        return tokens >= self.low and (self.high is None or tokens <= self.high)


LENGTH_BUCKETS: tuple[LengthBucket, ...] = (
    LengthBucket(1, 10),
    LengthBucket(11, 20),
    LengthBucket(21, 40),
    LengthBucket(41, CLIP_CONTEXT_LENGTH),
    LengthBucket(CLIP_CONTEXT_LENGTH + 1, None),
)
"""The last bucket holds exactly the truncated prompts."""

VIEW_COLUMNS: tuple[str, ...] = (
    "metric",
    "bucket",
    "n_prompts",
    "n",
    "mean",
    "ci_low",
    "ci_high",
    "higher_is_better",
)
"""After `prior` (and `decoder` when the scores have one): one row per metric × length bucket with prompts in it."""


def length_bucket(tokens: int, buckets: Sequence[LengthBucket] = LENGTH_BUCKETS) -> str:
    """The label of the bucket that holds `tokens`."""
    for bucket in buckets:
        if bucket.holds(tokens):
            return bucket.label
    raise DataError(
        f"a prompt has {tokens} CLIP tokens, which no length bucket holds; a count includes the start and end "
        "tokens, so it is at least 2. Recount the prompts with a CLIP tokenizer."
    )


def with_token_counts(scores: pd.DataFrame, token_counts: Mapping[str, int] | None = None) -> pd.DataFrame:
    """`scores` with a `clip_tokens` column: kept when present, else looked up by prompt text in `token_counts`."""
    if TOKEN_COLUMN in scores.columns:
        counts = pd.to_numeric(scores[TOKEN_COLUMN], errors="coerce")
        if counts.isna().any():
            raise DataError(
                f"the scores' {TOKEN_COLUMN} column has empty or non-numeric cells; rewrite it, or drop the column "
                "to count the prompts again."
            )
        return scores.assign(**{TOKEN_COLUMN: counts.astype(int)})
    if token_counts is None:
        raise DataError(
            f"the scores have no {TOKEN_COLUMN} column and no token counts were given: count the prompts with a "
            f"CLIP tokenizer (ovi_bench.models.clip.clip_token_counts) and pass them as token_counts."
        )
    missing = sorted({str(text) for text in scores["prompt"]} - set(token_counts))
    if missing:
        raise DataError(
            f"no CLIP token count for {len(missing)} prompt(s), e.g. {short_repr(missing[0])}; count every "
            "prompt of the scores."
        )
    return scores.assign(**{TOKEN_COLUMN: [int(token_counts[str(text)]) for text in scores["prompt"]]})


def count_prompt_tokens(
    scores: pd.DataFrame, count_tokens: Callable[[Sequence[str]], Sequence[int]]
) -> dict[str, int]:
    """Prompt text -> CLIP token count for every distinct prompt of `scores`, with one call of `count_tokens` (e.g.
    `functools.partial(clip_token_counts, tokenizer)`)."""
    texts = list(dict.fromkeys(str(text) for text in scores["prompt"]))
    return dict(zip(texts, (int(count) for count in count_tokens(texts)), strict=True))


def prompt_length_view(
    scores: pd.DataFrame,
    token_counts: Mapping[str, int] | None = None,
    higher_is_better: Mapping[str, bool] | None = None,
    buckets: Sequence[LengthBucket] = LENGTH_BUCKETS,
) -> pd.DataFrame:
    """Per prior (× decoder) × metric × length bucket: the mean score over images, its 95% bootstrap interval over
    prompts, and the numbers of prompts and images. `scores` has the columns of scores.csv; `higher_is_better`
    (metric -> direction) fills that column where given. Buckets without prompts are left out; rows follow the
    scores' prior, decoder and metric order, then the bucket order."""
    keys = ["prior", "decoder"] if "decoder" in scores.columns else ["prior"]
    columns = [*keys, *VIEW_COLUMNS]
    if scores.empty:
        return pd.DataFrame(columns=columns)
    counted = with_token_counts(scores, token_counts)
    labels = [bucket.label for bucket in buckets]
    counted = counted.assign(bucket=[length_bucket(int(tokens), buckets) for tokens in counted[TOKEN_COLUMN]])
    counted["bucket"] = pd.Categorical(counted["bucket"], categories=labels, ordered=True)
    rows = []
    for key, group in counted.groupby([*keys, "metric", "bucket"], sort=False, observed=True):
        estimate, low, high = prompt_bootstrap_interval(list(group["prompt_id"]), list(group["score"]))
        rows.append((*key, group["prompt_id"].nunique(), len(group), estimate, low, high))
    view = pd.DataFrame(rows, columns=columns[:-1])
    directions = higher_is_better or {}
    view["higher_is_better"] = [directions.get(str(metric)) for metric in view["metric"]]
    order = {name: {value: rank for rank, value in enumerate(dict.fromkeys(scores[name]))} for name in keys}
    order["metric"] = {value: rank for rank, value in enumerate(dict.fromkeys(scores["metric"]))}
    order["bucket"] = {label: rank for rank, label in enumerate(labels)}
    view = view.sort_values(
        [*keys, "metric", "bucket"], key=lambda column: column.map(order[column.name]), kind="stable"
    )
    view["bucket"] = view["bucket"].astype(str)
    return view.reset_index(drop=True)[columns]


def prompt_length_summary(
    scores: pd.DataFrame,
    token_counts: Mapping[str, int] | None = None,
    buckets: Sequence[LengthBucket] = LENGTH_BUCKETS,
) -> pd.DataFrame:
    """The prompts themselves: per length bucket, how many distinct prompts (by id) and their share, with a final
    row "truncated" for those over CLIP_CONTEXT_LENGTH tokens."""
    counted = with_token_counts(scores, token_counts)
    per_prompt = counted.drop_duplicates("prompt_id")[TOKEN_COLUMN].astype(int)
    total = len(per_prompt)
    rows = [(bucket.label, int(per_prompt.map(bucket.holds).sum())) for bucket in buckets]
    rows.append(("truncated", int((per_prompt > CLIP_CONTEXT_LENGTH).sum())))
    return pd.DataFrame(
        [(label, count, count / total if total else float("nan")) for label, count in rows],
        columns=["bucket", "n_prompts", "share"],
    )


def truncated_share(scores: pd.DataFrame, token_counts: Mapping[str, int] | None = None) -> float:
    """The share of the scores' distinct prompts that CLIP truncates (over CLIP_CONTEXT_LENGTH tokens)."""
    summary = prompt_length_summary(scores, token_counts)
    return float(summary.loc[summary["bucket"] == "truncated", "share"].iloc[0])


def prompt_length_markdown(view: pd.DataFrame, summary: pd.DataFrame) -> str:
    """The view as Markdown: a line on the prompts' lengths and the truncated share, then one table per metric with
    a row per prior (× decoder) and a column per length bucket (`mean [low, high] (n prompts)`)."""
    if view.empty:
        return "No per-image scores: no prompt-length view.\n"
    truncated = summary.set_index("bucket").loc["truncated"]
    lengths = ", ".join(
        f"{row.bucket}: {row.n_prompts}" for row in summary.itertuples() if row.bucket != "truncated"
    )
    total = int(summary.loc[summary["bucket"] != "truncated", "n_prompts"].sum())
    lines = [
        f"Prompts by CLIP token count (start and end tokens included): {lengths}. "
        f"{int(truncated.n_prompts)} of {total} ({truncated.share:.1%}) exceed {CLIP_CONTEXT_LENGTH} tokens and are "
        "truncated by the CLIP text towers.",
        "",
    ]
    keys = [column for column in ("prior", "decoder") if column in view.columns]
    for metric, rows in view.groupby("metric", sort=False):
        direction = rows["higher_is_better"].iloc[0]
        arrow = (
            ""
            if direction is None or pd.isna(direction)
            else (" (higher is better)" if direction else " (lower is better)")
        )
        buckets = list(dict.fromkeys(view["bucket"]))
        table = pd.DataFrame(
            [
                {
                    **dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True)),
                    **{bucket: "–" for bucket in buckets},
                    **{
                        row.bucket: f"{row.mean:.4f} [{row.ci_low:.4f}, {row.ci_high:.4f}] ({row.n_prompts})"
                        for row in group.itertuples()
                    },
                }
                for key, group in rows.groupby(keys, sort=False)
            ]
        )
        lines += [f"**{metric}**{arrow}", "", markdown_table(table), ""]
    return "\n".join(lines)


@dataclass(frozen=True)
class PromptLength:
    """The prompt-length view of a run: per-bucket scores (`prompt_length_view`) and prompts per bucket
    (`prompt_length_summary`)."""

    view: pd.DataFrame
    summary: pd.DataFrame


def prompt_length_records(lengths: PromptLength) -> dict[str, list[dict[str, Any]]]:
    """The view as JSON-ready records, for leaderboard.json and results.json."""
    return {
        "buckets": json.loads(lengths.summary.to_json(orient="records")),
        "scores": json.loads(lengths.view.to_json(orient="records")),
    }


def run_prompt_length(
    run: RunRecord, count_tokens: Callable[[Sequence[str]], Sequence[int]] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(view, summary) of a run folder's scores.csv. Its `clip_tokens` column is used when it has one; otherwise
    `count_tokens` counts the prompts (e.g. `ovi_bench.models.clip.load_token_counter(ref)`)."""
    scores = run.scores
    token_counts = None
    if TOKEN_COLUMN not in scores.columns and count_tokens is not None:
        token_counts = count_prompt_tokens(scores, count_tokens)
    directions = {
        str(metric): run.higher_is_better(str(metric)) for metric in dict.fromkeys(scores["metric"])
    }
    return (
        prompt_length_view(scores, token_counts, directions),
        prompt_length_summary(scores, token_counts),
    )
