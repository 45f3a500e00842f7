"""Parameters and helpers shared by the T2I-CompBench++ metrics: the text analyzer and the detector."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from ovi_bench.components import ModelNeed, Params, model_files
from ovi_bench.metrics.base import Metric
from ovi_bench.metrics.functional.detections import Detection
from ovi_bench.metrics.text_analysis.choice import AnalyzerChoice, make_analyzer
from ovi_bench.models.evaluators import GROUNDING_DINO_ID, OWLV2_ID, RawDetection, make_detector


class AnalyzerParams(Params):
    text_analyzer: AnalyzerChoice = "auto"
    """Noun chunks and POS tags: "spacy" (en_core_web_sm, what the official evaluators use), "builtin" (ovi-bench's
    rule-based approximation, no extra install) or "auto" (spaCy when installed). The analyzer actually used, with
    its version, is part of the metric's fingerprint."""


class DetectorParams(AnalyzerParams):
    detector: Literal["owlv2", "grounding-dino"] = "owlv2"
    """Open-vocabulary detector queried with the prompt's nouns; it substitutes the official UniDet, so absolute
    numbers are not comparable with published ones."""
    detector_model: str | None = None
    """Detector checkpoint (hub id, folder or "tiny"); default: google/owlv2-base-patch16-ensemble or
    IDEA-Research/grounding-dino-tiny."""
    threshold: float | None = Field(None, ge=0, lt=1)
    """Keep detections with a score above this; default: the detector family's default (OWLv2 0.1, GDINO 0.25)."""
    nms_iou: float | None = Field(0.5, gt=0, le=1)
    """Class-wise non-maximum suppression IoU (UniDet's 0.5); None disables it."""


def analyzer_identity(values: dict[str, Any]) -> dict[str, Any]:
    """The resolved analyzer (name and version) for a metric's fingerprint: "auto" differs between machines."""
    return {"text_analyzer": make_analyzer(values["text_analyzer"]).name}


class TextAnalyzingMetric(Metric):
    """A metric that reads its prompts with a text analyzer; the analyzer it resolves to is part of its fingerprint."""

    params: AnalyzerParams

    def __init__(self, params: AnalyzerParams, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(params, device=device, dtype=dtype)
        self.analyzer = make_analyzer(params.text_analyzer)

    @classmethod
    def content_identity(cls, values: dict[str, Any]) -> dict[str, Any]:
        return analyzer_identity(values)


def detector_need(params: DetectorParams) -> ModelNeed:
    """The detector `build_detector` loads, for `Metric.required_models`."""
    default = OWLV2_ID if params.detector == "owlv2" else GROUNDING_DINO_ID
    return ModelNeed(params.detector_model or default, f"{params.detector} detector", model_files(""))


def build_detector(params: DetectorParams, device: torch.device, dtype: torch.dtype):
    return make_detector(
        params.detector,
        params.detector_model,
        device=device,
        dtype=dtype,
        threshold=params.threshold,
        nms_iou=params.nms_iou,
    )


def as_detections(raw: list[RawDetection]) -> list[Detection]:
    return [Detection(label=item.label, score=item.score, box=item.box) for item in raw]


def detection_queries(*nouns: str | None) -> list[str]:
    """The distinct nouns to query the detector with, in order (a detector needs at least one query)."""
    queries = list(dict.fromkeys(noun for noun in nouns if noun))
    return queries or ["object"]
