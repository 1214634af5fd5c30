"""Small steps most tests take: register users, make rooms, open sockets."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx
import trio
import wsproto
from trio_websocket import WebSocketConnection, open_websocket_url
from wsproto.events import Event, Request

from echat.rooms_ws import CHAT_ROUTE


def auth(session_id: str) -> dict[str, str]:
    return {"X-Session-Id": session_id}


async def register(http: httpx.AsyncClient, login: str, password: str = "secret") -> str:
    response = await http.post("/v1/register", json={"login": login, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["session_id"]


async def user_id(http: httpx.AsyncClient, session_id: str) -> int:
    return (await http.get("/v1/info", headers=auth(session_id))).json()["id"]


async def make_room(http: httpx.AsyncClient, owner: str, *others: str) -> int:
    """A room of the owner's session and the other sessions' users; returns its id."""
    users = [{"id": await user_id(http, other)} for other in others]
    response = await http.post("/v1/rooms", json={"users": users}, headers=auth(owner))
    assert response.status_code == 200, response.text
    return response.json()["id"]


async def receive_json(ws: WebSocketConnection, timeout: float = 5.0) -> Any:
    with trio.fail_after(timeout):
        return json.loads(await ws.get_message())


async def send_json(ws: WebSocketConnection, value: Any) -> None:
    await ws.send_message(json.dumps(value, ensure_ascii=False))


def chat_url(server: Any, room_id: int, session_id: str, events: str | None = None) -> str:
    """The room socket's URL, with `?events=` when given."""
    url = f"{server.ws_url}/v1/rooms/{room_id}/chat?session_id={session_id}"
    return url if events is None else f"{url}&events={events}"


async def post_message(ws: WebSocketConnection, text: str, nonce: str) -> int:
    """Send a message on a socket that receives nothing else meanwhile; returns its id."""
    await send_json(ws, {"text": text, "nonce": nonce})
    ack = await receive_json(ws)
    assert ack["ack"] == nonce, ack
    return ack["id"]


async def wait_for_sockets(http: httpx.AsyncClient, count: int, timeout: float = 10.0) -> None:
    """Until GET /v1/status reports `count` open sockets. The server registers a socket just
    after the handshake and unregisters it just after the close, with no client-side signal."""
    with trio.fail_after(timeout):
        while (await http.get("/v1/status")).json()["sockets"] != count:
            await trio.sleep(0.01)


def route_table(app: Any, *, websocket: bool) -> set[tuple[str, str]]:
    """The app's routes as (method, path) with OpenAPI's `{name}` for path parameters; "WS" is
    the method of a WebSocket route (left out unless `websocket`). The room socket is served
    below Quart's routing (echat.rooms_ws), so it is added by hand."""
    table = {("WS", CHAT_ROUTE)} if websocket else set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or (rule.websocket and not websocket):
            continue
        path = re.sub(r"<(?:[^:>]*:)?([^>]*)>", r"{\1}", rule.rule)
        methods = {"WS"} if rule.websocket else set(rule.methods) - {"HEAD", "OPTIONS"}
        table |= {(method, path) for method in methods}
    return table


async def open_raw_socket(server: Any, target: str, **request: Any,
                          ) -> tuple[trio.SocketStream, wsproto.WSConnection, list[Event]]:
    """A WebSocket handshake by hand (wsproto over TCP), for what trio-websocket will not send
    or hides: returns the stream, the client's protocol state, and the handshake's events."""
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    await stream.send_all(client.send(Request(host="127.0.0.1", target=target, **request)))
    events: list[Event] = []
    with trio.fail_after(5):
        while not events:
            client.receive_data(await stream.receive_some())
            events.extend(client.events())
    return stream, client, events


def error_code(response: httpx.Response) -> str | None:
    """The contract's error code of a response, or None when it is no error."""
    return response.json().get("error", {}).get("code")


async def history(http: httpx.AsyncClient, session: str, room: int, **params: Any) -> list[dict]:
    response = await http.get(f"/v1/rooms/{room}/messages", params=params, headers=auth(session))
    assert response.status_code == 200, response.text
    return response.json()


async def post_as(server: Any, room: int, session: str, *texts: str) -> list[int]:
    """Post `texts` to the room on a socket of its own; returns their ids."""
    async with open_websocket_url(chat_url(server, room, session)) as ws:
        return [await post_message(ws, text, uuid.uuid4().hex) for text in texts]
