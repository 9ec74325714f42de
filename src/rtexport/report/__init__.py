"""The plan report as a PDF: a Jinja template rendered to paged media by WeasyPrint (selectable text, the page's
own SVG and PNG pictures, a running header with the patient on every page, "page x of n")."""

from rtexport.report.content import BeamRow, ExportRow, ReportContent, SliceImage
from rtexport.report.pdf import render_html, render_pdf

__all__ = ["BeamRow", "ExportRow", "ReportContent", "SliceImage", "render_html", "render_pdf"]
