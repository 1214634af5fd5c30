"""The session cache: which user a session key belongs to, kept in memory for the sessions in use.

Every request and every WebSocket handshake names a session, and looking it up in the database
costs a trip to a reader thread. The cache answers from memory for the most recently used
SESSIONS_CACHED sessions; a session ended by logout is dropped from it before logout answers,
so an ended session is refused at once, as without the cache. A session ended in the database
by another process (an operator's command) is noticed when its entry is `recheck_after` seconds
old (the server's `session_check_interval`, the same time its sockets take to notice) and is
looked up again.

Concurrency rule: used from the trio thread only. A lookup that was already on its way to the
database when a session was dropped may come back with the user of the ended session; its answer
goes to its own caller only and is not cached, so the drop always wins for everyone after it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable

import trio

from echat.models import User

SESSIONS_CACHED = 10_000

Lookup = Callable[[bytes], Awaitable[User | None]]


class SessionCache:
    def __init__(self, recheck_after: float, size: int = SESSIONS_CACHED) -> None:
        self._size = size
        self._recheck_after = recheck_after
        # session key -> (user, trio.current_time() of the lookup), least recently used first
        self._users: OrderedDict[bytes, tuple[User, float]] = OrderedDict()
        # Counts drops: a lookup caches its answer only if no session was dropped meanwhile.
        self._drops = 0

    async def user(self, key: bytes, lookup: Lookup) -> User | None:
        """The user of the session `key`, from memory or else from `lookup`; None for none."""
        cached = self._users.get(key)
        now = trio.current_time()
        if cached is not None and now - cached[1] < self._recheck_after:
            self._users.move_to_end(key)
            return cached[0]
        drops = self._drops
        user = await lookup(key)
        if user is None:
            self._users.pop(key, None)
        elif drops == self._drops:
            self._users[key] = (user, now)
            self._users.move_to_end(key)
            if len(self._users) > self._size:
                self._users.popitem(last=False)
        return user

    def drop(self, key: bytes) -> None:
        """Forget the session (it has ended)."""
        self._drops += 1
        self._users.pop(key, None)

    def __len__(self) -> int:
        return len(self._users)
