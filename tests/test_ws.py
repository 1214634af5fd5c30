"""WS /v1/rooms/{id}/chat against a real server, with trio-websocket clients."""

from __future__ import annotations

import json

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from echat.testing import serve
from helpers import auth, history, make_room, receive_json, register, send_json


def chat_url(server, room: int, session: str | None = None, **params: str) -> str:
    query = dict(params)
    if session is not None:
        query["session_id"] = session
    text = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{server.ws_url}/v1/rooms/{room}/chat" + (f"?{text}" if text else "")


async def expect_closed(ws, code: int, timeout: float = 5.0) -> None:
    """Read until the server closes the socket; it must close with `code`."""
    with trio.fail_after(timeout):
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.get_message()
    assert closed.value.reason.code == code


async def assert_silent(ws, seconds: float = 0.3) -> None:
    with trio.move_on_after(seconds):
        frame = await ws.get_message()
        pytest.fail(f"unexpected frame {frame}")


@pytest.fixture
async def pair(server, http):
    """Two users (sessions a, b) in one room."""
    a = await register(http, "Алиса")
    b = await register(http, "Боб")
    return a, b, await make_room(http, a, b)


# -- handshake ----------------------------------------------------------------------------


async def test_handshake_refusals_are_http_responses_with_the_error_body(server, http, pair):
    a, b, room = pair
    outsider = await register(http, "outsider")
    cases = [
        (chat_url(server, room), 401, "unauthorized"),
        (chat_url(server, room, "0" * 40), 401, "unauthorized"),
        (chat_url(server, room, "not-a-session"), 401, "unauthorized"),
        (chat_url(server, room, outsider), 422, "room_not_found"),
        (chat_url(server, 999_999, a), 422, "room_not_found"),
        (f"{server.ws_url}/v1/rooms/abc/chat?session_id={a}", 422, "room_not_found"),
    ]
    for url, status, code in cases:
        with pytest.raises(ConnectionRejected) as refused:
            async with open_websocket_url(url):
                pass
        assert refused.value.status_code == status, url
        assert json.loads(refused.value.body) == {"error": {"code": code}}, url


async def test_session_may_come_from_either_header(server, pair):
    a, b, room = pair
    for headers in ([("X-Session-Id", a)], [("Authorization", f"Bearer {a}")]):
        async with open_websocket_url(chat_url(server, room), extra_headers=headers) as ws:
            await send_json(ws, {"text": "hi", "nonce": "n"})
            assert (await receive_json(ws))["ack"] == "n"


async def test_other_websocket_paths_are_refused_with_not_found(server, pair):
    a, b, room = pair
    for path in (f"/v1/rooms/{room}/chat/extra", f"/v1/rooms/{room}/chatter", "/v1/chat"):
        with pytest.raises(ConnectionRejected) as refused:
            async with open_websocket_url(f"{server.ws_url}{path}?session_id={a}"):
                pass
        assert refused.value.status_code == 404, path
        assert json.loads(refused.value.body) == {"error": {"code": "not_found"}}, path


async def test_a_failure_in_the_handshake_is_logged_and_answered_500(server, pair, monkeypatch,
                                                                      caplog):
    a, b, room = pair

    async def broken(*args):
        raise RuntimeError("store bug")

    monkeypatch.setattr(server.app.store, "is_member", broken)
    with pytest.raises(ConnectionRejected) as refused:
        async with open_websocket_url(chat_url(server, room, a)):
            pass
    assert refused.value.status_code == 500
    assert json.loads(refused.value.body) == {"error": {"code": "internal_error"}}
    assert "room socket failed" in caplog.text and "store bug" in caplog.text


async def test_a_failure_after_accepting_closes_that_socket_with_1011(server, http, pair,
                                                                      monkeypatch, caplog):
    a, b, room = pair
    async with open_websocket_url(chat_url(server, room, a)) as broken_socket, \
            open_websocket_url(chat_url(server, room, b)) as neighbour:
        monkeypatch.setattr("echat.rooms_ws.parse_frame", lambda data, max_text: 1 / 0)
        await send_json(broken_socket, {"text": "boom"})
        await expect_closed(broken_socket, 1011)
        monkeypatch.undo()
        await send_json(neighbour, {"text": "still here", "nonce": "n"})
        assert (await receive_json(neighbour))["ack"] == "n"
    assert "room socket failed" in caplog.text and "ZeroDivisionError" in caplog.text
    assert [m["text"] for m in await history(http, a, room)] == ["still here"]


# -- delivery -----------------------------------------------------------------------------


async def test_message_goes_to_every_other_connection_not_back_to_sender(server, http, pair):
    a, b, room = pair
    a_id = (await http.get("/v1/info", headers=auth(a))).json()["id"]
    a_laptop = (await http.post("/v1/login", json={"login": "алиса", "password": "secret"})).json()["session_id"]
    async with open_websocket_url(chat_url(server, room, a)) as sender, \
            open_websocket_url(chat_url(server, room, a_laptop)) as same_user_other_device, \
            open_websocket_url(chat_url(server, room, b)) as other_user:
        await send_json(sender, {"text": "И тебе привет 🙂"})
        for receiver in (same_user_other_device, other_user):
            frame = await receive_json(receiver)
            assert frame == {
                "id": frame["id"], "text": "И тебе привет 🙂", "user_id": a_id,
                "room_id": room, "created_at": frame["created_at"],
            }
            assert len(frame["created_at"]) == 19 and frame["created_at"][10] == "T"
        await assert_silent(sender)
    assert [m["text"] for m in await history(http, b, room)] == ["И тебе привет 🙂"]


async def test_messages_do_not_leak_into_other_rooms(server, http, pair):
    a, b, room = pair
    c = await register(http, "Клара")
    other_room = await make_room(http, a, c)
    async with open_websocket_url(chat_url(server, room, a)) as sender, \
            open_websocket_url(chat_url(server, other_room, c)) as elsewhere:
        await send_json(sender, {"text": "only for room one", "nonce": "x"})
        await receive_json(sender)  # the ack: stored and published by now
        await assert_silent(elsewhere)


async def test_nonce_is_acked_and_a_resend_is_not_stored_twice(server, http, pair):
    a, b, room = pair
    async with open_websocket_url(chat_url(server, room, a)) as ws, \
            open_websocket_url(chat_url(server, room, b)) as receiver:
        await send_json(ws, {"text": "once", "nonce": "abc-1"})
        ack = await receive_json(ws)
        assert set(ack) == {"ack", "id", "created_at"} and ack["ack"] == "abc-1"
        assert (await receive_json(receiver))["id"] == ack["id"]
    # A client resending after a dropped connection gets the first ack again.
    async with open_websocket_url(chat_url(server, room, a)) as ws:
        await send_json(ws, {"text": "once", "nonce": "abc-1"})
        assert await receive_json(ws) == ack
    assert [m["id"] for m in await history(http, a, room)] == [ack["id"]]


@pytest.mark.parametrize("frame, code", [
    ("not json", "invalid_json"),
    ("[1, 2]", "invalid_json"),
    ('"text"', "invalid_json"),
    ("{}", "invalid_json"),
    ('{"text": 5}', "invalid_json"),
    ('{"text": null}', "invalid_json"),
    ('{"text": "ok", "nonce": 7}', "invalid_json"),
    ('{"text": "ok", "nonce": ""}', "invalid_json"),
    ('{"text": "ok", "nonce": "' + "n" * 65 + '"}', "invalid_json"),
    ('{"text": "\\ud800"}', "invalid_json"),
    ('{"text": ""}', "empty_text"),
    ('{"text": " \\n\\t\\u3000"}', "empty_text"),
    ('{"text": "' + "я" * 4001 + '"}', "text_too_long"),
])
async def test_bad_frames_get_an_error_and_the_socket_stays_open(server, http, pair, frame, code):
    a, b, room = pair
    async with open_websocket_url(chat_url(server, room, a)) as ws:
        await ws.send_message(frame)
        assert (await receive_json(ws))["error"]["code"] == code
        await send_json(ws, {"text": "я" * 4000, "nonce": "still-open"})
        assert (await receive_json(ws))["ack"] == "still-open"
    assert [len(m["text"]) for m in await history(http, a, room)] == [4000]


async def test_binary_frames_are_invalid_json(server, http, pair):
    a, b, room = pair
    async with open_websocket_url(chat_url(server, room, a)) as ws:
        await ws.send_message(b'{"text": "binary"}')
        assert (await receive_json(ws))["error"]["code"] == "invalid_json"
    assert await history(http, a, room) == []


# -- order --------------------------------------------------------------------------------


async def test_every_receiver_sees_one_order_the_history_order(server, http):
    senders = [await register(http, f"sender{i}") for i in range(4)]
    watchers = [await register(http, f"watcher{i}") for i in range(3)]
    room = await make_room(http, senders[0], *senders[1:], *watchers)
    per_sender = 50
    total = per_sender * len(senders)
    seen: dict[int, list[int]] = {}

    async def watch(index: int, session: str, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with open_websocket_url(chat_url(server, room, session)) as ws:
            task_status.started()
            ids = seen.setdefault(index, [])
            while len(ids) < total:
                ids.append((await receive_json(ws, timeout=20))["id"])

    async def send(session: str) -> None:
        async with open_websocket_url(chat_url(server, room, session)) as ws:
            for n in range(per_sender):
                await send_json(ws, {"text": f"{session[:6]} {n}"})
            await send_json(ws, {"text": "last", "nonce": "done"})
            while (await receive_json(ws, timeout=20)).get("ack") != "done":
                pass

    async with trio.open_nursery() as nursery:
        for index, session in enumerate(watchers):
            await nursery.start(watch, index, session)
        async with trio.open_nursery() as senders_nursery:
            for session in senders:
                senders_nursery.start_soon(send, session)
    stored = [m["id"] for m in await history(http, watchers[0], room, limit=500)]
    assert len(stored) == total + len(senders)
    for ids in seen.values():
        assert ids == sorted(ids)
        # Each watcher saw the same sequence, which is the history's sequence.
        assert ids == [i for i in stored if i in set(ids)]
    assert seen[0] == seen[1] == seen[2]


# -- slow readers, logout, flood ------------------------------------------------------------


async def test_a_reader_that_stops_reading_is_closed_and_holds_up_no_one():
    async with serve(outbox_frames=5, ws_rate=0) as server, \
            httpx.AsyncClient(base_url=server.url) as http:
        a = await register(http, "writer")
        fast_user = await register(http, "fast")
        slow_user = await register(http, "slow")
        room = await make_room(http, a, fast_user, slow_user)
        text = "ж" * 4000  # about 8 KB a frame: the socket buffers fill quickly
        # message_queue_size=1: the slow client's library stops reading the socket once one
        # message waits, so the server's sends really block.
        async with open_websocket_url(chat_url(server, room, slow_user), message_queue_size=1) as slow, \
                open_websocket_url(chat_url(server, room, fast_user)) as fast, \
                open_websocket_url(chat_url(server, room, a)) as writer:
            sent = 0
            with trio.fail_after(60):
                while server.app.hub.statistics().slow_closed == 0:
                    await send_json(writer, {"text": text})
                    sent += 1
                    frame = await receive_json(fast)  # the fast reader keeps up throughout
                    assert frame["text"] == text
            # The writer and the fast reader carry on, unaffected.
            await send_json(writer, {"text": "after", "nonce": "after"})
            assert (await receive_json(writer))["ack"] == "after"
            assert (await receive_json(fast))["text"] == "after"
            # Once the slow reader reads again it gets what was in flight, then the close.
            received = 0
            with trio.fail_after(30), pytest.raises(ConnectionClosed) as closed:
                while True:
                    await slow.get_message()
                    received += 1
            assert closed.value.reason.code == 1013
            assert received < sent + 1
        assert len(await history(http, a, room, limit=500)) == sent + 1


async def test_logout_closes_only_that_sessions_sockets(server, http, pair):
    a, b, room = pair
    a_other = (await http.post("/v1/login", json={"login": "Алиса", "password": "secret"})).json()["session_id"]
    async with open_websocket_url(chat_url(server, room, a)) as ending, \
            open_websocket_url(chat_url(server, room, a_other)) as staying:
        response = await http.post("/v1/logout", headers=auth(a))
        assert response.status_code == 200
        await expect_closed(ending, 1008)
        await send_json(staying, {"text": "still here", "nonce": "s"})
        assert (await receive_json(staying))["ack"] == "s"


async def test_a_flood_is_refused_then_closed():
    async with serve(ws_rate=5, ws_burst=10) as server, \
            httpx.AsyncClient(base_url=server.url) as http:
        a = await register(http, "flooder")
        room = await make_room(http, a)
        async with open_websocket_url(chat_url(server, room, a)) as ws:
            codes = []
            with trio.fail_after(10), pytest.raises(ConnectionClosed) as closed:
                for n in range(200):
                    await send_json(ws, {"text": f"spam {n}", "nonce": str(n)})
                while True:
                    frame = await receive_json(ws)
                    codes.append(frame["error"]["code"] if "error" in frame else "ack")
            assert closed.value.reason.code == 1008
        assert codes[:10] == ["ack"] * 10
        assert "too_many_requests" in codes
        stored = await history(http, a, room, limit=500)
        assert len(stored) == codes.count("ack") < 200


async def test_the_room_is_not_held_up_by_the_flood_limit_when_turned_off():
    async with serve(ws_rate=0) as server, httpx.AsyncClient(base_url=server.url) as http:
        a = await register(http, "busy")
        room = await make_room(http, a)
        async with open_websocket_url(chat_url(server, room, a)) as ws:
            for n in range(300):
                await send_json(ws, {"text": f"m{n}", "nonce": str(n)})
            acks = [await receive_json(ws) for _ in range(300)]
        assert [ack["ack"] for ack in acks] == [str(n) for n in range(300)]


# -- keepalive ----------------------------------------------------------------------------


async def test_idle_sockets_are_pinged_and_a_silent_peer_is_dropped():
    """A raw client that completes the handshake and then never answers anything."""
    import wsproto
    from wsproto.events import AcceptConnection, Ping, Request

    async with serve(ping_interval=0.2, peer_timeout=1) as server, \
            httpx.AsyncClient(base_url=server.url) as http:
        a = await register(http, "ghost")
        room = await make_room(http, a)
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        await stream.send_all(client.send(Request(host="127.0.0.1", target=f"/v1/rooms/{room}/chat?session_id={a}")))
        events = []
        with trio.fail_after(5):
            while not any(isinstance(e, Ping) for e in events):
                client.receive_data(await stream.receive_some())
                events.extend(client.events())
        assert isinstance(events[0], AcceptConnection)
        assert server.app.hub.statistics().connections == 1
        # Never answer the pings: after peer_timeout the server drops the connection.
        with trio.fail_after(10):
            while await stream.receive_some():
                pass
        with trio.fail_after(5):
            while server.app.hub.statistics().connections:
                await trio.sleep(0.05)
        await stream.aclose()
