"""docs/benchmarks.md is written section by section: each bench replaces its own section."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["write_section"]


def write_section(path: Path, section: str, name: str) -> None:
    """Put `section` (which starts with `<!-- section: name -->` and ends with `<!-- end
    section: name -->`) in place of the page's section `name`, or append it."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"<!-- section: {name} -->.*?<!-- end section: {name} -->\n?", re.DOTALL)
    if not section.endswith("\n"):
        section += "\n"
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")
