"""The pure numeracy rule of T2I-CompBench++ (UniDet_eval/numeracy_eval.py): parse "two cats and one dog" into
requested counts, merge duplicate detections, and score presence and exact counts. No model.

Per image, with K requested object types each worth 1/K:
    +0.5/K when at least one (de-duplicated) detection of the type exists,
    +0.5/K more when the number of such detections equals the requested count exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ovi_bench.errors import DataError
from ovi_bench.metrics.functional.detections import (
    Detection,
    in_detector_order,
    inside_fraction_plus_one,
    iou_plus_one,
)
from ovi_bench.metrics.text_analysis.tokens import TextAnalyzer, Token
from ovi_bench.text import short_repr

NUMBER_WORDS: dict[str, int] = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
}
"""The official number words, matched exactly and case-sensitively ("Two" is not one)."""

SYNONYMS: dict[str, str] = {
    "boy": "person",
    "girl": "person",
    "man": "person",
    "woman": "person",
    "ship": "boat",
    "telivision": "tv",
    "goldfish": "fish",
    "painting": "picture",
}
"""The official renames of requested objects to UniDet labels. "telivision" is the official spelling: the lexicon
says "television", so that rename never fires in the official code either; it is kept as written."""

DUPLICATE_IOU = 0.9
DUPLICATE_INSIDE = 0.9


def load_lexicon(path: str | Path) -> dict[str, str]:
    """`new_objects.txt` ("singular - plural" per line) as {plural: singular, singular: singular}, lower-cased.

    Tolerates CRLF and LF endings, a missing final newline, blank lines and duplicate lines. When two lines give
    the same word, the first wins (the official code looks plurals up with `list.index`, which finds the first).
    """
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise DataError(f"cannot read the numeracy lexicon {path}: {error}") from error
    except UnicodeDecodeError as error:
        raise DataError(f"the numeracy lexicon {path} is not UTF-8 text ({error})") from error
    return parse_lexicon(text, source=str(path))


def parse_lexicon(text: str, source: str = "lexicon") -> dict[str, str]:
    """`load_lexicon` on text already read; `source` names it in errors."""
    path = source
    lexicon: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if " - " not in line:
            raise DataError(f"{path}, line {number}: expected 'singular - plural', got {short_repr(line)}")
        singular_word, plural_word = (part.strip().lower() for part in line.split(" - ", 1))
        lexicon.setdefault(singular_word, singular_word)
        lexicon.setdefault(plural_word, singular_word)
    if not lexicon:
        raise DataError(f"the numeracy lexicon {path} has no 'singular - plural' lines")
    return lexicon


def canonical_object(name: str) -> str:
    """A requested object as UniDet names it: the official synonym table applied to the singular."""
    return SYNONYMS.get(name, name)


def parse_counts(
    tokens_or_text: str | Sequence[Token | str],
    lexicon: dict[str, str],
    *,
    analyzer: TextAnalyzer | None = None,
) -> list[tuple[str, int]]:
    """The (object, count) pairs a numeracy prompt asks for, in prompt order, synonyms applied.

    Walks the token texts as the official parser does (tags are not used): a number word of `NUMBER_WORDS` followed
    by a lexicon entry — two tokens tried first when at least two follow, then one — gives the entry's singular with
    count 1 after a/an/one and the number otherwise. Token texts are compared as written (the lexicon is lower-case).
    A string is tokenised with `analyzer` (default: `default_analyzer()`).

    Where the official parser crashes or misreads, this one decides instead (never raising):
    * "a"/"an" + a plural ("a mice"): the official code cannot convert "a" to a number, skips the count and
      misaligns every later count (or raises IndexError). Here: count 1 — the article means one.
    * "two".."eight" + a word that is only a singular ("three cat"): the official plural lookup raises ValueError.
      Here: the singular with the stated count.
    * a number word as the last token: the official code raises IndexError looking past the end. Here: ignored.
    * a two-token entry: the official branch keeps the plural text after a/an/one and counts 1 after two..eight
      when the entry is singular; here two-token entries behave like one-token ones. The official lexicon has no
      two-token entry, so official prompts never reach either branch.
    None of these shapes occurs in the official numeracy prompts. A prompt with nothing countable gives [], and
    `numeracy_score` turns that into 0 with a reason (the official code divides by zero).
    """
    if isinstance(tokens_or_text, str):
        if analyzer is None:
            from ovi_bench.metrics.text_analysis.choice import default_analyzer

            analyzer = default_analyzer()
        texts = [token.text for token in analyzer.tokens(tokens_or_text)]
    else:
        texts = [token.text if isinstance(token, Token) else str(token) for token in tokens_or_text]

    counts: list[tuple[str, int]] = []
    for index, word in enumerate(texts):
        if word not in NUMBER_WORDS or index + 1 >= len(texts):
            continue
        name: str | None = None
        if index + 2 < len(texts) and f"{texts[index + 1]} {texts[index + 2]}" in lexicon:
            name = lexicon[f"{texts[index + 1]} {texts[index + 2]}"]
        elif texts[index + 1] in lexicon:
            name = lexicon[texts[index + 1]]
        if name is not None:
            counts.append((canonical_object(name), NUMBER_WORDS[word]))
    return counts


def is_duplicate(a: Detection, b: Detection) -> bool:
    """The official duplicate test: same label, and IoU > 0.9 or either box more than 90% inside the other, all
    with the +1-pixel convention of `calculate_iou`."""
    if a.label != b.label:
        return False
    return (
        iou_plus_one(a.box, b.box) > DUPLICATE_IOU
        or inside_fraction_plus_one(a.box, b.box) > DUPLICATE_INSIDE
        or inside_fraction_plus_one(b.box, a.box) > DUPLICATE_INSIDE
    )


def merge_duplicates(detections: Sequence[Detection]) -> list[Detection]:
    """Detections without duplicates, greedily in the given order: each is dropped when it duplicates one already
    kept (never one already dropped), as the official loop does. Pass detector order (descending confidence);
    `numeracy_score` sorts before merging."""
    kept: list[Detection] = []
    for detection in detections:
        if not any(is_duplicate(detection, previous) for previous in kept):
            kept.append(detection)
    return kept


def numeracy_score(
    detections: Sequence[Detection],
    requested: Sequence[tuple[str, int]],
    *,
    substring_rename: bool = True,
) -> tuple[float, str]:
    """The official numeracy per-image score and a reason like "3 of 4 'cat' found; 'dog' missing".

    `requested`: (object, count) pairs from `parse_counts` (synonyms are applied again, harmlessly).
    Detections are put in detector order and de-duplicated (`merge_duplicates`), then matched by label:
    * `substring_rename=True` (official): for each requested object in prompt order whose name is not exactly
      a detected label, every detected label containing the name is renamed to it, in place and for good. So
      "cattle, cow" counts for "cow" — and for "cat", and then no longer for a "cow" requested after "cat"; when
      the exact label exists, nothing is renamed.
    * `substring_rename=False`: only labels equal to the name count.
    Nothing requested (K = 0) scores 0 with a reason; the official code raises ZeroDivisionError.
    """
    if not requested:
        return 0.0, "no countable object parsed from the prompt: score 0"
    labels = [detection.label for detection in merge_duplicates(in_detector_order(detections))]
    weight = 1.0 / len(requested)
    score = 0.0
    parts: list[str] = []
    for raw_name, wanted in requested:
        name = canonical_object(raw_name)
        renamed: set[str] = set()
        if substring_rename and name not in labels:
            for index, label in enumerate(labels):
                if name in label:
                    renamed.add(label)
                    labels[index] = name
        found = labels.count(name)
        via = f" (via {', '.join(repr(label) for label in sorted(renamed))})" if renamed else ""
        if found:
            score += 0.5 * weight
            exact = found == wanted
            if exact:
                score += 0.5 * weight
            parts.append(f"{found} of {wanted} '{name}' found{' (exact)' if exact else ''}{via}")
        else:
            parts.append(f"'{name}' missing")
    return score, "; ".join(parts) + f": score {score:.3f}"
