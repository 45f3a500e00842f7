"""`imported-scores`: per-image scores computed elsewhere, read from a CSV, JSON or JSON-lines file.

Use it for metrics that cannot run in this environment. The main case is t2v-metrics (linzhiqiu/t2v_metrics), whose
VQAScore with CLIP-FlanT5-XXL is the reference VQAScore: it pins torch 2.5 and transformers 4.49, so it lives in its
own environment. After a run, in that environment:

    # conda create -n t2v python=3.10 && conda activate t2v && pip install t2v-metrics   (see its README)
    import csv
    import t2v_metrics

    def text(cell):  # ovi-bench writes a text cell that starts with = + - @ tab or CR with a leading ' (see the security page of the docs)
        return cell[1:] if cell[:1] == "'" and cell.lstrip("'")[:1] in ("=", "+", "-", "@", "\t", "\r") else cell

    run = "runs/my-run"
    rows = {row["image"]: row for row in csv.DictReader(open(f"{run}/scores.csv"))}.values()  # one row per image
    images = [f"{run}/{row['image']}" for row in rows]        # images/ab/<key>.png, relative to the run folder
    prompts = [text(row["prompt"]) for row in rows]
    model = t2v_metrics.VQAScore(model="clip-flant5-xxl")    # needs a ~40 GB GPU
    # model(images=paths, texts=prompts) scores every image against every text (an M x N matrix); for the pairs,
    # take its diagonal, or for many images use batch_forward, which returns an (N, 1, 1) tensor:
    dataset = [{"images": [image], "texts": [prompt]} for image, prompt in zip(images, prompts)]
    scores = model.batch_forward(dataset=dataset, batch_size=16).flatten().tolist()
    with open(f"{run}/t2v-vqascore.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "prompt_id", "seed", "prior", "prompt", "score"])
        for row, score in zip(rows, scores):
            writer.writerow([row["image"], row["prompt_id"], row["seed"], text(row["prior"]), text(row["prompt"]), score])

and add the metric to the run spec (its scores are then cached, aggregated and reported like any other):

    [[metrics]]
    name = "imported-scores"
    params = { path = "runs/my-run/t2v-vqascore.csv", label = "vqascore clip-flant5-xxl (t2v-metrics)" }

Matching (`key`). A metric only sees the image and its prompt, not where the image came from, and the run caches a
metric's scores by image content. So rows are matched by content too:
* "image": the `image` column names image files (absolute, relative to `run_dir`, or a bare `<key>.png` file name
  looked up in `run_dir/images/<first two characters>/`); each file is decoded when the metric loads and an input
  image gets the score of the file with the same RGB pixels.
* "prompt_id_seed": `prompt_id` and `seed` columns (plus a `prior` column when the run has several priors) are looked
  up in the run's `manifest.jsonl`, giving the image files, matched as above.
* "prompt": the `prompt` column's text; only for files with one score per prompt (one image per prompt).
A row that no input matches is ignored; an input image without a row is an error naming it and the file.

The score file's sha256 is part of the fingerprint: editing or replacing the file invalidates the cached scores.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image, UnidentifiedImageError

from ovi_bench.components import FileNeed, Params
from ovi_bench.errors import DataError, OviBenchError
from ovi_bench.io import sha256_file
from ovi_bench.metrics.base import Metric, ScoreInput, ScoreRow
from ovi_bench.paths import expand_user
from ovi_bench.store import RunStore
from ovi_bench.text import short_repr, spreadsheet_original

MatchKey = Literal["image", "prompt_id_seed", "prompt"]
MAX_NAMED_MISSING = 5


class ImportedScoresParams(Params):
    path: str
    """The score file: .csv (with a header), .json (a list of objects) or .jsonl (one object per line)."""
    label: str
    """What the numbers are, for the report: e.g. "vqascore clip-flant5-xxl (t2v-metrics)"."""
    key: MatchKey = "image"
    """How rows are matched to images: "image" (the `image` column's files, by pixel content), "prompt_id_seed"
    (`prompt_id`, `seed` and optionally `prior` columns, through the run's manifest) or "prompt" (the `prompt`
    column's text; one score per prompt)."""
    score_column: str = "score"
    """The column holding the score."""
    higher_is_better: bool = True
    """Whether larger imported numbers are better. Recorded with the parameters; the leaderboard's
    `higher_is_better` column still reads the class attribute (true)."""
    run_dir: str | None = None
    """The run folder the scores belong to: relative image paths are resolved against it, and key "prompt_id_seed"
    reads its manifest.jsonl. Default: the folder that holds the score file."""


def pixel_digest(image: Image.Image) -> str:
    """sha256 of an image's RGB pixels and size: equal for the same picture whatever file or encoding it came from."""
    rgb = image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def file_pixel_digest(path: Path) -> str:
    try:
        with Image.open(path) as image:
            return pixel_digest(image)
    except (OSError, UnidentifiedImageError) as error:
        raise DataError(f"cannot read the image '{path}' named in the imported scores: {error}.") from error


def read_score_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a .csv, .json (list of objects) or .jsonl file, as dicts."""
    if not path.is_file():
        raise OviBenchError(
            f"imported scores file '{path}' not found. Set the metric's `path` to the CSV/JSON file written by the "
            "external scorer (see ovi_bench/metrics/imported.py for the t2v-metrics commands)."
        )
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with open(path, encoding="utf-8", newline="") as handle:
                # Cells as given: a copy of scores.csv's text keeps the ' that ovi-bench writes before = + - @.
                rows: Any = [
                    {
                        key: spreadsheet_original(value) if isinstance(value, str) else value
                        for key, value in row.items()
                    }
                    for row in csv.DictReader(handle)
                ]
        elif suffix == ".json":
            rows = json.loads(path.read_text(encoding="utf-8"))
        elif suffix == ".jsonl":
            lines = path.read_text(encoding="utf-8").splitlines()
            rows = [json.loads(line) for line in lines if line.strip()]
        else:
            raise OviBenchError(f"imported scores file '{path}' must end in .csv, .json or .jsonl.")
    except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as error:
        raise OviBenchError(f"cannot parse the imported scores file '{path}': {error}.") from error
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise OviBenchError(f"imported scores file '{path}' must hold a list of objects (one per image).")
    return rows


def column(row: dict[str, Any], name: str, path: Path, index: int) -> Any:
    if name not in row or row[name] in (None, ""):
        raise OviBenchError(
            f"row {index + 1} of the imported scores file '{path}' has no '{name}' value (columns: "
            f"{short_repr(list(map(str, row)))}); check the metric's `key` and `score_column` parameters."
        )
    return row[name]


def parse_score(row: dict[str, Any], score_column: str, path: Path, index: int) -> float:
    raw = column(row, score_column, path, index)
    try:
        value = float(raw)
    except (TypeError, ValueError) as error:
        raise OviBenchError(
            f"row {index + 1} of '{path}': score {short_repr(raw)} is not a number."
        ) from error
    if not math.isfinite(value):
        raise OviBenchError(f"row {index + 1} of '{path}': score {short_repr(raw)} is not finite.")
    return value


def resolve_image_file(name: str, run_dir: Path) -> Path:
    """An `image` value as a file: absolute, relative to the run folder, or a bare <key>.png in the run's store."""
    candidate = expand_user(name)
    if candidate.is_absolute():
        return candidate
    relative = run_dir / candidate
    if relative.exists() or len(candidate.parts) > 1:
        return relative
    return run_dir / "images" / candidate.name[:2] / candidate.name


def add_unique(scores: dict[str, float], key: str, value: float, path: Path, what: str) -> None:
    """Record one score per key; the same key with two different scores is ambiguous."""
    if key in scores and scores[key] != value:
        raise OviBenchError(
            f"the imported scores file '{path}' gives {what} two different scores ({scores[key]} and {value}); "
            'with key "prompt" there must be one score per prompt (use key "image" for several images per prompt).'
        )
    scores[key] = value


class ImportedScoresMetric(Metric):
    """Per-image scores computed elsewhere (e.g. t2v-metrics' VQAScore), imported from a CSV or JSON file."""

    Params = ImportedScoresParams
    version = "1"
    categories = None
    higher_is_better = True
    params: ImportedScoresParams

    @classmethod
    def required_files(cls, params: ImportedScoresParams) -> list[FileNeed]:
        return [FileNeed("imported score file", params.path, fix="fix the metric's `path`")]

    def __init__(self, params: ImportedScoresParams, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(params, device=device, dtype=dtype)
        self.path = expand_user(params.path)
        self.run_dir = expand_user(params.run_dir) if params.run_dir else self.path.parent
        rows = read_score_rows(self.path)
        self.scores: dict[str, float] = {}
        """Score by pixel digest (keys "image" and "prompt_id_seed") or by prompt text (key "prompt")."""
        if params.key == "prompt":
            for index, row in enumerate(rows):
                prompt = str(column(row, "prompt", self.path, index))
                value = parse_score(row, params.score_column, self.path, index)
                add_unique(self.scores, prompt, value, self.path, f"the prompt {short_repr(prompt)}")
        else:
            files = self._image_files(rows)
            missing = [str(file) for file, _ in files if not file.is_file()]
            if missing:
                raise OviBenchError(
                    f"{len(missing)} image file(s) named in '{self.path}' do not exist, first: "
                    f"{', '.join(missing[:MAX_NAMED_MISSING])}. Set the metric's `run_dir` to the run folder the "
                    "scores belong to (relative paths are resolved against it)."
                )
            for file, value in files:
                add_unique(self.scores, file_pixel_digest(file), value, self.path, f"the image '{file}'")

    def _image_files(self, rows: list[dict[str, Any]]) -> list[tuple[Path, float]]:
        """(image file, score) per row, through the `image` column or the run's manifest."""
        score_column = self.params.score_column
        if self.params.key == "image":
            return [
                (
                    resolve_image_file(str(column(row, "image", self.path, index)), self.run_dir),
                    parse_score(row, score_column, self.path, index),
                )
                for index, row in enumerate(rows)
            ]
        manifest = RunStore(self.run_dir).manifest
        if not manifest:
            raise OviBenchError(
                f"key \"prompt_id_seed\" reads the run's manifest, and '{self.run_dir / 'manifest.jsonl'}' is "
                "missing or empty. Set the metric's `run_dir` to the run folder."
            )
        records_by_id: dict[tuple[str, str], list[Any]] = {}
        for record in manifest.values():
            records_by_id.setdefault((str(record.prompt_id), str(record.seed)), []).append(record)
        files = []
        for index, row in enumerate(rows):
            prompt_id = str(column(row, "prompt_id", self.path, index))
            seed = str(int(float(column(row, "seed", self.path, index))))
            prior = row.get("prior") or None
            records = [
                record
                for record in records_by_id.get((prompt_id, seed), [])
                if prior is None or record.prior == prior
            ]
            if len(records) != 1:
                problem = "no image" if not records else f"{len(records)} images (priors differ)"
                raise OviBenchError(
                    f"row {index + 1} of '{self.path}' (prompt_id {prompt_id}, seed {seed}"
                    f"{f', prior {prior}' if prior else ''}) matches {problem} in the run's manifest "
                    f"'{self.run_dir / 'manifest.jsonl'}'. "
                    + (
                        "Add a `prior` column, or match by image instead."
                        if records
                        else "Check `run_dir` and the file."
                    )
                )
            files.append((self.run_dir / records[0].path, parse_score(row, score_column, self.path, index)))
        return files

    @classmethod
    def content_identity(cls, values: dict[str, Any]) -> dict[str, Any]:
        path = expand_user(values["path"])
        if not path.is_file():
            raise OviBenchError(f"imported scores file '{path}' not found; set the metric's `path` to it.")
        return {"scores_sha256": sha256_file(path)}

    def lookup_key(self, item: ScoreInput) -> str:
        return item.prompt if self.params.key == "prompt" else pixel_digest(item.image)

    def score(self, batch: Sequence[ScoreInput]) -> list[ScoreRow]:
        keys = [self.lookup_key(item) for item in batch]
        missing = [item.prompt for item, key in zip(batch, keys, strict=True) if key not in self.scores]
        if missing:
            raise OviBenchError(
                f"{len(missing)} image(s) have no score in the imported file '{self.path}' (key "
                f'"{self.params.key}"); the first are images of the prompts '
                f"{', '.join(repr(prompt) for prompt in missing[:MAX_NAMED_MISSING])}. Score every image of the "
                "run with the external tool (from the run's scores.csv) and import the complete file."
            )
        return [
            ScoreRow(score=self.scores[key], reason=f"{self.params.label}: {self.scores[key]:.4f}")
            for key in keys
        ]
