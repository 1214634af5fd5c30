"""The session cache: which user a session key belongs to, kept in memory for the sessions in use.

Every request and every WebSocket handshake names a session, and looking it up in the database
costs a trip to a reader thread. The cache answers from memory for the most recently used
SESSIONS_CACHED sessions; a session ended by logout is dropped from it before logout answers,
so an ended session is refused at once, as without the cache.

Concurrency rule: used from the trio thread only. A lookup that was already on its way to the
database when a session was dropped may come back with the user of the ended session; its answer
goes to its own caller only and is not cached, so the drop always wins for everyone after it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable

from echat.models import User

SESSIONS_CACHED = 10_000

Lookup = Callable[[bytes], Awaitable[User | None]]


class SessionCache:
    def __init__(self, size: int = SESSIONS_CACHED) -> None:
        self._size = size
        self._users: OrderedDict[bytes, User] = OrderedDict()
        # Counts drops: a lookup caches its answer only if no session was dropped meanwhile.
        self._drops = 0

    async def user(self, key: bytes, lookup: Lookup) -> User | None:
        """The user of the session `key`, from memory or else from `lookup`; None for none."""
        user = self._users.get(key)
        if user is not None:
            self._users.move_to_end(key)
            return user
        drops = self._drops
        user = await lookup(key)
        if user is not None and drops == self._drops:
            self._users[key] = user
            if len(self._users) > self._size:
                self._users.popitem(last=False)
        return user

    def drop(self, key: bytes) -> None:
        """Forget the session (it has ended)."""
        self._drops += 1
        self._users.pop(key, None)

    def __len__(self) -> int:
        return len(self._users)
