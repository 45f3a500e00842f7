"""The pure numeracy rule: lexicon loading, prompt parsing, duplicate merging and scoring, with the official
values worked out by hand in the comments."""

from __future__ import annotations

from pathlib import Path

import pytest

from ovi_bench.errors import DataError
from ovi_bench.metrics.functional.detections import Detection
from ovi_bench.metrics.functional.numeracy import (
    is_duplicate,
    load_lexicon,
    merge_duplicates,
    numeracy_score,
    parse_counts,
)
from ovi_bench.metrics.text_analysis.builtin import BuiltinAnalyzer
from ovi_bench.metrics.text_analysis.tokens import Token

OFFICIAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "t2i-compbench"
EXACT = 1e-12
LEXICON = {
    "cat": "cat",
    "cats": "cat",
    "dog": "dog",
    "dogs": "dog",
    "mouse": "mouse",
    "mice": "mouse",
    "fish": "fish",
    "cow": "cow",
    "cows": "cow",
    "girl": "girl",
    "girls": "girl",
    "ship": "ship",
    "ships": "ship",
    "painting": "painting",
    "paintings": "painting",
    "goldfish": "goldfish",
    "teddy bear": "teddy bear",
    "teddy bears": "teddy bear",
}


def det(label: str, score: float = 0.9, box: tuple[float, float, float, float] = (0, 0, 10, 10)) -> Detection:
    return Detection(label, score, box)


def spread(label: str, count: int) -> list[Detection]:
    """`count` far-apart detections of one label (never duplicates of each other)."""
    return [det(label, 0.9 - 0.01 * k, (100 * k, 0, 100 * k + 50, 50)) for k in range(count)]


@pytest.fixture
def official_dir() -> Path:
    if not (OFFICIAL_DIR / "new_objects.txt").is_file():
        pytest.skip(
            f"the official T2I-CompBench files are not at {OFFICIAL_DIR} (a checkout without ../shared)"
        )
    return OFFICIAL_DIR


# ---------------------------------------------------------------------------------------------------------------
# Lexicon


def test_load_lexicon_tolerates_crlf_duplicates_and_no_final_newline(tmp_path: Path):
    path = tmp_path / "objects.txt"
    path.write_bytes(b"cat - cats\r\nMouse - Mice\r\n\r\ncat - cats\r\nfish - fish")
    assert load_lexicon(path) == {
        "cat": "cat",
        "cats": "cat",
        "mouse": "mouse",
        "mice": "mouse",
        "fish": "fish",
    }
    bad = tmp_path / "bad.txt"
    bad.write_text("cat cats\n")
    with pytest.raises(DataError, match="singular - plural"):
        load_lexicon(bad)
    with pytest.raises(DataError):
        load_lexicon(tmp_path / "missing.txt")


def test_official_lexicon_loads(official_dir: Path):
    from ovi_bench.prompts import compbench_file

    lexicon = load_lexicon(compbench_file("new_objects.txt", official_dir))
    singulars = set(lexicon.values())
    assert len(singulars) == 88  # 101 lines, 13 of them duplicates
    assert lexicon["mice"] == "mouse" and lexicon["people"] == "person" and lexicon["fish"] == "fish"
    assert all(lexicon[word] == word for word in singulars)


# ---------------------------------------------------------------------------------------------------------------
# Parsing


def test_parse_counts_number_words_singulars_plurals_and_synonyms():
    analyzer = BuiltinAnalyzer()
    assert parse_counts("two cats and one dog", LEXICON, analyzer=analyzer) == [("cat", 2), ("dog", 1)]
    assert parse_counts("three mice, a cat and an fish", LEXICON, analyzer=analyzer) == [
        ("mouse", 3),
        ("cat", 1),
        ("fish", 1),
    ]
    # Synonyms: girl -> person, ship -> boat, goldfish -> fish, painting -> picture.
    text = "a girl, two ships, one goldfish and four paintings"
    assert parse_counts(text, LEXICON, analyzer=analyzer) == [
        ("person", 1),
        ("boat", 2),
        ("fish", 1),
        ("picture", 4),
    ]
    # Two-token entries are tried first.
    assert parse_counts("two teddy bears", LEXICON, analyzer=analyzer) == [("teddy bear", 2)]
    # Token lists work too (texts only; tags are ignored), as do plain strings.
    tokens = [Token("five", "NUM"), Token("dogs", "NOUN")]
    assert parse_counts(tokens, LEXICON) == [("dog", 5)]
    assert parse_counts(["seven", "cows"], LEXICON) == [("cow", 7)]


def test_parse_counts_follows_the_official_lexical_limits():
    analyzer = BuiltinAnalyzer()
    assert parse_counts("Two cats", LEXICON, analyzer=analyzer) == []  # case-sensitive number words
    assert parse_counts("a red cat", LEXICON, analyzer=analyzer) == []  # the object must follow the number
    assert parse_counts("nine cats", LEXICON, analyzer=analyzer) == []  # only a/an/one..eight
    assert parse_counts("two birds", LEXICON, analyzer=analyzer) == []  # not in the lexicon


def test_parse_counts_decides_where_the_official_parser_crashes():
    analyzer = BuiltinAnalyzer()
    # "a" + plural: official misaligned counts; here the article means one.
    assert parse_counts("a mice and two dogs", LEXICON, analyzer=analyzer) == [("mouse", 1), ("dog", 2)]
    # "three" + a singular-only word: official ValueError; here the stated count.
    assert parse_counts("three cat", LEXICON, analyzer=analyzer) == [("cat", 3)]
    # A number word as the last token: official IndexError; here ignored.
    assert parse_counts("cats and two", LEXICON, analyzer=analyzer) == []
    assert parse_counts("two cats and one", LEXICON, analyzer=analyzer) == [("cat", 2)]


def test_parse_counts_covers_the_official_numeracy_prompts(official_dir: Path):
    from ovi_bench.prompts import compbench_file, read_prompt_lines

    lexicon = load_lexicon(compbench_file("new_objects.txt", official_dir))
    analyzer = BuiltinAnalyzer()
    prompts = read_prompt_lines(compbench_file("numeracy_val.txt", official_dir))
    parsed = [parse_counts(prompt, lexicon, analyzer=analyzer) for prompt in prompts]
    coverage = sum(1 for counts in parsed if counts) / len(prompts)
    # Measured: 300 of 300 (100%) val prompts give at least one object with the built-in analyzer.
    assert coverage >= 0.95, f"only {coverage:.1%} of the numeracy val prompts parse"
    assert parsed[prompts.index("two boys")] == [("person", 2)]


# ---------------------------------------------------------------------------------------------------------------
# Duplicate merging


def test_merge_duplicates_iou_and_inside_rules():
    big = (0.0, 0.0, 99.0, 99.0)  # 100×100 px with the +1 convention
    # Shifted by 1 px: overlap 99×100 = 9900, union 10100, IoU 0.980 > 0.9 -> merged.
    assert merge_duplicates([det("cat", 0.9, big), det("cat", 0.8, (1, 0, 100, 99))]) == [
        det("cat", 0.9, big)
    ]
    # Shifted by 33 px: overlap 67×100 = 6700, union 13300, IoU 0.504, 67% inside -> kept.
    assert len(merge_duplicates([det("cat", 0.9, big), det("cat", 0.8, (33, 0, 132, 99))])) == 2
    # A 20×20 box wholly inside: IoU 0.04, but 100% inside -> merged.
    assert len(merge_duplicates([det("cat", 0.9, big), det("cat", 0.8, (10, 10, 29, 29))])) == 1
    # 95% inside: the 20×20 box (−1, 0, 18, 19) overlaps 19×20 = 380 of its 400 px -> merged.
    assert is_duplicate(det("cat", 0.8, (-1, 0, 18, 19)), det("cat", 0.9, big))
    # Different labels never merge, whatever the overlap.
    assert len(merge_duplicates([det("cat", 0.9, big), det("dog", 0.8, big)])) == 2


def test_merge_duplicates_is_greedy_against_kept_boxes_only():
    # Widths 100, shifts of 5 px: A–B IoU 95/105 = 0.905 (dup), B–C 0.905 (dup), A–C IoU 90/110 = 0.82 and
    # 90% inside (not more than 90%): not a dup. B is dropped as A's duplicate, then C is compared with A only.
    a, b, c = (
        det("cat", 0.9, (0, 0, 99, 99)),
        det("cat", 0.8, (5, 0, 104, 99)),
        det("cat", 0.7, (10, 0, 109, 99)),
    )
    assert is_duplicate(b, a) and is_duplicate(c, b) and not is_duplicate(c, a)
    assert merge_duplicates([a, b, c]) == [a, c]


# ---------------------------------------------------------------------------------------------------------------
# Scoring


def test_exact_counts_score_one():
    # K = 2: cat present (+0.25) with 2 of 2 (+0.25), dog present (+0.25) with 1 of 1 (+0.25).
    score, reason = numeracy_score(
        [*spread("cat", 2), det("dog", 0.8, (0, 200, 50, 250))], [("cat", 2), ("dog", 1)]
    )
    assert score == 1.0
    assert reason == "2 of 2 'cat' found (exact); 1 of 1 'dog' found (exact): score 1.000"


def test_inexact_count_and_missing_object():
    # K = 2: 3 cats for 4 -> present only (+0.25); dog missing (0). Score 0.25.
    score, reason = numeracy_score(spread("cat", 3), [("cat", 4), ("dog", 1)])
    assert score == 0.25
    assert reason.startswith("3 of 4 'cat' found; 'dog' missing")
    # Too many also misses the exact half: 5 for 4.
    assert numeracy_score(spread("cat", 5), [("cat", 4)])[0] == 0.5
    # K = 3, weights 1/3: all present, one exact -> 3 · 0.5/3 + 0.5/3 = 2/3.
    detections = [
        *spread("cat", 2),
        det("dog", 0.5, (0, 300, 40, 340)),
        det("cow", 0.5, (300, 300, 340, 340)),
    ]
    score, _ = numeracy_score(detections, [("cat", 2), ("dog", 2), ("cow", 3)])
    assert score == pytest.approx(2 / 3, abs=EXACT)


def test_duplicates_are_merged_before_counting():
    # Two "cat" boxes 1 px apart (IoU 0.98) count once: 1 of 2 -> 0.5.
    detections = [det("cat", 0.9, (0, 0, 99, 99)), det("cat", 0.8, (1, 0, 100, 99))]
    assert numeracy_score(detections, [("cat", 2)])[0] == 0.5
    assert numeracy_score(detections, [("cat", 1)])[0] == 1.0


def test_substring_renaming_official_versus_exact():
    cattle = [det("cattle, cow", 0.9)]
    # "cow" is no exact label, so "cattle, cow" is renamed to "cow": 1 of 1 -> 1.0.
    score, reason = numeracy_score(cattle, [("cow", 1)])
    assert score == 1.0 and "via 'cattle, cow'" in reason
    # Officially it counts for "cat" as well ("cat" is a substring of "cattle, cow").
    assert numeracy_score(cattle, [("cat", 1)])[0] == 1.0
    # The renaming is in place and persists: "cat" (first in the prompt) takes the label, "cow" then finds nothing.
    # K = 2: cat 1 of 1 (+0.5), cow missing -> 0.5.
    score, reason = numeracy_score(cattle, [("cat", 1), ("cow", 1)])
    assert score == 0.5 and "'cow' missing" in reason
    # Exact matching: neither name equals the label.
    assert numeracy_score(cattle, [("cow", 1)], substring_rename=False)[0] == 0.0
    # When the exact label is present, nothing is renamed: 1 cat of 2 -> 0.5 (the "cattle, cow" is not counted).
    both = [det("cat", 0.9, (0, 0, 10, 10)), det("cattle, cow", 0.8, (100, 0, 110, 10))]
    assert numeracy_score(both, [("cat", 2)])[0] == 0.5


def test_synonyms_and_nothing_parsed():
    # A requested "girl" is counted as UniDet's "person".
    assert numeracy_score([det("person")], [("girl", 1)])[0] == 1.0
    score, reason = numeracy_score([det("cat")], [])
    assert score == 0.0 and "no countable object" in reason  # the official code divides by zero
