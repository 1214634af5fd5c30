"""The benchmark's database, built straight through echat's store before the server starts.

Registering thousands of users through the API would spend minutes in argon2, and a million
messages through the socket far longer; the store's own calls (group commit, and
`Store.import_messages` for history) build the same rows in seconds. Every user has the same
password, hashed once with the server's real parameters, so `POST /v1/login` pays the full cost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import trio

from echat import accounts
from echat.passwords import Passwords
from echat.store import Store, open_store

PASSWORD = "bench password"
# 2025-01-01T00:00:00Z: history timestamps count up a second a message from here.
HISTORY_EPOCH = 1735689600


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is; `FULL` is what `make bench` runs, `TINY` the smoke test."""

    rest_clients: int
    rest_requests: int
    login_requests: int
    storm_info_clients: int
    storm_info_requests: int
    storm_login_clients: int
    fanout: tuple[tuple[int, int], ...]  # (clients in one room, messages each client sends)
    # Runs of each short, swinging scenario (REST GETs, fan-out) against each server, taken in
    # turns; the median run is shown.
    rounds: int
    rooms: int  # rooms of ROOM_SIZE members all talking at once
    room_messages: int
    idle_sockets: int
    idle_hold: float  # seconds the idle sockets are held open before memory is read
    shallow_messages: int
    deep_messages: int
    history_requests: int
    history_rounds: int  # pages each room gives one client taking turns between the two rooms


ROOM_SIZE = 4

FULL = Sizes(
    rest_clients=50, rest_requests=4000, login_requests=40,
    storm_info_clients=10, storm_info_requests=2000, storm_login_clients=40,
    fanout=((20, 100), (100, 10)), rounds=5, rooms=500, room_messages=5,
    idle_sockets=5000, idle_hold=3.0, shallow_messages=1000, deep_messages=1_000_000,
    history_requests=3000, history_rounds=300,
)

TINY = Sizes(
    rest_clients=2, rest_requests=30, login_requests=2,
    storm_info_clients=2, storm_info_requests=20, storm_login_clients=1,
    fanout=((3, 4), (5, 2)), rounds=1, rooms=3, room_messages=2,
    idle_sockets=12, idle_hold=0.2, shallow_messages=60, deep_messages=200, history_requests=20,
    history_rounds=5,
)


@dataclass(frozen=True)
class Member:
    user_id: int
    login: str
    session_id: str


@dataclass(frozen=True)
class Fixture:
    members: list[Member]
    # Rooms of ROOM_SIZE: room i holds members[i * ROOM_SIZE : (i + 1) * ROOM_SIZE].
    small_rooms: list[int]
    # Per (clients, messages) of Sizes.fanout: a room of the first `clients` members.
    fanout_rooms: list[int]
    # A room of the first rest_clients members with `shallow_messages` of history, and a room
    # of the first two with `deep_messages`; each with the id of its first message.
    shallow_room: int
    shallow_first: int
    deep_room: int
    deep_first: int


async def build(path: str, sizes: Sizes, *, history: bool = True) -> Fixture:
    """The database for `sizes`; without `history`, the deep room stays empty (its million
    messages take most of the time)."""
    users = max(sizes.idle_sockets, sizes.rooms * ROOM_SIZE, sizes.rest_clients,
                *(clients for clients, _ in sizes.fanout))
    users = -(-users // ROOM_SIZE) * ROOM_SIZE
    password_hash = await Passwords().hash(PASSWORD)
    async with open_store(path) as store:
        members = await _members(store, users, password_hash)
        ids = [m.user_id for m in members]
        small_rooms = await _rooms(
            store, [ids[i:i + ROOM_SIZE] for i in range(0, users, ROOM_SIZE)]
        )
        fanout_rooms = await _rooms(store, [ids[:clients] for clients, _ in sizes.fanout])
        shallow_room, deep_room = await _rooms(store, [ids[:sizes.rest_clients], ids[:2]])
        shallow_first = await _history(store, shallow_room, ids[:2], sizes.shallow_messages)
        deep_first = 0
        if history:
            deep_first = await _history(store, deep_room, ids[:2], sizes.deep_messages)
    return Fixture(members, small_rooms, fanout_rooms, shallow_room, shallow_first, deep_room,
                   deep_first)


async def _members(store: Store, count: int, password_hash: str) -> list[Member]:
    members: list[Member | None] = [None] * count

    async def add(i: int) -> None:
        login = f"bench{i:05d}"
        user = await store.create_user(login, accounts.login_key(login), password_hash)
        session_id = accounts.new_session_id()
        await store.create_session(accounts.session_key(session_id), user.id)
        members[i] = Member(user.id, login, session_id)

    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(add, i)
    return [m for m in members if m is not None]


async def _rooms(store: Store, member_lists: list[list[int]]) -> list[int]:
    rooms = [0] * len(member_lists)

    async def add(i: int) -> None:
        rooms[i] = (await store.open_room(member_lists[i][0], member_lists[i][1:])).id

    async with trio.open_nursery() as nursery:
        for i in range(len(member_lists)):
            nursery.start_soon(add, i)
    return rooms


async def _history(store: Store, room_id: int, authors: list[int], count: int) -> int:
    """Store `count` messages in the room; returns the id of the first."""
    before = (await store.messages(room_id, authors[0], limit=1))
    rows = (
        (authors[i % len(authors)], f"message {i}: a line of history of ordinary length",
         time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(HISTORY_EPOCH + i)))
        for i in range(count)
    )
    await store.import_messages(room_id, rows)
    first = await store.messages(room_id, authors[0], limit=1,
                                 after=before[-1].id if before else 0)
    return first[0].id
