"""Access log lines: one per request with method, path, status and time; never a session id
or a password, in either format."""

from __future__ import annotations

import json
import logging

import pytest
import trio
from trio_websocket import open_websocket_url

from echat.logs import JsonFormatter, printable
from helpers import auth, chat_url, make_room, register

PASSWORD = "correct horse battery staple"


def access_lines(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "echat.access"]


async def wait_for_line(caplog, method: str, status: int) -> logging.LogRecord:
    with trio.fail_after(5):
        while True:
            for record in access_lines(caplog):
                if (record.method, record.status) == (method, status):
                    return record
            await trio.sleep(0.01)


async def test_requests_and_sockets_are_logged_without_secrets(server, http, caplog):
    caplog.set_level(logging.INFO, logger="echat.access")
    session = await register(http, "Вася", PASSWORD)
    other = await register(http, "Петя", PASSWORD)
    room = await make_room(http, session, other)
    await http.get(f"/v1/rooms/{room}/messages?limit=5", headers=auth(session))
    async with open_websocket_url(chat_url(server, room, session, "typing")):
        pass
    await http.get(f"/v1/rooms/{room}/chat?session_id={'0' * 40}")  # a plain GET: 404

    socket = await wait_for_line(caplog, "WS", 101)
    assert socket.path == f"/v1/rooms/{room}/chat"
    history = [r for r in access_lines(caplog) if r.path == f"/v1/rooms/{room}/messages"]
    assert [(r.method, r.status) for r in history] == [("GET", 200)]
    assert history[0].client == "127.0.0.1" and history[0].ms >= 0
    registered = [r for r in access_lines(caplog) if r.path == "/v1/register"]
    assert [(r.method, r.status) for r in registered] == [("POST", 200), ("POST", 200)]
    assert f'"GET /v1/rooms/{room}/messages" 200 ' in history[0].getMessage()
    for record in access_lines(caplog):
        line = record.getMessage() + JsonFormatter().format(record)
        for secret in (session, other, PASSWORD, "session_id", "?", "0" * 40):
            assert secret not in line


async def test_a_refused_socket_is_logged_with_its_status(server, http, caplog):
    caplog.set_level(logging.INFO, logger="echat.access")
    with pytest.raises(Exception):
        async with open_websocket_url(f"{server.ws_url}/v1/rooms/1/chat?session_id=nope"):
            pass
    record = await wait_for_line(caplog, "WS", 401)
    assert record.path == "/v1/rooms/1/chat"


def test_a_json_line_holds_the_access_fields():
    record = logging.LogRecord("echat.access", logging.INFO, __file__, 1, "%s", ("x",), None)
    for key, value in {"client": "198.51.100.1", "method": "GET", "path": "/v1/info",
                       "status": 200, "ms": 1.5}.items():
        setattr(record, key, value)
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "INFO" and line["logger"] == "echat.access"
    assert (line["client"], line["method"], line["path"], line["status"], line["ms"]) == (
        "198.51.100.1", "GET", "/v1/info", 200, 1.5)


def test_a_path_cannot_forge_a_line():
    assert printable("/v1/x\n2024-01-01 INFO forged") == "/v1/x\\n2024-01-01 INFO forged"
    assert printable("/v1/users/Вася") == "/v1/users/Вася"
