"""`load_prompts`: the one entry point every run uses to get its prompts, from a registered source or a prompt file.

It sits above the sources (base.py, builtin.py, compbench.py, files.py), which never import it: a source is found by
name in `ovi_bench.registry.PROMPTS`, so adding one (built-in or third-party) touches no code here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ovi_bench.errors import SpecError
from ovi_bench.paths import expand_user
from ovi_bench.prompts.base import BUILTIN_SOURCE, COMPBENCH_SOURCE, PromptSet, validate_limit
from ovi_bench.prompts.drawbench import DRAWBENCH_SOURCE
from ovi_bench.prompts.files import is_prompt_file_path, load_prompt_file_source
from ovi_bench.prompts.parti import PARTI_SOURCE
from ovi_bench.registry import PROMPTS
from ovi_bench.text import did_you_mean, short_repr


def load_prompts(
    source: str,
    categories: Sequence[str] | None = None,
    split: str = "val",
    limit: int | None = None,
    data_dir: str | Path | None = None,
) -> PromptSet:
    """Load the prompts of a run.

    `source` is the name of a registered prompt source ("t2i-compbench": the official files, `data_dir` optionally
    pointing at a local copy; "partiprompts" and "drawbench" likewise; "builtin": a small list shipped with
    ovi-bench, for smoke tests; or a plugin's) or the path of a .txt/.csv prompt file. `limit` keeps the first N
    prompts of each category, in file order.
    """
    validate_limit(limit)
    sources = PROMPTS.names()
    if source in sources:
        return PROMPTS.get(source)().load(categories, split, limit, data_dir)
    if is_prompt_file_path(source):
        return load_prompt_file_source(expand_user(source), categories, split, limit)
    shipped = (COMPBENCH_SOURCE, PARTI_SOURCE, DRAWBENCH_SOURCE, BUILTIN_SOURCE)
    plugins = [name for name in sources if name not in shipped]
    plugin_hint = f", a plugin's ({', '.join(plugins)})" if plugins else ""
    raise SpecError(
        f"unknown prompt source {short_repr(source)}.{did_you_mean(str(source), sources)} "
        f'Use "{COMPBENCH_SOURCE}" (official prompts), "{PARTI_SOURCE}", "{DRAWBENCH_SOURCE}", '
        f'"{BUILTIN_SOURCE}" (small built-in list){plugin_hint} '
        "or the path to a .txt or .csv prompt file."
    )
