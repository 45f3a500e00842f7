"""Prompt sets: registered prompt sources (the official T2I-CompBench++ files, PartiPrompts, DrawBench, a small
built-in list, a plugin's) or a user's .txt/.csv file.

Modules, in import order (each imports only those before it): `base` (records, `PromptSource`, helpers), `pinned`
(files pinned by commit and sha256), `builtin`, `compbench` and `files` (sources), `labelled` (what the published
labelled tables share), `parti` and `drawbench` (sources), `loading` (`load_prompts`). This package's namespace is
their public surface.
"""

from __future__ import annotations

from ovi_bench.prompts.base import (
    BUILTIN_SOURCE,
    CATEGORIES,
    COMPBENCH_SOURCE,
    SPLITS,
    Prompt,
    PromptSet,
    PromptSource,
)
from ovi_bench.prompts.builtin import BUILTIN_PROMPTS, load_builtin
from ovi_bench.prompts.compbench import (
    COMPBENCH_COMMIT,
    COMPBENCH_DIR_ENV,
    COMPBENCH_REPO,
    COMPLEX_SUBSETS,
    FILE_SHA256,
    compbench_file,
    complex_subsets,
    load_compbench,
    normalise_complex_prompt,
    read_prompt_lines,
)
from ovi_bench.prompts.drawbench import DRAWBENCH_FILES, DRAWBENCH_SOURCE, load_drawbench
from ovi_bench.prompts.files import load_prompt_file
from ovi_bench.prompts.loading import load_prompts
from ovi_bench.prompts.parti import PARTI_FILES, PARTI_SOURCE, load_partiprompts
from ovi_bench.prompts.pinned import PinnedFiles

__all__ = [
    "BUILTIN_PROMPTS",
    "BUILTIN_SOURCE",
    "CATEGORIES",
    "COMPBENCH_COMMIT",
    "COMPBENCH_DIR_ENV",
    "COMPBENCH_REPO",
    "COMPBENCH_SOURCE",
    "COMPLEX_SUBSETS",
    "DRAWBENCH_FILES",
    "DRAWBENCH_SOURCE",
    "FILE_SHA256",
    "PARTI_FILES",
    "PARTI_SOURCE",
    "SPLITS",
    "PinnedFiles",
    "Prompt",
    "PromptSet",
    "PromptSource",
    "compbench_file",
    "complex_subsets",
    "load_builtin",
    "load_compbench",
    "load_drawbench",
    "load_partiprompts",
    "load_prompt_file",
    "load_prompts",
    "normalise_complex_prompt",
    "read_prompt_lines",
]
