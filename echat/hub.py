"""The room hub: who is connected to which room, and fan-out of frames to them.

Concurrency rule: the hub is used from the trio thread only and never waits. Each connection
has a bounded outbox (a trio memory channel); `publish` puts one already-encoded frame into each
outbox with `send_nowait`. A full outbox means a reader too slow to keep up: that connection is
closed with 1013 (it can catch up through the history with `after=`), never waited for, so one
stalled client cannot hold up a room or grow the server's memory.

Closing a connection (slow reader, logout, leaving the room, shutdown) cancels its tasks through
the cancel scope the WebSocket handler runs them in (`Connection.scope`); the handler then sends
the close frame with `Connection.close_code`.

Event frames (typing, presence, read markers, edits) are opt-in: a connection lists the kinds it
wants (`Connection.events`) and `publish_event` queues a frame only for those, through the same
outboxes as messages, so a client written for the original never sees one. Presence is the
hub's own state: a member is online in a room while at least one of their sockets to it is open.

Held feed requests (`GET /v1/feed?wait=`) wait here too, on the same commit announcements that
feed the sockets: each is a `FeedWaiter` registered under its user and session. A message
stored in a room of that user is added to it and wakes it, so the request answers with what it
was given, without reading the database again; a logout of the session or shutdown wakes it
too. A waiting request holds no thread and polls nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import trio

from echat import jsonio
from echat.models import Message

# Close codes the contract names.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # server shutdown
CLOSE_POLICY = 1008  # logged out, or flooding
CLOSE_TRY_AGAIN_LATER = 1013  # outbox overflow: a slow reader

# The kinds of event frame a socket may ask for with `?events=`; `edit` covers deletions too.
EVENT_KINDS = frozenset({"typing", "presence", "read", "edit"})


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
    events: frozenset[str] = frozenset()

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


@dataclass(eq=False)
class FeedWaiter:
    """One held feed request, for messages after `after`, at most `limit` of them.

    `woken` is set when it should answer: `messages` then holds those that arrived, in id
    order; `session_ended` says the session logged out instead.
    """

    user_id: int
    session_key: bytes
    after: int
    limit: int
    messages: list[Message] = field(default_factory=list)
    session_ended: bool = False
    woken: trio.Event = field(default_factory=trio.Event)


@dataclass
class HubStatistics:
    rooms: int
    connections: int
    slow_closed: int
    feeds_waiting: int


class Hub:
    def __init__(self, outbox_frames: int) -> None:
        self._outbox_frames = outbox_frames
        self._rooms: dict[int, set[Connection]] = {}
        self._sessions: dict[bytes, set[Connection]] = {}
        self._slow_closed = 0
        self._closing = False
        # room id -> user id -> open sockets of that user to that room (presence).
        self._online: dict[int, dict[int, int]] = {}
        # Held feed requests by user (woken by messages) and by session (woken by logout).
        self._feeds: dict[int, set[FeedWaiter]] = {}
        self._feed_sessions: dict[bytes, set[FeedWaiter]] = {}

    @contextmanager
    def connect(self, room_id: int, user_id: int, session_key: bytes,
                events: frozenset[str] = frozenset()) -> Iterator[Connection]:
        """Register a connection for the duration of the block; leaving always unregisters.

        `events` are the kinds of event frame it receives besides messages. The user's first
        socket to the room announces them online, and their last one leaving, offline.
        """
        outbox, inbox = trio.open_memory_channel[str](self._outbox_frames)
        conn = Connection(room_id, user_id, session_key, outbox, inbox, events=events)
        if self._closing:
            conn.close(CLOSE_GOING_AWAY)
        self._rooms.setdefault(room_id, set()).add(conn)
        self._sessions.setdefault(session_key, set()).add(conn)
        self._count_online(conn, +1)
        try:
            yield conn
        finally:
            _discard(self._rooms, room_id, conn)
            _discard(self._sessions, session_key, conn)
            outbox.close()
            inbox.close()
            self._count_online(conn, -1)

    def publish(self, room_id: int, frame: str, *, skip: object = None) -> None:
        """Queue `frame` for every connection of the room except `skip`. Never waits."""
        self._queue(self._rooms.get(room_id, ()), frame, skip)

    def publish_event(self, room_id: int, kind: str, frame: str, *, skip: object = None) -> None:
        """Queue an event frame of `kind` for the room's connections that asked for that kind,
        except `skip`. Never waits; a full outbox closes that connection as for messages."""
        self._queue((c for c in self._rooms.get(room_id, ()) if kind in c.events), frame, skip)

    def _queue(self, conns: Iterable[Connection], frame: str, skip: object) -> None:
        for conn in conns:
            if conn is not skip and not conn.send(frame):
                self._slow_closed += 1

    @contextmanager
    def hold_feed(self, user_id: int, session_key: bytes, after: int,
                  limit: int) -> Iterator[FeedWaiter]:
        """Register a held feed request for the duration of the block.

        Register before reading the feed: then every message committed after that read is
        announced after the registration and reaches the waiter, so when the read finds
        nothing, the waiter's `messages` are exactly what came since. After shutdown has begun
        the waiter is woken at once.
        """
        waiter = FeedWaiter(user_id, session_key, after, limit)
        if self._closing:
            waiter.woken.set()
        self._feeds.setdefault(user_id, set()).add(waiter)
        self._feed_sessions.setdefault(session_key, set()).add(waiter)
        try:
            yield waiter
        finally:
            _discard(self._feeds, user_id, waiter)
            _discard(self._feed_sessions, session_key, waiter)

    def feed_message(self, message: Message, user_ids: Iterable[int]) -> None:
        """Give a stored message to the held feed requests of these users (its room's
        members) and wake them. Called in commit order, so each waiter's list is in id order."""
        for user_id in user_ids:
            for waiter in self._feeds.get(user_id, ()):
                if message.id > waiter.after and len(waiter.messages) < waiter.limit:
                    waiter.messages.append(message)
                    waiter.woken.set()

    def online(self, room_id: int) -> list[int]:
        """Ids of the users with at least one socket open to the room, ascending."""
        return sorted(self._online.get(room_id, ()))

    def close_member(self, room_id: int, user_id: int, code: int) -> None:
        """Close every connection of that user to that room (they left it)."""
        for conn in list(self._rooms.get(room_id, ())):
            if conn.user_id == user_id:
                conn.close(code)

    def _count_online(self, conn: Connection, step: int) -> None:
        users = self._online.setdefault(conn.room_id, {})
        sockets = users.get(conn.user_id, 0) + step
        if sockets:
            users[conn.user_id] = sockets
        else:
            del users[conn.user_id]
            if not users:
                del self._online[conn.room_id]
        # Only the first socket opening and the last one closing change presence, so a second
        # tab does not make the user flap offline and online for everyone else.
        if sockets == (1 if step > 0 else 0):
            frame = jsonio.dumps({
                "type": "presence", "room_id": conn.room_id, "user_id": conn.user_id,
                "status": "online" if sockets else "offline",
            })
            self.publish_event(conn.room_id, "presence", frame, skip=conn)

    def close_session(self, session_key: bytes, code: int) -> None:
        """Close every connection opened with that session (logout), and wake its held feed
        requests, which then find the session ended."""
        for conn in list(self._sessions.get(session_key, ())):
            conn.close(code)
        for waiter in self._feed_sessions.get(session_key, ()):
            waiter.session_ended = True
            waiter.woken.set()

    def session_keys(self) -> list[bytes]:
        """The sessions with at least one open socket."""
        return list(self._sessions)

    def close_all(self, code: int) -> None:
        """Close every connection, and any opened from now on (shutdown); wake every held feed
        request, so each answers with what it has."""
        self._closing = True
        for conns in list(self._rooms.values()):
            for conn in list(conns):
                conn.close(code)
        for waiters in self._feeds.values():
            for waiter in waiters:
                waiter.woken.set()

    def statistics(self) -> HubStatistics:
        return HubStatistics(
            rooms=len(self._rooms),
            connections=sum(len(conns) for conns in self._rooms.values()),
            slow_closed=self._slow_closed,
            feeds_waiting=sum(len(waiters) for waiters in self._feeds.values()),
        )


def _discard(index: dict, key: object, member: object) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(member)
        if not members:
            del index[key]
