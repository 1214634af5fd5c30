"""`WS /v1/rooms/{id}/chat`: live chat in one room.

The handshake is checked (session, membership) before accepting, so a refusal is a plain HTTP
response with the contract's JSON body. An accepted connection runs two tasks in its own
nursery, inside the cancel scope the hub uses to close it:

- the reader takes client frames, validates them, and stores messages through the store's
  single writer; the store's commit listener (`EchatApp.announce`) then queues the message for
  every other connection of the room, in commit order;
- the writer sends what the connection's outbox holds.

A bad frame is answered with an error frame and the socket stays open. The connection ends
when the client leaves, or when the hub closes it (slow reader 1013, logout or flood 1008,
shutdown 1001), in which case the close frame carries that code.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio
from quart import Blueprint, websocket

from echat import accounts, jsonio
from echat.api import authenticate, path_id
from echat.app import current_echat
from echat.errors import EchatError, EmptyText, InvalidJson, RoomNotFound, TextTooLong, error_body
from echat.hub import CLOSE_POLICY, Connection
from echat.ratelimit import FloodGuard

rooms_ws = Blueprint("rooms_ws", __name__, url_prefix="/v1")

MAX_NONCE = 64
# Sending the close frame waits at most this long: a peer that stopped reading gets no more.
CLOSE_FRAME_TIMEOUT = 1.0

_TOO_MANY = jsonio.dumps(error_body("too_many_requests"))


@dataclass(frozen=True, slots=True)
class Post:
    text: str
    nonce: str | None


def check_text(text: object, max_text: int) -> str:
    """A message text as the contract allows it; raises the matching error otherwise."""
    if not isinstance(text, str):
        raise InvalidJson("'text' must be a string")
    if not text.strip():
        raise EmptyText()
    if len(text) > max_text:
        raise TextTooLong()
    return text


def parse_post(data: str | bytes | None, max_text: int) -> Post:
    """A client frame as a message to post. Binary frames are refused like malformed JSON."""
    if not isinstance(data, str):
        raise InvalidJson("frames are JSON text")
    frame = jsonio.loads(data)
    if not isinstance(frame, dict) or "type" in frame:
        raise InvalidJson()
    nonce = frame.get("nonce")
    if nonce is not None and not (isinstance(nonce, str) and 1 <= len(nonce) <= MAX_NONCE):
        raise InvalidJson(f"'nonce' must be a string of 1 to {MAX_NONCE} characters")
    return Post(check_text(frame.get("text"), max_text), nonce)


@rooms_ws.websocket("/rooms/<room_id>/chat")
async def chat(room_id: str) -> None:
    app = current_echat()
    session_id = accounts.presented_session_id(websocket.headers, websocket.args, allow_query=True)
    session = await authenticate(session_id)
    room = path_id(room_id, RoomNotFound)
    if not await app.store.is_member(room, session.user.id):
        raise RoomNotFound()
    await websocket.accept()
    with app.hub.connect(room, session.user.id, session.key) as conn:
        with conn.scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_write_loop, conn, nursery.cancel_scope)
                await _read_loop(conn)
                nursery.cancel_scope.cancel()
    if conn.close_code is not None:
        with trio.move_on_after(CLOSE_FRAME_TIMEOUT):
            await websocket.close(conn.close_code)
    await _discard_until_disconnect()


async def _discard_until_disconnect() -> None:
    """Read and drop frames until the client has gone (quart-trio then cancels this task).

    hypercorn hands the app a final `websocket.disconnect` through a bounded queue, and waits
    forever if the app stopped reading while the client's frames filled it, which would leak
    the connection. Once the client answers the close frame, or `peer_timeout` passes in
    silence, the disconnect arrives and this ends.
    """
    while True:
        await websocket.receive()


async def _write_loop(conn: Connection, done: trio.CancelScope) -> None:
    async for frame in conn.inbox:
        await websocket.send(frame)
    done.cancel()


async def _read_loop(conn: Connection) -> None:
    app = current_echat()
    config = app.echat_config
    guard = FloodGuard(config.ws_rate, config.ws_burst) if config.ws_rate > 0 else None
    while True:
        data = await websocket.receive()
        try:
            post = parse_post(data, config.max_text)
        except EchatError as error:
            conn.send(jsonio.dumps(error.body()))
            continue
        verdict = guard.check() if guard is not None else "ok"
        if verdict == "close":
            conn.close(CLOSE_POLICY)
            return
        if verdict == "refuse":
            conn.send(_TOO_MANY)
            continue
        # Shielded: a frame the server has read is stored even if the client leaves or the
        # server shuts down meanwhile (the store finishes the write either way; the shield
        # keeps shutdown from closing the socket before it is committed).
        try:
            with trio.CancelScope(shield=True):
                stored = await app.store.add_message(
                    conn.room_id, conn.user_id, post.text, post.nonce, origin=conn
                )
        except EchatError as error:
            conn.send(jsonio.dumps(error.body()))
            continue
        if post.nonce is not None:
            message = stored.message
            conn.send(jsonio.dumps(
                {"ack": post.nonce, "id": message.id, "created_at": message.created_at}
            ))
