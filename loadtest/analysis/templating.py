"""How values read in every rendered page (HTML report, Markdown summary, comparisons):
one number format, one way to turn a check's evidence into text, one Jinja environment.

Layout lives in the templates; what a value looks like lives here, once, so that the
HTML and the Markdown cannot drift apart.
"""

from __future__ import annotations

import functools
import html
import math
from pathlib import Path

import jinja2

from loadtest.analysis.view import replicas_word

TEMPLATES = Path(__file__).parent / "templates"
LIST_ITEMS = 8  # items of a list shown in evidence before "… and N more"


def fmt(value: object, digits: int = 3) -> str:
    """A value as a reader wants it: thousands separated, 3 significant digits, yes/no,
    and a dash for what is missing or not a number."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


def cell(value: object) -> str:
    """Text safe inside a Markdown table cell: no pipe, no line break."""
    return fmt(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def evidence_text(evidence: object, limit: int = 600) -> str:
    """A check's evidence as text a person reads: ``key: value; key: a, b`` with lists
    cut to their first items, examples by their own message; never a JSON dump (the data
    itself stays in summary.json)."""
    text = _words(evidence)
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _words(value: object, depth: int = 0) -> str:
    if isinstance(value, dict):
        if depth and ("message" in value or "text" in value):
            return str(value.get("message") or value.get("text"))
        parts = [f"{key.replace('_', ' ')}: {_words(item, depth + 1)}"
                 for key, item in value.items() if item not in (None, [], {}, "")]
        inner = "; ".join(parts) if depth == 0 else ", ".join(parts)
        return inner if depth == 0 or not inner else f"({inner})"
    if isinstance(value, (list, tuple)):
        shown = [_words(item, depth + 1) for item in value[:LIST_ITEMS]]
        more = len(value) - len(shown)
        return ", ".join(shown) + (f" … and {more} more" if more > 0 else "") if shown \
            else "none"
    if value is None:
        return "none"
    return fmt(value)


@functools.cache
def environment(autoescape: bool) -> jinja2.Environment:
    """The templates' environment, with the filters above (``h``: escaped for HTML inside
    Markdown)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=autoescape,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(fmt=fmt, pct=pct, cell=cell, evidence=evidence_text, replicas=replicas_word,
                       h=lambda v: html.escape(fmt(v), quote=False))
    return env
