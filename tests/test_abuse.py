"""Abuse with the default settings: a socket flooding its room is throttled and then closed
while everyone else carries on; and secrets (passwords, session ids, hashes) never appear in a
log line or a response. Login brute force is in test_login_limits.py.
"""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from echat.testing import serve
from helpers import auth, chat_url, make_room, receive_json, register, send_json
from server_process import server_process

RATE, BURST = 30, 150  # the contract's defaults


async def test_a_flooding_socket_is_throttled_then_closed_and_no_one_else_is():
    async with serve() as server, httpx.AsyncClient(base_url=server.url) as http:
        flooder, neighbour = await register(http, "flooder"), await register(http, "neighbour")
        elsewhere = await register(http, "elsewhere")
        room = await make_room(http, flooder, neighbour)
        other_room = await make_room(http, elsewhere)
        answers: list[str] = []  # "ack" or the error code, for each answer to the flooder
        async with open_websocket_url(chat_url(server, room, flooder)) as flood, \
                open_websocket_url(chat_url(server, room, neighbour)) as calm, \
                open_websocket_url(chat_url(server, other_room, elsewhere)) as far:

            async def send_flood() -> None:
                try:
                    for n in range(10 * BURST):
                        await send_json(flood, {"text": f"spam {n}", "nonce": str(n)})
                except ConnectionClosed:
                    pass

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_flood)
                with trio.fail_after(30), pytest.raises(ConnectionClosed) as closed:
                    while True:
                        frame = await receive_json(flood)
                        if "text" in frame:
                            continue  # the neighbour's message
                        answers.append(frame["error"]["code"] if "error" in frame else "ack")
                        if answers.count("too_many_requests") == 1:
                            # Mid-flood, the others' messages still go through.
                            for ws, name in ((calm, "calm"), (far, "far")):
                                await send_json(ws, {"text": f"{name} says hi", "nonce": name})
            assert closed.value.reason.code == 1008
            assert (await receive_json(far))["ack"] == "far"
            await send_json(calm, {"text": "after the flood", "nonce": "after"})
            received = []
            while (frame := await receive_json(calm)).get("ack") != "after":
                received.append(frame.get("text", frame.get("ack")))
        # A burst of the bucket's size is accepted; then refusals (those still queued when the
        # socket is closed are dropped with it), then the close.
        assert answers[:BURST] == ["ack"] * BURST
        assert set(answers[BURST:]) <= {"ack", "too_many_requests"}
        assert "too_many_requests" in answers
        # The neighbour received exactly what was stored of the flood, and its own ack.
        stored = (await http.get(f"/v1/rooms/{room}/messages", params={"limit": 500},
                                 headers=auth(neighbour))).json()
        spam = [m["text"] for m in stored if m["text"].startswith("spam")]
        assert len(spam) >= answers.count("ack")
        assert [text for text in received if text != "calm"] == spam
        assert "calm" in received


async def test_no_secret_in_any_log_line_or_response(tmp_path):
    """A real `echat serve` process: its log (stdout and stderr) and every response body of a
    session's life, refusals and failures included, hold no password, session id or hash."""
    password, wrong = "correct horse battery staple", "Tr0ub4dor&3"
    bodies: list[str] = []
    async with server_process(tmp_path / "echat.db", "--login-failures", "3") as server:
        async with httpx.AsyncClient(base_url=server.url) as http:

            async def call(method: str, path: str, **kwargs) -> httpx.Response:
                response = await http.request(method, path, **kwargs)
                bodies.append(response.text)
                return response

            await call("POST", "/v1/register", json={"login": "keeper", "password": password})
            await call("POST", "/v1/register", json={"login": "keeper", "password": password})
            await call("POST", "/v1/register", json={"login": "x" * 65, "password": password})
            await call("POST", "/v1/register", content=f'{{"login": "a", "password": "{password}')
            for _ in range(4):
                await call("POST", "/v1/login", json={"login": "keeper", "password": wrong})
            registered = await register(http, "other", password)
            session = (await http.post("/v1/login", json={"login": "other",
                                                         "password": password})).json()
            session = session["session_id"]
            room = await make_room(http, session)
            await call("GET", "/v1/info", headers={"Authorization": f"Bearer {session}x"})
            await call("GET", "/v1/info", params={"session_id": session})
            await call("GET", "/v1/rooms/999", headers=auth(session))
            async with open_websocket_url(chat_url(server, room, session)) as ws:
                await send_json(ws, {"text": password, "nonce": "n"})
                bodies.append(json.dumps(await receive_json(ws)))
                await ws.send_message(f'{{"text": "{session}')
                bodies.append(json.dumps(await receive_json(ws)))
            with pytest.raises(ConnectionRejected) as refused:
                async with open_websocket_url(chat_url(server, room, session[::-1])):
                    pass
            bodies.append(refused.value.body.decode())
            await call("POST", "/v1/logout", headers=auth(session))
            await call("POST", "/v1/logout", headers=auth(session))
            await call("POST", "/v1/logout", headers=auth(registered))
        server.terminate()
        await server.process.wait()
    log = server.log.read_text(encoding="utf-8")
    assert "Running on" in log  # the log is really there
    secrets = [password, wrong, session, registered, "$argon2"]
    secrets += [hashlib.sha256(s.encode()).hexdigest() for s in (session, registered)]
    for secret in secrets:
        assert secret not in log, secret
        assert not any(secret in body for body in bodies), secret
