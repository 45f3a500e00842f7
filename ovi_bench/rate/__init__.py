"""Pairwise human ratings of a run's images: the local rating web app (`ovi-bench rate`), its SQLite store, the pair
sampler with attention checks, import and export, and simulated raters. `ovi_bench.results.human` analyses what
it collects."""
