"""The page's own endpoints (/web/*) answer only the page: same origin, its content type.

A form on another site can make a visitor's browser post `text/plain`, urlencoded or multipart
bodies to any address without asking (no CORS preflight), and the answer would be logged with
source `web`, changing what `hhforecast monitor` reports. The page posts JSON or CSV with
`fetch`, which browsers send with an `Origin` header naming the page's own host (and, in recent
browsers, `Sec-Fetch-Site: same-origin`). Clients that are not browsers (curl, scripts) send
neither header and are let through: they could post to /api/predict anyway.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request

from hhforecast.serving.validation import InvalidRequest

__all__ = ["check_page_post"]


def check_page_post(request: Request, media_type: str) -> None:
    """Refuse a post from another site (403) or with another content type than `media_type`
    (415), with a JSON error body naming the header."""
    headers = request.headers
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() != "same-origin":
        raise InvalidRequest(
            "Sec-Fetch-Site",
            "same_origin",
            f"{request.url.path} answers only the page served here; the browser says this "
            f"request comes from elsewhere (Sec-Fetch-Site: {fetch_site}): use /api/predict",
            403,
        )
    origin = headers.get("origin")
    if origin is not None and not _same_host(origin, headers.get("host", "")):
        raise InvalidRequest(
            "Origin",
            "same_origin",
            f"{request.url.path} answers only the page served here, not a page of "
            f"{origin[:80]!r}: use /api/predict",
            403,
        )
    given = headers.get("content-type", "").split(";")[0].strip().lower()
    if given != media_type:
        raise InvalidRequest(
            "Content-Type",
            "media_type",
            f"{request.url.path} takes a {media_type} body (Content-Type: {media_type}), "
            f"got {given[:60] or 'no Content-Type'}",
            415,
        )


def _same_host(origin: str, host: str) -> bool:
    """Whether `origin` (scheme://host[:port]) names the host the request was sent to.

    The scheme is not compared: behind a proxy that terminates TLS the page is https while
    the server sees http. An opaque origin ("null": sandboxed frames, files) is never ours.
    """
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return bool(netloc) and bool(host) and netloc.lower() == host.strip().lower()
