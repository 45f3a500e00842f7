"""Text analysis for the T2I-CompBench rules: noun chunks and part-of-speech tags behind one small protocol.

The official evaluators run spaCy `en_core_web_sm` on the prompt: B-VQA asks one question per noun chunk, the 2D and
3D rules take the first and last token tagged NOUN, the complex 2D rule looks for NOUN/PROPN tokens around a
preposition, numeracy walks the token texts and complex CLIP drops the ADJ tokens. Two implementations:

* `SpacyAnalyzer` — spaCy itself (optional dependency, imported lazily). The faithful choice: the official code
  pins spacy 3.5.3 with `en_core_web_sm` 3.5.0, and `name` records the versions actually used.
* `BuiltinAnalyzer` — ovi-bench's own rule-based tokenizer, tagger and chunker, written for the benchmark's phrasing
  ("a green bench and a red car", "a dog on the left of a cat", "two cats and one dog", "The fluffy cat lay on the
  soft rug."). It needs nothing, so tests and machines without the spaCy model still work; it is an approximation of
  spaCy, not a copy of it, and its `name` says so in every recorded score.

`default_analyzer()` picks spaCy when both spaCy and the model import, else the built-in rules.

The modules, each importable on its own (this package imports none of them, so a scoring rule that needs only
`Token` loads nothing else):

* `tokens` — `Token`, the `TextAnalyzer` protocol, `span_text` and `without_adjectives`: what the rules consume.
* `builtin` — `BuiltinAnalyzer`, the rule-based tokenizer, tagger and chunker; its word lists are in `words`.
* `spacy_analyzer` — `SpacyAnalyzer`, the spaCy adapter (spaCy is an optional dependency, imported lazily).
* `choice` — `default_analyzer()` and `make_analyzer(choice)`: which analyser a metric uses.
"""
