"""The session cache answers from memory, and an ended session is refused at once."""

from __future__ import annotations

from functools import partial

import httpx
import trio
import trio.testing

from echat.models import User
from echat.sessions import SessionCache
from echat.testing import TestServer
from helpers import auth, register

ALICE = User(1, "alice")


class CountingLookup:
    """A stand-in for the store's lookup: counts calls, and can hold one until released."""

    def __init__(self, user: User | None) -> None:
        self.user = user
        self.calls = 0
        self.release: trio.Event | None = None

    async def __call__(self, key: bytes) -> User | None:
        self.calls += 1
        answer = self.user
        if self.release is not None:
            await self.release.wait()
        return answer


async def test_a_session_is_looked_up_once() -> None:
    cache, lookup = SessionCache(recheck_after=10.0), CountingLookup(ALICE)
    assert await cache.user(b"k", lookup) == ALICE
    assert await cache.user(b"k", lookup) == ALICE
    assert lookup.calls == 1


async def test_unknown_sessions_are_not_cached() -> None:
    cache, lookup = SessionCache(recheck_after=10.0), CountingLookup(None)
    assert await cache.user(b"k", lookup) is None
    lookup.user = ALICE  # the session was created meanwhile
    assert await cache.user(b"k", lookup) == ALICE


async def test_the_least_recently_used_session_goes_first() -> None:
    cache, lookup = SessionCache(recheck_after=10.0, size=2), CountingLookup(ALICE)
    await cache.user(b"a", lookup)
    await cache.user(b"b", lookup)
    await cache.user(b"a", lookup)  # now b is the oldest
    await cache.user(b"c", lookup)
    assert len(cache) == 2
    calls = lookup.calls
    await cache.user(b"a", lookup)
    assert lookup.calls == calls
    await cache.user(b"b", lookup)
    assert lookup.calls == calls + 1


async def test_a_dropped_session_is_looked_up_again() -> None:
    cache, lookup = SessionCache(recheck_after=10.0), CountingLookup(ALICE)
    await cache.user(b"k", lookup)
    cache.drop(b"k")
    lookup.user = None
    assert await cache.user(b"k", lookup) is None


async def test_a_lookup_in_flight_when_the_session_ends_is_not_cached() -> None:
    cache, lookup = SessionCache(recheck_after=10.0), CountingLookup(ALICE)
    lookup.release = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cache.user, b"k", lookup)
        await trio.testing.wait_all_tasks_blocked()
        # The lookup read the session before logout deleted it; logout drops it, then the
        # lookup comes back with the old answer.
        cache.drop(b"k")
        lookup.release.set()
    lookup.release = None
    lookup.user = None
    assert await cache.user(b"k", lookup) is None


async def test_logout_refuses_the_session_at_once(server: TestServer,
                                                  http: httpx.AsyncClient) -> None:
    session = await register(http, "alice")
    other = await register(http, "bob")
    for _ in range(3):
        assert (await http.get("/v1/info", headers=auth(session))).status_code == 200
    assert (await http.post("/v1/logout", headers=auth(session))).status_code == 200
    refused = await http.get("/v1/info", headers=auth(session))
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"
    # Other sessions stay cached and valid.
    assert (await http.get("/v1/info", headers=auth(other))).json()["login"] == "bob"


async def test_logout_racing_requests_leaves_no_usable_session(
        server: TestServer, http: httpx.AsyncClient) -> None:
    session = await register(http, "alice")
    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(partial(http.get, "/v1/info", headers=auth(session)))
        assert (await http.post("/v1/logout", headers=auth(session))).status_code == 200
    for _ in range(3):
        assert (await http.get("/v1/info", headers=auth(session))).status_code == 401


async def test_a_session_is_looked_up_again_after_a_while(autojump_clock) -> None:
    cache, lookup = SessionCache(recheck_after=10.0), CountingLookup(ALICE)
    await cache.user(b"k", lookup)
    await trio.sleep(9)
    await cache.user(b"k", lookup)
    assert lookup.calls == 1
    # Ended elsewhere (an operator's command on the database file): noticed at the recheck.
    lookup.user = None
    await trio.sleep(2)
    assert await cache.user(b"k", lookup) is None
    assert lookup.calls == 2 and len(cache) == 0
