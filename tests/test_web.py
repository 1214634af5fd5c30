"""The web client's files as the server sends them: headers that keep the page safe and fresh.

What the client does in a browser is tested in test_browser.py.
"""

from __future__ import annotations

import re
from importlib import resources

import pytest

from echat.web import CONTENT_SECURITY_POLICY


def policy(reply) -> dict[str, str]:
    directives = (part.strip().split(" ", 1) for part in
                  reply.headers["Content-Security-Policy"].split(";"))
    return {name: value for name, value in directives}


async def test_the_page_forbids_inline_script_and_foreign_sources(http):
    reply = await http.get("/")
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
    rules = policy(reply)
    assert rules["default-src"] == "'none'"
    assert rules["script-src"] == "'self'"
    assert rules["connect-src"] == "'self'"
    assert rules["frame-ancestors"] == "'none'"
    assert "unsafe" not in reply.headers["Content-Security-Policy"]
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    # Nothing the policy would refuse: every script is a file of this origin, no handlers in
    # attributes, no style attributes, nothing from another host.
    page = reply.text
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/app.js" defer>']
    assert not re.search(r"\son[a-z]+=|\sstyle=|https?://", page)


@pytest.mark.parametrize("name, content_type", [
    ("app.js", "text/javascript; charset=utf-8"), ("style.css", "text/css; charset=utf-8")])
async def test_the_files_are_served_from_the_package(http, name, content_type):
    reply = await http.get(f"/static/{name}")
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == content_type
    assert reply.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert reply.content == resources.files("echat").joinpath("static", name).read_bytes()


async def test_browsers_revalidate_and_get_304_while_unchanged(http):
    first = await http.get("/static/app.js")
    assert first.headers["Cache-Control"] == "no-cache"
    again = await http.get("/static/app.js", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.content == b""
    stale = await http.get("/static/app.js", headers={"If-None-Match": '"something-else"'})
    assert stale.status_code == 200 and stale.content == first.content


def test_the_client_never_writes_html():
    """Text from the server goes in as text: the script has no way in for markup at all."""
    script = resources.files("echat").joinpath("static", "app.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "localStorage"):
        assert sink not in script, sink
