"""The predictor's page for people (`GET /`): one HTML file with its style and script
inline, so it needs no asset from anywhere (no CDN) and works behind any path prefix.

Its Content-Security-Policy allows exactly that inline script and style (by their
SHA-256) and requests to the predictor itself: nothing else runs or loads.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

PAGES_DIR = Path(__file__).parent / "pages"


@dataclass(frozen=True)
class Page:
    html: str
    content_security_policy: str

    @classmethod
    def load(cls, name: str) -> Page:
        html = (PAGES_DIR / name).read_text(encoding="utf-8")
        scripts = " ".join(map(_source_hash, re.findall(r"<script>(.*?)</script>", html, re.S)))
        styles = " ".join(map(_source_hash, re.findall(r"<style>(.*?)</style>", html, re.S)))
        policy = (f"default-src 'none'; script-src {scripts}; style-src {styles}; "
                  "connect-src 'self'; img-src 'self' data:; form-action 'none'; "
                  "frame-ancestors 'none'; base-uri 'none'")
        return cls(html, policy)


def _source_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


TRY_PAGE = Page.load("try.html")
