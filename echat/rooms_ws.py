"""`WS /v1/rooms/{id}/chat`: live chat in one room.

The handshake is checked (session, membership) before accepting, so a refusal is a plain HTTP
response with the contract's JSON body. An accepted connection runs two tasks in its own
nursery, inside the cancel scope the hub uses to close it:

- the reader takes client frames, validates them, and stores messages through the store's
  single writer; the store's commit listener (`EchatApp.announce`) then queues the message for
  every other connection of the room, in commit order;
- the writer sends what the connection's outbox holds.

The socket is served below Quart: `EchatApp.asgi_app` hands the ASGI connection to
`serve_chat` (echat.websocket says why).

A bad frame is answered with an error frame and the socket stays open. The connection ends
when the client leaves, or when the hub closes it (slow reader 1013, logout or flood 1008,
leaving the room 1000, shutdown 1001), in which case the close frame carries that code.

Event frames are opt-in (`?events=typing,presence,read,edit`): a socket opened without the
parameter gets message frames and its own acks and errors, exactly as an original client
expects. A client frame with `"type"` is an event: only `typing` exists. Typing frames are not
stored and go straight to the room's other `typing` subscribers; each connection may send at
most TYPING_PER_SECOND of them in any second, and the excess is dropped without an answer:
typing state is advisory and soon replaced, and an error frame per dropped keystroke would
cost more traffic than the frames it refuses.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from echat import accounts, jsonio
from echat.api import authenticate, check_text, path_id
from echat.errors import EchatError, InternalError, InvalidJson, RoomNotFound, error_body
from echat.hub import CLOSE_NORMAL, CLOSE_POLICY, EVENT_KINDS, Connection
from echat.ratelimit import FloodGuard, RateWindow
from echat.websocket import WebSocket

if TYPE_CHECKING:
    from echat.app import EchatApp

log = logging.getLogger("echat")

# The route, as the API documents it, and the pattern a request path is matched with.
CHAT_ROUTE = "/v1/rooms/{room_id}/chat"
_CHAT_PATH = re.compile(r"/v1/rooms/([^/]+)/chat")

MAX_NONCE = 64
CLOSE_INTERNAL_ERROR = 1011
# Sending the close frame waits at most this long: a peer that stopped reading gets no more.
CLOSE_FRAME_TIMEOUT = 1.0

_TOO_MANY = jsonio.dumps(error_body("too_many_requests"))

TYPING_PER_SECOND = 2
TYPING_STATES = frozenset({"composing", "paused"})


@dataclass(frozen=True, slots=True)
class Post:
    text: str
    nonce: str | None


@dataclass(frozen=True, slots=True)
class Typing:
    state: str


def parse_frame(data: str | bytes | None, max_text: int) -> Post | Typing:
    """A client frame: a message to post, or an event. Binary frames are refused like
    malformed JSON."""
    if not isinstance(data, str):
        raise InvalidJson("frames are JSON text")
    frame = jsonio.loads(data)
    if not isinstance(frame, dict):
        raise InvalidJson()
    if "type" in frame:
        return parse_event(frame)
    return parse_post(frame, max_text)


def parse_event(frame: dict) -> Typing:
    if frame["type"] != "typing":
        raise InvalidJson("the only client event is 'typing'")
    state = frame.get("state")
    if not isinstance(state, str) or state not in TYPING_STATES:
        raise InvalidJson("'state' must be 'composing' or 'paused'")
    return Typing(state)


def parse_post(frame: dict, max_text: int) -> Post:
    nonce = frame.get("nonce")
    if nonce is not None and not (isinstance(nonce, str) and 1 <= len(nonce) <= MAX_NONCE):
        raise InvalidJson(f"'nonce' must be a string of 1 to {MAX_NONCE} characters")
    return Post(check_text(frame.get("text"), max_text), nonce)


def parse_events(values: list[str]) -> frozenset[str]:
    """The event kinds `?events=` asks for (comma separated, the parameter may repeat).

    Raises InvalidJson for a name the server does not know, so a client never silently goes
    without an event it expects.
    """
    kinds = frozenset(name for value in values if value for name in value.split(","))
    unknown = kinds - EVENT_KINDS
    if unknown:
        raise InvalidJson(f"unknown events: {', '.join(sorted(unknown))}")
    return kinds


def chat_room(path: str) -> str | None:
    """The room id part of a room socket's path, or None for any other path."""
    match = _CHAT_PATH.fullmatch(path)
    return match.group(1) if match else None


async def serve_chat(app: EchatApp, socket: WebSocket, room_id: str) -> None:
    """Run one room socket from handshake to close. A refused handshake is answered with the
    contract's error as a plain HTTP response; an unexpected failure is logged, and answered
    with 500 `internal_error` or, once accepted, closed with 1011."""
    try:
        await _chat(app, socket, room_id)
    except EchatError as error:
        await _refuse(socket, error)
    except Exception:
        log.exception("room socket failed")
        if not socket.accepted:
            await _refuse(socket, InternalError())
        elif not socket.disconnected:
            with trio.move_on_after(CLOSE_FRAME_TIMEOUT):
                await socket.close(CLOSE_INTERNAL_ERROR)
            await _discard_until_disconnect(socket)


async def _refuse(socket: WebSocket, error: EchatError) -> None:
    body = jsonio.dumps(error.body()).encode()
    headers = [(b"content-type", jsonio.CONTENT_TYPE.encode()),
               (b"content-length", str(len(body)).encode()),
               *((name.lower().encode(), value.encode()) for name, value in error.headers.items())]
    await socket.refuse(error.status, headers, body)


async def _chat(app: EchatApp, socket: WebSocket, room_id: str) -> None:
    args = socket.args()
    session_id = accounts.presented_session_id(socket.headers(), args, allow_query=True)
    session = await authenticate(app, session_id)
    room = path_id(room_id, RoomNotFound)
    if not await app.store.is_member(room, session.user.id):
        raise RoomNotFound()
    events = parse_events(args.getlist("events"))
    # Registered before accepting, so a client whose handshake has completed gets every frame
    # published after it (a message, another member arriving); the outbox holds them meanwhile.
    with app.hub.connect(room, session.user.id, session.key, events) as conn:
        await socket.accept()
        with conn.scope:
            # Leaving the room closes the leaver's registered sockets; one whose handshake was
            # checked before the leave committed but registered after it is caught here.
            if not await app.store.is_member(room, session.user.id):
                conn.close(CLOSE_NORMAL)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_write_loop, app, socket, conn, nursery.cancel_scope)
                await _read_loop(app, socket, conn)
                nursery.cancel_scope.cancel()
    if conn.close_code is not None and not socket.disconnected:
        with trio.move_on_after(CLOSE_FRAME_TIMEOUT):
            await socket.close(conn.close_code)
    await _discard_until_disconnect(socket)


async def _discard_until_disconnect(socket: WebSocket) -> None:
    """Read and drop frames until the client has gone.

    hypercorn hands the app a final `websocket.disconnect` through a bounded queue, and waits
    forever if the app stopped reading while the client's frames filled it, which would leak
    the connection. Once the client answers the close frame, or `peer_timeout` passes in
    silence, the disconnect arrives and this ends.
    """
    while await socket.receive() is not None:
        pass


async def _write_loop(app: EchatApp, socket: WebSocket, conn: Connection,
                      done: trio.CancelScope) -> None:
    metrics = app.metrics
    async for frame in conn.inbox:
        await socket.send(frame)
        metrics.frames_delivered += 1
    done.cancel()


async def _read_loop(app: EchatApp, socket: WebSocket, conn: Connection) -> None:
    """Read and answer frames until the client goes or floods (then closed here with 1008);
    every other close comes from the hub, which cancels this through the connection's scope."""
    config = app.echat_config
    # The limits are made at the first frame that needs them: most sockets sit idle, and
    # thousands of idle sockets should not each carry them.
    guard: FloodGuard | None = None
    typing_window: RateWindow | None = None
    while (data := await socket.receive()) is not None:
        try:
            frame = parse_frame(data, config.max_text)
        except EchatError as error:
            conn.send(jsonio.dumps(error.body()))
            continue
        if isinstance(frame, Typing):
            if typing_window is None:
                typing_window = RateWindow(TYPING_PER_SECOND, 1.0)
            if typing_window.take():
                _publish_typing(app, conn, frame.state)
            continue
        post = frame
        if guard is None and config.ws_rate > 0:
            guard = FloodGuard(config.ws_rate, config.ws_burst)
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


def _publish_typing(app: EchatApp, conn: Connection, state: str) -> None:
    frame = jsonio.dumps(
        {"type": "typing", "room_id": conn.room_id, "user_id": conn.user_id, "state": state}
    )
    app.hub.publish_event(conn.room_id, "typing", frame, skip=conn)
