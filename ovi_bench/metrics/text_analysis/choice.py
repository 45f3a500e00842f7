"""Which text analyser a metric uses: spaCy when it and its model import, else the built-in rules."""

from __future__ import annotations

from typing import Literal

from ovi_bench.errors import ModelLoadError
from ovi_bench.metrics.text_analysis.builtin import BuiltinAnalyzer
from ovi_bench.metrics.text_analysis.spacy_analyzer import SpacyAnalyzer
from ovi_bench.metrics.text_analysis.tokens import TextAnalyzer

AnalyzerChoice = Literal["auto", "spacy", "builtin"]


def make_analyzer(choice: AnalyzerChoice) -> TextAnalyzer:
    """The analyzer a metric's `text_analyzer` parameter names ("auto": spaCy when it imports, else built-in)."""
    if choice == "spacy":
        return SpacyAnalyzer()
    if choice == "builtin":
        return BuiltinAnalyzer()
    return default_analyzer()


def default_analyzer() -> TextAnalyzer:
    """spaCy with en_core_web_sm when both import, else the built-in rules. Record `.name` with the scores."""
    try:
        return SpacyAnalyzer()
    except (ModelLoadError, ImportError):
        return BuiltinAnalyzer()
