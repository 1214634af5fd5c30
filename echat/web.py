"""The web client: `GET /` and its two files under `/static/`, shipped inside the package.

No build step and nothing from elsewhere: the page, its script and its style sheet are files
in `echat/static/`, read once and kept in memory. Every answer carries a Content-Security-Policy
that allows scripts, styles and connections from this origin only and no inline script at all,
so a message that smuggled markup into the page still could not run. Browsers revalidate the
files on every load (`no-cache` with an ETag), so an upgraded server is never shadowed by a
stale copy of its client.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from quart import Blueprint, Response, request

from echat.errors import NotFound

web = Blueprint("web", __name__)

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
CONTENT_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str  # unquoted


@cache
def static_file(name: str) -> StaticFile:
    body = resources.files("echat").joinpath("static", name).read_bytes()
    return StaticFile(body, CONTENT_TYPES[name], hashlib.sha256(body).hexdigest()[:32])


def answer(name: str) -> Response:
    found = static_file(name)
    headers = {**SECURITY_HEADERS, "ETag": f'"{found.etag}"'}
    if request.if_none_match.contains(found.etag):
        return Response(b"", status=304, headers=headers)
    return Response(found.body, headers=headers, content_type=found.content_type)


@web.get("/")
async def index() -> Response:
    return answer("index.html")


@web.get("/static/<name>")
async def asset(name: str) -> Response:
    if name == "index.html" or name not in CONTENT_TYPES:
        raise NotFound()
    return answer(name)
