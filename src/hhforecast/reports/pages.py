"""Rendering a report template: one Jinja2 environment, autoescaping every value.

Templates live in ``reports/templates`` and ship with the package. Every value reaching a page
(file paths, column names, messages) is escaped by Jinja2, so a dataset named ``a<b&c.csv`` reads
as text, never as markup.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

__all__ = ["number", "render_page"]


def number(value: float | None, digits: int = 2) -> str:
    """A table cell: grouped thousands, `digits` decimals, "-" when unknown."""
    return "-" if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"


def pvalue(value: float) -> str:
    return "<0.0001" if value < 1e-4 else number(value, 4)


def percent(value: float) -> str:
    return f"{value:.0%}"


@cache
def _environment() -> Any:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("hhforecast.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(number=number, pvalue=pvalue, percent=percent)
    return environment


def render_page(template: str, **context: Any) -> str:
    """The HTML page of `template` (a file in reports/templates) filled with `context`."""
    return str(_environment().get_template(template).render(**context))
