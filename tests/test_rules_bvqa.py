"""The pure B-VQA rule: questions from noun chunks, the yes/no probability and the image score, official rounding
included."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ovi_bench.metrics.functional.bvqa import (
    bvqa_image_score,
    bvqa_probability,
    bvqa_probability_from_logits,
    bvqa_questions,
    bvqa_reason,
    bvqa_score,
    clean_question,
)
from ovi_bench.metrics.text_analysis.builtin import BuiltinAnalyzer


def test_questions_drop_exactly_the_official_chunks():
    chunks = ["A green bench", "top", "the side", "the left", "the right", "The left", "the top", "a red car"]
    # Only exact, case-sensitive matches are dropped: "The left" and "the top" stay (lower-cased in the question).
    assert bvqa_questions(chunks) == ["a green bench?", "the left?", "the top?", "a red car?"]


def test_questions_are_capped_at_eight_after_filtering():
    chunks = ["top"] + [f"chunk {k}" for k in range(10)]
    assert bvqa_questions(chunks) == [f"chunk {k}?" for k in range(8)]
    assert bvqa_questions(chunks, limit=3) == ["chunk 0?", "chunk 1?", "chunk 2?"]
    assert bvqa_questions([]) == []


def test_question_cleaning_like_blip_pre_question():
    # Lower-cased; . ! " ( ) * # : ; ~ deleted (not replaced), "?" kept, trailing spaces stripped.
    assert clean_question('The "Magic" Box (red)!?') == "the magic box red?"
    assert clean_question("a cat;~ #1*: ") == "a cat 1"
    long_chunk = " ".join(f"w{k}" for k in range(60))
    assert clean_question(long_chunk + "?").split(" ") == [f"w{k}" for k in range(50)]
    assert bvqa_questions(["St. Mary's church"]) == ["st mary's church?"]


def test_probability_renormalises_yes_against_no():
    assert bvqa_probability(0.6, 0.2) == pytest.approx(0.75)
    assert bvqa_probability(0.0, 0.0) == 0.5
    with pytest.raises(ValueError):
        bvqa_probability(-0.1, 0.5)
    # From logits: softmax restricted to {yes, no} = sigmoid(yes − no).
    assert bvqa_probability_from_logits(2.0, 0.0) == pytest.approx(1 / (1 + math.exp(-2)))
    assert bvqa_probability_from_logits(-800.0, 0.0) == pytest.approx(0.0)  # no overflow
    logits = np.array([3.0, 1.0, -2.0])  # yes, no, another token
    softmax = np.exp(logits) / np.exp(logits).sum()
    assert bvqa_probability(softmax[0], softmax[1]) == pytest.approx(bvqa_probability_from_logits(3.0, 1.0))


def test_image_score_official_rounding_differs_from_the_exact_product():
    # Official: 0.12345 -> "0.1235" (the binary value 0.1234500000000000042 is above the tie), stored as float32
    # 0.12349999696; times 0.5 = 0.06174999848 in float32 -> "0.0617". Exact product: 0.061725.
    assert bvqa_image_score([0.12345, 0.5]) == 0.0617
    assert bvqa_image_score([0.12345, 0.5], official_rounding=False) == pytest.approx(0.061725, abs=1e-15)
    # Three questions: 0.3334 · 0.6667 · 0.5 = 0.11113889 -> "0.1111" officially; exact 0.1111138887...
    assert bvqa_image_score([0.33335, 0.66665, 0.5]) == 0.1111
    assert bvqa_image_score([0.33335, 0.66665, 0.5], official_rounding=False) == pytest.approx(
        0.33335 * 0.66665 * 0.5, abs=1e-15
    )
    # No question at all: every official slot is "no question" = 1.
    assert bvqa_image_score([]) == 1.0
    assert bvqa_image_score([], official_rounding=False) == 1.0


def test_reason_and_score_together():
    questions, probabilities = ["a green bench?", "a red car?"], [0.91, 0.12]
    assert bvqa_reason(questions, probabilities) == "'a green bench?' 0.91 · 'a red car?' 0.12"
    score, reason = bvqa_score(questions, probabilities)
    assert score == 0.1092  # 0.91 · 0.12 = 0.1092
    assert reason == bvqa_reason(questions, probabilities)
    assert "no noun phrase" in bvqa_reason([], [])
    with pytest.raises(ValueError):
        bvqa_score(questions, [0.5])


def test_questions_from_the_builtin_analyzer():
    analyzer = BuiltinAnalyzer()
    assert bvqa_questions(analyzer.noun_chunks("a green bench and a red car")) == [
        "a green bench?",
        "a red car?",
    ]
    # Complex prompts: "top" of "on top of" is dropped, "the left" too.
    assert bvqa_questions(analyzer.noun_chunks("The red hat was on top of the brown coat rack.")) == [
        "the red hat?",
        "the brown coat rack?",
    ]
    assert bvqa_questions(analyzer.noun_chunks("The fluffy cat is on the left of the soft pillow.")) == [
        "the fluffy cat?",
        "the soft pillow?",
    ]
