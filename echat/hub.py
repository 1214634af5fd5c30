"""The room hub: who is connected to which room, and fan-out of frames to them.

Concurrency rule: the hub is used from the trio thread only and never waits. Each connection
has a bounded outbox (a trio memory channel); `publish` puts one already-encoded frame into each
outbox with `send_nowait`. A full outbox means a reader too slow to keep up: that connection is
closed with 1013 (it can catch up through the history with `after=`), never waited for, so one
stalled client cannot hold up a room or grow the server's memory.

Closing a connection (slow reader, logout, shutdown) cancels its tasks through the cancel scope
the WebSocket handler runs them in (`Connection.scope`); the handler then sends the close frame
with `Connection.close_code`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import trio

# Close codes the contract names.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # server shutdown
CLOSE_POLICY = 1008  # logged out, or flooding
CLOSE_TRY_AGAIN_LATER = 1013  # outbox overflow: a slow reader


@dataclass(eq=False)
class Connection:
    """One open WebSocket in a room, as the hub sees it."""

    room_id: int
    user_id: int
    session_key: bytes
    outbox: trio.MemorySendChannel[str]
    inbox: trio.MemoryReceiveChannel[str]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    close_code: int | None = None

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    def send(self, frame: str) -> bool:
        """Queue a frame without waiting. A full outbox closes the connection with 1013;
        returns False only then."""
        if self.closed:
            return True
        try:
            self.outbox.send_nowait(frame)
        except trio.WouldBlock:
            self.close(CLOSE_TRY_AGAIN_LATER)
            return False
        return True

    def close(self, code: int) -> None:
        """Stop this connection's tasks; the first reason given is the one the client sees."""
        if self.closed:
            return
        self.close_code = code
        self.outbox.close()
        self.scope.cancel()


@dataclass
class HubStatistics:
    rooms: int
    connections: int
    slow_closed: int


class Hub:
    def __init__(self, outbox_frames: int) -> None:
        self._outbox_frames = outbox_frames
        self._rooms: dict[int, set[Connection]] = {}
        self._sessions: dict[bytes, set[Connection]] = {}
        self._slow_closed = 0
        self._closing = False

    @contextmanager
    def connect(self, room_id: int, user_id: int, session_key: bytes) -> Iterator[Connection]:
        """Register a connection for the duration of the block; leaving always unregisters."""
        outbox, inbox = trio.open_memory_channel[str](self._outbox_frames)
        conn = Connection(room_id, user_id, session_key, outbox, inbox)
        if self._closing:
            conn.close(CLOSE_GOING_AWAY)
        self._rooms.setdefault(room_id, set()).add(conn)
        self._sessions.setdefault(session_key, set()).add(conn)
        try:
            yield conn
        finally:
            _discard(self._rooms, room_id, conn)
            _discard(self._sessions, session_key, conn)
            outbox.close()
            inbox.close()

    def publish(self, room_id: int, frame: str, *, skip: object = None) -> None:
        """Queue `frame` for every connection of the room except `skip`. Never waits."""
        for conn in self._rooms.get(room_id, ()):
            if conn is not skip and not conn.send(frame):
                self._slow_closed += 1

    def close_session(self, session_key: bytes, code: int) -> None:
        """Close every connection opened with that session (logout)."""
        for conn in list(self._sessions.get(session_key, ())):
            conn.close(code)

    def close_all(self, code: int) -> None:
        """Close every connection, and any opened from now on (shutdown)."""
        self._closing = True
        for conns in list(self._rooms.values()):
            for conn in list(conns):
                conn.close(code)

    def statistics(self) -> HubStatistics:
        return HubStatistics(
            rooms=len(self._rooms),
            connections=sum(len(conns) for conns in self._rooms.values()),
            slow_closed=self._slow_closed,
        )


def _discard(index: dict, key: object, conn: Connection) -> None:
    conns = index.get(key)
    if conns is not None:
        conns.discard(conn)
        if not conns:
            del index[key]
