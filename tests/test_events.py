"""Opt-in event frames on the room socket: typing, presence, read markers and edits.

Every test runs against a real server with several sockets per room. "Nothing else arrived"
is shown with a fence: a message sent afterwards must be the very next frame, because each
socket's frames leave in the order they were queued.
"""

from __future__ import annotations

import json
import math

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from helpers import (
    auth,
    chat_url,
    make_room,
    post_message,
    receive_json,
    register,
    send_json,
    user_id,
    wait_for_sockets,
)

ALL_EVENTS = "typing,presence,read,edit"
ORIGINAL_MESSAGE_KEYS = {"id", "text", "user_id", "room_id", "created_at"}


@pytest.mark.parametrize("events", ["typing,shouting", "Typing", "typing,,edit", "all"])
async def test_unknown_event_name_refuses_the_handshake(server, http, events):
    alice = await register(http, "alice")
    room = await make_room(http, alice)
    with pytest.raises(ConnectionRejected) as refused:
        async with open_websocket_url(chat_url(server, room, alice, events)):
            pass
    assert refused.value.status_code == 422
    assert json.loads(refused.value.body)["error"]["code"] == "invalid_json"


async def test_session_and_membership_are_checked_before_events(server, http):
    alice = await register(http, "alice")
    outsider = await register(http, "outsider")
    room = await make_room(http, alice)
    for session, status in (("0" * 40, 401), (outsider, 422)):
        with pytest.raises(ConnectionRejected) as refused:
            async with open_websocket_url(chat_url(server, room, session, "nonsense")):
                pass
        assert refused.value.status_code == status


async def test_a_socket_without_events_gets_only_messages_whatever_happens(server, http):
    alice, bob, carol = [await register(http, name) for name in ("alice", "bob", "carol")]
    bob_id = await user_id(http, bob)
    room = await make_room(http, alice, bob, carol)
    async with open_websocket_url(chat_url(server, room, carol)) as original, \
            open_websocket_url(chat_url(server, room, alice, ALL_EVENTS)) as watcher:
        async with open_websocket_url(chat_url(server, room, bob, ALL_EVENTS)) as bob_ws:
            assert await receive_json(watcher) == {
                "type": "presence", "room_id": room, "user_id": bob_id, "status": "online"}
            await send_json(bob_ws, {"type": "typing", "state": "composing"})
            assert (await receive_json(watcher))["type"] == "typing"
            first = await post_message(bob_ws, "first", "n1")
            assert (await receive_json(watcher))["id"] == first
            edited = await http.put(f"/v1/rooms/{room}/messages/{first}",
                                    json={"text": "first, fixed"}, headers=auth(bob))
            assert edited.status_code == 200
            assert (await receive_json(watcher))["type"] == "edit"
            await http.put(f"/v1/rooms/{room}/read", json={"message_id": first},
                           headers=auth(bob))
            assert (await receive_json(watcher))["type"] == "read"
            deleted = await http.delete(f"/v1/rooms/{room}/messages/{first}", headers=auth(bob))
            assert deleted.status_code == 200
            assert (await receive_json(watcher))["type"] == "delete"
        assert (await receive_json(watcher))["status"] == "offline"
        last = await post_message(watcher, "last", "n2")

        frames = [await receive_json(original), await receive_json(original)]
        assert [frame["id"] for frame in frames] == [first, last]
        assert frames[0]["text"] == "first"  # as it was sent; the edit is not a message frame
        for frame in frames:
            assert set(frame) == ORIGINAL_MESSAGE_KEYS
        # The room is quiet now; one more message shows nothing was queued behind `last`.
        fence = await post_message(watcher, "fence", "n3")
        assert (await receive_json(original))["id"] == fence


async def test_presence_changes_only_with_the_first_and_last_tab(server, http):
    alice, bob = await register(http, "alice"), await register(http, "bob")
    alice_id, bob_id = await user_id(http, alice), await user_id(http, bob)
    room = await make_room(http, alice, bob)

    async def online() -> list[int]:
        response = await http.get(f"/v1/rooms/{room}", headers=auth(alice))
        return response.json()["online"]

    async with open_websocket_url(chat_url(server, room, alice, "presence")) as watcher:
        await wait_for_sockets(http, 1)
        assert await online() == [alice_id]
        async with open_websocket_url(chat_url(server, room, bob)) as tab1:
            assert await receive_json(watcher) == {
                "type": "presence", "room_id": room, "user_id": bob_id, "status": "online"}
            assert await online() == sorted([alice_id, bob_id])
            async with open_websocket_url(chat_url(server, room, bob)) as tab2:
                await wait_for_sockets(http, 3)
                await send_json(tab2, {"text": "second tab"})
                assert (await receive_json(watcher))["text"] == "second tab"

                await tab1.aclose()
                await wait_for_sockets(http, 2)
                await send_json(tab2, {"text": "still here"})
                assert (await receive_json(watcher))["text"] == "still here"
                assert await online() == sorted([alice_id, bob_id])
            assert await receive_json(watcher) == {
                "type": "presence", "room_id": room, "user_id": bob_id, "status": "offline"}
            assert await online() == [alice_id]


async def test_typing_reaches_other_typing_subscribers_only_and_is_not_stored(server, http):
    alice, bob, carol = [await register(http, name) for name in ("alice", "bob", "carol")]
    alice_id = await user_id(http, alice)
    room = await make_room(http, alice, bob, carol)
    async with open_websocket_url(chat_url(server, room, carol, "read,edit")) as carol_ws, \
            open_websocket_url(chat_url(server, room, bob, "typing")) as bob_ws, \
            open_websocket_url(chat_url(server, room, alice, "typing")) as alice_ws:
        await send_json(alice_ws, {"type": "typing", "state": "composing"})
        assert await receive_json(bob_ws) == {
            "type": "typing", "room_id": room, "user_id": alice_id, "state": "composing"}
        await send_json(alice_ws, {"type": "typing", "state": "paused"})
        assert (await receive_json(bob_ws))["state"] == "paused"
        # Not echoed to the typist, not sent to a socket that did not ask for typing.
        message = await post_message(alice_ws, "hello", "n1")
        assert (await receive_json(carol_ws))["id"] == message
        assert (await receive_json(bob_ws))["id"] == message

    history = await http.get(f"/v1/rooms/{room}/messages", headers=auth(bob))
    assert [m["text"] for m in history.json()] == ["hello"]


@pytest.mark.parametrize("frame", [
    {"type": "shout", "text": "hi"},
    {"type": None, "text": "hi"},
    {"type": "typing"},
    {"type": "typing", "state": "sleeping"},
    {"type": "typing", "state": ["composing"]},
    {"type": "presence", "status": "online"},
])
async def test_a_client_frame_with_an_unknown_type_or_bad_typing_is_invalid_json(
        server, http, frame):
    alice, bob = await register(http, "alice"), await register(http, "bob")
    room = await make_room(http, alice, bob)
    # Bob hears of everything but alice's arrival, so nothing relayed would go unnoticed.
    async with open_websocket_url(chat_url(server, room, bob, "typing,read,edit")) as bob_ws, \
            open_websocket_url(chat_url(server, room, alice, ALL_EVENTS)) as alice_ws:
        await send_json(alice_ws, frame)
        assert (await receive_json(alice_ws))["error"]["code"] == "invalid_json"
        message = await post_message(alice_ws, "still open", "n1")
        assert (await receive_json(bob_ws))["id"] == message  # nothing reached bob before it


async def test_typing_beyond_two_a_second_is_dropped_silently(server, http):
    alice, bob = await register(http, "alice"), await register(http, "bob")
    room = await make_room(http, alice, bob)
    async with open_websocket_url(chat_url(server, room, bob, "typing")) as bob_ws, \
            open_websocket_url(chat_url(server, room, alice, "typing")) as alice_ws:
        started = trio.current_time()
        for i in range(20):
            await send_json(alice_ws, {"type": "typing", "state": ("composing", "paused")[i % 2]})
        # The typist is not told: the next frame it gets is the ack of its message.
        message = await post_message(alice_ws, "done", "n1")
        forwarded = []
        while (frame := await receive_json(bob_ws)).get("type") == "typing":
            forwarded.append(frame["state"])
        assert frame["id"] == message
        # The server handled the 20 frames within `elapsed` (same clock: it runs in this
        # process), and lets at most 2 through in any second of it.
        elapsed = trio.current_time() - started
        assert forwarded[:1] == ["composing"]
        assert len(forwarded) <= 2 * max(1, math.ceil(elapsed)), (forwarded, elapsed)

        # A rate, not a cap: once a second has passed typing goes through again.
        await trio.sleep(1.05)
        await send_json(alice_ws, {"type": "typing", "state": "paused"})
        assert (await receive_json(bob_ws))["state"] == "paused"


async def test_read_marker_moves_reach_read_subscribers_only(server, http):
    alice, bob = await register(http, "alice"), await register(http, "bob")
    bob_id = await user_id(http, bob)
    room = await make_room(http, alice, bob)
    async with open_websocket_url(chat_url(server, room, bob)) as original, \
            open_websocket_url(chat_url(server, room, alice, "read,typing")) as alice_ws:
        message = await post_message(alice_ws, "read me", "n1")
        assert (await receive_json(original))["id"] == message
        moved = await http.put(f"/v1/rooms/{room}/read", json={"message_id": message},
                               headers=auth(bob))
        assert moved.status_code == 200
        assert await receive_json(alice_ws) == {
            "type": "read", "room_id": room, "user_id": bob_id, "message_id": message}
        fence = await post_message(alice_ws, "fence", "n2")
        assert (await receive_json(original))["id"] == fence
