"""The newest page of a room served from memory (echat.recent) is always what the database
holds: every check below reads the page twice, once cached and once straight from the
database, after each kind of change."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from echat.errors import RoomNotFound
from echat.models import Message, StoredMessage
from echat.recent import MESSAGES_KEPT, RecentMessages, RoomTail
from echat.store import Store, _select_messages, open_store
from echat.testing import TestServer
from helpers import auth, make_room, register


async def from_database(store: Store, room: int, user: int, limit: int = 50) -> list:
    found = await store._read(_select_messages, room, user, limit, None, None)
    if found is None:
        raise RoomNotFound()
    return found


async def assert_page_is_the_database(store: Store, room: int, user: int, limit: int = 50) -> list:
    cached = await store.messages(room, user, limit=limit)
    assert cached == await from_database(store, room, user, limit)
    return cached


@pytest.fixture
async def store(tmp_path: Path):
    async with open_store(str(tmp_path / "echat.db")) as opened:
        yield opened


async def two_users_and_room(store: Store) -> tuple[int, int, int]:
    alice = await store.create_user("Alice", "alice", "hash")
    bob = await store.create_user("Bob", "bob", "hash")
    room = await store.open_room(alice.id, [bob.id])
    return alice.id, bob.id, room.id


async def test_new_messages_edits_and_deletions_reach_the_cached_page(store: Store):
    alice, bob, room = await two_users_and_room(store)
    assert await assert_page_is_the_database(store, room, alice) == []
    first = (await store.add_message(room, alice, "one")).message
    second = (await store.add_message(room, bob, "two")).message
    assert [m.text for m in await assert_page_is_the_database(store, room, bob)] == ["one", "two"]
    await store.edit_message(room, alice, first.id, "one, edited")
    page = await assert_page_is_the_database(store, room, bob)
    assert page[0].text == "one, edited" and page[0].edited_at is not None
    await store.delete_message(room, bob, second.id)
    assert [m.id for m in await assert_page_is_the_database(store, room, alice)] == [first.id]
    # A resent nonce stores nothing, and the page does not grow.
    await store.add_message(room, alice, "three", "n1")
    await store.add_message(room, alice, "three", "n1")
    assert len(await assert_page_is_the_database(store, room, alice)) == 2


async def test_the_page_keeps_only_the_newest_messages(store: Store):
    alice, _, room = await two_users_and_room(store)
    await store.messages(room, alice, limit=50)  # cached while the room is empty
    for n in range(MESSAGES_KEPT + 5):
        await store.add_message(room, alice, f"m{n}")
    for limit in (1, 10, MESSAGES_KEPT):
        page = await assert_page_is_the_database(store, room, alice, limit)
        assert page[-1].text == f"m{MESSAGES_KEPT + 4}" and len(page) == limit
    # Deleting from a full page leaves fewer than a page known: the next read goes to the
    # database for the older message that now belongs on the page.
    newest = (await store.messages(room, alice, limit=1))[0]
    await store.delete_message(room, alice, newest.id)
    page = await assert_page_is_the_database(store, room, alice, MESSAGES_KEPT)
    assert len(page) == MESSAGES_KEPT and page[0].text == "m4"


async def test_a_member_who_left_is_refused_and_the_others_still_read(store: Store):
    alice, bob, room = await two_users_and_room(store)
    await store.add_message(room, alice, "hello")
    await assert_page_is_the_database(store, room, bob)
    await store.leave_room(room, bob)
    with pytest.raises(RoomNotFound):
        await store.messages(room, bob, limit=50)
    assert [m.text for m in await assert_page_is_the_database(store, room, alice)] == ["hello"]
    await store.leave_room(room, alice)
    with pytest.raises(RoomNotFound):
        await store.messages(room, alice, limit=50)


async def test_a_stranger_is_refused_from_a_cached_room(store: Store):
    alice, _, room = await two_users_and_room(store)
    carol = await store.create_user("Carol", "carol", "hash")
    await store.messages(room, alice, limit=50)
    with pytest.raises(RoomNotFound):
        await store.messages(room, carol.id, limit=50)


async def test_imported_messages_show_on_the_page(store: Store):
    alice, bob, room = await two_users_and_room(store)
    await store.messages(room, alice, limit=50)
    await store.import_messages(room, [(bob, f"old {n}", "2025-01-01T00:00:00") for n in range(3)])
    assert [m.text for m in await assert_page_is_the_database(store, room, alice)] == [
        "old 0", "old 1", "old 2"]
    await store.import_messages(room, [(alice, "mine", "2025-01-01T00:00:01")])
    # The rooms list's read state counts imported messages like posted ones.
    for user, unread in ((alice, 3), (bob, 1)):
        [listed] = await store.rooms_of(user)
        assert (listed.unread, listed.last_message.text) == (unread, "mine")
    carol = await store.create_user("Carol", "carol", "hash")
    with pytest.raises(RoomNotFound):
        await store.import_messages(room, [(carol.id, "not a member", "2025-01-01T00:00:00")])
    assert len(await assert_page_is_the_database(store, room, alice)) == 4


async def test_history_over_http_follows_edits_and_deletions(server: TestServer,
                                                             http: httpx.AsyncClient):
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    room = await make_room(http, alice, bob)
    store = server.app.store
    alice_id = (await http.get("/v1/info", headers=auth(alice))).json()["id"]
    posted = (await store.add_message(room, alice_id, "hi")).message
    url = f"/v1/rooms/{room}/messages"
    assert [m["text"] for m in (await http.get(url, headers=auth(bob))).json()] == ["hi"]
    edit = await http.put(f"{url}/{posted.id}", json={"text": "hello"}, headers=auth(alice))
    assert edit.status_code == 200
    assert [m["text"] for m in (await http.get(url, headers=auth(bob))).json()] == ["hello"]
    assert (await http.delete(f"{url}/{posted.id}", headers=auth(alice))).status_code == 200
    assert (await http.get(url, headers=auth(bob))).json() == []
    assert (await http.delete(f"/v1/rooms/{room}/members/me", headers=auth(bob))).status_code == 200
    refused = await http.get(url, headers=auth(bob))
    assert refused.json()["error"]["code"] == "room_not_found"


def test_a_room_read_while_something_committed_is_not_kept():
    recent = RecentMessages()
    changes = recent.changes
    message = Message(1, "hi", 1, 7, "2025-01-01T00:00:00")
    # A message of room 7 commits while room 7's read is on its way without it.
    recent.committed(StoredMessage(message, created=True))
    recent.keep(7, RoomTail({1, 2}, [], whole=True), changes)
    assert recent.page(7, 1, 50) is None
    recent.keep(7, RoomTail({1, 2}, [message], whole=True), recent.changes)
    assert recent.page(7, 1, 50) == [message]
