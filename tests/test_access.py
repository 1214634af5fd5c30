"""The authorization matrix: every route and the room socket, against a real server, with each
kind of bad credential, and with another user's valid session against a room they are not in.

Each gets exactly the contract's refusal (401 `unauthorized`; 422 `room_not_found` for the
outsider), nothing in the refusal names another room's messages or members, and nothing
changes. A route added to the app without a line in `REQUESTS` (or `PUBLIC`) fails the first
test, so the matrix keeps covering every route.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from trio_websocket import ConnectionRejected, open_websocket_url

from echat.app import create_app
from echat.config import Config
from helpers import auth, make_room, post_message, register, route_table, user_id


@dataclass(frozen=True)
class Sample:
    """A request that a member of the room would have answered with 200."""

    params: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None


# (method, path) → a sample request; {room_id} and {message_id} are the victims' room and message,
# in the path and as a body value.
REQUESTS: dict[tuple[str, str], Sample] = {
    ("POST", "/v1/logout"): Sample(),
    ("GET", "/v1/info"): Sample(),
    ("GET", "/v1/users"): Sample(params={"q": "victim"}),
    ("GET", "/v1/users/"): Sample(params={"q": "victim"}),
    ("GET", "/v1/rooms"): Sample(),
    ("POST", "/v1/rooms"): Sample(body={"users": []}),
    ("GET", "/v1/rooms/{room_id}"): Sample(),
    ("PUT", "/v1/rooms/{room_id}"): Sample(body={"title": "taken over"}),
    ("DELETE", "/v1/rooms/{room_id}/members/me"): Sample(),
    ("GET", "/v1/rooms/{room_id}/messages"): Sample(params={"limit": "500"}),
    ("PUT", "/v1/rooms/{room_id}/messages/{message_id}"): Sample(body={"text": "forged"}),
    ("DELETE", "/v1/rooms/{room_id}/messages/{message_id}"): Sample(),
    ("PUT", "/v1/rooms/{room_id}/read"): Sample(body={"message_id": "{message_id}"}),
    ("GET", "/v1/feed"): Sample(),
    ("WS", "/v1/rooms/{room_id}/chat"): Sample(),
}
# The API routes that need no session (routes outside /v1, such as /metrics, are not the API's).
PUBLIC = {("POST", "/v1/register"), ("POST", "/v1/login"), ("GET", "/v1/status"),
          ("GET", "/v1/openapi.json")}

SECRET_TEXT = "the victims' secret"


@dataclass
class Victims:
    alice: str
    bob: str
    room: int
    message: int


@pytest.fixture
async def victims(server, http) -> Victims:
    """Two users in a room with one message, and a third user with a room of their own."""
    alice, bob = await register(http, "victim-alice"), await register(http, "victim-bob")
    room = await make_room(http, alice, bob)
    async with open_websocket_url(f"{server.ws_url}/v1/rooms/{room}/chat?session_id={alice}") as ws:
        message = await post_message(ws, SECRET_TEXT, "secret")
    return Victims(alice, bob, room, message)


async def state_of(http: httpx.AsyncClient, victims: Victims) -> tuple:
    """What a refused request must not have changed, as the members see it."""
    room = (await http.get(f"/v1/rooms/{victims.room}", headers=auth(victims.alice))).json()
    history = (await http.get(f"/v1/rooms/{victims.room}/messages",
                              headers=auth(victims.alice))).json()
    return room["title"], [u["id"] for u in room["users"]], history


async def attempt(server, http: httpx.AsyncClient, method: str, path: str, victims: Victims,
                  headers: dict[str, str], params: dict[str, str] | None = None,
                  ) -> tuple[int, Any]:
    """One request of the matrix: (status, body)."""
    sample = REQUESTS[(method, path)]
    url = path.format(room_id=victims.room, message_id=victims.message)
    query = {**sample.params, **(params or {})}
    if method == "WS":
        target = f"{server.ws_url}{url}?" + "&".join(f"{k}={v}" for k, v in query.items())
        with pytest.raises(ConnectionRejected) as refused:
            async with open_websocket_url(target, extra_headers=list(headers.items())):
                pass
        return refused.value.status_code, json.loads(refused.value.body)
    body = sample.body and {key: victims.message if value == "{message_id}" else value
                            for key, value in sample.body.items()}
    response = await http.request(method, url, params=query, headers=headers, json=body)
    return response.status_code, response.json()


def test_every_route_is_in_the_matrix():
    routes = route_table(create_app(Config(metrics=True)), websocket=True)
    assert {route for route in routes if route[1].startswith("/v1/")} - PUBLIC == set(REQUESTS)


BAD_CREDENTIALS = {
    "none": lambda ended: ({}, {}),
    "malformed header": lambda ended: ({"X-Session-Id": "not-a-session"}, {}),
    "malformed bearer": lambda ended: ({"Authorization": f"Bearer {ended.upper()}"}, {}),
    "unknown": lambda ended: ({"X-Session-Id": "0123456789abcdef" * 2 + "01234567"}, {}),
    "logged out": lambda ended: ({"X-Session-Id": ended}, {}),
    "logged out, bearer": lambda ended: ({"Authorization": f"Bearer {ended}"}, {}),
    "logged out, query": lambda ended: ({}, {"session_id": ended}),
}


@pytest.mark.parametrize("kind", list(BAD_CREDENTIALS))
async def test_bad_credentials_get_401_on_every_route(server, http, victims, kind):
    ended = await register(http, "logged-out")
    assert (await http.post("/v1/logout", headers=auth(ended))).status_code == 200
    headers, params = BAD_CREDENTIALS[kind](ended)
    before = await state_of(http, victims)
    for method, path in REQUESTS:
        status, body = await attempt(server, http, method, path, victims, headers, params)
        assert (status, body) == (401, {"error": {"code": "unauthorized"}}), (method, path)
    assert await state_of(http, victims) == before


async def test_a_valid_session_in_the_query_string_is_for_sockets_only(server, http, victims):
    for method, path in REQUESTS:
        if method == "WS":
            continue
        status, body = await attempt(server, http, method, path, victims, {},
                                     {"session_id": victims.alice})
        assert (status, body) == (401, {"error": {"code": "unauthorized"}}), (method, path)


async def test_an_outsider_gets_room_not_found_and_learns_nothing(server, http, victims):
    outsider = await register(http, "outsider")
    own_room = await make_room(http, outsider)
    before = await state_of(http, victims)
    for method, path in REQUESTS:
        if "{room_id}" not in path:
            continue
        status, body = await attempt(server, http, method, path, victims, auth(outsider))
        assert (status, body) == (422, {"error": {"code": "room_not_found"}}), (method, path)
    # The victims' message through the outsider's own room: not in that room.
    for method in ("PUT", "DELETE"):
        response = await http.request(method, f"/v1/rooms/{own_room}/messages/{victims.message}",
                                      json={"text": "forged"}, headers=auth(outsider))
        assert response.status_code == 422
        assert response.json() == {"error": {"code": "message_not_found"}}
    # The routes without a room id answer, but only with the outsider's own things.
    rooms = (await http.get("/v1/rooms", headers=auth(outsider))).json()
    assert [room["id"] for room in rooms] == [own_room]
    feed = (await http.get("/v1/feed", headers=auth(outsider))).json()
    assert feed == {"messages": [], "cursor": 0}
    own_history = (await http.get(f"/v1/rooms/{own_room}/messages",
                                  headers=auth(outsider))).json()
    assert own_history == []
    # Asking for a room with the victims makes a new room of three, not theirs.
    members = [{"id": await user_id(http, s)} for s in (victims.alice, victims.bob)]
    joined = (await http.post("/v1/rooms", json={"users": members},
                              headers=auth(outsider))).json()
    assert joined["id"] != victims.room and len(joined["users"]) == 3
    joined_history = (await http.get(f"/v1/rooms/{joined['id']}/messages",
                                     headers=auth(outsider))).json()
    assert joined_history == []
    assert await state_of(http, victims) == before

