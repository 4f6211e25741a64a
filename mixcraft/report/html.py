"""The HTML page of `stats --report`: one file, no external assets (plots are base64 data URIs),
rendered from `templates/report.html.j2` with autoescaping."""

from __future__ import annotations

from dataclasses import dataclass

import jinja2

from mixcraft.core import fmt
from mixcraft.report.rows import Summary

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("mixcraft.report", "templates"),
                          autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)


@dataclass(frozen=True)
class Plot:
    title: str  # a section heading for people, e.g. "Target vs actual mixture"
    data: str  # the PNG, base64


def render_html(s: Summary, plots: list[Plot]) -> str:
    return _ENV.get_template("report.html.j2").render(title=f"mixcraft report: {s.recipe.name}", s=s, fmt=fmt,
                                                      plots=plots)
