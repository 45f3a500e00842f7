"""`ovi-bench rate` (the local pairwise-rating web app) and `ovi-bench ratings` (export and import of judgements)."""

from __future__ import annotations
