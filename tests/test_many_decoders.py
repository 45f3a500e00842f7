"""Many decoders in one run: `[[decoders]]` beside `[decoder]`, embeddings made once and rendered by every decoder
of their space, the `decoder` column in every result file, result folders from before it, and the generalisation
view (Kendall τ over decoders, with its bootstrap interval over prompts)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
from PIL import Image
from tiny_runs import run, tiny_spec

from ovi_bench.components import Params
from ovi_bench.decoders.base import Decoder
from ovi_bench.errors import SpecError
from ovi_bench.io import read_csv, write_csv
from ovi_bench.plan import load_run_prompts, plan
from ovi_bench.priors.base import Prior, PriorOutput
from ovi_bench.provenance import write_results
from ovi_bench.registry import DECODERS, PRIORS
from ovi_bench.results.baseline import baseline_document, load_baseline
from ovi_bench.results.comparison import compare_priors
from ovi_bench.results.generalisation import (
    generalisation,
    generalisation_markdown,
    kendall_tau,
    tau_interval,
)
from ovi_bench.results.leaderboard import merge_runs, write_leaderboard
from ovi_bench.results.records import load_run
from ovi_bench.results.regression import check_run
from ovi_bench.results.report import write_report
from ovi_bench.runner import Runner
from ovi_bench.spec import parse_spec

TINY_DECODER = {"params": {"model": "tiny"}, "steps": 2, "height": 32, "width": 32}
SECOND_DECODER = {**TINY_DECODER, "label": "k22-3-steps", "steps": 3}
"""A second decoder of the same space: the tiny Kandinsky 2.2 decoder with other settings."""


def _two_decoders(**overrides: object) -> dict[str, object]:
    spec = tiny_spec(**({"images_per_prompt": 1} | overrides))
    del spec["decoder"]
    return spec | {"decoders": [TINY_DECODER, SECOND_DECODER]}


# -- the spec -----------------------------------------------------------------------------------------------------


def test_one_decoders_entry_is_the_same_run_as_a_decoder_table() -> None:
    table = parse_spec(tiny_spec())
    listed = tiny_spec()
    listed["decoders"] = [listed.pop("decoder")]
    one_entry = parse_spec(listed)
    assert one_entry.fingerprint() == table.fingerprint()
    assert one_entry.model_dump(mode="json") == table.model_dump(mode="json")
    prompts = load_run_prompts(table)
    assert [item.image_key for item in plan(one_entry, prompts)] == [
        item.image_key for item in plan(table, prompts)
    ]
    assert one_entry.decoder_specs == table.decoder_specs == [table.decoder]


def test_two_decoders_share_embeddings_and_the_first_keeps_its_keys() -> None:
    single = parse_spec(tiny_spec(images_per_prompt=1))
    spec = parse_spec(_two_decoders())
    assert spec.fingerprint() != single.fingerprint()
    assert [decoder.display_name for decoder in spec.decoder_specs] == [
        "kandinsky-2.2-decoder",
        "k22-3-steps",
    ]
    # A dumped spec parses back to the same spec.
    assert parse_spec(spec.model_dump(mode="json")).fingerprint() == spec.fingerprint()
    prompts = load_run_prompts(spec)
    items, single_items = plan(spec, prompts), plan(single, prompts)
    assert len(items) == 2 * len(single_items)
    assert {item.embedding_key for item in items} == {item.embedding_key for item in single_items}
    first = {item.image_key for item in items if item.decoder == "kandinsky-2.2-decoder"}
    assert first == {item.image_key for item in single_items}
    assert len({item.image_key for item in items}) == len(items)


def test_decoder_and_decoders_together_or_repeated_names_are_refused() -> None:
    with pytest.raises(SpecError, match=r"either one \[decoder\] table or a list of \[\[decoders\]\]"):
        parse_spec(_two_decoders() | {"decoder": TINY_DECODER})
    with pytest.raises(SpecError, match="give each a distinct `label`"):
        parse_spec(_two_decoders() | {"decoders": [TINY_DECODER, TINY_DECODER]})


class _HSpace:
    """Declares the ViT-H/14 space, for the stand-ins below (never run: these tests stop at the plan)."""

    class Params(Params):
        pass

    @classmethod
    def embedding_space(cls, params: Params) -> str:
        return "clip-vit-h-14"


class _HPrior(_HSpace, Prior):
    def embed(self, texts: Sequence[str], generators: Sequence[torch.Generator]) -> PriorOutput:
        raise AssertionError("never run")


class _HDecoder(_HSpace, Decoder):
    def decode(self, *args: object, **kwargs: object) -> list[Image.Image]:
        raise AssertionError("never run")


@pytest.fixture
def h_components() -> Iterator[None]:
    PRIORS.register("test-h-prior")(_HPrior)
    DECODERS.register("test-h-decoder")(_HDecoder)
    yield
    PRIORS._entries.pop("test-h-prior")
    DECODERS._entries.pop("test-h-decoder")


def test_each_prior_is_rendered_by_the_decoders_of_its_space_and_an_orphan_is_refused(
    h_components: None,
) -> None:
    priors = [{"name": "text-embedding", "params": {"model": "tiny"}}, {"name": "test-h-prior"}]
    both_spaces = _two_decoders(priors=priors) | {
        "decoders": [TINY_DECODER, SECOND_DECODER, {"name": "test-h-decoder"}]
    }
    spec = parse_spec(both_spaces)
    pairs = {(item.prior, item.decoder) for item in plan(spec, load_run_prompts(spec))}
    assert pairs == {
        ("text-embedding", "kandinsky-2.2-decoder"),
        ("text-embedding", "k22-3-steps"),
        ("test-h-prior", "test-h-decoder"),
    }
    with pytest.raises(SpecError) as refused:
        parse_spec(_two_decoders(priors=priors))
    message = str(refused.value)
    assert "priors[1]" in message and "no decoder of the run renders that space" in message
    assert "clip-vit-h-14" in message and "clip-vit-bigg-14" in message
    assert "params.space" in message


# -- a run with two decoders ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_decoder_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("two-decoders")
    outcome = Runner(parse_spec(_two_decoders()), out, show_progress=False).run()
    write_results(outcome)
    counts = outcome.counts
    # 2 priors × 2 prompts × 1 seed: 4 embeddings, made once, rendered by both decoders.
    assert counts.embeddings_computed == 4
    assert counts.images_generated == 8
    return out


def test_two_decoders_render_every_embedding_and_the_results_say_which(two_decoder_run: Path) -> None:
    scores = read_csv(two_decoder_run / "scores.csv")
    assert set(scores["decoder"]) == {"kandinsky-2.2-decoder", "k22-3-steps"}
    assert scores.groupby("decoder").size().tolist() == [4, 4]
    embeddings = read_csv(two_decoder_run / "embeddings.csv")
    assert len(embeddings) == 4  # one row per embedding, not per image
    board = read_csv(two_decoder_run / "leaderboard.csv")
    assert list(board.columns[:3]) == ["prior", "decoder", "category"]
    assert len(board) == 2 * 2 * 2  # priors × decoders × categories, one metric
    markdown = (two_decoder_run / "leaderboard.md").read_text()
    assert "## Generalisation across decoders" in markdown
    assert "### kandinsky-2.2-decoder vs k22-3-steps (clip-vit-bigg-14)" in markdown
    results = json.loads((two_decoder_run / "results.json").read_text())
    assert set(results["decoders"]) == {"kandinsky-2.2-decoder", "k22-3-steps"}
    agreement = results["generalisation"]["agreement"]
    assert {row["category"] for row in agreement} == {"color", "spatial"}
    assert all(row["n_priors"] == 2 for row in agreement)
    assert "generalisation" in json.loads((two_decoder_run / "leaderboard.json").read_text())


def test_compare_pairs_images_of_one_decoder(two_decoder_run: Path) -> None:
    table = compare_priors(load_run(two_decoder_run), "text-embedding", "kandinsky-2.2")
    assert set(table["decoder"]) == {"kandinsky-2.2-decoder", "k22-3-steps"}
    assert (table["n_pairs"] == 1).all() and (table["unpaired"] == 0).all()


def test_report_shows_the_decoder_facet_and_the_view(two_decoder_run: Path, tmp_path: Path) -> None:
    page = write_report(two_decoder_run, tmp_path, prompts_per_category=1, seeds_per_prompt=1).read_text()
    assert "generalisation-section" in page
    assert "text-embedding · k22-3-steps" in page


# -- result folders written before runs had several decoders --------------------------------------------------------


def _as_before_many_decoders(folder: Path) -> None:
    """Rewrite a one-decoder run folder's files as they were before the decoder column existed."""
    scores = read_csv(folder / "scores.csv")
    write_csv(scores.drop(columns="decoder"), folder / "scores.csv")
    results = json.loads((folder / "results.json").read_text())
    results.pop("decoders")
    for row in results["leaderboard"]:
        row.pop("decoder")
    (folder / "results.json").write_text(json.dumps(results))


def test_a_folder_without_the_decoder_column_still_loads_compares_and_checks(
    two_decoder_run: Path, tmp_path: Path
) -> None:
    old = tmp_path / "old"
    run(old, images_per_prompt=1)
    _as_before_many_decoders(old)
    record = load_run(old)
    assert set(record.scores["decoder"]) == {"kandinsky-2.2-decoder"}
    assert set(record.leaderboard["decoder"]) == {"kandinsky-2.2-decoder"}
    assert len(compare_priors(record, "text-embedding", "kandinsky-2.2")) == 2
    # Beside a run with two decoders: the old run's (prior, decoder) pairs are the new run's first decoder's.
    merged = merge_runs([record, load_run(two_decoder_run)])
    assert set(merged.board["decoder"]) == {"kandinsky-2.2-decoder", "k22-3-steps"}
    assert len(merged.notes) == 2  # both priors of the first decoder: the same images in both runs
    merged_folder = tmp_path / "merged"
    write_leaderboard(merged_folder, merged.board, merged.header(), merged.meta())
    page = write_report(merged_folder, prompts_per_category=1, seeds_per_prompt=1).read_text()
    assert "kandinsky-2.2 · k22-3-steps" in page and "kandinsky-2.2 · kandinsky-2.2-decoder" in page
    # A baseline in the format from before (scores nested by prior, no `decoders`) checks a run.
    document = baseline_document(record)
    document["scores"] = document.pop("decoders") and document["scores"]["kandinsky-2.2-decoder"]
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(document))
    baseline = load_baseline(path)
    assert set(baseline.scores["decoder"]) == {"kandinsky-2.2-decoder"}
    report = check_run(record, baseline)
    assert not report.failed and set(report.verdicts["status"]) == {"ok"}


# -- the generalisation view on hand-made numbers -----------------------------------------------------------------


def test_kendall_tau_of_known_rankings() -> None:
    ranking = np.array([0.1, 0.4, 0.2, 0.9])
    assert kendall_tau(ranking, ranking * 3 + 1) == pytest.approx(1.0)
    assert kendall_tau(ranking, -ranking) == pytest.approx(-1.0)
    # Ties (τ-b): 5 concordant pairs, no discordant, one pair tied in the second ranking: 5 / sqrt(6 × 5).
    assert kendall_tau(np.array([1.0, 2, 3, 4]), np.array([1.0, 2, 2, 4])) == pytest.approx(5 / math.sqrt(30))
    assert math.isnan(kendall_tau(np.array([1.0, 1.0]), np.array([1.0, 2.0])))
    assert math.isnan(kendall_tau(np.array([1.0]), np.array([1.0])))
    # Row by row, as scipy computes each (ties included).
    rng = np.random.default_rng(0)
    first, second = rng.integers(0, 4, (50, 6)).astype(float), rng.integers(0, 4, (50, 6)).astype(float)
    expected = [scipy.stats.kendalltau(a, b).statistic for a, b in zip(first, second, strict=True)]
    np.testing.assert_allclose(kendall_tau(first, second), expected, equal_nan=True)


def test_tau_interval_is_zero_wide_on_agreeing_prompts_and_reproducible() -> None:
    # Every prompt ranks three priors the same way under both decoders: every resample gives τ = 1.
    sums_a = np.array([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [3.0, 3.0, 3.0]])
    counts = np.ones_like(sums_a)
    assert tau_interval(sums_a, counts, sums_a * 2, counts) == (1.0, 1.0, 1.0)
    rng = np.random.default_rng(1)
    noisy_a, noisy_b = rng.random((4, 12)), rng.random((4, 12))
    counts = np.ones_like(noisy_a)
    first = tau_interval(noisy_a, counts, noisy_b, counts, resamples=200, seed=3)
    assert first == tau_interval(noisy_a, counts, noisy_b, counts, resamples=200, seed=3)
    _, low, high = first
    assert -1 <= low <= high <= 1
    assert tau_interval(noisy_a, counts, noisy_b, counts, resamples=200, seed=4) != first


def _hand_made_scores() -> pd.DataFrame:
    """Three priors, two decoders of one space (and one of another), one category: decoder b reverses the order."""
    rows = []
    means = {"a": {"p1": 0.1, "p2": 0.2, "p3": 0.3}, "b": {"p1": 0.6, "p2": 0.5, "p3": 0.4}, "h": {"p1": 0.0}}
    for decoder, by_prior in means.items():
        for prior, mean in by_prior.items():
            for prompt in ("q1", "q2", "q3"):
                rows.append(
                    {
                        "prior": prior,
                        "decoder": decoder,
                        "category": "color",
                        "metric": "clip",
                        "prompt_id": prompt,
                        "seed": 0,
                        "score": mean + (0.01 if prompt == "q2" else 0.0),
                    }
                )
    return pd.DataFrame(rows)


def test_the_view_pairs_decoders_of_one_space_and_reports_each_priors_change() -> None:
    spaces = {"a": "clip-vit-bigg-14", "b": "clip-vit-bigg-14", "h": "clip-vit-h-14"}
    view = generalisation(_hand_made_scores(), spaces, {"clip": True}, resamples=100)
    assert view.agreement[["decoder_a", "decoder_b"]].values.tolist() == [["a", "b"]]
    row = view.agreement.iloc[0]
    assert (row.tau, row.ci_low, row.ci_high) == (-1.0, -1.0, -1.0)
    assert (row.n_priors, row.n_prompts, bool(row.official)) == (3, 3, False)
    changes = view.changes.set_index("prior")
    assert changes.loc["p1", "change"] == pytest.approx(0.5)
    assert (changes.loc["p1", "rank_a"], changes.loc["p1", "rank_b"]) == (3, 1)
    markdown = generalisation_markdown(view)
    assert (
        "### a vs b (clip-vit-bigg-14)" in markdown and "-1.000" in markdown and "+0.5000 (3→1)" in markdown
    )
    alone = generalisation(
        _hand_made_scores(), {"a": "clip-vit-bigg-14", "h": "clip-vit-h-14"}, {"clip": True}
    )
    assert alone.empty and generalisation_markdown(alone) == ""
