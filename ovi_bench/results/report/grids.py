"""Image grids: a bounded sample of a run's images (prompts × priors × seeds) as embedded thumbnails.

A real run holds tens of thousands of images per prior, so a grid shows the first prompts of each category (in
prompt-id order) and their first seeds, for every prior. Thumbnails are embedded as data URIs so the page opens from
disk on its own; each links to its full image by a path relative to the report, which works while the run folder is
intact.
"""

from __future__ import annotations

import base64
import io
import math
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
from PIL import Image, UnidentifiedImageError

from ovi_bench.results.report.plots import format_value

THUMBNAIL_QUALITY = 82


@dataclass(frozen=True)
class MetricScore:
    metric: str
    score: str
    reason: str


@dataclass
class GridImage:
    key: str
    """Identifies the image in the page's embedded data (for the detail panel)."""
    prior: str
    category: str
    prompt_id: str
    prompt: str
    seed: int
    scores: list[MetricScore]
    href: str = ""
    """Link to the full image, relative to the report folder; empty when the run has no image file for it."""
    thumbnail: str = ""
    """data: URI of the thumbnail; empty when the image file is missing or unreadable."""
    source: Path | None = None
    upscaled: bool = False
    """The image is smaller than a thumbnail: the page enlarges it without smoothing, pixels stay sharp."""
    run_root: Path | None = None
    """The run folder `source` is relative to, where it is not the report's run (a merged leaderboard's sources)."""

    @property
    def title(self) -> str:
        lines = [f"seed {self.seed}"]
        lines += [
            f"{score.metric} {score.score}" + (f" — {score.reason}" if score.reason else "")
            for score in self.scores
        ]
        if not self.thumbnail:
            lines.append("image file missing from the run folder")
        return "\n".join(lines)

    def detail(self) -> dict[str, Any]:
        """What the detail panel shows, as JSON for the page's script."""
        return {
            "prior": self.prior,
            "category": self.category,
            "prompt_id": self.prompt_id,
            "prompt": self.prompt,
            "seed": self.seed,
            "href": self.href,
            "scores": [[score.metric, score.score, score.reason] for score in self.scores],
        }


@dataclass
class GridRow:
    prompt_id: str
    prompt: str
    cells: list[list[GridImage | None]]
    """Per prior (the run's order), per sampled seed; None where the run has no image for that slot."""


@dataclass
class CategoryGrid:
    category: str
    seeds: list[int]
    rows: list[GridRow]
    total_prompts: int
    missing: int = 0


@dataclass
class Grids:
    categories: list[CategoryGrid] = field(default_factory=list)

    @property
    def images(self) -> list[GridImage]:
        return [
            image
            for grid in self.categories
            for row in grid.rows
            for cell in row.cells
            for image in cell
            if image is not None
        ]

    @property
    def missing(self) -> int:
        return sum(grid.missing for grid in self.categories)


def natural_key(text: str) -> list[Any]:
    """Digits compare as numbers: "color-val-10" after "color-val-9"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def sample_grids(
    scores: pd.DataFrame,
    *,
    run_dir: Path,
    report_dir: Path,
    priors: Sequence[str],
    categories: Sequence[str],
    prompts_per_category: int,
    seeds_per_prompt: int,
    thumbnail_px: int,
) -> Grids:
    """The sampled grid of every category, with thumbnails made (on a few threads: decoding dominates)."""
    grids = Grids()
    if prompts_per_category == 0:
        return grids
    for category in categories:
        in_category = scores[scores["category"] == category]
        if in_category.empty:
            continue
        grids.categories.append(
            _category_grid(in_category, category, priors, prompts_per_category, seeds_per_prompt)
        )
    images = grids.images
    for index, image in enumerate(images):
        image.key = f"i{index}"
    run_root = Path(os.path.abspath(run_dir))
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        thumbnails = list(
            pool.map(lambda image: _thumbnail(image, image.run_root or run_root, thumbnail_px), images)
        )
    for image, (thumbnail, source, upscaled) in zip(images, thumbnails, strict=True):
        image.thumbnail, image.source, image.upscaled = thumbnail, source, upscaled
        image.href = _relative_href(source, report_dir) if source is not None else ""
    for grid in grids.categories:
        grid.missing = sum(
            1 for row in grid.rows for cell in row.cells for image in cell if image and not image.thumbnail
        )
    return grids


def _category_grid(
    scores: pd.DataFrame,
    category: str,
    priors: Sequence[str],
    prompts_per_category: int,
    seeds_per_prompt: int,
) -> CategoryGrid:
    prompt_texts = scores.drop_duplicates("prompt_id").set_index("prompt_id")["prompt"].to_dict()
    prompt_ids = sorted(prompt_texts, key=natural_key)
    chosen_prompts = prompt_ids[: max(prompts_per_category, 0)]
    seeds = sorted({int(seed) for seed in scores["seed"].dropna()})[: max(seeds_per_prompt, 0)]
    sample = scores[scores["prompt_id"].isin(chosen_prompts) & scores["seed"].isin(seeds)]
    images = _images(sample, category)
    rows = [
        GridRow(
            prompt_id,
            str(prompt_texts[prompt_id]),
            [[images.get((prior, prompt_id, seed)) for seed in seeds] for prior in priors],
        )
        for prompt_id in chosen_prompts
    ]
    return CategoryGrid(category, seeds, rows, total_prompts=len(prompt_ids))


def _images(sample: pd.DataFrame, category: str) -> dict[tuple[str, str, int], GridImage]:
    images: dict[tuple[str, str, int], GridImage] = {}
    for (prior, prompt_id, seed), rows in sample.groupby(["prior", "prompt_id", "seed"], sort=False):
        first = rows.iloc[0]
        scores = [
            MetricScore(str(row.metric), _score_text(row.score), _text(getattr(row, "reason", "")))
            for row in rows.sort_values("metric").itertuples(index=False)
        ]
        image = GridImage(
            key="",
            prior=str(prior),
            category=category,
            prompt_id=str(prompt_id),
            prompt=str(first["prompt"]),
            seed=int(seed),
            scores=scores,
        )
        image.source = _listed_path(rows)
        if "run_root" in rows.columns and _text(first["run_root"]):
            image.run_root = Path(os.path.abspath(_text(first["run_root"])))
        images[(str(prior), str(prompt_id), int(seed))] = image
    return images


def _listed_path(rows: pd.DataFrame) -> Path | None:
    if "image" not in rows.columns:
        return None
    for value in rows["image"]:
        text = _text(value)
        if text:
            return Path(text)
    return None


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _score_text(value: Any) -> str:
    try:
        return format_value(float(value))
    except (TypeError, ValueError):
        return "–"


def _thumbnail(image: GridImage, run_root: Path, size: int) -> tuple[str, Path | None, bool]:
    """(data URI, the file, whether the image is smaller than `size`); ("", None, False) when the file is missing or
    unreadable, or when its listed path leads outside the run folder: the report must not embed arbitrary files.

    The check is on the path as written (`..`, absolute paths), not on where symlinks lead, so an `images/` folder
    linked to other storage still works."""
    if image.source is None:
        return "", None, False
    path = Path(os.path.normpath(run_root / image.source))
    if not path.is_relative_to(run_root) or not path.is_file():
        return "", None, False
    try:
        with Image.open(path) as opened:
            picture = opened.convert("RGB")
        picture.thumbnail((size, size), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    except (OSError, UnidentifiedImageError, ValueError):
        return "", None, False
    uri = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return uri, path, max(picture.size) < size


def _relative_href(path: Path, report_dir: Path) -> str:
    """A relative URL from the report to the image; a file: URL when there is no relative path (another drive)."""
    try:
        relative = os.path.relpath(path, os.path.abspath(report_dir))
    except ValueError:
        return path.as_uri()
    return quote(Path(relative).as_posix())
