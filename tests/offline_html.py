"""What makes an HTML report fail to read offline: anything it would fetch from the network.

The lab template's style sheets carry a few URLs in comments (colour palette credits); they are
not fetched, so comments are left out before looking.
"""

from __future__ import annotations

import re

COMMENTS = re.compile(r"/\*.*?\*/|<!--.*?-->", re.DOTALL)
CDN_HOSTS = re.compile(
    r"cdnjs\.cloudflare\.com|unpkg\.com|jsdelivr\.net|googleapis\.com|cdn\.mathjax\.org"
    r"|\bcdn\.[a-z0-9-]+\.[a-z]+",
    re.IGNORECASE,
)
FETCHED = re.compile(
    r"<(?:script|img|iframe|source|embed)\b[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//"
    r"|<link\b[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//"
    r"|url\(\s*[\"']?(?:https?:)?//"
    r"|@import\s+[\"']?(?:url\()?[\"']?(?:https?:)?//"
    r"|\bimport\s*\(?\s*[\"'](?:https?:)?//"
    r"|\bsrc\s*=\s*'(?:https?:)?//",
    re.IGNORECASE,
)
WIDGET_PLACEHOLDER = "application/vnd.jupyter.widget-view+json"


def network_references(html: str) -> list[str]:
    """The places where the page names a CDN or fetches anything from the network, each with
    a little context; empty for a page that reads offline."""
    text = COMMENTS.sub("", html)
    found = []
    for pattern in (CDN_HOSTS, FETCHED):
        for match in pattern.finditer(text):
            found.append(text[max(match.start() - 40, 0) : match.end() + 60])
    return found
