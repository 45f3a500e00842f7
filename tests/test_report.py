"""The HTML report: plot geometry, best-marking, escaping of hostile run text, and the page in a real browser."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import warnings
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, unquote

import pandas as pd
import pytest
from tiny_runs import run as tiny_run
from typer.testing import CliRunner

from ovi_bench.cli import app
from ovi_bench.errors import DataError
from ovi_bench.results.records import load_run
from ovi_bench.results.report import (
    DEFAULT_PROMPTS_PER_CATEGORY,
    DEFAULT_SEEDS_PER_PROMPT,
    script_json,
    write_report,
)
from ovi_bench.results.report.plots import IntervalRow, interval_plot
from ovi_bench.results.report.tables import summary_table

REPOSITORY = Path(__file__).resolve().parents[1]
SVG = "{http://www.w3.org/2000/svg}"


# ---------------------------------------------------------------------------------------------------------------------
# Reading a page back with the standard library's HTML parser.


@dataclass
class Element:
    tag: str
    attributes: dict[str, str]
    text: str = ""
    children: list[Element] = field(default_factory=list)

    def has_class(self, name: str) -> bool:
        return name in self.attributes.get("class", "").split()

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()

    def find_all(self, tag: str | None = None, **attributes: str) -> list[Element]:
        return [
            element
            for element in self.walk()
            if (tag is None or element.tag == tag)
            and all(
                element.has_class(value) if name == "class_" else element.attributes.get(name) == value
                for name, value in attributes.items()
            )
        ]

    def find(self, tag: str | None = None, **attributes: str) -> Element:
        found = self.find_all(tag, **attributes)
        assert found, f"no <{tag}> with {attributes}"
        return found[0]

    @property
    def all_text(self) -> str:
        return self.text + "".join(child.all_text for child in self.children)

    @property
    def hidden(self) -> bool:
        return "hidden" in self.attributes


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class TreeBuilder(HTMLParser):
    """A tolerant element tree; text is kept per element, in order, with entities decoded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        target = self.stack[-1]
        if target.children:  # text after a child element: keep it in reading order
            target.children.append(Element("#text", {}, data))
        else:
            target.text += data


def parse_page(html: str) -> Element:
    builder = TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


# ---------------------------------------------------------------------------------------------------------------------
# Plot geometry.


def _plot_geometry(svg: str) -> tuple[dict[str, tuple[float, float, float]], list[tuple[float, float]]]:
    """Per prior (mean x, whisker x1, whisker x2), and the axis ticks as (value, x)."""
    root = ElementTree.fromstring(svg)
    rows = {}
    for group in root.iter(f"{SVG}g"):
        if "plot-row" not in group.get("class", ""):
            continue
        circle = group.find(f"{SVG}circle")
        whisker = next(line for line in group.iter(f"{SVG}line") if line.get("class") == "whisker")
        rows[group.get("data-prior")] = (
            float(circle.get("cx")),
            float(whisker.get("x1")),
            float(whisker.get("x2")),
        )
    axis = next(group for group in root.iter(f"{SVG}g") if group.get("class") == "plot-axis")
    ticks = [
        (float(text.text), float(text.get("x")))
        for text in axis.iter(f"{SVG}text")
        if text.get("class") == "tick-label"
    ]
    return rows, ticks


def test_interval_plot_puts_the_dot_at_the_mean_and_the_whisker_over_the_interval() -> None:
    rows = [
        IntervalRow("text-embedding", 0.21, 0.18, 0.25),
        IntervalRow("ovi", 0.64, 0.50, 0.71),
        IntervalRow("kandinsky-2.2", 0.35, 0.33, 0.37),
    ]
    geometry, ticks = _plot_geometry(interval_plot(rows, axis_label="b-vqa"))
    assert list(geometry) == ["text-embedding", "ovi", "kandinsky-2.2"]  # the given order, one row each
    assert len(ticks) >= 3
    # The axis labels define the scale: x = origin + slope * value. Every dot and whisker end must lie on it.
    (value_a, x_a), (value_b, x_b) = ticks[0], ticks[-1]
    slope = (x_b - x_a) / (value_b - value_a)
    assert slope > 0

    def x_of(value: float) -> float:
        return x_a + slope * (value - value_a)

    for row in rows:
        mean_x, low_x, high_x = geometry[row.prior]
        assert mean_x == pytest.approx(x_of(row.mean), abs=0.02)
        assert low_x == pytest.approx(x_of(row.ci_low), abs=0.02)
        assert high_x == pytest.approx(x_of(row.ci_high), abs=0.02)
        assert low_x < mean_x < high_x
    for value, x in ticks:  # evenly spaced, every interval inside the axis
        assert x == pytest.approx(x_of(value), abs=0.02)
    assert ticks[0][0] <= min(row.ci_low for row in rows) and ticks[-1][0] >= max(row.ci_high for row in rows)


def test_interval_plot_skips_rows_without_an_interval_and_escapes_labels() -> None:
    rows = [
        IntervalRow('<b>"prior"</b>', 10.0, 8.0, 12.0),
        IntervalRow("set-level", 50.0, math.nan, math.nan),
    ]
    svg = str(interval_plot(rows, axis_label="fid & co"))
    geometry, _ = _plot_geometry(svg)  # parses as XML: nothing unescaped broke it
    assert list(geometry) == ['<b>"prior"</b>']
    assert "<b>" not in svg
    assert interval_plot([IntervalRow("set-level", 50.0, math.nan, math.nan)], axis_label="fid") == ""


def test_interval_plot_of_a_flat_interval_still_has_an_axis() -> None:
    geometry, ticks = _plot_geometry(str(interval_plot([IntervalRow("only", 0.5, 0.5, 0.5)], axis_label="x")))
    mean_x, low_x, high_x = geometry["only"]
    assert low_x == mean_x == high_x
    assert ticks[0][1] < mean_x < ticks[-1][1]


# ---------------------------------------------------------------------------------------------------------------------
# The summary table.


def _board(rows: list[tuple[str, str, str, bool, float]]) -> pd.DataFrame:
    """Leaderboard rows; the metric named "lower" is the one whose rows say lower is better."""
    return pd.DataFrame(
        [
            {
                "prior": prior,
                "category": category,
                "metric": metric,
                "official": official,
                "mean": mean,
                "ci_low": mean - 0.1,
                "ci_high": mean + 0.1,
                "higher_is_better": metric != "lower",
            }
            for prior, category, metric, official, mean in rows
        ]
    )


def test_summary_marks_the_best_official_mean_in_the_metric_direction() -> None:
    board = _board(
        [
            ("a", "color", "b-vqa", True, 0.40),
            ("b", "color", "b-vqa", True, 0.55),
            ("c", "color", "b-vqa", True, 0.55),  # a tie: both are best
            ("a", "color", "clip", False, 0.99),  # not official: never in the summary
            ("a", "custom", "lower", True, 3.0),
            ("b", "custom", "lower", True, 2.0),
            ("c", "custom", "lower", True, math.nan),  # no value: not a candidate
        ]
    )
    table = summary_table(board, ["a", "b", "c"], ["color", "custom"])
    assert [(column.category, column.metric, column.higher_is_better) for column in table.columns] == [
        ("color", "b-vqa", True),
        ("custom", "lower", False),
    ]
    best = {(prior, cell.category): cell.best for prior, cells in table.rows for cell in cells if cell}
    assert best == {
        ("a", "color"): False,
        ("b", "color"): True,
        ("c", "color"): True,
        ("a", "custom"): False,
        ("b", "custom"): True,
        ("c", "custom"): False,
    }
    assert table.rows[0][1][0].text == "0.4000 [0.3000, 0.5000]"


def test_summary_leaves_a_gap_where_a_prior_has_no_row() -> None:
    board = _board([("a", "color", "b-vqa", True, 0.4)])
    table = summary_table(board, ["a", "b"], ["color", "shape"])
    assert [column.category for column in table.columns] == ["color"]
    assert table.rows[1] == ("b", [None])


def test_script_json_cannot_end_its_script_element() -> None:
    value = {"prompt": "</script><img src=x onerror=alert(1)> <!-- & \u2028"}
    text = str(script_json(value))
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == value


# ---------------------------------------------------------------------------------------------------------------------
# The smoke run's report.


@pytest.fixture(scope="module")
def smoke_report(smoke_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("smoke-report")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the smoke run has every image: no missing-image warning
        return write_report(smoke_run, out)


def _with_decoder(frame: pd.DataFrame) -> pd.Series:
    """The report's name of each row's prior in a run with several decoders (the smoke run): `prior · decoder`."""
    return frame["prior"].astype(str) + " · " + frame["decoder"].astype(str)


def test_smoke_report_holds_every_leaderboard_row_and_a_bounded_image_sample(
    smoke_run: Path, smoke_report: Path
) -> None:
    record = load_run(smoke_run)
    page = parse_page(smoke_report.read_text(encoding="utf-8"))
    board = record.leaderboard
    rows = page.find("table", id="leaderboard").find("tbody").find_all("tr")
    assert len(rows) == len(board)
    assert [(row.attributes["data-prior"], row.attributes["data-metric"]) for row in rows] == list(
        zip(_with_decoder(board), board.metric, strict=True)
    )
    headers = [th.all_text.lower() for th in page.find_all("th")]
    assert not [header for header in headers if "overall" in header or "average" in header]

    scores = record.scores
    categories = list(dict.fromkeys(scores.category))
    # One grid row per prior × decoder (15 in the smoke run), each with the run's first seeds (it has one).
    expected_thumbnails = (
        sum(
            min(scores[scores.category == category].prompt_id.nunique(), DEFAULT_PROMPTS_PER_CATEGORY)
            for category in categories
        )
        * _with_decoder(scores).nunique()
        * min(scores.seed.nunique(), DEFAULT_SEEDS_PER_PROMPT)
    )
    thumbnails = [a for a in page.find_all("a", class_="thumb") if a.find_all("img")]
    assert len(thumbnails) == expected_thumbnails
    for thumb in thumbnails:
        assert thumb.find("img").attributes["src"].startswith("data:image/jpeg;base64,")
        full_image = (smoke_report.parent / unquote(thumb.attributes["href"])).resolve()
        assert full_image.is_file() and full_image.is_relative_to(smoke_run.resolve())
        assert thumb.attributes["title"].startswith("seed ")
    assert len(page.find_all(class_="grid-section")) == len(categories)


def test_smoke_report_is_self_contained(smoke_report: Path) -> None:
    page = parse_page(smoke_report.read_text(encoding="utf-8"))
    assert not page.find_all("link")
    for element in page.walk():
        for name in ("src", "href"):
            value = element.attributes.get(name, "")
            assert not value.startswith(("http:", "https:", "//")), (element.tag, value)
    scripts = page.find_all("script")
    assert [script.attributes for script in scripts] == [
        {"type": "application/json", "id": "report-data"},
        {},
    ]


def test_the_smoke_runs_rating_session_is_analysed_into_the_leaderboard_and_the_report(
    smoke_run: Path, smoke_report: Path
) -> None:
    """The smoke spec's simulated raters vote through the rating app after the run; their judgements are analysed
    (human.csv, human.json, the leaderboard section), and the report shows the metric–human agreement table."""
    payload = json.loads((smoke_run / "human.json").read_text())
    assert payload["simulated"] and payload["counts"]["raters"] == 3
    assert payload["counts"]["judgements"] == 3 * 40
    assert payload["spec_fingerprint"] == load_run(smoke_run).fingerprint
    per_image = set(load_run(smoke_run).scores["metric"])
    agreement = pd.DataFrame(payload["metric_agreement"])
    assert set(agreement["metric"]) == per_image
    # The raters prefer the higher PickScore (with a little noise): that metric agrees with them far above chance.
    pooled = agreement[(agreement["metric"] == "pickscore") & (agreement["decoder"] == "all")].iloc[0]
    assert pooled["agreement"] >= 0.75 and pooled["n"] >= 50
    assert "## Human judgements" in (smoke_run / "leaderboard.md").read_text(encoding="utf-8")
    page = parse_page(smoke_report.read_text(encoding="utf-8"))
    rows = page.find("table", id="human-metric-agreement").find_all("tr", class_="filterable")
    assert {row.attributes["data-metric"] for row in rows} == per_image
    assert "simulated raters" in page.find("p", id="human-simulated").all_text


def test_smoke_report_summary_marks_one_best_prior_per_official_column(
    smoke_run: Path, smoke_report: Path
) -> None:
    record = load_run(smoke_run)
    board = record.leaderboard
    official = board[board.official.astype(bool)]
    table = parse_page(smoke_report.read_text(encoding="utf-8")).find("table", id="summary-table")
    header = [th.attributes.get("data-category") for th in table.find("thead").find_all("th")][1:]
    assert header == list(dict.fromkeys(official.category))
    for category in header:
        rows = official[official.category == category]
        better = rows["mean"].max() if record.higher_is_better(rows.metric.iloc[0]) else rows["mean"].min()
        expected = set(_with_decoder(rows[rows["mean"] == better]))  # one summary row per prior × decoder
        marked = {
            row.find("th").all_text
            for row in table.find("tbody").find_all("tr")
            for cell in row.find_all("td", class_="best")
            if cell.attributes["data-category"] == category
        }
        assert marked == expected


def test_report_command_prints_the_path_and_size(smoke_run: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["report", str(smoke_run), "--out", str(tmp_path), "--prompts-per-category", "1"]
    )
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "index.html") in result.output.replace("\n", "")
    assert "kB)" in result.output or "MB)" in result.output
    page = parse_page((tmp_path / "index.html").read_text(encoding="utf-8"))
    for section in page.find_all(class_="grid-section"):
        assert len(section.find("tbody").find_all("tr")) == 1


@pytest.mark.parametrize("problem", ["missing", "no-results", "bad-leaderboard"])
def test_report_of_a_bad_folder_is_an_error_message_not_a_traceback(tmp_path: Path, problem: str) -> None:
    folder = tmp_path / "run"
    if problem != "missing":
        folder.mkdir()
    if problem == "bad-leaderboard":
        (folder / "results.json").write_text(
            json.dumps({"spec_fingerprint": "0", "leaderboard": [{"prior": "a"}]})
        )
    with pytest.raises(DataError, match="ovi-bench run"):
        write_report(folder)
    completed = subprocess.run(
        [sys.executable, "-m", "ovi_bench", "report", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert completed.returncode == 2
    assert completed.stderr.startswith("error:") and "Traceback" not in completed.stderr


# ---------------------------------------------------------------------------------------------------------------------
# Hostile text from prompts, labels and the run name.

HOSTILE_PROMPTS = [
    '<script>alert("x")</script> a red cube',
    "a \"quoted\" 'cat' & <b>dog</b>",
    "../../etc/passwd on the left of a tree",
    "</script><img src=x onerror=alert(1)>",
    "café 東京 🐈",
]
HOSTILE_LABEL = '<i onmouseover="alert(2)">evil</i> & "prior"'
HOSTILE_NAME = "<script>alert('name')</script>"


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    prompt_file = folder / "prompts.txt"
    prompt_file.write_text("\n".join(HOSTILE_PROMPTS) + "\n", encoding="utf-8")
    out = folder / "run"
    tiny_run(
        out,
        name=HOSTILE_NAME,
        prompts={"source": str(prompt_file)},
        priors=[
            {"name": "text-embedding", "params": {"model": "tiny"}},
            {
                "name": "text-embedding",
                "label": HOSTILE_LABEL,
                "params": {"model": "tiny", "rescale": "none"},
            },
        ],
    )
    return out


@pytest.fixture(scope="module")
def hostile_report(hostile_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(hostile_run, tmp_path_factory.mktemp("hostile-report"))


def _assert_no_markup_from_data(page: Element) -> None:
    """Every element and attribute is the template's own: none came from a prompt, label or name."""
    for element in page.walk():
        assert element.tag not in ("b", "i"), element
        assert not [name for name in element.attributes if name.startswith("on")], element
        if element.tag == "img":  # a thumbnail, or the run's own image file in the detail panel
            source = element.attributes.get("src", "")
            assert not source or source.startswith("data:image/jpeg;base64,") or "/images/" in source, element


def test_hostile_text_is_escaped_everywhere(hostile_run: Path, hostile_report: Path) -> None:
    html = hostile_report.read_text(encoding="utf-8")
    page = parse_page(html)
    scripts = page.find_all("script")
    assert [script.attributes for script in scripts] == [
        {"type": "application/json", "id": "report-data"},
        {},
    ]
    assert (
        scripts[1].text.strip()
        == (REPOSITORY / "ovi_bench" / "results" / "report" / "report.js").read_text().strip()
    )
    _assert_no_markup_from_data(page)

    text = page.all_text
    for prompt in HOSTILE_PROMPTS:
        assert prompt in text  # shown as text, decoded back to exactly the prompt
    assert HOSTILE_LABEL in text and HOSTILE_NAME in page.find("h1").all_text
    for markup in ("<b>dog</b>", "<img src=x", "<script>alert", "<i onmouseover"):
        assert markup not in html

    data = json.loads(scripts[0].text)
    assert {image["prompt"] for image in data["images"].values()} == set(HOSTILE_PROMPTS)
    assert {image["prior"] for image in data["images"].values()} == {"text-embedding", HOSTILE_LABEL}
    assert "<" not in scripts[0].text


def test_missing_images_get_a_placeholder_and_a_warning(hostile_run: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "run"
    shutil.copytree(hostile_run, damaged)
    scores = load_run(damaged).scores
    removed = sorted(set(scores.image))[:3]
    for image in removed:
        (damaged / image).unlink()
    # Both priors embed alike, so one file can be the image of several slots (images are stored by content).
    missing = scores[scores.image.isin(removed)].groupby(["prior", "prompt_id", "seed"]).ngroups
    assert missing >= 3
    with pytest.warns(UserWarning, match=f"{missing} of the report's 20 sampled image"):
        path = write_report(damaged)
    assert path == damaged / "report" / "index.html"
    page = parse_page(path.read_text(encoding="utf-8"))
    assert len(page.find_all("a", class_="placeholder")) == missing
    assert f"{missing} sampled image(s) are missing" in page.find(id="missing-images").all_text
    assert all(
        thumb.find("img")
        for thumb in page.find_all("a", class_="thumb")
        if not thumb.has_class("placeholder")
    )


def test_image_paths_outside_the_run_folder_are_never_embedded(hostile_run: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "run"
    shutil.copytree(hostile_run, tampered)
    secret = tmp_path / "secret.png"
    shutil.copy(tampered / load_run(tampered).scores.image.iloc[0], secret)
    scores = pd.read_csv(tampered / "scores.csv")
    scores["image"] = "../secret.png"
    scores.to_csv(tampered / "scores.csv", index=False)
    with pytest.warns(UserWarning, match="20 of the report's 20"):
        path = write_report(tampered)
    assert "data:image/jpeg" not in path.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------------------
# A merged leaderboard folder (`ovi-bench leaderboard RUN_DIR... --out DIR`).

MERGE_PROMPTS = {"source": "builtin", "categories": ["non_spatial", "color"], "limit": 1}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two runs of one protocol, the second with a new prior beside a repeat of the first's baseline."""
    first, second = tmp_path_factory.mktemp("baselines"), tmp_path_factory.mktemp("new-prior")
    baseline = {"name": "text-embedding", "params": {"model": "tiny"}}
    tiny_run(first, name="baselines", prompts=MERGE_PROMPTS, priors=[baseline])
    new_prior = {
        "name": "text-embedding",
        "label": "rescaled",
        "params": {"model": "tiny", "rescale": "none"},
    }
    tiny_run(second, name="new-prior", prompts=MERGE_PROMPTS, priors=[baseline, new_prior])
    return first, second


def merged_folder(runs: list[Path], out: Path) -> Path:
    result = CliRunner().invoke(app, ["leaderboard", *map(str, runs), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_report_of_a_merged_leaderboard_has_every_run_and_their_images(
    two_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    merged = merged_folder(list(two_runs), tmp_path / "merged")
    board = pd.read_csv(merged / "leaderboard.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # both source runs exist: no note, no missing image
        path = write_report(merged)
    assert path == merged / "report" / "index.html"
    page = parse_page(path.read_text(encoding="utf-8"))
    rows = page.find("table", id="leaderboard").find("tbody").find_all("tr")
    assert [(row.attributes["data-prior"], row.attributes["data-metric"]) for row in rows] == list(
        zip(board.prior, board.metric, strict=True)
    )
    runs_column = [row.find_all("td")[1].all_text for row in rows]
    assert runs_column == list(board.run)
    facts = page.find("dl", class_="facts").all_text
    for folder in two_runs:
        record = load_run(folder)
        assert record.fingerprint[:12] in facts and record.name in facts
    # The merged board's priors in the summary; each prior's images come from the run it was merged from.
    summary_priors = [
        row.find("th").all_text for row in page.find("table", id="summary-table").find("tbody").find_all("tr")
    ]
    assert summary_priors == list(dict.fromkeys(board.prior))
    thumbnails = [a for a in page.find_all("a", class_="thumb") if a.find_all("img")]
    priors = list(dict.fromkeys(board.prior))
    assert priors == ["text-embedding", "rescaled"]  # the repeated baseline is taken from the first run
    assert len(thumbnails) == 2 * 2 * len(priors)  # 2 categories × 2 seeds per prior
    run_of = dict(zip(board.prior, board.run, strict=False))
    assert set(run_of.values()) == {"baselines", "new-prior"}
    folders = {load_run(folder).name: folder.resolve() for folder in two_runs}
    for thumb in thumbnails:
        prior = thumb.find("img").attributes["alt"].split(", seed")[0]
        full_image = (path.parent / unquote(thumb.attributes["href"])).resolve()
        assert full_image.is_file() and full_image.is_relative_to(folders[run_of[prior]]), prior
    assert not page.find_all("p", class_="merge-note")


def test_report_of_a_merged_leaderboard_whose_source_run_is_gone_notes_it(
    two_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    copies = [tmp_path / "baselines", tmp_path / "new-prior"]
    for source, copy in zip(two_runs, copies, strict=True):
        shutil.copytree(source, copy)
    merged = merged_folder(copies, tmp_path / "merged")
    shutil.rmtree(copies[1])
    result = CliRunner().invoke(app, ["report", str(merged), "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert "images of run 'new-prior' left out" in result.output.replace("\n", "")
    page = parse_page((tmp_path / "report" / "index.html").read_text(encoding="utf-8"))
    note = page.find("p", class_="merge-note").all_text
    assert "new-prior" in note and "no longer exists" in note
    board = pd.read_csv(merged / "leaderboard.csv")
    assert len(page.find("table", id="leaderboard").find("tbody").find_all("tr")) == len(board)
    alts = {
        a.find("img").attributes["alt"].split(", seed")[0]
        for a in page.find_all("a", class_="thumb")
        if a.find_all("img")
    }
    assert alts == {"text-embedding"}  # the baselines run's prior only


def test_report_of_a_merged_leaderboard_finds_runs_given_by_relative_paths_from_elsewhere(
    two_runs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for source, name in zip(two_runs, ("a", "b"), strict=True):
        shutil.copytree(source, tmp_path / "runs" / name)
    monkeypatch.chdir(tmp_path)
    merged_folder([Path("runs/a"), Path("runs/b")], Path("runs/merged"))
    monkeypatch.chdir(tmp_path / "runs" / "a")  # another working directory: "runs/a" means nothing here
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = write_report(tmp_path / "runs" / "merged")
    page = parse_page(path.read_text(encoding="utf-8"))
    assert not page.find_all("p", class_="merge-note")
    assert len([a for a in page.find_all("a", class_="thumb") if a.find_all("img")]) == 2 * 2 * 2


def test_report_of_a_folder_with_a_foreign_leaderboard_json_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "leaderboard.json").write_text(json.dumps({"leaderboard": []}), encoding="utf-8")
    with pytest.raises(DataError, match="not a merged leaderboard"):
        write_report(tmp_path)


# ---------------------------------------------------------------------------------------------------------------------
# In a browser: the page after its script ran.


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    message = (
        "chromium is not installed (Debian: apt-get install chromium); the report's browser test needs it"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{message}, and CI must run it (.ci/run installs it)")
    pytest.skip(message)


def _run_chromium(arguments: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *arguments,
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed


def dump_dom(page: Path, hash_state: str, profile: Path) -> Element:
    completed = _run_chromium(["--dump-dom", page.as_uri() + hash_state], profile)
    dom = parse_page(completed.stdout)
    assert dom.find("html").attributes.get("data-ready") == "true", "the report's script did not finish"
    return dom


def _leaderboard_rows(dom: Element) -> list[Element]:
    return dom.find("table", id="leaderboard").find("tbody").find_all("tr")


def test_browser_filters_hide_rows_plots_and_grids(
    smoke_run: Path, smoke_report: Path, tmp_path: Path
) -> None:
    board = load_run(smoke_run).leaderboard
    dom = dump_dom(smoke_report, "#category=color", tmp_path)
    rows = _leaderboard_rows(dom)
    assert len(rows) == len(board)
    shown = [row for row in rows if not row.hidden]
    assert len(shown) == (board.category == "color").sum() > 0
    assert {row.attributes["data-category"] for row in shown} == {"color"}
    assert dom.find(id="leaderboard-count").all_text == str(len(shown))
    grids = dom.find_all(class_="grid-section")
    assert [grid.attributes["data-category"] for grid in grids if not grid.hidden] == ["color"]
    color_grid = next(grid for grid in grids if not grid.hidden)
    assert color_grid.find_all("img")
    for figure in dom.find_all("figure", class_="plot"):
        # The human strengths' plots (one per decoder) belong to no category: a category filter leaves them shown.
        category = figure.attributes.get("data-category")
        assert figure.hidden == (category is not None and category != "color")

    # The prior filter's values are the report's `prior · decoder` names: ovi and eclipse on both their decoders.
    chosen = set(_with_decoder(board[board.prior.isin(["ovi", "eclipse"])]))
    assert len(chosen) == 4
    dom = dump_dom(smoke_report, "#prior=" + ",".join(map(quote, sorted(chosen))) + "&metric=b-vqa", tmp_path)
    shown = [row for row in _leaderboard_rows(dom) if not row.hidden]
    assert len(shown) == ((board.metric == "b-vqa") & board.prior.isin(["ovi", "eclipse"])).sum() > 0
    assert {row.attributes["data-prior"] for row in shown} == chosen
    for svg in dom.find_all("svg", class_="interval-plot"):
        visible = [row for row in svg.find_all("g", class_="plot-row") if not row.hidden]
        assert {row.attributes["data-prior"] for row in visible} <= chosen
        # The visible rows close up: the plot shrinks to their height.
        top, row_height = int(svg.attributes["data-top"]), int(svg.attributes["data-row-height"])
        expected_height = top + row_height * len(visible) + int(svg.attributes["data-axis-height"])
        assert int(svg.attributes["height"]) == expected_height
    for header in dom.find_all("th", class_="filterable"):
        if "data-prior" in header.attributes:
            assert header.hidden == (header.attributes["data-prior"] not in chosen)


@pytest.mark.parametrize("direction", ["desc", "asc"])
def test_browser_sorts_the_leaderboard_from_the_hash(
    smoke_report: Path, tmp_path: Path, direction: str
) -> None:
    dom = dump_dom(smoke_report, f"#sort=mean:{direction}", tmp_path)
    header = [
        th.attributes["data-key"] for th in dom.find("table", id="leaderboard").find("thead").find_all("th")
    ]
    column = header.index("mean")
    values = [row.find_all("td")[column].attributes["data-value"] for row in _leaderboard_rows(dom)]
    numbers = [float(value) for value in values if value]
    assert numbers == sorted(numbers, reverse=direction == "desc")
    # The order really follows the direction, and rows without a value come last.
    assert numbers != sorted(numbers, reverse=direction != "desc")
    assert all(values[: len(numbers)]) and not any(values[len(numbers) :])
    sorted_header = dom.find("th", **{"data-key": "mean"})
    assert sorted_header.attributes["aria-sort"] == ("descending" if direction == "desc" else "ascending")


def test_browser_keeps_hostile_text_as_text(hostile_report: Path, tmp_path: Path) -> None:
    data = json.loads(
        parse_page(hostile_report.read_text(encoding="utf-8")).find("script", id="report-data").text
    )
    key, image = next(
        (key, image) for key, image in data["images"].items() if image["prompt"] == HOSTILE_PROMPTS[3]
    )
    dom = dump_dom(hostile_report, f"#image={key}", tmp_path)
    _assert_no_markup_from_data(dom)
    assert not [img for img in dom.find_all("img") if "onerror" in img.attributes]
    panel = dom.find("aside", id="detail")
    assert not panel.hidden
    assert dom.find(id="detail-prompt").all_text == HOSTILE_PROMPTS[3]
    assert dom.find(id="detail-prior").all_text == image["prior"]
    scores = dom.find(id="detail-scores").find_all("tr")
    assert [row.find_all("td")[0].all_text for row in scores] == ["clip"]
    assert not [element for element in panel.walk() if element.tag in ("script", "b", "i")]
    text = dom.all_text
    for prompt in HOSTILE_PROMPTS:
        assert prompt in text


def test_browser_screenshot(smoke_report: Path, tmp_path: Path) -> None:
    """Not an assertion about looks: a picture of the page for a person to check, kept as a test artefact."""
    artifacts = Path(os.environ.get("OVI_BENCH_TEST_ARTIFACTS", REPOSITORY / "artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    for name, hash_state in (
        ("report.png", ""),
        ("report-filtered.png", "#category=color&metric=b-vqa&image=i0"),
    ):
        screenshot = artifacts / name
        screenshot.unlink(missing_ok=True)
        _run_chromium(
            [f"--screenshot={screenshot}", "--window-size=1280,2400", smoke_report.as_uri() + hash_state],
            tmp_path,
        )
        assert screenshot.stat().st_size > 10_000
