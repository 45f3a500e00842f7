"""The built-in analyser: ovi-bench's rule-based tokenizer, tagger and noun chunker (`BuiltinAnalyzer`).

It is written for T2I-CompBench's phrasing ("a green bench and a red car", "a dog on the left of a cat", "two cats
and one dog", "The fluffy cat lay on the soft rug."), needs nothing installed, and approximates spaCy
`en_core_web_sm` without copying it; its `name` says so in every recorded score.

How the built-in rules work (all word lists are ovi-bench's own, general English):

1. Tokens: words (hyphenated words stay whole: "snow-covered"), numbers, the clitics 's / n't, and single
   punctuation marks, each with its character span so that chunk texts are exact substrings of the prompt.
2. Closed classes by word list: determiners, possessives, pronouns, numbers, prepositions, conjunctions,
   auxiliaries, particles and adverbs ("-ly" words except a list of "-ly" nouns and adjectives). "next to" / "close
   to" make "next" / "close" adverbs; "that" is a determiner before a content word, else a pronoun; "her" likewise.
3. Every other word is open class. Left to right, an open-class word is a VERB when its context says so:
   * after an auxiliary or "to": "is holding", "will grow", "to bake" (after a form of "be" only -ing/-ed and
     irregular participles: "is shiny" stays an adjective), and after a subject pronoun;
   * after a noun (adverbs in between allowed): -ing, -ed and irregular past forms ("The omelet cooked the eggs",
     "a chair hidden by a desk"), listed 3rd-person "-s" forms before a clause ("a cat sits on a mat"), any word
     followed by a determiner ("the spoon and ladle serve the soup"), and listed base forms after a plural or
     coordinated subject ("dogs play in the park");
   * after a comma, conjunction or adverb: -ing forms, and -ed/irregular forms not followed by a noun ("and reading
     on a bench", ", hoping it"); after a preposition, only when no noun follows ("by running", but "of blooming
     flowers"); any -ing word followed by a determiner ("is building a sandcastle").
4. Consecutive open-class words that are not verbs form a nominal run: its last word is the head (NOUN, or PROPN
   when capitalised mid-sentence), the others are modifiers: ADJ when they are listed adjectives (colours, shapes,
   sizes, textures, materials that are adjectives, and other common ones) or look adjectival (-ful, -ous, -ive,
   -able, -ible, -less, -ic, -ed, hyphenated), VERB for participles in -ing, NOUN otherwise (compounds such as
   "coat rack").
   Adjectives joined by "and" or a comma stay in the run ("the striped black and white cat"); an adverb before an
   adjective joins too ("a very large dog"). A run after a copula ("is", "was", "looks", ...) whose last word is
   adjectival is a predicate: all ADJ, no chunk ("the sky is blue"); so is a lone listed adjective without a
   determiner ("hung low", "ripe and ready").
5. A noun chunk is a run with a head plus the determiners, possessives, numbers and adverbs right before it;
   "the cat 's toy" joins into one chunk, and personal pronouns are chunks of their own — as spaCy's chunker does.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ovi_bench.metrics.text_analysis.tokens import Token
from ovi_bench.metrics.text_analysis.words import (
    ADJECTIVE_SUFFIXES,
    ADJECTIVES,
    ADPOSITIONS,
    ADVERBS,
    BE_FORMS,
    COORDINABLE_ADJECTIVES,
    COORDINATORS,
    DETERMINER_LIKE_ADJECTIVES,
    DETERMINERS,
    DO_FORMS,
    HAVE_FORMS,
    IRREGULAR_PLURALS,
    IRREGULAR_VERB_FORMS,
    LINKING_VERBS,
    LY_ADJECTIVES,
    LY_NOUNS,
    MODALS,
    NEGATIONS,
    NOT_ADJECTIVES_DESPITE_SUFFIX,
    NOT_ED_VERBS,
    NOT_ING_VERBS,
    NOUN_LIKE_VERB_BASES,
    NUMBER_WORDS,
    OTHER_PRONOUNS,
    PERSONAL_PRONOUNS,
    POSSESSIVES,
    SUBJECT_PRONOUNS,
    SUBORDINATORS,
    UNCOUNTED_NOUNS,
    VERB_BASES,
)

BUILTIN_ANALYZER_VERSION = "1"

_CLITICS = frozenset({"'s", "'re", "'ve", "'ll", "'d", "'m", "n't"})
_SENTENCE_END = frozenset({".", "!", "?"})
_TOKEN_PATTERN = re.compile(
    r"[^\W\d_]+(?=n['’]t\b)"  # "do" of "don't", "ca" of "can't" (spaCy splits the same way)
    r"|n['’]t\b"
    r"|['’](?:s|re|ve|ll|d|m)\b"
    r"|\d+(?:[.,:]\d+)*(?:st|nd|rd|th)?"
    r"|[^\W\d_]+(?:-[^\W_]+)*"  # words; hyphenated words stay whole ("snow-covered", "tug-of-war")
    r"|\S",
    re.UNICODE,
)

_OPEN = "OPEN"  # internal placeholder: an open-class word not yet tagged


@dataclass(frozen=True)
class _Piece:
    text: str
    start: int
    end: int

    @property
    def lower(self) -> str:
        return self.text.lower().replace("’", "'")


def _tokenize(text: str) -> list[_Piece]:
    return [_Piece(match.group(), match.start(), match.end()) for match in _TOKEN_PATTERN.finditer(text)]


def _is_ing_form(word: str) -> bool:
    return word.endswith("ing") and len(word) >= 5 and word not in NOT_ING_VERBS


def _is_ed_form(word: str) -> bool:
    return word.endswith("ed") and len(word) >= 4 and word not in NOT_ED_VERBS


def _is_verb_s_form(word: str) -> bool:
    """A 3rd-person "-s" form of a listed verb whose "-s" form is not usually a plural noun."""
    for stem in (word[:-1], word[:-2], word[:-3] + "y" if word.endswith("ies") else ""):
        if stem and stem in VERB_BASES and stem not in NOUN_LIKE_VERB_BASES:
            return word.endswith("s")
    return False


def _is_past_or_participle(word: str) -> bool:
    return word in IRREGULAR_VERB_FORMS or (_is_ed_form(word) and word not in ADJECTIVES)


def _is_adjectival(word: str) -> bool:
    if word in ADJECTIVES:
        return True
    if word in NOT_ADJECTIVES_DESPITE_SUFFIX:
        return False
    # Hyphenated words are mostly compound adjectives ("snow-covered", "crystal-clear"); as heads they are nouns.
    suffixed = any(word.endswith(suffix) and len(word) - len(suffix) >= 3 for suffix in ADJECTIVE_SUFFIXES)
    return suffixed or _is_ed_form(word) or "-" in word


def _looks_plural(word: str) -> bool:
    return word in IRREGULAR_PLURALS or (
        word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3
    )


def singular(noun: str) -> str:
    """An approximate English singular of a lower-case noun (the built-in analyser's lemma)."""
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    if (
        noun in UNCOUNTED_NOUNS
        or not noun.endswith("s")
        or noun.endswith(("ss", "us", "is"))
        or len(noun) <= 3
    ):
        return noun
    if noun.endswith("ies") and len(noun) > 4:
        return noun[:-3] + "y"
    if noun.endswith(("ches", "shes", "xes", "zes", "sses", "oes")):
        return noun[:-2]
    return noun[:-1]


@dataclass(frozen=True)
class _Analysis:
    tokens: list[Token]
    chunks: list[str]


class BuiltinAnalyzer:
    """ovi-bench's rule-based tokenizer, tagger and noun chunker (see the module docstring for the rules).

    It approximates spaCy `en_core_web_sm` on T2I-CompBench's prompt styles; it is not spaCy and results computed
    with it carry its own `name`.
    """

    name = f"ovi-bench builtin rules v{BUILTIN_ANALYZER_VERSION}"

    def noun_chunks(self, text: str) -> list[str]:
        return list(_analyse(text).chunks)

    def tokens(self, text: str) -> list[Token]:
        return list(_analyse(text).tokens)


@functools.lru_cache(maxsize=4096)
def _analyse(text: str) -> _Analysis:
    pieces = _tokenize(text)
    words = [piece.lower for piece in pieces]
    tags = _closed_class_tags(pieces, words)
    chunk_spans: list[tuple[int, int]] = []  # inclusive token index ranges
    _tag_open_class(pieces, words, tags, chunk_spans)
    chunk_starts = {first for first, _ in chunk_spans}
    for index, tag in enumerate(tags):
        # Personal pronouns are chunks of their own; "her" only when it does not open the next chunk ("her violin").
        personal = words[index] in PERSONAL_PRONOUNS or (words[index] == "her" and index not in chunk_starts)
        if tag == "PRON" and personal:
            chunk_spans.append((index, index))
    chunk_spans.sort()

    tokens = []
    for index, piece in enumerate(pieces):
        following = pieces[index + 1] if index + 1 < len(pieces) else None
        space_after = following is not None and following.start > piece.end
        tag = tags[index]
        lemma = singular(words[index]) if tag == "NOUN" else piece.text if tag == "PROPN" else words[index]
        tokens.append(Token(piece.text, tag, lemma, space_after))
    chunks = [text[pieces[first].start : pieces[last].end] for first, last in chunk_spans]
    return _Analysis(tokens, chunks)


def _closed_class_tags(pieces: list[_Piece], words: list[str]) -> list[str]:
    count = len(words)
    tags: list[str] = []
    for index, word in enumerate(words):
        following = words[index + 1] if index + 1 < count else ""
        if not any(character.isalnum() for character in word) and word not in _CLITICS:
            tags.append("SYM" if word in "$%+=<>#@" else "PUNCT")
        elif word[0].isdigit() or word in NUMBER_WORDS:
            tags.append("NUM")
        elif word in ("next", "close") and following == "to":
            tags.append("ADV")  # "next to", "close to": spaCy tags these adverbs, so they never form a chunk
        elif word in DETERMINERS:
            tags.append("DET")
        elif word == "that":
            # A determiner before a content word ("that cat"), a relative pronoun after one ("a cat that sleeps").
            after_open_word = bool(tags) and tags[-1] == _OPEN
            tags.append("DET" if _starts_open_word(following) and not after_open_word else "PRON")
        elif word == "her":
            tags.append("PRON")  # possessive or personal; decided below once the next word is known
        elif word in POSSESSIVES or word in PERSONAL_PRONOUNS or word in OTHER_PRONOUNS:
            tags.append("PRON")
        elif word == "to":
            tags.append("ADP")  # becomes PART before a verb (below)
        elif word in ADPOSITIONS and not (tags and tags[-1] == "DET" and not _starts_open_word(following)):
            tags.append("ADP")  # but "the past", "the inside": a preposition's word used as a noun
        elif word in COORDINATORS:
            tags.append("CCONJ")
        elif word in SUBORDINATORS:
            tags.append("SCONJ")
        elif word == "can" and (
            (tags and tags[-1] == "DET")
            or (not _starts_open_word(following) and following not in ("not", "n't", "be"))
        ):
            tags.append(_OPEN)  # "a cylindrical can of soup": the noun, not the modal
        elif word in BE_FORMS or word in MODALS or word in DO_FORMS:
            tags.append("AUX")
        elif word in HAVE_FORMS:
            tags.append("AUX" if _is_past_or_participle(following) or following == "been" else "VERB")
        elif word in NEGATIONS:
            tags.append("PART")
        elif word in ("'s", "'re", "'ve", "'ll", "'d", "'m"):
            previous = words[index - 1] if index else ""
            tags.append("PART" if word == "'s" and previous not in PERSONAL_PRONOUNS else "AUX")
        elif word in ADVERBS or (
            word.endswith("ly") and len(word) >= 5 and word not in LY_NOUNS | LY_ADJECTIVES
        ):
            tags.append("ADV")
        else:
            tags.append(_OPEN)
    for index, word in enumerate(words):
        following = words[index + 1] if index + 1 < count else ""
        if word == "to" and following in VERB_BASES and following not in NOUN_LIKE_VERB_BASES:
            tags[index] = "PART"
    return tags


def _starts_open_word(word: str) -> bool:
    closed = DETERMINERS | POSSESSIVES | PERSONAL_PRONOUNS | OTHER_PRONOUNS | ADPOSITIONS | COORDINATORS
    closed |= SUBORDINATORS | BE_FORMS | MODALS | DO_FORMS | HAVE_FORMS | NUMBER_WORDS
    return bool(word) and word[0].isalpha() and word not in closed


def _previous_index(tags: list[str], index: int, skip: frozenset[str] = frozenset({"ADV", "PART"})) -> int:
    """Index of the nearest token before `index` whose tag is not in `skip`; -1 at the start."""
    cursor = index - 1
    while cursor >= 0 and tags[cursor] in skip:
        cursor -= 1
    return cursor


def _tag_open_class(pieces: list[_Piece], words: list[str], tags: list[str], chunk_spans: list) -> None:
    count = len(words)
    index = 0
    while index < count:
        if tags[index] != _OPEN:
            index += 1
            continue
        if _is_clause_verb(words, tags, index):
            tags[index] = "VERB"
            index += 1
            continue
        run = _nominal_run(words, tags, index)
        _tag_run(pieces, words, tags, run, chunk_spans)
        index = run[-1] + 1


def _noun_phrase_context(words: list[str], tags: list[str], index: int) -> bool:
    """True when the word at `index` sits inside a noun phrase that still needs its head: right after a
    determiner, possessive, number or "'s" (adverbs in between allowed: "a very large dog")."""
    before = _previous_index(tags, index, skip=frozenset({"ADV"}))
    if before < 0:
        return False
    word, tag = words[before], tags[before]
    return tag in ("DET", "NUM") or word in POSSESSIVES or word == "her" or (tag == "PART" and word == "'s")


def _is_clause_verb(words: list[str], tags: list[str], index: int) -> bool:
    """Whether an open-class word that does not follow a noun is a verb, judged by what precedes and follows it."""
    word = words[index]
    if _noun_phrase_context(words, tags, index):
        return False
    if index > 0 and tags[index - 1] == "PART" and words[index - 1] == "to":
        return True  # "to bake", "trying to catch"
    before = _previous_index(tags, index)
    previous_word = words[before] if before >= 0 else ""
    previous_tag = tags[before] if before >= 0 else ""
    following_tag = tags[index + 1] if index + 1 < len(words) else ""
    noun_follows = following_tag == _OPEN
    verb_form = _is_ing_form(word) or _is_past_or_participle(word)
    following = words[index + 1] if index + 1 < len(words) else ""
    if word.endswith("ing") and (following_tag == "DET" or following in POSSESSIVES):
        return True  # "is building a sandcastle", "and painting her fence": an object follows, so a verb
    if previous_tag == "AUX":
        if previous_word in BE_FORMS or previous_word in ("'s", "'re", "'m"):
            return verb_form and word not in ADJECTIVES  # "is holding", "was covered"; "is shiny" stays ADJ
        return True  # after a modal, "do" or auxiliary "have": "will grow", "did see", "has eaten"
    if previous_tag == "PART" and previous_word == "to":
        return True
    if previous_tag == "PRON" and previous_word in SUBJECT_PRONOUNS:
        return verb_form or _is_verb_s_form(word) or (word in VERB_BASES and word not in NOUN_LIKE_VERB_BASES)
    if previous_word in LINKING_VERBS and previous_tag == "VERB":
        return False
    if previous_tag in ("NOUN", "PROPN"):
        return _is_verb_after_noun(words, tags, index)  # also across adverbs: "giraffes gracefully strode"
    if previous_tag == "ADP":
        # "by running", but "of blooming flowers", "with painted nails": before a noun it is a modifier.
        return verb_form and word not in ADJECTIVES and not noun_follows
    if previous_tag in ("PUNCT", "CCONJ", "SCONJ", "ADV", "VERB", "") or index == 0:
        if word in ADJECTIVES:
            return False
        # "and reading books", ", hoping it": -ing forms here head a verb phrase; -ed forms before a noun are
        # modifiers instead ("with painted nails").
        return _is_ing_form(word) or (_is_past_or_participle(word) and not noun_follows)
    return False


def _is_verb_after_noun(words: list[str], tags: list[str], index: int) -> bool:
    """Whether the open-class word at `index`, right after a noun, starts a verb phrase instead of continuing the
    noun ("The omelet cooked the eggs", "a chair hidden by a desk", "The cat sits on", "dogs play in")."""
    word = words[index]
    following = words[index + 1] if index + 1 < len(words) else ""
    following_tag = tags[index + 1] if index + 1 < len(words) else ""
    # What follows a verb: a determiner, preposition, pronoun, adverb, punctuation, or a listed adjective ("features
    # black tiles"); another content word instead makes the word a modifier of a compound ("snow covered street").
    clause_follows = following_tag not in (_OPEN, "ADJ", "NOUN") or following in ADJECTIVES
    if word in ADJECTIVES:
        return False
    if _is_ing_form(word):
        return True
    if _is_past_or_participle(word):
        # "a chair hidden by", "The omelet cooked the eggs", "two drums added rhythm". (Unhyphenated compound
        # adjectives such as "a snow covered street" are split here; the prompts mostly hyphenate them.)
        return True
    if _is_verb_s_form(word) and clause_follows:
        return True
    if following_tag == "DET" or following in POSSESSIVES:
        return True  # noun + word + determiner: the word can only be a verb ("the spoon and ladle serve the soup")
    plural_subject = _looks_plural(words[index - 1]) or _coordinated_subject(words, tags, index)
    return (
        word in VERB_BASES
        and word not in NOUN_LIKE_VERB_BASES
        and plural_subject
        and clause_follows
        and following != ""
    )


def _coordinated_subject(words: list[str], tags: list[str], index: int) -> bool:
    """Whether the noun phrase ending right before `index` is the second of two joined by "and"/"or"."""
    cursor = index - 1
    while cursor >= 0 and (
        tags[cursor] in ("NOUN", "PROPN", "ADJ", "DET", "NUM", _OPEN) or words[cursor] in POSSESSIVES
    ):
        cursor -= 1
    return cursor >= 0 and words[cursor] in ("and", "or")


def _nominal_run(words: list[str], tags: list[str], start: int) -> list[int]:
    """Indices of a maximal nominal run beginning at `start`, including joined coordinated adjectives and the
    adverbs inside it; the open-class members are tagged by `_tag_run`."""
    run = [start]
    cursor = start + 1
    count = len(words)
    while cursor < count:
        tag = tags[cursor]
        last_open = max(k for k in run if tags[k] == _OPEN)
        if tag == _OPEN:
            if _is_adjectival(words[last_open]):
                # After an adjective the word is a modifier or the head ("blue sloped ceiling", "comfortable
                # seating"), unless a past or "-s" form ends the phrase ("the warm yellow light shone down").
                phrase_ends = cursor + 1 == count or tags[cursor + 1] != _OPEN
                breaks = phrase_ends and (
                    _is_past_or_participle(words[cursor]) or _is_verb_s_form(words[cursor])
                )
            else:
                breaks = _is_verb_after_noun(words, tags, cursor)
            if breaks:
                break
            run.append(cursor)
            cursor += 1
            continue
        joiner = tag == "CCONJ" or words[cursor] == ","
        if joiner and _is_coordinable(words[last_open], comma=words[cursor] == ","):
            # "black and white cat", "the intricate, winding vines": adjectives joined inside one noun phrase.
            nxt = cursor + 1
            if nxt < count and words[nxt] == "and":
                nxt += 1
            if (
                nxt < count
                and tags[nxt] == _OPEN
                and (
                    _is_coordinable(words[nxt], comma=words[cursor] == ",")
                    or (
                        words[cursor] == ","
                        and words[last_open] in COORDINABLE_ADJECTIVES
                        and _joins_after_comma(words[nxt])
                    )
                )
                and _run_continues_to_noun(words, tags, nxt)
            ):
                run.extend(range(cursor, nxt + 1))
                cursor = nxt + 1
                continue
        if (
            tag == "ADV"
            and cursor + 1 < count
            and tags[cursor + 1] == _OPEN
            and _is_adjectival(words[cursor + 1])
        ):
            run.extend([cursor, cursor + 1])
            cursor += 2
            continue
        break
    return run


def _is_coordinable(word: str, comma: bool) -> bool:
    """Whether `word` can be one of several adjectives joined by "and" or a comma before a noun. Listed adjectives
    can; after a comma, so can adjective-looking words ("the rich, earthy tones", "the bright, glowing embers")."""
    if word in COORDINABLE_ADJECTIVES:
        return True
    if word in DETERMINER_LIKE_ADJECTIVES or not comma:
        return False
    return _is_adjectival(word) or _is_ing_form(word) or (word.endswith("y") and len(word) > 4)


def _joins_after_comma(word: str) -> bool:
    """After a listed adjective and a comma, any content word may continue the phrase ("the sharp, steel blades")."""
    return word not in DETERMINER_LIKE_ADJECTIVES


def _run_continues_to_noun(words: list[str], tags: list[str], start: int) -> bool:
    """True when the open-class words from `start` end in a head noun: there are two or more of them (the last is
    the head: "inviting light"), or the single one is not a listed adjective ("earthy tones" vs "is black and
    white.")."""
    stop = start
    while stop < len(words) and tags[stop] == _OPEN:
        stop += 1
    return stop - start >= 2 or (stop - start == 1 and words[start] not in ADJECTIVES)


def _tag_run(
    pieces: list[_Piece], words: list[str], tags: list[str], run: list[int], chunk_spans: list
) -> None:
    members = [k for k in run if tags[k] == _OPEN]
    head = members[-1]
    in_phrase = _noun_phrase_context(words, tags, run[0])
    before = _previous_index(tags, run[0])
    after_copula = before >= 0 and (
        (tags[before] == "AUX" and words[before] in BE_FORMS | {"'s", "'re", "'m"})
        or (tags[before] == "VERB" and words[before] in LINKING_VERBS)
    )
    # "is black and white": a predicate adjective coordinated with the one before it.
    after_copula |= (
        before >= 1 and (tags[before] == "CCONJ" or words[before] == ",") and tags[before - 1] == "ADJ"
    )
    if not in_phrase and after_copula and _is_adjectival(words[head]):
        for k in members:
            tags[k] = "ADJ"  # predicate: "the sky is blue", "feeling awestruck"
        return
    if not in_phrase and len(members) == 1 and words[head] in ADJECTIVES:
        tags[head] = "ADJ"  # a bare adjective without determiner: "hung low", "ripe and ready", "perfect for"
        return
    for k in members:
        if k == head:
            tags[k] = "PROPN" if _is_proper(pieces, words, tags, k) else "NOUN"
        elif _is_ing_form(words[k]) and words[k] not in ADJECTIVES:
            tags[k] = "VERB"  # "a sleeping cat": spaCy tags participial modifiers VERB
        elif _is_adjectival(words[k]):
            tags[k] = "ADJ"
        else:
            tags[k] = "PROPN" if _is_proper(pieces, words, tags, k) else "NOUN"
    first = run[0]
    cursor = first - 1
    while cursor >= 0 and (
        tags[cursor] in ("DET", "NUM")
        or words[cursor] in POSSESSIVES
        or words[cursor] == "her"
        or tags[cursor] == "ADV"
    ):
        cursor -= 1
    # An adverb opens the chunk only between a determiner and the run ("a very large dog"), never on its own.
    start = cursor + 1
    while start < first and tags[start] == "ADV":
        start += 1
    if start > 0 and tags[start - 1] == "PART" and words[start - 1] == "'s" and chunk_spans:
        # "the cat 's toy": the possessor's chunk and this one are a single noun chunk, as in spaCy.
        previous_first, previous_last = chunk_spans[-1]
        if previous_last == start - 2:
            chunk_spans.pop()
            start = previous_first
    chunk_spans.append((start, run[-1]))


def _is_proper(pieces: list[_Piece], words: list[str], tags: list[str], index: int) -> bool:
    text = pieces[index].text
    sentence_start = index == 0 or words[index - 1] in _SENTENCE_END
    return text[:1].isupper() and not sentence_start and text != "I"
