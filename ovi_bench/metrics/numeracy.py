"""`numeracy`: T2I-CompBench++'s counting metric, with a substitute detector."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ovi_bench.components import FileNeed, ModelNeed
from ovi_bench.errors import SpecError
from ovi_bench.metrics.base import ScoreInput, ScoreRow
from ovi_bench.metrics.common import (
    DetectorParams,
    TextAnalyzingMetric,
    as_detections,
    build_detector,
    detection_queries,
    detector_need,
)
from ovi_bench.metrics.functional.detections import in_detector_frame
from ovi_bench.metrics.functional.numeracy import load_lexicon, numeracy_score, parse_counts, parse_lexicon
from ovi_bench.paths import expand_user
from ovi_bench.prompts.compbench import compbench_file
from ovi_bench.text import short_repr

# ovi-bench's own small singular/plural list, for prompt sets without the official lexicon (the offline smoke run).
BUILTIN_LEXICON_LINES = """\
apple - apples
backpack - backpacks
ball - balls
banana - bananas
bicycle - bicycles
bird - birds
book - books
bottle - bottles
bowl - bowls
box - boxes
car - cars
cat - cats
chair - chairs
clock - clocks
cow - cows
cup - cups
dog - dogs
egg - eggs
flower - flowers
fork - forks
horse - horses
key - keys
lamp - lamps
orange - oranges
pen - pens
pencil - pencils
person - people
plate - plates
sheep - sheep
shoe - shoes
spoon - spoons
table - tables
tree - trees
umbrella - umbrellas
"""


class NumeracyParams(DetectorParams):
    lexicon: str = "t2i-compbench"
    """Object names the parser recognises: "t2i-compbench" (the official `new_objects.txt`, read like the prompt
    files: the run's folder of official files, $OVI_BENCH_COMPBENCH_DIR or the verified download), "builtin" (ovi-bench's small list, for
    other prompt sets), or the path of a file of "singular - plural" lines."""
    substring_rename: bool = True
    """Official quirk: a detected label containing a requested name is renamed to it, in place ("cattle, cow"
    counts for "cat"). False counts only labels equal to the name."""


def _lexicon(source: str, official_data: Path | None) -> dict[str, str]:
    if source == "builtin":
        return parse_lexicon(BUILTIN_LEXICON_LINES, source="the built-in lexicon")
    if source == "t2i-compbench":
        return load_lexicon(compbench_file("new_objects.txt", official_data))
    path = expand_user(source)
    if not path.is_file():
        raise SpecError(
            f'numeracy lexicon {short_repr(source)} is not "t2i-compbench", "builtin" or an existing file of '
            '"singular - plural" lines.'
        )
    return load_lexicon(path)


class NumeracyMetric(TextAnalyzingMetric):
    """Per requested object type: 0.5/K when detected, another 0.5/K when the count is exactly right."""

    Params = NumeracyParams
    version = "2"  # 2: duplicates merged in the detector frame (the +1-pixel IoU), as the official pipeline
    categories = ("numeracy",)
    run_context = ("official_data",)  # the official lexicon lies with the run's official prompt files
    params: NumeracyParams

    @classmethod
    def required_models(cls, params: NumeracyParams) -> list[ModelNeed]:
        return [detector_need(params)]

    @classmethod
    def required_files(cls, params: NumeracyParams) -> list[FileNeed]:
        if params.lexicon == "builtin":
            return []
        if params.lexicon == "t2i-compbench":
            return [FileNeed("numeracy lexicon", official="new_objects.txt")]
        fix = 'fix the path, or use lexicon = "t2i-compbench" or "builtin"'
        return [FileNeed("numeracy lexicon", params.lexicon, fix=fix)]

    def __init__(
        self,
        params: NumeracyParams,
        *,
        device: torch.device,
        dtype: torch.dtype,
        official_data: Path | None = None,
    ) -> None:
        super().__init__(params, device=device, dtype=dtype)
        self.lexicon = _lexicon(params.lexicon, official_data)
        self.detector = build_detector(params, device, dtype)

    @classmethod
    def content_identity(cls, values: dict[str, Any], official_data: Path | None = None) -> dict[str, Any]:
        lexicon = _lexicon(values["lexicon"], official_data)
        return super().content_identity(values) | {"lexicon": sorted(lexicon.items())}

    def score(self, batch: Sequence[ScoreInput]) -> list[ScoreRow]:
        requested = [parse_counts(item.prompt, self.lexicon, analyzer=self.analyzer) for item in batch]
        detections = self.detector.detect(
            [item.image for item in batch],
            [detection_queries(*(name for name, _ in counts)) for counts in requested],
        )
        rows = []
        for item, counts, raw in zip(batch, requested, detections, strict=True):
            # The official duplicate test counts a +1 pixel per side: a pixel of the detector frame.
            score, reason = numeracy_score(
                in_detector_frame(as_detections(raw), item.image.size),
                counts,
                substring_rename=self.params.substring_rename,
            )
            rows.append(ScoreRow(score=score, reason=reason))
        return rows
