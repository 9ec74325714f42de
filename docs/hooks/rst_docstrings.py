"""A Griffe extension for the API pages: the reStructuredText that rtexport's docstrings use, as Markdown.

The docstrings are read in the code and by Sphinx-aware editors, so they keep their roles (:mod:`~rtexport.errors`)
and literal blocks (a paragraph ending in ``::``). mkdocstrings renders Markdown: a role becomes inline code of the
name it shows (the last component with ``~``, the whole path without), and ``::`` introduces the indented block
that follows, as Markdown's own indented code block does.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:mod|func|class|meth|attr|data|exc|obj|const|ref):`(~?)([^`<>]+?)(?:\(\))?`")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def markdown(text: str) -> str:
    """``text`` (a docstring) with its roles as inline code and its ``::`` markers as plain colons."""
    text = _ROLE.sub(_role, text)
    text = re.sub(r"(?m)^[ \t]*::[ \t]*$\n?", "", text)  # "::" alone on its line: the block follows
    return re.sub(r"(?m)(\S)::[ \t]*$", r"\1:", text)  # "text::" ends its paragraph with one colon


class RstDocstrings(griffe.Extension):
    """Rewrite every docstring as it is loaded."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
