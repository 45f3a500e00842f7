"""The spaCy analyser: spaCy's own noun chunks and tags, what the official T2I-CompBench evaluators consume.

spaCy is an optional dependency, imported only when a `SpacyAnalyzer` is made; without it (or without its model) the
error names the install commands and the built-in alternative.
"""

from __future__ import annotations

import functools

from ovi_bench.errors import ModelLoadError
from ovi_bench.metrics.text_analysis.tokens import Token

DEFAULT_SPACY_MODEL = "en_core_web_sm"


def _missing_spacy_message(model: str) -> str:
    return (
        f"spaCy is not installed, so the '{model}' tagger the official T2I-CompBench evaluators use is unavailable. "
        f"Install it with `pip install spacy` and then the model with `python -m spacy download {model}` (the "
        "official code pins spacy 3.5.3 with en_core_web_sm 3.5.0), or use "
        "ovi_bench.metrics.text_analysis.builtin.BuiltinAnalyzer, ovi-bench's rule-based approximation."
    )


@functools.lru_cache(maxsize=4)
def _load_spacy(model: str):  # -> spacy.Language (spaCy is imported lazily)
    try:
        import spacy
    except ImportError as error:
        raise ModelLoadError(_missing_spacy_message(model)) from error
    try:
        return spacy.load(model)
    except OSError as error:
        raise ModelLoadError(
            f"spaCy {spacy.__version__} is installed but its model '{model}' could not be loaded ({error}). "
            f"Install it with `python -m spacy download {model}` (on an offline machine: pip install the model "
            "wheel copied from a machine that has it), or use BuiltinAnalyzer."
        ) from error


class SpacyAnalyzer:
    """spaCy noun chunks and tags, exactly what the official evaluators consume.

    Raises `ModelLoadError` (an `OviBenchError`) naming `pip install spacy` and the model download when either is
    missing. Parsed documents are cached per text, since B-VQA, the spatial rules and numeracy parse the same prompts.
    """

    def __init__(self, model: str = DEFAULT_SPACY_MODEL) -> None:
        self.model = model
        self._nlp = _load_spacy(
            model
        )  # raises ModelLoadError with the fix when spaCy or the model is missing
        import spacy

        self.name = f"spacy {spacy.__version__} / {model} {self._nlp.meta.get('version', '?')}"
        self._parse = functools.lru_cache(maxsize=4096)(self._nlp)

    def noun_chunks(self, text: str) -> list[str]:
        return [chunk.text for chunk in self._parse(text).noun_chunks]

    def tokens(self, text: str) -> list[Token]:
        return [Token(t.text, t.pos_, t.lemma_, bool(t.whitespace_)) for t in self._parse(text)]
