"""Sync without a socket (GET /v1/feed, long-poll) and read state (read markers, unread counts,
last message, rooms by activity), against a real server; the hub's feed waiters as units.
"""

from __future__ import annotations

from typing import Any

import httpx
import trio
from trio_websocket import open_websocket_url

from echat.hub import CLOSE_GOING_AWAY, CLOSE_POLICY, Hub
from echat.models import Message
from echat.testing import serve
from helpers import (
    auth,
    chat_url,
    error_code,
    make_room,
    post_as,
    post_message,
    receive_json,
    register,
    user_id,
)


async def feed(http: httpx.AsyncClient, session: str, **params: object) -> dict:
    response = await http.get("/v1/feed", params=params, headers=auth(session))
    assert response.status_code == 200, response.text
    return response.json()


async def rooms(http: httpx.AsyncClient, session: str) -> list[dict]:
    response = await http.get("/v1/rooms", headers=auth(session))
    assert response.status_code == 200, response.text
    return response.json()


async def room_of(http: httpx.AsyncClient, session: str, room: int) -> dict:
    response = await http.get(f"/v1/rooms/{room}", headers=auth(session))
    assert response.status_code == 200, response.text
    return response.json()


async def mark_read(http: httpx.AsyncClient, session: str, room: int,
                    message_id: object) -> httpx.Response:
    return await http.put(f"/v1/rooms/{room}/read", json={"message_id": message_id},
                          headers=auth(session))


async def wait_for_held_feeds(server: Any, count: int) -> None:
    """Until the server holds `count` feed requests (nothing tells the client)."""
    with trio.fail_after(5):
        while server.app.hub.statistics().feeds_waiting != count:
            await trio.sleep(0.005)


# -- the feed -------------------------------------------------------------------------------


async def test_feed_pages_every_room_of_the_caller_oldest_first(server, http):
    alice, bob, carol = [await register(http, name) for name in ("alice", "bob", "carol")]
    pair = await make_room(http, alice, bob)
    group = await make_room(http, alice, bob, carol)
    others = await make_room(http, bob, carol)
    sent = []
    for round_ in range(3):
        sent += await post_as(server, pair, alice, f"pair {round_}")
        await post_as(server, others, carol, f"others {round_}")  # never alice's
        sent += await post_as(server, group, carol, f"group {round_}")

    first = await feed(http, alice, limit=4)
    assert [m["id"] for m in first["messages"]] == sent[:4]
    assert first["cursor"] == sent[3]
    assert first["messages"][0] == {
        "id": sent[0], "text": "pair 0", "user_id": await user_id(http, alice),
        "room_id": pair, "created_at": first["messages"][0]["created_at"]}
    rest = await feed(http, alice, after=first["cursor"], limit=4)
    assert [m["id"] for m in rest["messages"]] == sent[4:]
    assert rest["cursor"] == sent[-1]
    # Nothing newer: an empty list, and the cursor stays.
    assert await feed(http, alice, after=rest["cursor"]) == {"messages": [],
                                                             "cursor": sent[-1]}
    # The default takes everything from the start.
    everything = await feed(http, alice)
    assert [m["id"] for m in everything["messages"]] == sent
    assert {m["room_id"] for m in everything["messages"]} == {pair, group}
    # Carol sees the group and her own room, never the pair.
    assert {m["room_id"] for m in (await feed(http, carol))["messages"]} == {group, others}
    assert await feed(http, await register(http, "dave")) == {"messages": [], "cursor": 0}


async def test_feed_refuses_bad_parameters_and_sessions(server, http):
    alice = await register(http, "alice")
    for params in [{"after": "-1"}, {"after": "x"}, {"after": str(2**63)}, {"limit": "0"},
                   {"limit": "501"}, {"limit": "1.5"}, {"wait": "61"}, {"wait": "-1"},
                   {"wait": "soon"}, {"wait": "1e1"}, {"wait": "0.0001"}, {"wait": "nan"}]:
        response = await http.get("/v1/feed", params=params, headers=auth(alice))
        assert (response.status_code, error_code(response)) == (422, "invalid_json"), params
    for headers in ({}, auth("0" * 40)):
        response = await http.get("/v1/feed", headers=headers)
        assert (response.status_code, error_code(response)) == (401, "unauthorized")
    assert (await feed(http, alice, after=2**63 - 1, limit=500, wait="0.05"))["messages"] == []


async def test_a_held_feed_is_answered_by_a_socket_message(server, http):
    alice, bob = await register(http, "alice"), await register(http, "bob")
    room = await make_room(http, alice, bob)
    (old,) = await post_as(server, room, alice, "before")
    answers: list[dict] = []

    async def hold(session: str) -> None:
        answers.append(await feed(http, session, after=old, wait=30))

    async with open_websocket_url(chat_url(server, room, alice)) as ws:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold, bob)
            nursery.start_soon(hold, alice)  # the author's other devices hear it too
            await wait_for_held_feeds(server, 2)
            new = await post_message(ws, "wake up", "n-wake")
    stored = (await http.get(f"/v1/rooms/{room}/messages", params={"after": old},
                             headers=auth(bob))).json()
    for answer in answers:
        assert answer == {"messages": stored, "cursor": new}
        assert stored[0]["text"] == "wake up"
    assert server.app.hub.statistics().feeds_waiting == 0


async def test_a_held_feed_ignores_rooms_of_others_and_times_out_empty(server, http):
    alice, bob, carol = [await register(http, name) for name in ("alice", "bob", "carol")]
    theirs = await make_room(http, bob, carol)
    mine = await make_room(http, alice, bob)
    (last,) = await post_as(server, mine, bob, "seen")
    answer: list[dict] = []

    async def hold() -> None:
        answer.append(await feed(http, alice, after=last, wait=1))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold)
        await wait_for_held_feeds(server, 1)
        await post_as(server, theirs, carol, "not for alice")
    assert answer == [{"messages": [], "cursor": last}]


async def test_logout_ends_the_sessions_held_feeds_with_401(server, http):
    await register(http, "alice")
    sessions = [(await http.post("/v1/login", json={"login": "alice", "password": "secret"})
                 ).json()["session_id"] for _ in range(2)]
    statuses: dict[str, int] = {}

    async def hold(session: str) -> None:
        response = await http.get("/v1/feed", params={"wait": 30}, headers=auth(session))
        statuses[session] = response.status_code
        assert error_code(response) == "unauthorized"

    async with trio.open_nursery() as nursery:
        for session in sessions:
            nursery.start_soon(hold, session)
        await wait_for_held_feeds(server, 2)
        assert (await http.post("/v1/logout", headers=auth(sessions[0]))).status_code == 200
        with trio.fail_after(5):
            while not statuses:
                await trio.sleep(0.005)
        assert statuses == {sessions[0]: 401}
        # The other session's request still waits.
        assert server.app.hub.statistics().feeds_waiting == 1
        nursery.cancel_scope.cancel()


async def test_shutdown_answers_held_feeds():
    answers: list[httpx.Response] = []
    async with httpx.AsyncClient() as http, trio.open_nursery() as nursery:
        async with serve(shutdown_grace=30) as server:
            http.base_url = httpx.URL(server.url)
            alice = await register(http, "alice")

            async def hold() -> None:
                answers.append(await http.get("/v1/feed", params={"wait": 60},
                                              headers=auth(alice)))

            for _ in range(3):
                nursery.start_soon(hold)
            await wait_for_held_feeds(server, 3)
        # The server has stopped (its block waits for shutdown), and was not left waiting
        # for the held requests: they were answered before it stopped.
        assert [(r.status_code, r.json()) for r in answers] == [(200, {"messages": [],
                                                                       "cursor": 0})] * 3


# -- read state -----------------------------------------------------------------------------


async def test_the_read_marker_only_moves_forward_and_tells_read_subscribers(server, http):
    alice, bob, carol = [await register(http, name) for name in ("alice", "bob", "carol")]
    bob_id = await user_id(http, bob)
    room = await make_room(http, alice, bob)
    elsewhere = await make_room(http, alice, carol)
    first, second, third = await post_as(server, room, alice, "one", "two", "three")
    (foreign,) = await post_as(server, elsewhere, alice, "elsewhere")

    async with open_websocket_url(chat_url(server, room, alice, "read")) as watcher:
        moved = await mark_read(http, bob, room, second)
        assert (moved.status_code, moved.json()) == (200, {"room_id": room, "message_id": second})
        assert await receive_json(watcher) == {"type": "read", "room_id": room,
                                               "user_id": bob_id, "message_id": second}
        for back in (first, second):
            kept = await mark_read(http, bob, room, back)
            assert kept.json() == {"room_id": room, "message_id": second}
        assert (await room_of(http, bob, room))["last_read_message_id"] == second
        for session, target, body, status, code in [
            (bob, room, foreign, 422, "message_not_found"),
            (bob, room, 999999, 422, "message_not_found"),
            (bob, room, 2**70, 422, "message_not_found"),
            (bob, room, -1, 422, "message_not_found"),
            (carol, room, third, 422, "room_not_found"),
            (bob, 999999, third, 422, "room_not_found"),
            (bob, room, "3", 422, "invalid_json"),
            (bob, room, True, 422, "invalid_json"),
            (bob, room, None, 422, "invalid_json"),
            ("0" * 40, room, third, 401, "unauthorized"),
        ]:
            response = await mark_read(http, session, target, body)
            assert (response.status_code, error_code(response)) == (status, code), body
        # Only moves are told: the next frame is this one, not one per refused or kept call.
        await mark_read(http, bob, room, third)
        assert (await receive_json(watcher))["message_id"] == third
    assert (await room_of(http, bob, room))["last_read_message_id"] == third
    assert (await room_of(http, alice, room))["last_read_message_id"] is None


async def test_unread_counts_follow_messages_markers_and_deletions(server, http):
    alice, bob, carol = [await register(http, name) for name in ("alice", "bob", "carol")]
    room = await make_room(http, alice, bob, carol)

    async def unread() -> dict[str, int]:
        return {name: (await room_of(http, session, room))["unread"]
                for name, session in (("alice", alice), ("bob", bob), ("carol", carol))}

    assert await unread() == {"alice": 0, "bob": 0, "carol": 0}
    a1, a2, a3 = await post_as(server, room, alice, "a1", "a2", "a3")
    (b1,) = await post_as(server, room, bob, "b1")
    # Nobody counts their own messages.
    assert await unread() == {"alice": 1, "bob": 3, "carol": 4}
    await mark_read(http, carol, room, a2)
    await mark_read(http, bob, room, b1)
    assert await unread() == {"alice": 1, "bob": 0, "carol": 2}
    # Deleting a message read by carol, then one nobody but alice has seen.
    await http.delete(f"/v1/rooms/{room}/messages/{a1}", headers=auth(alice))
    assert await unread() == {"alice": 1, "bob": 0, "carol": 2}
    await http.delete(f"/v1/rooms/{room}/messages/{a3}", headers=auth(alice))
    assert await unread() == {"alice": 1, "bob": 0, "carol": 1}
    await mark_read(http, alice, room, b1)
    await post_as(server, room, carol, "c1")
    assert await unread() == {"alice": 1, "bob": 1, "carol": 1}
    # The same figures in the rooms list.
    assert [r["unread"] for r in await rooms(http, bob)] == [1]


async def test_last_message_follows_messages_edits_and_deletions(server, http):
    alice, bob = await register(http, "alice"), await register(http, "bob")
    room = await make_room(http, alice, bob)
    created = await http.post("/v1/rooms", json={"users": [{"id": await user_id(http, bob)}]},
                              headers=auth(alice))
    assert created.json() | {"users": None} == {
        "id": room, "users": None, "title": None, "last_message": None,
        "last_read_message_id": None, "unread": 0}
    first, second = await post_as(server, room, alice, "first", "second")
    shown = (await room_of(http, bob, room))["last_message"]
    assert (shown["id"], shown["text"], shown["room_id"]) == (second, "second", room)
    await http.put(f"/v1/rooms/{room}/messages/{second}", json={"text": "second, fixed"},
                   headers=auth(alice))
    shown = (await room_of(http, bob, room))["last_message"]
    assert (shown["text"], "edited_at" in shown) == ("second, fixed", True)
    await http.delete(f"/v1/rooms/{room}/messages/{second}", headers=auth(alice))
    titled = await http.put(f"/v1/rooms/{room}", json={"title": "t"}, headers=auth(bob))
    assert titled.json()["last_message"]["id"] == first
    assert titled.json()["unread"] == 1  # the title route shows the caller's own figures
    await http.delete(f"/v1/rooms/{room}/messages/{first}", headers=auth(alice))
    assert (await room_of(http, bob, room))["last_message"] is None


async def test_rooms_are_listed_by_latest_activity(server, http):
    alice, bob, carol = [await register(http, name) for name in ("alice", "bob", "carol")]
    first = await make_room(http, alice, bob)
    second = await make_room(http, alice, carol)
    assert [r["id"] for r in await rooms(http, alice)] == [second, first]
    (early,) = await post_as(server, first, bob, "early")
    assert [r["id"] for r in await rooms(http, alice)] == [first, second]
    # A room made now is newer than every message so far.
    third = await make_room(http, alice, bob, carol)
    assert [r["id"] for r in await rooms(http, alice)] == [third, first, second]
    await post_as(server, second, carol, "hello")
    assert [r["id"] for r in await rooms(http, alice)] == [second, third, first]
    (late,) = await post_as(server, first, alice, "late")
    assert [r["id"] for r in await rooms(http, alice)] == [first, second, third]
    # Deleting the last message puts the room back where its earlier message leaves it.
    await http.delete(f"/v1/rooms/{first}/messages/{late}", headers=auth(alice))
    assert [r["id"] for r in await rooms(http, alice)] == [second, third, first]
    assert [r["id"] for r in await rooms(http, bob)] == [third, first]
    assert (await rooms(http, bob))[1]["last_message"]["id"] == early


# -- the hub's feed waiters -----------------------------------------------------------------


def message(message_id: int, room_id: int = 7) -> Message:
    return Message(message_id, f"m{message_id}", 1, room_id, "2026-01-01T00:00:00")


async def test_feed_waiters_get_their_users_messages_after_their_cursor_up_to_the_limit():
    hub = Hub(outbox_frames=10)
    with hub.hold_feed(1, b"phone", after=10, limit=2) as phone, \
            hub.hold_feed(1, b"laptop", after=11, limit=5) as laptop, \
            hub.hold_feed(2, b"other", after=0, limit=5) as other:
        assert hub.statistics().feeds_waiting == 3
        hub.feed_message(message(11), [3])
        assert not any(w.woken.is_set() for w in (phone, laptop, other))
        hub.feed_message(message(11), [1, 3])
        # The laptop's cursor is past it: it stays asleep.
        assert (phone.woken.is_set(), laptop.woken.is_set(), other.woken.is_set()) == (
            True, False, False)
        for message_id in (12, 13):
            hub.feed_message(message(message_id), [1])
        assert [m.id for m in phone.messages] == [11, 12]  # its limit
        assert [m.id for m in laptop.messages] == [12, 13] and laptop.woken.is_set()
        assert other.messages == [] and not phone.session_ended
    assert hub.statistics().feeds_waiting == 0


async def test_feed_waiters_wake_on_logout_of_their_session_and_at_shutdown():
    hub = Hub(outbox_frames=10)
    with hub.hold_feed(1, b"phone", 0, 10) as phone, hub.hold_feed(1, b"laptop", 0, 10) as laptop:
        hub.close_session(b"phone", CLOSE_POLICY)
        assert (phone.woken.is_set(), phone.session_ended) == (True, True)
        assert (laptop.woken.is_set(), laptop.session_ended) == (False, False)
        hub.close_all(CLOSE_GOING_AWAY)
        assert (laptop.woken.is_set(), laptop.session_ended, laptop.messages) == (
            True, False, [])
    # After shutdown has begun a new request does not wait at all.
    with hub.hold_feed(2, b"late", 0, 10) as late:
        assert late.woken.is_set()
