"""Editing and deleting messages, naming and leaving rooms, against a real server."""

from __future__ import annotations

import json

import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from helpers import (
    auth,
    chat_url,
    error_code,
    history,
    make_room,
    post_as,
    post_message,
    receive_json,
    register,
    send_json,
    user_id,
    wait_for_sockets,
)


# -- edit and delete ------------------------------------------------------------------------


async def test_the_author_edits_a_message_and_history_shows_it(server, http):
    alice, bob = await register(http, "alice"), await register(http, "bob")
    room = await make_room(http, alice, bob)
    first, second = await post_as(server, room, alice, "helo", "untouched")

    response = await http.put(f"/v1/rooms/{room}/messages/{first}",
                              json={"text": "hello, Вася 🚀"}, headers=auth(alice))
    assert response.status_code == 200, response.text
    edited = response.json()
    assert edited["id"] == first and edited["text"] == "hello, Вася 🚀"
    assert edited["room_id"] == room and edited["user_id"] == await user_id(http, alice)
    assert len(edited["edited_at"]) == len("2024-01-01T00:00:00")

    shown = await history(http, bob, room)
    assert shown[0] == edited
    # A message nobody edited keeps exactly the original shape.
    assert "edited_at" not in shown[1] and shown[1]["text"] == "untouched"


async def test_edit_and_delete_refusals_change_nothing(server, http):
    alice, bob, carol = [await register(http, name) for name in ("alice", "bob", "carol")]
    room = await make_room(http, alice, bob)
    elsewhere = await make_room(http, alice, carol)
    (mine,) = await post_as(server, room, alice, "original")
    (other_room,) = await post_as(server, elsewhere, alice, "elsewhere")
    url = f"/v1/rooms/{room}/messages/{mine}"

    cases = [
        ("PUT", url, bob, {"text": "hijack"}, 403, "forbidden"),
        ("DELETE", url, bob, None, 403, "forbidden"),
        ("PUT", url, carol, {"text": "x"}, 422, "room_not_found"),
        ("DELETE", url, carol, None, 422, "room_not_found"),
        ("PUT", f"/v1/rooms/{room}/messages/999999", alice, {"text": "x"}, 422,
         "message_not_found"),
        ("DELETE", f"/v1/rooms/{room}/messages/{other_room}", alice, None, 422,
         "message_not_found"),
        ("PUT", f"/v1/rooms/{room}/messages/{other_room}", alice, {"text": "x"}, 422,
         "message_not_found"),
        ("PUT", f"/v1/rooms/{room}/messages/abc", alice, {"text": "x"}, 422,
         "message_not_found"),
        ("PUT", url, alice, {"text": " \n "}, 422, "empty_text"),
        ("PUT", url, alice, {"text": "x" * 4001}, 422, "text_too_long"),
        ("PUT", url, alice, {"text": 5}, 422, "invalid_json"),
        ("PUT", url, alice, {}, 422, "invalid_json"),
        ("PUT", url, None, {"text": "x"}, 401, "unauthorized"),
    ]
    for method, path, session, body, status, code in cases:
        headers = auth(session) if session else {}
        response = await http.request(method, path, json=body, headers=headers)
        assert (response.status_code, error_code(response)) == (status, code), (method, path, response.text)

    assert await history(http, alice, room) == [
        {"id": mine, "text": "original", "user_id": await user_id(http, alice), "room_id": room,
         "created_at": (await history(http, bob, room))[0]["created_at"]}
    ]


async def test_a_deleted_message_is_gone(server, http):
    alice, bob = await register(http, "alice"), await register(http, "bob")
    room = await make_room(http, alice, bob)
    first, second = await post_as(server, room, alice, "oops", "keep")

    response = await http.delete(f"/v1/rooms/{room}/messages/{first}", headers=auth(alice))
    assert (response.status_code, response.json()) == (200, {})
    assert [m["id"] for m in await history(http, bob, room)] == [second]
    for method in ("DELETE", "PUT"):
        again = await http.request(method, f"/v1/rooms/{room}/messages/{first}",
                                   json={"text": "x"}, headers=auth(alice))
        assert error_code(again) == "message_not_found"


async def test_edits_and_deletions_reach_edit_subscribers_after_the_message(server, http):
    alice, bob, carol = [await register(http, name) for name in ("alice", "bob", "carol")]
    room = await make_room(http, alice, bob, carol)
    count = 10
    async with open_websocket_url(chat_url(server, room, bob, "edit")) as bob_ws, \
            open_websocket_url(chat_url(server, room, carol)) as original, \
            open_websocket_url(chat_url(server, room, alice)) as alice_ws:

        async def edit(message_id: int, last: bool) -> None:
            path = f"/v1/rooms/{room}/messages/{message_id}"
            response = await http.put(path, json={"text": f"{message_id} edited"},
                                      headers=auth(alice))
            assert response.status_code == 200
            if last:
                assert (await http.delete(path, headers=auth(alice))).status_code == 200

        # Each message is edited the moment its ack arrives, while later ones are in flight.
        async with trio.open_nursery() as nursery:
            for i in range(count):
                await send_json(alice_ws, {"text": f"message {i}", "nonce": f"n{i}"})
            for i in range(count):
                ack = await receive_json(alice_ws)
                nursery.start_soon(edit, ack["id"], i == count - 1)

        # Each message, its edit, and the last one's deletion.
        seen: list[tuple[str, int]] = []
        while len(seen) < 2 * count + 1:
            frame = await receive_json(bob_ws)
            if "type" not in frame:
                seen.append(("message", frame["id"]))
            elif frame["type"] == "edit":
                assert frame["message"]["text"] == f"{frame['message']['id']} edited"
                assert "edited_at" in frame["message"]
                seen.append(("edit", frame["message"]["id"]))
            else:
                assert frame == {"type": "delete", "room_id": room,
                                 "message_id": frame["message_id"]}
                seen.append(("delete", frame["message_id"]))
        ids = [message_id for kind, message_id in seen if kind == "message"]
        assert len(ids) == count
        for message_id in ids:
            kinds = [kind for kind, seen_id in seen if seen_id == message_id]
            expected = ["message", "edit", "delete"] if message_id == ids[-1] else ["message", "edit"]
            assert kinds == expected, seen

        # The original-style socket got the messages and nothing else.
        for message_id in ids:
            frame = await receive_json(original)
            assert frame["id"] == message_id and "type" not in frame
        fence = await post_message(alice_ws, "fence", "fence")
        assert (await receive_json(original))["id"] == fence


# -- room title -----------------------------------------------------------------------------


async def test_any_member_sets_or_clears_the_title(server, http):
    alice, bob, carol = [await register(http, name) for name in ("alice", "bob", "carol")]
    room = await make_room(http, alice, bob)

    async def put_title(session: str, body: object):
        return await http.put(f"/v1/rooms/{room}", json=body, headers=auth(session))

    named = await put_title(bob, {"title": "Планы 🚀"})
    assert named.status_code == 200 and named.json()["title"] == "Планы 🚀"
    assert named.json()["id"] == room and len(named.json()["users"]) == 2
    seen = await http.get(f"/v1/rooms/{room}", headers=auth(alice))
    assert seen.json()["title"] == "Планы 🚀"
    listed = await http.get("/v1/rooms", headers=auth(alice))
    assert [r["title"] for r in listed.json() if r["id"] == room] == ["Планы 🚀"]

    assert (await put_title(alice, {"title": "x" * 100})).json()["title"] == "x" * 100
    assert (await put_title(alice, {"title": "   "})).json()["title"] is None
    assert (await put_title(alice, {"title": "again"})).json()["title"] == "again"
    assert (await put_title(alice, {"title": None})).json()["title"] is None

    for session, body, code in [
        (alice, {"title": "x" * 101}, "invalid_json"),
        (alice, {"title": 5}, "invalid_json"),
        (alice, {}, "invalid_json"),
        (alice, ["title"], "invalid_json"),
        (carol, {"title": "mine now"}, "room_not_found"),
    ]:
        response = await put_title(session, body)
        assert (response.status_code, error_code(response)) == (422, code), body
    assert (await http.get(f"/v1/rooms/{room}", headers=auth(bob))).json()["title"] is None


# -- leaving --------------------------------------------------------------------------------


async def closed_with(ws) -> int:
    """The close code of a socket the server is closing."""
    with trio.fail_after(5):
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.get_message()
    return closed.value.reason.code


async def test_leaving_closes_the_leavers_sockets_and_the_room_stays(server, http):
    alice, bob, carol = [await register(http, name) for name in ("alice", "bob", "carol")]
    alice_phone = (await http.post("/v1/login", json={"login": "alice", "password": "secret"})
                   ).json()["session_id"]
    alice_id, bob_id, carol_id = [await user_id(http, s) for s in (alice, bob, carol)]
    room = await make_room(http, alice, bob, carol)
    pair = await make_room(http, alice, bob)

    async with open_websocket_url(chat_url(server, room, bob, "presence")) as bob_ws, \
            open_websocket_url(chat_url(server, room, alice)) as laptop, \
            open_websocket_url(chat_url(server, room, alice_phone, "presence")) as phone, \
            open_websocket_url(chat_url(server, pair, alice)) as other_room:
        assert (await receive_json(bob_ws))["status"] == "online"
        left = await http.delete(f"/v1/rooms/{room}/members/me", headers=auth(alice))
        assert (left.status_code, left.json()) == (200, {})

        assert await closed_with(laptop) == 1000
        assert await closed_with(phone) == 1000
        assert await receive_json(bob_ws) == {
            "type": "presence", "room_id": room, "user_id": alice_id, "status": "offline"}
        # Her socket to another room is untouched, and the room goes on for the others.
        await post_message(other_room, "still in the pair", "n1")
        await post_message(bob_ws, "without alice", "b1")
        await wait_for_sockets(http, 2)

    remaining = await http.get(f"/v1/rooms/{room}", headers=auth(bob))
    assert [u["id"] for u in remaining.json()["users"]] == [bob_id, carol_id]
    assert [m["text"] for m in await history(http, carol, room)] == ["without alice"]
    gone = await http.get(f"/v1/rooms/{room}", headers=auth(alice))
    assert error_code(gone) == "room_not_found"
    assert room not in [r["id"] for r in (await http.get("/v1/rooms", headers=auth(alice))).json()]
    with pytest.raises(ConnectionRejected) as refused:
        async with open_websocket_url(chat_url(server, room, alice)):
            pass
    assert refused.value.status_code == 422
    again = await http.delete(f"/v1/rooms/{room}/members/me", headers=auth(alice))
    assert error_code(again) == "room_not_found"

    # One room per set of people: the room now belongs to bob and carol, and the old trio
    # gets a fresh room.
    same = await http.post("/v1/rooms", json={"users": [{"id": carol_id}]}, headers=auth(bob))
    assert same.json()["id"] == room
    trio_again = await http.post("/v1/rooms", json={"users": [{"id": bob_id}, {"id": carol_id}]},
                                 headers=auth(alice))
    assert trio_again.json()["id"] not in (room, pair)


async def test_a_room_whose_last_member_leaves_is_deleted_with_its_messages(server, http):
    alice, bob = await register(http, "alice"), await register(http, "bob")
    room = await make_room(http, alice, bob)
    await post_as(server, room, alice, "one", "two", "three")
    before = (await http.get("/v1/status")).json()

    assert (await http.delete(f"/v1/rooms/{room}/members/me", headers=auth(alice))).json() == {}
    assert len(await history(http, bob, room)) == 3
    assert (await http.delete(f"/v1/rooms/{room}/members/me", headers=auth(bob))).json() == {}

    after = (await http.get("/v1/status")).json()
    assert (after["rooms"], after["messages"]) == (before["rooms"] - 1, before["messages"] - 3)
    response = await http.get(f"/v1/rooms/{room}/messages", headers=auth(bob))
    assert error_code(response) == "room_not_found"
    fresh = await http.post("/v1/rooms", json={"users": [{"id": await user_id(http, alice)}]},
                            headers=auth(bob))
    assert fresh.json()["id"] != room
    assert json.loads(fresh.text)["title"] is None
