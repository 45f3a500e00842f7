"""Generate one API reference page per module of `ovi_bench`, at build time, from the package as it is on disk.

Run by the mkdocs-gen-files plugin (see mkdocs.yml): it walks `ovi_bench/`, writes `reference/<module path>.md`
holding a mkdocstrings `:::` directive for each module, and a literate-nav `reference/SUMMARY.md` that orders them,
so that a module's page appears because the module exists, and a removed module's page disappears with it.
"""

from __future__ import annotations

from pathlib import Path

import mkdocs_gen_files

PACKAGE = "ovi_bench"
ROOT = Path(__file__).resolve().parent.parent

navigation = mkdocs_gen_files.Nav()

for source in sorted((ROOT / PACKAGE).rglob("*.py")):
    module_path = source.relative_to(ROOT).with_suffix("")
    parts = tuple(module_path.parts)
    if any(part == "__pycache__" for part in parts):
        continue
    page_path = Path("reference", *parts).with_suffix(".md")
    if parts[-1] == "__init__":
        # A package's page is the index of its section: reference/ovi_bench/metrics/index.md.
        parts = parts[:-1]
        page_path = page_path.with_name("index.md")
    identifier = ".".join(parts)
    navigation[parts] = page_path.relative_to("reference").as_posix()
    with mkdocs_gen_files.open(page_path, "w") as page:
        page.write(f"# `{identifier}`\n\n::: {identifier}\n")

with mkdocs_gen_files.open("reference/SUMMARY.md", "w") as summary:
    summary.writelines(navigation.build_literate_nav())
