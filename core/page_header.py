"""The one header of every page for people: the landing page, the try-it page, the
reports index, the model cards and the drift reports, each linking the others.

The links are the front door's paths (gateway/nginx.conf), which `make serve` mirrors for
the embedded stack, so one header works on both.  The pages that are files, not code
(gateway/index.html, server/pages/try.html), hold a copy of `header_html()`'s output for
their page; tests/test_page_header.py checks that every copy is this one.
"""

from __future__ import annotations

import html

# (path, label, what it is): the order of the header's links.
PAGES: tuple[tuple[str, str, str], ...] = (
    ("/", "onebox", "every page and API of the stack"),
    ("/try", "Try the model", "one record or a CSV file, with the reasons behind each answer"),
    ("/reports/", "Reports and model cards", "drift and live quality per window, each "
     "version's card"),
    ("/mlflow/", "MLflow", "runs, registered models, aliases"),
)

HEADER_CSS = (
    ".onebox-nav{display:flex;flex-wrap:wrap;gap:.25rem 1.25rem;align-items:baseline;"
    "padding:.5rem 0;margin:0 0 1rem;border-bottom:1px solid #d0d7de;"
    "font:15px/1.4 system-ui,sans-serif}"
    ".onebox-nav a{color:#0969da;text-decoration:none}"
    ".onebox-nav a:hover{text-decoration:underline}"
    ".onebox-nav a[aria-current]{color:#1f2328;font-weight:600}"
    ".onebox-nav a:first-child{font-weight:700}")


def header_html(current: str | None = None) -> str:
    """The header's HTML, the page at path `current` marked as the one shown."""
    links = []
    for path, label, title in PAGES:
        mark = ' aria-current="page"' if path == current else ""
        links.append(f'<a href="{path}" title="{html.escape(title)}"{mark}>'
                     f"{html.escape(label)}</a>")
    return f'<nav class="onebox-nav" aria-label="onebox pages">{"".join(links)}</nav>'
