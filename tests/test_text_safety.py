"""Hostile text in, safe files out: CSV cells no spreadsheet evaluates, Markdown tables that render no HTML, prompt
files held to the spec's text rules, and error messages that quote user input at a bounded length."""

from __future__ import annotations

import ast
import csv
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import ovi_bench
from ovi_bench.cli import app
from ovi_bench.errors import DataError, OviBenchError
from ovi_bench.io import read_csv, write_csv
from ovi_bench.prompts import load_prompts
from ovi_bench.provenance import write_results
from ovi_bench.results.baseline import load_baseline
from ovi_bench.results.records import load_run
from ovi_bench.results.summary import markdown_table
from ovi_bench.runner import Runner
from ovi_bench.spec import parse_spec
from ovi_bench.text import (
    FORMULA_TRIGGERS,
    MAX_TEXT_LENGTH,
    markdown_text,
    spreadsheet_original,
    spreadsheet_safe,
)

PACKAGE = Path(ovi_bench.__file__).resolve().parent

HOSTILE_LABELS = ['=HYPERLINK("http://x.invalid")', "<script>alert(1)</script> | x", "@SUM(1+1)"]
HOSTILE_PROMPTS = ["=1+1 a red cube", "-a blue ball", "+a green apple", "'=a quoted red car"]


# -- the cell rules --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1", "'=1", "''+x", "'", "plain", "", "-0.5", "a=b", " =1"],
)
def test_a_spreadsheet_cell_reads_back_as_the_text_it_was(text: str) -> None:
    cell = spreadsheet_safe(text)
    assert not cell.startswith(FORMULA_TRIGGERS)
    assert spreadsheet_original(cell) == text


def test_write_csv_quotes_text_cells_and_leaves_numbers_alone(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "prompt": ["=cmd|'/c calc'!A0", "-0.5", "ok"],
            "score": [-0.5, 0.25, float("nan")],
            "seed": [1, -2, 3],
        }
    )
    path = tmp_path / "x.csv"
    write_csv(frame, path)
    rows = list(csv.reader(path.open(newline="")))
    assert rows[1] == ["'=cmd|'/c calc'!A0", "-0.5", "1"]  # the text cell quoted, the number not
    assert rows[2] == ["'-0.5", "0.25", "-2"]
    back = read_csv(path, dtype={"prompt": str})
    pd.testing.assert_frame_equal(back, frame)


def test_markdown_text_escapes_html_and_the_cell_separator() -> None:
    assert markdown_text("<b>&\n|x") == "&lt;b&gt;&amp; \\|x"
    table = markdown_table(pd.DataFrame({"<th>": ["<script>", "a|b"], "mean": [-0.5, 1.0]}))
    assert "<" not in table and ">" not in table and "a\\|b" in table and "-0.5" in table


def _calls(tree: ast.AST) -> list[tuple[ast.Call, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
            found.append((node, name))
    return found


def test_every_csv_and_markdown_table_is_written_through_the_one_helper() -> None:
    """A new writer that calls to_csv / csv.writer / to_markdown directly would skip the escaping."""
    allowed = {("io.py", "to_csv"), ("summary.py", "to_markdown")}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node, name in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            writes = name in ("to_csv", "writer", "DictWriter", "to_markdown", "writerow", "writerows")
            if writes and (path.name, name) not in allowed:
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {name}")
    assert not offenders, offenders


# -- a hostile run, end to end -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 priors with hostile labels × 4 hostile prompts × 1 image, 32×32, CLIP scores and audits (~10 s)."""
    folder = tmp_path_factory.mktemp("hostile")
    prompts = folder / "prompts.csv"
    with prompts.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["prompt", "category"])
        writer.writerows([prompt, "color"] for prompt in HOSTILE_PROMPTS)
    spec = parse_spec(
        {
            "name": "<script>run</script>",
            "device": "cpu",
            "images_per_prompt": 1,
            "prompts": {"source": str(prompts)},
            "priors": [
                {"name": "text-embedding", "label": label, "params": {"model": "tiny"}}
                for label in HOSTILE_LABELS
            ],
            "decoder": {"params": {"model": "tiny"}, "steps": 2, "height": 32, "width": 32},
            "metrics": [{"name": "clip", "params": {"model": "tiny", "text_analyzer": "builtin"}}],
            "audits": {"bootstrap": 100},
        }
    )
    out = folder / "run"
    write_results(Runner(spec, out, show_progress=False).run())
    return out


def _assert_no_formula_cells(path: Path) -> int:
    """Every cell that starts with a formula character is a number; returns the number of cells read."""
    cells = 0
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle):
            for cell in row:
                cells += 1
                if cell.startswith(FORMULA_TRIGGERS):
                    float(cell)  # raises for text: a formula a spreadsheet would evaluate
    return cells


def _table_rows_have_one_width(markdown: str) -> None:
    for block in re.split(r"\n\s*\n", markdown):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        widths = {len(re.findall(r"(?<!\\)\|", row)) for row in rows}
        assert len(widths) <= 1, block  # an unescaped | in a cell would add a column to its row


def test_hostile_text_is_neutralised_in_every_file_and_reads_back_unchanged(
    hostile_run: Path, tmp_path: Path
) -> None:
    written = sorted(hostile_run.glob("*.csv"))
    assert {path.name for path in written} >= {"scores.csv", "embeddings.csv", "leaderboard.csv", "audit.csv"}
    runner = CliRunner()
    first, second = HOSTILE_LABELS[0], HOSTILE_LABELS[2]
    compared = runner.invoke(
        app, ["compare", str(hostile_run), "--priors", f"{first},{second}", "--out", str(tmp_path / "c.csv")]
    )
    assert compared.exit_code == 0, compared.output
    assert (
        runner.invoke(
            app,
            ["compare", str(hostile_run), "--priors", f"{first},{second}", "--out", str(tmp_path / "c.md")],
        ).exit_code
        == 0
    )
    assert (
        runner.invoke(app, ["baseline", str(hostile_run), "--out", str(tmp_path / "b.json")]).exit_code == 0
    )
    checked = runner.invoke(
        app,
        ["check", str(hostile_run), "--baseline", str(tmp_path / "b.json"), "--out", str(tmp_path / "v.csv")],
    )
    assert checked.exit_code == 0, checked.output
    merged = runner.invoke(app, ["leaderboard", str(hostile_run), "--out", str(tmp_path / "merged")])
    assert merged.exit_code == 0, merged.output
    written += [tmp_path / "c.csv", tmp_path / "v.csv", tmp_path / "merged" / "leaderboard.csv"]

    # 1. No text cell of any CSV starts with = + - @ tab or CR; the hostile prompts and labels are there, quoted.
    for path in written:
        assert _assert_no_formula_cells(path) > 0, path
    scores_text = (hostile_run / "scores.csv").read_text(encoding="utf-8")
    assert "'=1+1 a red cube" in scores_text and "'@SUM(1+1)" in scores_text and "''=a quoted" in scores_text

    # 2. Numbers stay numbers: a spreadsheet (and pandas) reads the score and difference columns as numbers.
    assert pd.read_csv(hostile_run / "scores.csv")["score"].dtype == float
    assert pd.read_csv(tmp_path / "c.csv")["difference"].dtype == float

    # 3. ovi-bench reads its own files back as the original text: scores, audits, the baseline built from them.
    record = load_run(hostile_run)
    assert set(record.scores["prompt"]) == set(HOSTILE_PROMPTS)
    assert list(dict.fromkeys(record.scores["prior"])) == HOSTILE_LABELS
    assert set(record.audits["category"]) == {"color"}
    assert set(load_baseline(tmp_path / "b.json").scores["prior"]) == set(HOSTILE_LABELS)
    assert set(read_csv(tmp_path / "v.csv")["prior"]) == set(HOSTILE_LABELS)

    # 4. Markdown: no raw HTML in any table written or printed, and every row keeps its columns.
    markdown_files = [
        hostile_run / "leaderboard.md",
        tmp_path / "merged" / "leaderboard.md",
        tmp_path / "c.md",
    ]
    for text in [path.read_text(encoding="utf-8") for path in markdown_files] + [
        compared.output,
        checked.output,
    ]:
        assert "<script>" not in text
        _table_rows_have_one_width(text)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; \\| x" in (hostile_run / "leaderboard.md").read_text()


# -- prompt files follow the spec's text rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_prompt", "problem"),
    [
        ("a red\x00 cube", "NUL"),
        ("a \x1b[31mred cube", "control character '\\x1b'"),
        ("a red cube " * 10_000, f"at most {MAX_TEXT_LENGTH:,} characters"),
        ("a red\u202ecube", "'\\u202e'"),
    ],
    ids=["nul", "escape", "overlong", "bidi-override"],
)
@pytest.mark.parametrize("suffix", [".txt", ".csv"])
def test_a_prompt_file_line_the_spec_would_refuse_is_refused_with_file_and_line(
    tmp_path: Path, bad_prompt: str, problem: str, suffix: str
) -> None:
    path = tmp_path / f"prompts{suffix}"
    lines = ["a red cube", "", bad_prompt] if suffix == ".txt" else ["prompt", "a red cube", bad_prompt]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        load_prompts(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}, line 3: the prompt ") and problem in message
    assert len(message) < len(str(path)) + 400
    # The same text as a name in a spec is refused by the same rule.
    with pytest.raises(OviBenchError, match=re.escape(problem)):
        parse_spec({"name": bad_prompt, "priors": [{"name": "text-embedding"}]})


def test_a_page_break_inside_a_txt_line_is_refused_rather_than_splitting_the_prompt(tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    path.write_text("a red cube\r\na blue\x0cball\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{path}, line 2: the prompt 'a blue\\x0cball'")):
        load_prompts(str(path))


# -- error messages quote user input at a bounded length ---------------------------------------------------------


HUGE = "x" * 100_000


@pytest.mark.parametrize(
    "spec",
    [
        {"priors": [{"name": HUGE}]},
        {"priors": [{"name": "text-embedding"}], "metrics": [{"name": HUGE}]},
        {"priors": [{"name": "text-embedding"}], "decoder": {"name": HUGE}},
        {"priors": [{"name": "text-embedding"}], HUGE: 1},
        {"priors": [{"name": "text-embedding", "params": {HUGE + " y": 1}}]},
        {"priors": [{"name": "text-embedding"}], "device": HUGE},
        {"priors": [{"name": "text-embedding", "label": HUGE}]},
        {"priors": [{"name": "text-embedding"}], "prompts": {"categories": [HUGE]}},
    ],
    ids=["prior", "metric", "decoder", "top-level-key", "params-key", "device", "label", "category"],
)
def test_a_huge_name_in_a_spec_gives_an_error_of_bounded_length(spec: dict) -> None:
    with pytest.raises(OviBenchError) as caught:
        parse_spec(spec)
    assert len(str(caught.value)) < 1_000, str(caught.value)[:300]


def test_a_huge_prompt_source_or_command_line_name_gives_an_error_of_bounded_length(
    hostile_run: Path,
) -> None:
    for source in (HUGE, HUGE + ".txt"):
        with pytest.raises(OviBenchError) as caught:
            load_prompts(source)
        assert len(str(caught.value)) < 1_000
    for arguments in (
        ["compare", str(hostile_run), "--priors", HUGE],
        ["compare", str(hostile_run), "--priors", f"{HUGE},{HOSTILE_LABELS[0]}"],
        [
            "compare",
            str(hostile_run),
            "--priors",
            f"{HOSTILE_LABELS[0]},{HOSTILE_LABELS[2]}",
            "--metric",
            HUGE,
        ],
        ["check", str(hostile_run), "--baseline", str(hostile_run / "none.json"), "--tolerance-for", HUGE],
    ):
        result = CliRunner().invoke(app, arguments)
        assert isinstance(result.exception, OviBenchError), result.output
        assert len(str(result.exception)) < 1_000, str(result.exception)[:300]
