"""The headers every answer of the API carries, chosen by path from precomputed lists (one
set lookup per request: the outermost middleware adds them, also to the answers given
before any route runs — 401, 413, 429 — and to the bare ``/predict`` endpoint's).

- ``X-Content-Type-Options: nosniff`` everywhere: a browser never guesses a script out of
  a JSON answer.
- ``Cache-Control: no-store`` on every answer but the docs' static assets: predictions change
  every night and are behind a key, so no browser or proxy keeps a copy.
- No framing (``X-Frame-Options: DENY``, CSP ``frame-ancestors 'none'``), and on data answers
  a policy that lets nothing run (``default-src 'none'``) should one be opened as a page.
  The docs pages send their own policy with the page (:mod:`nuru_yield.serving.docs`).
"""

from __future__ import annotations

from nuru_yield.serving.docs import ASSETS_URL, PAGES

Header = tuple[bytes, bytes]

NOSNIFF: Header = (b"x-content-type-options", b"nosniff")
NO_STORE: Header = (b"cache-control", b"no-store")
NO_FRAMING: Header = (b"x-frame-options", b"DENY")
NOTHING_RUNS: Header = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")

DATA_HEADERS: tuple[Header, ...] = (NOSNIFF, NO_STORE, NO_FRAMING, NOTHING_RUNS)
PAGE_HEADERS: tuple[Header, ...] = (NOSNIFF, NO_STORE, NO_FRAMING)
ASSET_HEADERS: tuple[Header, ...] = (NOSNIFF,)
_ASSETS_PREFIX = ASSETS_URL + "/"


def response_headers(path: str) -> tuple[Header, ...]:
    """The headers added to the answer for ``path``."""
    if path in PAGES:
        return PAGE_HEADERS
    if path.startswith(_ASSETS_PREFIX):
        return ASSET_HEADERS
    return DATA_HEADERS
