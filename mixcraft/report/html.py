"""The HTML page of `stats --report`: one file, no external assets (plots are base64 data URIs),
rendered from `templates/report.html.j2` with autoescaping. Each plot sits in the section it
illustrates, under a heading that says what the reader learns there."""

from __future__ import annotations

from dataclasses import dataclass

import jinja2

from mixcraft.core import fmt
from mixcraft.report.rows import Summary

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("mixcraft.report", "templates"),
                          autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)

# Section headings, in page order (the template's `sections`).
SECTIONS = {"mixture": "How close the mixture came to its targets",
            "ledger": "Where every document went",
            "lengths": "How long the documents are",
            "rows": "How the rows are packed",
            "premixed": "One pre-mixed stream, in exact proportions",
            "prolong": "Training on it with ProLong's trainer"}


@dataclass(frozen=True)
class Plot:
    title: str  # what it shows, for people (the image's alt text), e.g. "Target vs actual mixture"
    data: str  # the PNG, base64


def render_html(s: Summary, plots: dict[str, Plot]) -> str:
    """`plots`: section key (SECTIONS) -> the plot shown in it."""
    return _ENV.get_template("report.html.j2").render(title=f"mixcraft report: {s.recipe.name}", s=s, fmt=fmt,
                                                      plots=plots, sections=SECTIONS)
