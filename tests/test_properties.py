"""Property-based tests (hypothesis) of everything a client may send: socket frames, request
bodies, query parameters and headers. Arbitrary JSON, wrong types, huge numbers, deep nesting,
invalid UTF-8, NUL bytes and very long strings never cause a 500 or close a socket, every
refusal is the contract's error, and nothing is stored that should not be.

One server (in a thread) serves every example of a module; each example checks only what it
did itself (messages after the last id it saw, users counted before and after).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from trio_websocket import open_websocket_url

from echat.testing import TestServer, run_in_thread
from helpers import open_raw_socket, receive_json

MAX_TEXT = 4000
FRAME_CODES = {"invalid_json", "empty_text", "text_too_long"}

SETTINGS = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])


@dataclass(frozen=True)
class World:
    server: TestServer
    session: str
    room: int


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with run_in_thread(ws_rate=0) as server, httpx.Client(base_url=server.url) as http:
        session = http.post("/v1/register", json={"login": "prop", "password": "pw"}).json()
        session = session["session_id"]
        room = http.post("/v1/rooms", json={"users": []},
                         headers={"X-Session-Id": session}).json()["id"]
        yield World(server, session, room)


# -- strategies ---------------------------------------------------------------------------------

# Text without lone surrogates (they cannot be sent as UTF-8), NUL and control characters included.
texts = st.text(st.characters(codec="utf-8"), max_size=50)
long_texts = st.builds(lambda ch, n: ch * n, st.characters(codec="utf-8"),
                       st.integers(MAX_TEXT - 2, MAX_TEXT + 2))
huge_numbers = st.sampled_from([10**400, -(10**400), 2**63, 2**64, 1e308, -1e308, 0.5, -0.0])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | huge_numbers | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
not_strings = json_values.filter(lambda value: not isinstance(value, str))
# Keys other than the ones a message frame reads ("type" would make it an event frame).
extra_fields = st.dictionaries(texts.filter(lambda key: key not in ("text", "nonce", "type")),
                               json_values, max_size=3)


@dataclass(frozen=True)
class Frame:
    """A frame to send and the answer the contract requires: an error code, or "stored".

    A message (`data` a dict) is sent with a fresh nonce, so that every one is answered and no
    two examples share a nonce (a repeated one is not stored again)."""

    data: str | bytes | dict
    expect: str
    text: str | None = None

    def wire(self) -> str | bytes:
        if isinstance(self.data, dict):
            return json.dumps({**self.data, "nonce": str(uuid.uuid4())}, ensure_ascii=False)
        return self.data


def message_frame(text: str, extra: dict[str, Any]) -> Frame:
    body = {**extra, "text": text}
    if not text.strip():
        return Frame(body, "empty_text")
    if len(text) > MAX_TEXT:
        return Frame(body, "text_too_long")
    return Frame(body, "stored", text)


def raw_frame(data: str | bytes) -> Frame:
    return Frame(data, "invalid_json")


def not_an_object(text: str) -> bool:
    try:
        return not isinstance(json.loads(text), dict)
    except ValueError:
        return True


frames = st.one_of(
    st.builds(message_frame, texts | long_texts, extra_fields),
    # Not an object at all.
    json_values.filter(lambda v: not isinstance(v, dict)).map(lambda v: raw_frame(json.dumps(v))),
    # An object whose text is missing or not a string.
    st.builds(lambda extra: raw_frame(json.dumps(extra)), extra_fields),
    st.builds(lambda text, extra: raw_frame(json.dumps({**extra, "text": text})),
              not_strings, extra_fields),
    # A bad nonce on an otherwise good message (null is no nonce, and is fine).
    st.builds(lambda nonce: raw_frame(json.dumps({"text": "hi", "nonce": nonce})),
              not_strings.filter(lambda v: v is not None) | st.just("") | st.just("n" * 65)),
    # Any text (raw NUL and control characters included) that is not a JSON object.
    texts.filter(not_an_object).map(raw_frame),
    # Not JSON: binary frames, JSON cut short, deep nesting, a lone surrogate, huge literals.
    st.binary(max_size=100).map(raw_frame),
    st.builds(lambda v, cut: raw_frame(json.dumps({"text": v})[:cut]), texts, st.integers(1, 8)),
    # Nested deeper than the parser goes (within the 64 KiB frame limit).
    st.integers(1000, 30_000).map(lambda n: raw_frame("[" * n + "]" * n)),
    st.integers(1000, 30_000).map(lambda n: raw_frame('{"text": ' + "[" * n + "]" * n + "}")),
    st.just(raw_frame('{"text": "\\ud800"}')),
    st.just(raw_frame('{"text": "a", "n": ' + "9" * 5000 + "}")),
    st.just(raw_frame('{"text": "a\\u0000"')),
)


# -- the room socket ----------------------------------------------------------------------------


def history_after(world: World, after: int) -> list[dict]:
    response = httpx.get(f"{world.server.url}/v1/rooms/{world.room}/messages",
                         params={"after": after, "limit": 500},
                         headers={"X-Session-Id": world.session})
    assert response.status_code == 200
    return response.json()


def last_id(world: World) -> int:
    response = httpx.get(f"{world.server.url}/v1/rooms/{world.room}/messages",
                         params={"limit": 1}, headers={"X-Session-Id": world.session})
    return max([m["id"] for m in response.json()], default=0)


@given(sent=st.lists(frames, min_size=1, max_size=8))
@SETTINGS
async def test_every_frame_gets_its_answer_and_the_socket_stays_open(world, sent):
    before = last_id(world)
    url = f"{world.server.ws_url}/v1/rooms/{world.room}/chat?session_id={world.session}"
    async with open_websocket_url(url, max_message_size=2**20) as ws:
        for frame in sent:
            await ws.send_message(frame.wire())
            note(repr(frame)[:300])
            answer = await receive_json(ws)
            if frame.expect == "stored":
                assert set(answer) == {"ack", "id", "created_at"}, (frame, answer)
            else:
                assert set(answer) == {"error"}, (frame, answer)
                assert answer["error"]["code"] == frame.expect, (frame, answer)
        probe = str(uuid.uuid4())
        await ws.send_message(json.dumps({"text": "still open", "nonce": probe}))
        assert (await receive_json(ws))["ack"] == probe
    stored = [m["text"] for m in history_after(world, before)]
    assert stored == [f.text for f in sent if f.expect == "stored"] + ["still open"]


# -- request bodies -----------------------------------------------------------------------------

bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.builds(lambda login, password: json.dumps({"login": login, "password": password}).encode(),
              json_values, json_values),
    st.integers(1000, 30_000).map(lambda n: b"[" * n + b"]" * n),
    st.just(b'{"login": "a\xff\xfe", "password": "pw"}'),
    st.just(b'{"login": "\\ud800x", "password": "pw"}'),
    st.just(b'{"users": [{"id": ' + b"9" * 5000 + b"}]}"),
)


def status_counts(world: World) -> dict[str, int]:
    return httpx.get(world.server.url + "/v1/status").json()


def assert_error_shape(response: httpx.Response, allowed: set[str]) -> None:
    assert response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] in allowed, (response.status_code, body)


@given(body=bodies)
@SETTINGS
def test_any_body_to_register_is_a_user_or_a_contract_error(world, body):
    users = status_counts(world)["users"]
    response = httpx.post(world.server.url + "/v1/register", content=body)
    if response.status_code == 200:
        created = json.loads(body)["login"].strip()
        info = httpx.get(world.server.url + "/v1/info",
                         headers={"X-Session-Id": response.json()["session_id"]}).json()
        assert info["login"] == created
        assert status_counts(world)["users"] == users + 1
    else:
        assert_error_shape(response, {"invalid_json", "invalid_login", "invalid_password",
                                      "user_already_exists"})
        assert status_counts(world)["users"] == users


@given(body=bodies, target=st.sampled_from([("POST", "/v1/login"), ("POST", "/v1/rooms"),
                                            ("PUT", "/v1/rooms/{room}")]))
@SETTINGS
def test_any_body_elsewhere_is_answered_without_a_server_error(world, body, target):
    method, path = target
    before = status_counts(world)
    response = httpx.request(method, world.server.url + path.format(room=world.room),
                             content=body, headers={"X-Session-Id": world.session})
    if response.status_code != 200:
        assert_error_shape(response, {"invalid_json", "user_not_found", "wrong_credentials",
                                      "too_many_requests", "room_not_found"})
        after = status_counts(world)
        assert (after["rooms"], after["sessions"]) == (before["rooms"], before["sessions"])


# -- query parameters and headers ---------------------------------------------------------------

query_values = st.one_of(
    texts, st.integers().map(str), huge_numbers.map(str),
    st.sampled_from(["", "0", "1", "500", "501", "-1", "1.5", "١٢", "1e3", "0x10", " 5",
                     "9" * 30, "5\x00", "%00"]),
)


@given(params=st.dictionaries(st.sampled_from(["limit", "before", "after", "q"]), query_values))
@SETTINGS
def test_any_history_query_is_a_page_or_invalid_json(world, params):
    response = httpx.get(f"{world.server.url}/v1/rooms/{world.room}/messages", params=params,
                         headers={"X-Session-Id": world.session})
    valid = all(name == "q" or (value.isascii() and value.isdigit() and len(value) <= 19)
                for name, value in params.items())
    limit = params.get("limit", "50")
    valid = valid and (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= 500)
    for bound in ("before", "after"):
        valid = valid and (bound not in params or int(params[bound]) < 2**63)
    if valid:
        assert response.status_code == 200 and len(response.json()) <= int(limit)
    else:
        assert_error_shape(response, {"invalid_json"})
        assert response.status_code == 422


@given(params=st.dictionaries(st.sampled_from(["limit", "q"]), query_values))
@SETTINGS
def test_any_user_search_is_a_list_or_invalid_json(world, params):
    response = httpx.get(f"{world.server.url}/v1/users", params=params,
                         headers={"X-Session-Id": world.session})
    if response.status_code == 200:
        assert isinstance(response.json(), list)
    else:
        assert_error_shape(response, {"invalid_json"})


def header_value(raw: bytes) -> bytes:
    """Any octets HTTP allows in a header value (no control characters, no outer spaces)."""
    return bytes(c for c in raw if c >= 0x20 and c != 0x7F).strip(b" ")


header_values = st.one_of(
    st.binary(max_size=80).map(header_value),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=80).map(
        lambda s: header_value(s.encode("latin-1"))),
    st.sampled_from([b"Bearer " + b"a" * 5000, b"Bearer  " + b"0" * 40, b"bearer\t" + b"0" * 40]),
)


@given(name=st.sampled_from(["X-Session-Id", "Authorization"]), value=header_values)
@SETTINGS
def test_any_session_header_but_a_real_one_is_401(world, name, value):
    response = httpx.get(world.server.url + "/v1/info", headers={name: value})
    assert response.status_code == 401
    assert response.json() == {"error": {"code": "unauthorized"}}


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """One client frame, built by hand: wsproto refuses to send a text frame that is not UTF-8."""
    mask = bytes([0x5A, 0xA5, 0x3C, 0xC3])
    assert len(payload) < 126
    return (bytes([0x80 | opcode, 0x80 | len(payload)]) + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


async def test_invalid_utf8_is_invalid_json_in_a_binary_frame_and_fails_a_text_frame(world):
    """Binary frames are the application's to refuse; a text frame that is not UTF-8 breaks the
    WebSocket protocol itself, and RFC 6455 (8.1) requires failing the connection: hypercorn
    drops it. Nothing is stored either way, and the server lets the connection go."""
    before = last_id(world)
    target = f"/v1/rooms/{world.room}/chat?session_id={world.session}"
    stream, client, _ = await open_raw_socket(world.server, target)
    await stream.send_all(masked_frame(0x2, b'{"text": "\xff\xfe"}'))
    with trio.fail_after(5):
        answers: list = []
        while not answers:
            client.receive_data(await stream.receive_some())
            answers.extend(client.events())
    assert json.loads(answers[0].data)["error"]["code"] == "invalid_json"
    await stream.send_all(masked_frame(0x1, b'{"text": "\xff\xfe"}'))
    with trio.fail_after(5):
        while await stream.receive_some():
            pass
    await stream.aclose()
    assert history_after(world, before) == []
