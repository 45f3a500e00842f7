"""Metrics: one module per metric family, each a thin wrapper (models, batching, provenance) around a pure scoring
rule in `functional/`; `base` describes the kinds of metric (per image, derived, set-level) and what each needs."""
