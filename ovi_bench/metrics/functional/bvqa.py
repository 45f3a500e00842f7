"""The pure B-VQA rule of T2I-CompBench (BLIPvqa_eval/BLIP_vqa.py): noun chunks become yes/no questions, each
answered with P(yes) / (P(yes) + P(no)) from BLIP's first decoder step, and the image score is their product.
No model here: the BLIP wrapper supplies the probabilities.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

DROPPED_CHUNKS: frozenset[str] = frozenset({"top", "the side", "the left", "the right"})
"""Noun chunks the official script drops: exact, case-sensitive matches only ("the top" and "The left" stay)."""

MAX_QUESTIONS = 8
"""The official `np_num`: only the first 8 remaining noun chunks are asked; missing slots count as 1."""

MAX_QUESTION_WORDS = 50
_STRIPPED_CHARACTERS = re.compile(r"[.!\"()*#:;~]")


def clean_question(question: str, max_words: int = MAX_QUESTION_WORDS) -> str:
    """BLIP's `pre_question`: lower-case, delete the characters . ! " ( ) * # : ; ~ , strip trailing spaces, and
    keep the first `max_words` space-separated words. ("?" is kept.) The BLIP tokenizer later truncates the
    question to 35 tokens as well; that is the model wrapper's business."""
    cleaned = _STRIPPED_CHARACTERS.sub("", question.lower()).rstrip(" ")
    words = cleaned.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else cleaned


def bvqa_questions(noun_chunks: Sequence[str], limit: int = MAX_QUESTIONS) -> list[str]:
    """The questions the official script asks: each noun chunk except `DROPPED_CHUNKS`, in order, the first
    `limit` of them, as "chunk?" cleaned by `clean_question` ("A green bench" -> "a green bench?")."""
    kept = [chunk for chunk in noun_chunks if chunk not in DROPPED_CHUNKS]
    return [clean_question(f"{chunk}?") for chunk in kept[:limit]]


def bvqa_probability(p_yes: float, p_no: float) -> float:
    """P(yes) renormalised against P(no): p_yes / (p_yes + p_no), the official `vqa_prob`.

    Both probabilities 0 (each underflowed in the softmax) gives 0.5, no preference; the official code would
    produce NaN and poison the category mean. `bvqa_probability_from_logits` avoids the underflow altogether.
    """
    if p_yes < 0 or p_no < 0 or math.isnan(p_yes) or math.isnan(p_no):
        raise ValueError(f"probabilities must be non-negative numbers, got p_yes={p_yes}, p_no={p_no}")
    total = p_yes + p_no
    return 0.5 if total == 0 else p_yes / total


def bvqa_probability_from_logits(yes_logit: float, no_logit: float) -> float:
    """The same quantity from the two logits: softmax over the full vocabulary, restricted to {yes, no} and
    renormalised, equals sigmoid(yes_logit − no_logit) — without underflow."""
    difference = yes_logit - no_logit
    if difference >= 0:
        return 1.0 / (1.0 + math.exp(-difference))
    exp = math.exp(difference)
    return exp / (1.0 + exp)


def round_4(value: float) -> float:
    """The official "{:.4f}" formatting read back as a number (round half to even on the exact binary value)."""
    return float(f"{value:.4f}")


def bvqa_image_score(probabilities: Sequence[float], official_rounding: bool = True) -> float:
    """The product of the per-question probabilities; an empty list (no noun chunk) gives 1, as in the official
    script, where every one of the 8 slots is then "no question" = 1.

    `official_rounding=True` reproduces the official arithmetic exactly: each probability is written with 4
    decimals and read back, stored in a float32 tensor, multiplied slot by slot in float32, and the product written
    with 4 decimals again. False gives the exact float64 product.
    """
    if not official_rounding:
        return math.prod(float(p) for p in probabilities)
    product = np.float32(1.0)
    for probability in probabilities:
        product = np.float32(product * np.float32(round_4(float(probability))))
    return round_4(float(product))


def bvqa_reason(questions: Sequence[str], probabilities: Sequence[float]) -> str:
    """ "'a green bench?' 0.91 · 'a red car?' 0.12" — one entry per question, in order."""
    if len(questions) != len(probabilities):
        raise ValueError(f"{len(questions)} questions but {len(probabilities)} probabilities")
    if not questions:
        return "no noun phrase to ask about: the official product over no questions is 1"
    return " · ".join(
        f"'{question}' {probability:.2f}"
        for question, probability in zip(questions, probabilities, strict=True)
    )


def bvqa_score(
    questions: Sequence[str], probabilities: Sequence[float], *, official_rounding: bool = True
) -> tuple[float, str]:
    """`bvqa_image_score` and `bvqa_reason` together; the two sequences must have the same length."""
    return bvqa_image_score(probabilities, official_rounding), bvqa_reason(questions, probabilities)
