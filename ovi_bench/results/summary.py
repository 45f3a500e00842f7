"""The table a paper shows: priors × categories, each T2I-CompBench++ category's official metric with its interval.

One computation (`official_summary`) behind every view of it: the terminal, `leaderboard.md`, `leaderboard.tex` and
the HTML report. Light to import: no model code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from ovi_bench.prompts.base import CATEGORIES
from ovi_bench.results.records import metric_directions
from ovi_bench.text import map_text_cells, markdown_text

CATEGORY_TITLES = {
    "color": "Color",
    "shape": "Shape",
    "texture": "Texture",
    "spatial": "2D-Spatial",
    "3d_spatial": "3D-Spatial",
    "non_spatial": "Non-Spatial",
    "numeracy": "Numeracy",
    "complex": "Complex",
}


def official_summary(board: pd.DataFrame) -> pd.DataFrame:
    """One row per prior (per prior × decoder, with a `decoder` column, when the board has several decoders), one
    column group per category: the official metric's mean and interval.

    Columns `<category>.mean`, `.ci_low`, `.ci_high`, `.metric`, `.best` (the best mean of its column: the highest,
    or the lowest where the rows' `higher_is_better` is false; ties are all best, across decoders too); empty when
    the board has no official rows.
    """
    official = board[board["official"].astype(bool)] if not board.empty else board
    if official.empty:
        return pd.DataFrame()
    directions = metric_directions(official)
    several = "decoder" in official.columns and official["decoder"].nunique() > 1
    keys = ["prior", "decoder"] if several else ["prior"]
    entries = list(dict.fromkeys(zip(*(official[key] for key in keys), strict=True)))
    categories = [category for category in CATEGORIES if category in set(official["category"])]
    categories += sorted(set(official["category"]) - set(categories))
    summary = pd.DataFrame(entries, columns=keys)
    for category in categories:
        rows = official[official["category"] == category].set_index(keys)
        for column in ("mean", "ci_low", "ci_high", "metric"):
            values = rows[column].to_dict()
            summary[f"{category}.{column}"] = [
                values.get(entry if several else entry[0]) for entry in entries
            ]
        means = pd.to_numeric(summary[f"{category}.mean"], errors="coerce")
        best = means.max() if directions[str(rows["metric"].iloc[0])] else means.min()
        summary[f"{category}.best"] = means == best
    return summary


def _summary_categories(summary: pd.DataFrame) -> list[str]:
    return [column.removesuffix(".mean") for column in summary.columns if column.endswith(".mean")]


def summary_cells(summary: pd.DataFrame, bold: Callable[[str], str] = str) -> pd.DataFrame:
    """The official-metric table as text cells: `mean [low, high]`, the best of each column passed through `bold`."""
    categories = _summary_categories(summary)
    table = summary[[column for column in ("prior", "decoder") if column in summary.columns]].copy()
    for category in categories:
        cells = [
            _interval_text(mean, low, high)
            for mean, low, high in zip(
                summary[f"{category}.mean"],
                summary[f"{category}.ci_low"],
                summary[f"{category}.ci_high"],
                strict=True,
            )
        ]
        best = summary[f"{category}.best"]
        metric = summary[f"{category}.metric"].dropna().iloc[0]
        table[f"{category} ({metric})"] = [
            bold(cell) if is_best and cell != "–" else cell for cell, is_best in zip(cells, best, strict=True)
        ]
    return table


def summary_markdown(summary: pd.DataFrame) -> str:
    """The official-metric table in Markdown, the best of each column in bold."""
    table = summary_cells(summary, bold=lambda cell: f"**{cell}**")
    names = 2 if "decoder" in table.columns else 1
    return markdown_table(table, colalign=["left"] * names + ["center"] * (len(table.columns) - names))


def _interval_text(mean: Any, low: Any, high: Any, digits: int = 4) -> str:
    if mean is None or pd.isna(mean):
        return "–"
    text = f"{mean:.{digits}f}"
    if low is not None and high is not None and not pd.isna(low) and not pd.isna(high):
        text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return text


def markdown_table(frame: pd.DataFrame, **options: Any) -> str:
    """`frame.to_markdown(index=False, **options)` with its column names and text cells through `markdown_text`
    (HTML and `|` escaped); numbers are left alone. Every Markdown table ovi-bench writes or prints goes through
    here."""
    return map_text_cells(frame, markdown_text).to_markdown(index=False, **options)


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(character, character) for character in str(text))


def summary_latex(summary: pd.DataFrame, caption: str) -> str:
    """A booktabs table for a paper: priors × categories, the official metric's mean (best in bold) over its 95%
    interval in small type. Needs `\\usepackage{booktabs}`."""
    categories = _summary_categories(summary)
    lines = [
        "% ovi-bench leaderboard: each T2I-CompBench++ category's official metric; needs \\usepackage{booktabs}",
        "\\begin{table}[t]",
        "\\centering",
        "\\setlength{\\tabcolsep}{3pt}",
        "\\begin{tabular}{l" + "c" * len(categories) + "}",
        "\\toprule",
        "Prior & " + " & ".join(latex_escape(CATEGORY_TITLES.get(c, c)) for c in categories) + " \\\\",
        " & "
        + " & ".join(
            "{\\scriptsize " + latex_escape(summary[f"{c}.metric"].dropna().iloc[0]) + "}" for c in categories
        )
        + " \\\\",
        "\\midrule",
    ]
    for record in summary.to_dict("records"):
        means, intervals = [], []
        for category in categories:
            mean, low, high = (record[f"{category}.{key}"] for key in ("mean", "ci_low", "ci_high"))
            if mean is None or pd.isna(mean):
                means.append("--")
                intervals.append("")
                continue
            means.append(f"\\textbf{{{mean:.4f}}}" if record[f"{category}.best"] else f"{mean:.4f}")
            intervals.append(
                "" if low is None or pd.isna(low) else f"{{\\scriptsize [{low:.4f}, {high:.4f}]}}"
            )
        name = record["prior"] if "decoder" not in record else f"{record['prior']} ({record['decoder']})"
        lines.append(latex_escape(name) + " & " + " & ".join(means) + " \\\\")
        lines.append(" & " + " & ".join(intervals) + " \\\\")
    lines += [
        "\\bottomrule",
        "\\end{tabular}",
        "\\caption{" + latex_escape(caption) + "; mean over images, 95\\% bootstrap interval over prompts.}",
        "\\end{table}",
    ]
    return "\n".join(lines) + "\n"
