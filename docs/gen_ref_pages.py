"""Generate one API reference page per module of `ovi_bench`, at build time, from the package as it is on disk.

Run by the mkdocs-gen-files plugin (see mkdocs.yml): it walks `ovi_bench/`, writes `reference/<module path>.md`
holding a mkdocstrings `:::` directive for each module (a package's page is `index.md` in its folder and lists the
package's modules), and a literate-nav `reference/SUMMARY.md` that orders them. So a module's page appears because
the module exists, and a removed module's page disappears with it: no list of modules is kept anywhere by hand.
"""

from __future__ import annotations

from pathlib import Path

import mkdocs_gen_files

PACKAGE = "ovi_bench"
ROOT = Path(__file__).resolve().parent.parent


def module_parts(source: Path) -> tuple[str, ...]:
    """`ovi_bench/metrics/clip.py` → ("ovi_bench", "metrics", "clip"); a package's `__init__.py` → the package."""
    parts = source.relative_to(ROOT).with_suffix("").parts
    return parts[:-1] if parts[-1] == "__init__" else parts


def page_path(source: Path) -> Path:
    """Where the module's page goes: reference/ovi_bench/metrics/clip.md, reference/ovi_bench/metrics/index.md."""
    relative = source.relative_to(ROOT).with_suffix("")
    if relative.name == "__init__":
        return Path("reference", *relative.parts[:-1], "index.md")
    return Path("reference", *relative.parts).with_suffix(".md")


def package_contents(package: Path) -> list[Path]:
    """The modules and sub-packages directly inside a package, sorted: what its page lists."""
    children = [path for path in package.glob("*.py") if path.name != "__init__.py"]
    children += [path / "__init__.py" for path in package.iterdir() if (path / "__init__.py").is_file()]
    return sorted(children, key=lambda path: module_parts(path))


sources = sorted(path for path in (ROOT / PACKAGE).rglob("*.py") if "__pycache__" not in path.parts)
navigation = mkdocs_gen_files.Nav()
for source in sources:
    parts = module_parts(source)
    page = page_path(source)
    identifier = ".".join(parts)
    navigation[parts] = page.relative_to("reference").as_posix()
    lines = [f"# `{identifier}`", "", f"::: {identifier}", ""]
    if source.name == "__init__.py":
        lines += ["## Modules", ""]
        for child in package_contents(source.parent):
            link = Path(page_path(child)).relative_to(page.parent).as_posix()
            lines.append(f"- [`{'.'.join(module_parts(child))}`]({link})")
        lines.append("")
    with mkdocs_gen_files.open(page, "w") as handle:
        handle.write("\n".join(lines))

with mkdocs_gen_files.open("reference/SUMMARY.md", "w") as summary:
    summary.writelines(navigation.build_literate_nav())
