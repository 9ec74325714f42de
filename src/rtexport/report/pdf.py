"""Render a :class:`~rtexport.report.content.ReportContent` to HTML (Jinja) and to PDF (WeasyPrint).

WeasyPrint was chosen over ReportLab because it lays out the same kind of Jinja template and SVG the web page
uses, with CSS paged media for the running header and "page x of n", and gives the same bytes for the same
input (fixed creation date, content-derived file identifier).
"""

from __future__ import annotations

import base64
from datetime import UTC
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from rtexport import __version__
from rtexport.model.display import dicom_date, local_time, person
from rtexport.report.content import ReportContent

TEMPLATES = Path(__file__).parent / "templates"


def _png(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(person=person, local=local_time, dicom_date=dicom_date, png=_png, svg=Markup)
    return env


def render_html(content: ReportContent) -> str:
    created = content.as_of.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _environment().get_template("report.html").render(c=content, created=created, version=__version__)


def render_pdf(content: ReportContent) -> bytes:
    """The report as PDF bytes; equal content gives equal bytes."""
    import weasyprint  # 0.5 s of imports: only when a report is made

    html = weasyprint.HTML(string=render_html(content), base_url=str(TEMPLATES))
    pdf: bytes = html.write_pdf(pdf_identifier=True)
    return pdf
