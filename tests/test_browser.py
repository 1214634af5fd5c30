"""The web client in a real browser: Debian's Chromium, headless, driven by Playwright.

Two browser contexts are two people (each its own sessionStorage and cookies). They register,
make a room and chat through the page as a person would: typing into the inputs, clicking the
buttons, reading what is shown. A dropped socket is simulated with Playwright's WebSocket
routing, which sits between the page and the server and can close the page's socket, and
refuse the reconnects for a while, without the page knowing.

Skipped with a clear reason where there is no Chromium at CHROMIUM (`apt-get install
chromium`; .ci/run does it) or no playwright package (the `test` extra). Playwright's own
browser downloads are never used. The conversation's screenshot is saved to ARTIFACTS.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from echat.testing import TestServer, run_in_thread

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync",
                 "--disable-dev-shm-usage"]
TIMEOUT_MS = 10_000  # generous: two shared cores and a browser

if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM}: the browser tests need Debian's chromium package "
                "(apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the playwright package (echat's test extra) is missing")
expect = sync_api.expect
expect.set_options(timeout=TIMEOUT_MS)
Page = sync_api.Page
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def chat_server() -> Iterator[TestServer]:
    with run_in_thread() as server:
        yield server


@pytest.fixture
def person(browser, chat_server):
    """`person()` opens the client in a new browser context (a person of their own); the
    page records dialogs and console errors, which no test expects."""
    contexts = []

    def open_page() -> Page:
        context = browser.new_context(viewport={"width": 1000, "height": 640})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.troubles = []
        page.on("dialog", lambda dialog: page.troubles.append(f"dialog: {dialog.message}"))
        page.on("console", lambda message: message.type == "error"
                and page.troubles.append(f"console: {message.text}"))
        page.on("pageerror", lambda error: page.troubles.append(f"page error: {error}"))
        return page

    yield open_page
    for context in contexts:
        context.close()


def enter(page: Page, url: str, login: str, button: str = "#register-button") -> None:
    """Open the client and register (or with `#login-button`, log in) as `login`."""
    page.goto(url)
    page.fill("#login-name", login)
    page.fill("#login-password", "secret")
    page.click(button)
    expect(page.locator("#me")).to_have_text(login)


def start_chat_with(page: Page, login: str) -> None:
    page.fill("#search-input", login[:3])
    page.get_by_role("button", name=f"+ {login}").click()
    page.click("#create-room-button")
    expect(page.locator("#room-name")).to_have_text(login)
    expect(page.locator("#connection-state")).to_have_text("live")


def say(page: Page, text: str) -> None:
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")


def edit(page: Page, old: str, new: str) -> None:
    page.locator("#messages .message.mine", has_text=old).get_by_role("button", name="Edit").click()
    page.fill(".edit-input", new)
    page.press(".edit-input", "Enter")
    expect(page.locator("#messages .message.mine", has_text=new)).to_have_count(1)


def delete(page: Page, text: str) -> None:
    message = page.locator("#messages .message.mine", has_text=text)
    message.get_by_role("button", name="Delete").click()
    message.get_by_role("button", name="Delete?").click()
    expect(message).to_have_count(0)


def texts(page: Page) -> list[str]:
    return page.locator("#messages .message .text").all_text_contents()


def no_troubles(*pages: Page) -> None:
    # Network errors are expected (the client asks for the feed and read markers, which
    # servers without them answer 404; a cut socket fails); anything else is a bug, a
    # Content-Security-Policy violation above all.
    for page in pages:
        assert [t for t in page.troubles
                if "Failed to load resource" not in t and "WebSocket connection" not in t] == []


def test_two_people_make_a_room_and_chat_both_ways(person, chat_server):
    alice, bob = person(), person()
    enter(alice, chat_server.url, "Алиса")
    enter(bob, chat_server.url, "Bob")
    start_chat_with(alice, "Bob")
    start_chat_with(bob, "Алиса")  # the same two people: the same room

    say(alice, "Привет, Bob 👋")
    expect(bob.locator("#messages .text")).to_have_text(["Привет, Bob 👋"])
    say(bob, "Hi Алиса!\nHow are you?")
    expect(alice.locator("#messages .text")).to_have_text(
        ["Привет, Bob 👋", "Hi Алиса!\nHow are you?"])

    say(bob, XSS)
    expect(alice.locator("#messages .text").last).to_have_text(XSS)
    assert alice.locator("#messages img").count() == 0

    bob.fill("#message-input", "typing away")
    expect(alice.locator("#typing")).to_have_text("Bob is typing…")
    expect(alice.locator("#room-members .member.online")).to_have_text(["Алиса", "Bob"])

    say(alice, "a typo hree")
    edit(alice, "a typo hree", "fixed: here")
    expect(bob.locator("#messages .text").last).to_have_text("fixed: here")
    expect(bob.locator("#messages .message").last.locator(".edited")).to_have_text("edited")
    say(alice, "delete me")
    expect(bob.locator("#messages .text").last).to_have_text("delete me")
    delete(alice, "delete me")
    expect(bob.locator("#messages .text")).to_have_count(4)
    assert "delete me" not in texts(bob)

    ARTIFACTS.mkdir(exist_ok=True)
    alice.screenshot(path=str(ARTIFACTS / "conversation.png"))

    # A reload keeps the session and the room's history.
    alice.reload()
    expect(alice.locator("#messages .text")).to_have_text(
        ["Привет, Bob 👋", "Hi Алиса!\nHow are you?", XSS, "fixed: here"])
    # Logging out forgets the session: a reload shows the login form.
    alice.click("#logout-button")
    expect(alice.locator("#login-form")).to_be_visible()
    assert alice.evaluate("Object.keys(sessionStorage)") == []
    alice.reload()
    expect(alice.locator("#login-form")).to_be_visible()
    no_troubles(alice, bob)


def test_a_dropped_socket_reconnects_and_catches_up(person, chat_server):
    with httpx.Client(base_url=chat_server.url) as http:
        for login in ("ann", "ben"):
            http.post("/v1/register", json={"login": login, "password": "secret"})
    ann, ben = person(), person()
    # Ann's room socket goes through a relay the test can cut, and keep cut for a while.
    relays = []
    cut = {"now": False}

    def relay(ws) -> None:
        if cut["now"]:
            ws.close()
            return
        ws.connect_to_server()
        relays.append(ws)

    ann.route_web_socket(re.compile(r"/chat\?"), relay)
    enter(ann, chat_server.url, "ann", "#login-button")
    enter(ben, chat_server.url, "ben", "#login-button")
    start_chat_with(ann, "ben")
    start_chat_with(ben, "ann")
    say(ben, "one")
    say(ben, "doomed")
    expect(ann.locator("#messages .text")).to_have_text(["one", "doomed"])

    cut["now"] = True
    relays[-1].close()
    expect(ann.locator("#connection-state")).not_to_have_text("live")
    say(ben, "two")
    say(ben, "three")
    say(ann, "sent while offline")
    expect(ann.locator("#pending-messages .text")).to_have_text(["sent while offline"])
    # Ben changes what Ann has already seen: she learns of it from the history, not live.
    edit(ben, "one", "one, edited")
    delete(ben, "doomed")
    expect(ben.locator("#messages .text")).to_have_text(["one, edited", "two", "three"])

    cut["now"] = False
    # The reconnect waits out its backoff (at most 10 s after the last failed attempt).
    expect(ann.locator("#connection-state")).to_have_text("live", timeout=30_000)
    expect(ben.locator("#messages .text")).to_have_text(
        ["one, edited", "two", "three", "sent while offline"])
    say(ben, "four")
    expected = ["one, edited", "two", "three", "sent while offline", "four"]
    expect(ann.locator("#messages .text")).to_have_text(expected)
    expect(ann.locator("#pending-messages .message")).to_have_count(0)
    assert len(relays) >= 2
    no_troubles(ann, ben)


def test_scrolling_up_loads_older_messages(person, chat_server):
    with httpx.Client(base_url=chat_server.url) as http:
        sessions = [http.post("/v1/register", json={"login": login, "password": "secret"})
                    .json()["session_id"] for login in ("kim", "lee")]
        lee = http.get("/v1/info", headers={"X-Session-Id": sessions[1]}).json()["id"]
        room = http.post("/v1/rooms", json={"users": [{"id": lee}]},
                         headers={"X-Session-Id": sessions[0]}).json()["id"]
    history = [f"message {n}" for n in range(1, 121)]
    trio.run(post_all, f"{chat_server.ws_url}/v1/rooms/{room}/chat?session_id={sessions[0]}",
             history)
    page = person()
    enter(page, chat_server.url, "lee", "#login-button")
    page.get_by_role("button", name="kim").click()
    expect(page.locator("#messages .text")).to_have_count(50)
    expect(page.locator("#messages .text").last).to_have_text("message 120")
    page.click("#older-button")
    expect(page.locator("#messages .text")).to_have_count(100)
    page.locator("#scroller").evaluate("scroller => { scroller.scrollTop = 0; }")
    expect(page.locator("#messages .text")).to_have_count(120)
    assert texts(page) == history
    expect(page.locator("#older-button")).to_be_hidden()
    no_troubles(page)


async def post_all(url: str, texts: list[str]) -> None:
    async with open_websocket_url(url) as ws:
        for n, text in enumerate(texts):
            await ws.send_message(json.dumps({"text": text, "nonce": str(n)}))
        for _ in texts:
            await ws.get_message()  # the acks: every message is stored


def test_the_page_refuses_inline_script(person, chat_server):
    """Defence in depth: even markup that reached the page could not run script."""
    page = person()
    page.goto(chat_server.url)
    page.evaluate("""document.body.insertAdjacentHTML(
        "beforeend", '<img src="data:," onload="window.ran = 1"><b onclick="window.ran = 2">')""")
    page.evaluate("document.querySelector('b').click()")
    assert page.evaluate("window.ran === undefined")
    assert any("Content Security Policy" in trouble for trouble in page.troubles)


def test_the_rooms_list_shows_unread_counts(person, chat_server):
    cat, dan, eve = person(), person(), person()
    enter(cat, chat_server.url, "cat")
    enter(dan, chat_server.url, "dan")
    enter(eve, chat_server.url, "eve")
    start_chat_with(dan, "cat")
    start_chat_with(eve, "cat")
    start_chat_with(cat, "dan")  # cat reads the room with dan; the one with eve is elsewhere
    say(eve, "are you there?")
    say(eve, "hello?")
    eve_room = cat.locator(".room-button", has_text="eve")
    expect(eve_room.locator(".unread")).to_have_text("2", timeout=30_000)
    eve_room.click()
    expect(cat.locator("#messages .text")).to_have_text(["are you there?", "hello?"])
    expect(eve_room.locator(".unread")).to_have_count(0)
    no_troubles(cat, dan, eve)
