"""MkDocs hook: render the Sphinx roles of the package's numpydoc docstrings.

The docstrings cross-reference with Sphinx roles (``:class:`~survbehrt.BEHRTPretrainer```,
``:func:`discretize```), which mkdocstrings does not interpret: they would show up
verbatim as ``:class:`` followed by the code. This hook rewrites each one in the
rendered HTML of a page into

- a link (an optional mkdocs-autorefs reference, resolved after all pages are
  rendered) when the target is in ``survbehrt`` — given in full, or as a bare name
  that matches exactly one object rendered on the same page;
- plain code otherwise (other libraries: no inventories are loaded, so that the build
  needs no network).

"Optional" references never fail the build: an unresolvable one renders as plain code.
A leading ``~`` shortens the title to the last component, as in Sphinx.
"""

from __future__ import annotations

import html
import re

ROLE = re.compile(
    r":(?:py:)?(?P<role>class|func|meth|mod|attr|data|exc|obj|const):"
    r"<code>(?P<tilde>~?)(?P<target>[A-Za-z_][\w.]*)(?P<call>\(\))?</code>"
)
ANCHOR = re.compile(r'id="(?P<id>survbehrt(?:\.\w+)+)"')


def on_page_content(html_text, page, config, files):  # noqa: ARG001 - MkDocs hook signature
    if ":<code>" not in html_text:
        return html_text
    anchors = {m["id"] for m in ANCHOR.finditer(html_text)}

    def replace(match):
        target = match["target"]
        title = target.rsplit(".", 1)[-1] if match["tilde"] else target
        if match["role"] in ("func", "meth"):
            title += "()"
        code = f"<code>{html.escape(title)}</code>"
        identifier = None
        if target.startswith("survbehrt."):
            identifier = target
        elif "." not in target:
            candidates = [a for a in anchors if a.endswith("." + target)]
            if len(candidates) == 1:
                identifier = candidates[0]
        if identifier is None:
            return code
        return f'<autoref identifier="{html.escape(identifier)}" optional>{code}</autoref>'

    return ROLE.sub(replace, html_text)
