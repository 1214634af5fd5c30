"""A server-side WebSocket over ASGI: what the room socket needs, and no more.

The room socket (echat.rooms_ws) is served at the ASGI level, not through Quart's `websocket`.
For every socket, quart-trio runs a nursery with two more tasks, a memory channel between
hypercorn's queue and the handler, request and app contexts, and it fires a blinker signal for
every frame in each direction. Served here instead, an idle socket costs 13 KiB less Python
heap (47.0 → 33.9 KiB with 2,000 sockets, tracemalloc) and `make bench`'s idle row fell from
50.9 to 37.2 KiB of RSS per socket; a frame goes from hypercorn's queue to the reader, and
from the writer to hypercorn's send, with no task switch or signal between.

`receive()` answers None once the client has gone (ASGI `websocket.disconnect`), so the
handler's reader simply ends.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable
from werkzeug.datastructures import Headers, MultiDict


class WebSocket:
    __slots__ = ("scope", "_receive", "_send", "accepted", "disconnected")

    def __init__(self, scope: dict[str, Any], receive: ASGIReceiveCallable,
                 send: ASGISendCallable) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self.accepted = False
        self.disconnected = False

    # The handshake's headers and query are parsed when asked for, and not kept: thousands of
    # sockets sit idle and need neither after the handshake.
    def headers(self) -> Headers:
        return Headers([(name.decode("latin1"), value.decode("latin1"))
                        for name, value in self.scope["headers"]])

    def args(self) -> MultiDict:
        query = self.scope["query_string"].decode("ascii", errors="replace")
        return MultiDict(parse_qsl(query, keep_blank_values=True))

    async def accept(self) -> None:
        await self._send({"type": "websocket.accept", "subprotocol": None, "headers": []})
        self.accepted = True

    async def refuse(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Answer the handshake with a plain HTTP response instead of accepting it."""
        if "websocket.http.response" in (self.scope.get("extensions") or {}):
            await self._send({"type": "websocket.http.response.start", "status": status,
                              "headers": headers})
            await self._send({"type": "websocket.http.response.body", "body": body,
                              "more_body": False})
        else:  # ASGI servers without the extension answer this with 403
            await self._send({"type": "websocket.close", "code": 1008})

    async def receive(self) -> str | bytes | None:
        """The next frame's data, or None once the client has gone."""
        while not self.disconnected:
            event = await self._receive()
            kind = event["type"]
            if kind == "websocket.receive":
                text = event.get("text")
                return text if text is not None else (event.get("bytes") or b"")
            if kind == "websocket.disconnect":
                self.disconnected = True
        return None

    async def send(self, text: str) -> None:
        await self._send({"type": "websocket.send", "text": text})

    async def close(self, code: int) -> None:
        await self._send({"type": "websocket.close", "code": code})
