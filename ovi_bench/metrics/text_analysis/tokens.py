"""What the T2I-CompBench rules consume from a text analyser: tokens with their tags, the `TextAnalyzer` protocol
both analysers satisfy, and helpers that read tokens as the official code reads spaCy's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Token:
    """One token: its text as written, its universal POS tag (spaCy's `pos_`: NOUN, PROPN, ADJ, NUM, DET, ADP,
    VERB, AUX, PRON, CCONJ, SCONJ, ADV, PART, PUNCT, ...), its lemma when known, and whether a space follows it
    (needed to rebuild a span's text exactly as spaCy's `Span.text` does)."""

    text: str
    pos: str
    lemma: str | None = None
    space_after: bool = True


@runtime_checkable
class TextAnalyzer(Protocol):
    """What the rules need from a text analyser. `name` identifies it (and its versions) in recorded scores."""

    name: str

    def noun_chunks(self, text: str) -> list[str]: ...

    def tokens(self, text: str) -> list[Token]: ...


def span_text(tokens: list[Token], start: int, stop: int) -> str:
    """Text of tokens[start:stop] as spaCy's `doc[start:stop].text` gives it: the tokens with the whitespace that
    follows each, except after the last one. Slices past the end are truncated, as Python and spaCy slices are."""
    pieces = tokens[start:stop]
    return "".join(
        token.text + (" " if token.space_after and k < len(pieces) - 1 else "")
        for k, token in enumerate(pieces)
    )


def without_adjectives(text: str, analyzer: TextAnalyzer) -> str:
    """The prompt with every ADJ token removed, tokens joined by single spaces (the official complex CLIP text)."""
    return " ".join(token.text for token in analyzer.tokens(text) if token.pos != "ADJ")
