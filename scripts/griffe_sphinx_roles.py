"""A griffe extension for the documentation site (mkdocs.yml loads it): the docstrings are written with Sphinx's
reStructuredText roles (``:class:`~metricloss.Report` ``, ``:math:`x` ``, ``.. math::`` blocks, ````code````),
which mkdocstrings would print as they are. Each is rewritten to Markdown before rendering: roles to inline code
(the last name of the path when it starts with ``~``), ``:math:`` to ``$...$`` and ``.. math::`` blocks to ``$$``
blocks (pymdownx.arithmatex), double backticks to single ones. The source keeps its roles, so ``help()`` and IDEs
read them as before.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj|py:\w+):`~?([^`]+)`")
MATH_ROLE = re.compile(r":math:`([^`]+)`")
DOUBLE = re.compile(r"``([^`]+?)``")
DIRECTIVE = re.compile(r"^(\s*)\.\. math::\s*(.*)$")


def _role(match: re.Match[str]) -> str:
    text = match.group(0)
    path = match.group(1)
    return f"`{path.rsplit('.', 1)[-1]}`" if "`~" in text else f"`{path}`"


def _math_blocks(text: str) -> str:
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        found = DIRECTIVE.match(lines[i])
        if not found:
            out.append(lines[i])
            i += 1
            continue
        indent, body = found.group(1), [found.group(2)] if found.group(2).strip() else []
        i += 1
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
            body.append(lines[i].strip())
            i += 1
        while body and not body[-1]:
            body.pop()
        out += ["", f"{indent}$$", *(f"{indent}{line}" for line in body if line), f"{indent}$$", ""]
    return "\n".join(out)


def markdown(text: str) -> str:
    """The docstring ``text`` with its reStructuredText roles and math rewritten as Markdown.

    Example:
        >>> markdown("See :class:`~metricloss.Report` and :math:`x^2`, ``code``.")
        'See `Report` and $x^2$, `code`.'
    """
    text = _math_blocks(text)
    text = MATH_ROLE.sub(lambda m: f"${m.group(1)}$", text)
    text = ROLE.sub(_role, text)
    return DOUBLE.sub(r"`\1`", text)


class SphinxRoles(griffe.Extension):
    """Rewrites every docstring with :func:`markdown` once the object tree is built."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
