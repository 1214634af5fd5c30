"""Every REST row and every error code of the contract (shared/spec/API.md), from outside.

Each test runs twice through the `client` fixture: once through Quart's in-process test client
and once over a socket against a real hypercorn server, behind one small interface (`Client`)
so both paths assert exactly the same thing.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import trio
from quart.testing import QuartClient

from echat.app import EchatApp, create_app
from echat.config import Config
from echat.jsonio import dumps
from echat.testing import serve
from helpers import auth, make_room, register, user_id

JSON_TYPE = "application/json; charset=utf-8"
SESSION_ID = re.compile(r"[0-9a-f]{40}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
_UNSET: Any = object()


# -- one client interface over both transports -------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status_code: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def code(self) -> str | None:
        """The error code of an error body, None for anything else."""
        body = self.json()
        return body["error"]["code"] if isinstance(body, dict) and "error" in body else None


class Client:
    """The calls tests make; `app` is the served app (its store is open)."""

    app: EchatApp
    transport: str

    async def request(self, method: str, path: str, *, json: Any = _UNSET,
                      content: bytes | str | None = None, headers: Mapping[str, str] | None = None,
                      params: Mapping[str, str] | None = None) -> Reply:
        raise NotImplementedError

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("POST", path, **kwargs)


class InProcess(Client):
    transport = "in_process"

    def __init__(self, client: QuartClient) -> None:
        self._client = client
        self.app = client.app

    async def request(self, method: str, path: str, *, json: Any = _UNSET,
                      content: bytes | str | None = None, headers: Mapping[str, str] | None = None,
                      params: Mapping[str, str] | None = None) -> Reply:
        headers = dict(headers or {})
        if json is not _UNSET:
            content = dumps(json).encode()
            headers.setdefault("Content-Type", "application/json")
        if content is not None:
            # As an HTTP client would: Quart's test client sends no Content-Length.
            content = content.encode() if isinstance(content, str) else content
            headers["Content-Length"] = str(len(content))
        response = await self._client.open(path, method=method, headers=headers, data=content,
                                           query_string=params)
        return Reply(response.status_code, response.headers, await response.get_data())


class OverSocket(Client):
    transport = "socket"

    def __init__(self, http: httpx.AsyncClient, app: EchatApp) -> None:
        self._http = http
        self.app = app

    async def request(self, method: str, path: str, *, json: Any = _UNSET,
                      content: bytes | str | None = None, headers: Mapping[str, str] | None = None,
                      params: Mapping[str, str] | None = None) -> Reply:
        extra: dict[str, Any] = {} if json is _UNSET else {"json": json}
        response = await self._http.request(method, path, content=content, headers=headers,
                                            params=params, **extra)
        return Reply(response.status_code, response.headers, response.content)


@pytest.fixture(params=["in_process", "socket"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    if request.param == "in_process":
        app = create_app(Config(db=":memory:", fast_hashing=True))
        async with app.storage():
            yield InProcess(app.test_client())
    else:
        async with serve() as server, httpx.AsyncClient(base_url=server.url) as http:
            yield OverSocket(http, server.app)


def assert_error(reply: Reply, status: int, code: str, case: object = None) -> None:
    """`reply` is the contract's error body; `case` names the input in a failure message."""
    assert (reply.status_code, reply.code) == (status, code), (case, reply.text)
    assert reply.headers["content-type"] == JSON_TYPE
    assert set(reply.json()) == {"error"}


async def add_messages(client: Client, room_id: int, author: str, *texts: str) -> list[int]:
    """Store messages the way the socket would, bypassing it; returns their ids."""
    author_id = await user_id(client, author)
    return [(await client.app.store.add_message(room_id, author_id, text)).message.id
            for text in texts]


# -- register ----------------------------------------------------------------------------------


async def test_register_answers_a_fresh_session_id(client):
    reply = await client.post("/v1/register", json={"login": "alice", "password": "pw"})
    assert reply.status_code == 200
    assert reply.headers["content-type"] == JSON_TYPE
    body = reply.json()
    assert set(body) == {"session_id"}
    assert SESSION_ID.fullmatch(body["session_id"])
    info = await client.get("/v1/info", headers=auth(body["session_id"]))
    assert info.json()["login"] == "alice"


async def test_register_trims_the_login(client):
    session = await register(client, "  bob\t ")
    assert (await client.get("/v1/info", headers=auth(session))).json()["login"] == "bob"


async def test_register_refuses_a_bad_login(client):
    for login in ["", "   ", "\t\n", "x" * 65, " " + "я" * 65, "a\x00b", "a\x07b", "a\x1bb",
                  "a\x7fb", "a\x85b", "a\u2028b"]:
        reply = await client.post("/v1/register", json={"login": login, "password": "pw"})
        assert_error(reply, 422, "invalid_login", login)


async def test_register_accepts_a_good_login(client):
    for login in ["x" * 64, " " + "я" * 64 + " ", "Петр 🚀", "👩‍👩‍👧 family", "a.b-c_d@e"]:
        session = await register(client, login)
        info = await client.get("/v1/info", headers=auth(session))
        assert info.json()["login"] == login.strip()


async def test_register_refuses_a_bad_password(client):
    for password in ["", "p" * 1025, "ё" * 1025]:
        reply = await client.post("/v1/register", json={"login": "carol", "password": password})
        assert_error(reply, 422, "invalid_password", password[:10])


async def test_register_accepts_the_longest_password(client):
    await register(client, "dave", "ё" * 1024)
    reply = await client.post("/v1/login", json={"login": "dave", "password": "ё" * 1024})
    assert reply.status_code == 200


async def test_register_refuses_a_login_taken_in_another_case(client):
    for first, second in [("Вася", "вася"), ("Петя", "ПЕТЯ"), ("жора", "Жора"),
                          ("alice", "ALICE"), ("straße", "STRASSE"), ("Ёжик", " ёжик ")]:
        await register(client, first)
        reply = await client.post("/v1/register", json={"login": second, "password": "pw"})
        assert_error(reply, 422, "user_already_exists", second)


# -- invalid_json, on every route that reads a body ---------------------------------------------

NOT_AN_OBJECT = [b"", b"nope", b"{", b"[]", b'"text"', b"42", b"null", b"true",
                 b'{"login": "a", "password": "b"} trailing', b"\xff\xfe{}",
                 b"{'login': 'a'}"]
BAD_CREDENTIALS = [
    {"password": "pw"}, {"login": "erin"}, {},
    {"login": 5, "password": "pw"}, {"login": "erin", "password": 5},
    {"login": None, "password": "pw"}, {"login": ["erin"], "password": "pw"},
    {"login": "erin", "password": {"x": 1}}, {"login": "erin", "password": True},
    # A missing field is a malformed body, whatever else is wrong with the other one.
    {"login": ""}, {"login": "x" * 100},
]


async def test_a_body_that_is_not_a_json_object_is_invalid_json(client):
    for path in ["/v1/register", "/v1/login"]:
        for body in NOT_AN_OBJECT:
            assert_error(await client.post(path, content=body), 422, "invalid_json", (path, body))


async def test_missing_or_mistyped_fields_are_invalid_json(client):
    for path in ["/v1/register", "/v1/login"]:
        for body in BAD_CREDENTIALS:
            assert_error(await client.post(path, json=body), 422, "invalid_json", (path, body))


async def test_a_lone_surrogate_is_invalid_json(client):
    await register(client, "frank", "pw")
    for path in ["/v1/register", "/v1/login"]:
        for raw in [r'{"login": "fr\ud800ank", "password": "pw"}',
                    r'{"login": "frank", "password": "\udfffpw"}',
                    r'{"login": "frank", "password": "pw", "extra": "\ud800"}']:
            reply = await client.post(path, content=raw.encode())
            assert_error(reply, 422, "invalid_json", (path, raw))


async def test_a_json_body_is_read_whatever_its_content_type(client):
    for n, content_type in enumerate([None, "text/plain", "application/x-www-form-urlencoded",
                                      "multipart/form-data", "application/octet-stream",
                                      "application/json; charset=latin-1"]):
        headers = {} if content_type is None else {"Content-Type": content_type}
        body = json.dumps({"login": f"Гоша {n}", "password": "pw"}, ensure_ascii=False).encode()
        reply = await client.post("/v1/register", content=body, headers=headers)
        assert reply.status_code == 200, (content_type, reply.text)
        reply = await client.post("/v1/login", content=body, headers=headers)
        assert reply.status_code == 200, (content_type, reply.text)


async def test_unknown_fields_are_ignored(client):
    reply = await client.post("/v1/register",
                              json={"login": "gina", "password": "pw", "email": "g@x"})
    assert reply.status_code == 200


# -- login and logout ----------------------------------------------------------------------------


async def test_login_answers_a_new_session_and_keeps_the_others(client):
    first = await register(client, "Вася", "secret")
    reply = await client.post("/v1/login", json={"login": "Вася", "password": "secret"})
    assert reply.status_code == 200
    assert reply.headers["content-type"] == JSON_TYPE
    second = reply.json()["session_id"]
    assert SESSION_ID.fullmatch(second) and second != first
    for session in (first, second):
        assert (await client.get("/v1/info", headers=auth(session))).status_code == 200


async def test_login_matches_the_login_case_insensitively(client):
    registered = await register(client, "Вася", "secret")
    expected = (await client.get("/v1/info", headers=auth(registered))).json()
    for typed in ["вася", "ВАСЯ", "Вася", "вАСЯ", "  вася  "]:
        reply = await client.post("/v1/login", json={"login": typed, "password": "secret"})
        assert reply.status_code == 200, (typed, reply.text)
        info = await client.get("/v1/info", headers=auth(reply.json()["session_id"]))
        assert info.json() == expected


async def test_login_of_an_unknown_user_is_user_not_found(client):
    await register(client, "henry")
    for login in ["henri", "", "henry2", "x" * 100]:
        reply = await client.post("/v1/login", json={"login": login, "password": "secret"})
        assert_error(reply, 422, "user_not_found", login)


async def test_login_with_a_wrong_password_is_wrong_credentials(client):
    await register(client, "ivan", "secret")
    for password in ["Secret", "secret ", "", "x" * 2000]:
        reply = await client.post("/v1/login", json={"login": "ivan", "password": password})
        assert_error(reply, 422, "wrong_credentials", password[:10])


async def test_logout_takes_any_body_or_none(client):
    for n, body in enumerate([None, b"", b"not json at all", b'{"anything": [1, 2]}']):
        session = await register(client, f"jane{n}")
        reply = await client.post("/v1/logout", content=body, headers=auth(session))
        assert reply.status_code == 200, (body, reply.text)
        assert reply.headers["content-type"] == JSON_TYPE
        assert reply.json() == {}
        assert_error(await client.get("/v1/info", headers=auth(session)), 401, "unauthorized")
        assert_error(await client.post("/v1/logout", headers=auth(session)), 401, "unauthorized")


async def test_logout_ends_only_its_own_session(client):
    phone = await register(client, "kate", "secret")
    reply = await client.post("/v1/login", json={"login": "kate", "password": "secret"})
    laptop = reply.json()["session_id"]
    other = await register(client, "leo")
    assert (await client.post("/v1/logout", headers=auth(phone))).status_code == 200
    assert_error(await client.get("/v1/info", headers=auth(phone)), 401, "unauthorized")
    assert (await client.get("/v1/info", headers=auth(laptop))).json()["login"] == "kate"
    assert (await client.get("/v1/info", headers=auth(other))).json()["login"] == "leo"


async def test_many_sessions_of_one_user_end_one_by_one(client):
    sessions = [await register(client, "rita", "pw")]
    for _ in range(4):
        reply = await client.post("/v1/login", json={"login": "RITA", "password": "pw"})
        sessions.append(reply.json()["session_id"])
    assert len(set(sessions)) == 5
    for index, ending in enumerate(sessions):
        assert (await client.post("/v1/logout", headers=auth(ending))).status_code == 200
        for earlier in sessions[:index + 1]:
            assert (await client.get("/v1/info", headers=auth(earlier))).status_code == 401
        for later in sessions[index + 1:]:
            assert (await client.get("/v1/info", headers=auth(later))).status_code == 200


# -- sessions ------------------------------------------------------------------------------------


async def test_info_answers_id_and_login(client):
    session = await register(client, "Маша 🌸")
    reply = await client.get("/v1/info", headers=auth(session))
    assert reply.status_code == 200
    assert reply.headers["content-type"] == JSON_TYPE
    body = reply.json()
    assert set(body) == {"id", "login"}
    assert isinstance(body["id"], int) and body["login"] == "Маша 🌸"


async def test_a_bearer_token_names_the_session(client):
    session = await register(client, "mia")
    for value in [f"Bearer {session}", f"bearer {session}", f"Bearer  {session}"]:
        reply = await client.get("/v1/info", headers={"Authorization": value})
        assert reply.status_code == 200 and reply.json()["login"] == "mia", value


async def test_x_session_id_wins_over_authorization(client):
    nick = await register(client, "nick")
    olga = await register(client, "olga")
    both = {"X-Session-Id": nick, "Authorization": f"Bearer {olga}"}
    assert (await client.get("/v1/info", headers=both)).json()["login"] == "nick"
    # First found wins even when it is no good: a broken X-Session-Id is not rescued.
    broken = {"X-Session-Id": "0" * 39, "Authorization": f"Bearer {olga}"}
    assert_error(await client.get("/v1/info", headers=broken), 401, "unauthorized")


async def test_a_missing_malformed_unknown_or_ended_session_is_unauthorized(client):
    session = await register(client, "pavel")
    ended = await register(client, "pasha")
    await client.post("/v1/logout", headers=auth(ended))
    rejected = [
        {}, {"X-Session-Id": ""}, {"X-Session-Id": "abc"}, {"X-Session-Id": "0" * 41},
        {"X-Session-Id": "g" * 40}, {"X-Session-Id": "0" * 40}, {"X-Session-Id": session + "0"},
        {"X-Session-Id": session.upper()}, {"X-Session-Id": ended},
        {"Authorization": "Bearer"}, {"Authorization": "Bearer " + "0" * 40},
        {"Authorization": "Basic " + session}, {"Authorization": session},
        {"Authorization": f"Bearer {ended}"},
    ]
    routes = [("GET", "/v1/info"), ("POST", "/v1/logout"), ("GET", "/v1/users"),
              ("GET", "/v1/users/"), ("GET", "/v1/rooms"), ("POST", "/v1/rooms"),
              ("GET", "/v1/rooms/1"), ("GET", "/v1/rooms/1/messages"), ("GET", "/v1/feed"),
              ("PUT", "/v1/rooms/1/read")]
    for headers in rejected:
        for method, path in routes:
            reply = await client.request(method, path, headers=headers, params={"q": "pavel"},
                                         json={"users": []})
            assert_error(reply, 401, "unauthorized", (headers, method, path))
    # ?session_id= is for WebSocket handshakes only.
    reply = await client.get("/v1/info", params={"session_id": session})
    assert_error(reply, 401, "unauthorized")
    assert (await client.get("/v1/info", headers=auth(session))).status_code == 200


# -- users search --------------------------------------------------------------------------------


async def test_users_search_finds_substrings_case_insensitively(client):
    for login in ["Вася", "ВАСЯН", "Петя", "carol_x", "Bob_x", "alice_x", "100%", "under_"]:
        session = await register(client, login)
    cases = [
        ("вася", ["Вася", "ВАСЯН"]),
        ("ВАС", ["Вася", "ВАСЯН"]),
        ("ЯН", ["ВАСЯН"]),
        ("_X", ["alice_x", "Bob_x", "carol_x"]),  # ordered by login, case-insensitively
        ("  bob ", ["Bob_x"]),
        ("%", ["100%"]),  # matched literally, not as a LIKE pattern
        ("_", ["alice_x", "Bob_x", "carol_x", "under_"]),
        ("nobody", []),
        ("", []),  # the original never lists every user
        ("   ", []),
        (None, []),
    ]
    for path in ["/v1/users", "/v1/users/"]:
        for query, found in cases:
            params = {} if query is None else {"q": query}
            reply = await client.get(path, params=params, headers=auth(session))
            assert reply.status_code == 200
            assert reply.headers["content-type"] == JSON_TYPE
            users = reply.json()
            assert [user["login"] for user in users] == found, (path, query)
            assert all(set(user) == {"id", "login"} and isinstance(user["id"], int)
                       for user in users)


async def test_users_search_limit(client):
    session = await register(client, "user_00")
    for n in range(1, 105):
        await client.app.store.create_user(f"user_{n:02}", f"user_{n:02}", "not a hash")
    everyone = sorted(f"user_{n:02}" for n in range(105))

    async def search(**params: str) -> list[str]:
        reply = await client.get("/v1/users", params={"q": "USER", **params},
                                 headers=auth(session))
        assert reply.status_code == 200, reply.text
        return [user["login"] for user in reply.json()]

    assert await search() == everyone[:50]
    assert await search(limit="1") == everyone[:1]
    assert await search(limit="100") == everyone[:100]
    for limit in ["0", "101", "-1", "", "abc", "1.5", "١", "99999999999999999999"]:
        for path in ["/v1/users", "/v1/users/"]:
            reply = await client.get(path, params={"q": "user", "limit": limit},
                                     headers=auth(session))
            assert_error(reply, 422, "invalid_json", (path, limit))


# -- rooms ---------------------------------------------------------------------------------------


@pytest.fixture
async def trio_of_users(client) -> tuple[str, str, str]:
    return (await register(client, "Анна"), await register(client, "Борис"),
            await register(client, "Вера"))


async def test_create_room_answers_the_room_with_the_caller_in_it(client, trio_of_users):
    anna, boris, _ = trio_of_users
    boris_id = await user_id(client, boris)
    reply = await client.post("/v1/rooms", json={"users": [{"id": boris_id, "login": "ignored"}]},
                              headers=auth(anna))
    assert reply.status_code == 200
    assert reply.headers["content-type"] == JSON_TYPE
    room = reply.json()
    assert isinstance(room["id"], int)
    assert sorted(room["users"], key=lambda user: user["id"]) == [
        {"id": await user_id(client, anna), "login": "Анна"},
        {"id": boris_id, "login": "Борис"},
    ]


async def test_create_room_returns_the_existing_room_for_the_same_member_set(client,
                                                                            trio_of_users):
    anna, boris, vera = trio_of_users
    a, b, v = [await user_id(client, s) for s in trio_of_users]

    async def create(session: str, ids: list[int]) -> int:
        reply = await client.post("/v1/rooms", json={"users": [{"id": i} for i in ids]},
                                  headers=auth(session))
        assert reply.status_code == 200, reply.text
        return reply.json()["id"]

    pair = await create(anna, [b])
    assert await create(anna, [b]) == pair
    assert await create(boris, [a]) == pair  # the other member, the other way round
    assert await create(anna, [b, b, a, b]) == pair  # duplicates and the caller collapse
    group = await create(vera, [b, a])
    assert group != pair
    assert await create(anna, [v, b]) == group
    alone = await create(anna, [])
    assert await create(anna, [a]) == alone
    assert len({pair, group, alone}) == 3
    assert await create(boris, []) not in {pair, group, alone}


async def test_create_room_with_an_unknown_user_is_user_not_found(client, trio_of_users):
    anna, boris, _ = trio_of_users
    boris_id = await user_id(client, boris)
    for ids in [[999], [boris_id, 999], [0], [-5], [2**63], [99999999999999999999]]:
        reply = await client.post("/v1/rooms", json={"users": [{"id": i} for i in ids]},
                                  headers=auth(anna))
        assert_error(reply, 422, "user_not_found", ids)
    assert (await client.get("/v1/rooms", headers=auth(anna))).json() == []


async def test_create_room_with_bad_users_is_invalid_json(client, trio_of_users):
    anna = trio_of_users[0]
    for body in [
        {}, {"users": None}, {"users": {}}, {"users": "2"}, {"users": 2}, {"users": {"id": 2}},
        {"users": [2]}, {"users": [{}]}, {"users": [{"login": "Борис"}]},
        {"users": [{"id": "2"}]}, {"users": [{"id": 2.0}]}, {"users": [{"id": 2.5}]},
        {"users": [{"id": None}]}, {"users": [{"id": True}]}, {"users": [{"id": False}]},
        {"users": [[2]]}, {"users": [{"id": 1}] * 1001},
    ]:
        reply = await client.post("/v1/rooms", json=body, headers=auth(anna))
        assert_error(reply, 422, "invalid_json", str(body)[:40])
    for raw in NOT_AN_OBJECT:
        reply = await client.post("/v1/rooms", content=raw, headers=auth(anna))
        assert_error(reply, 422, "invalid_json", raw)
    assert (await client.get("/v1/rooms", headers=auth(anna))).json() == []


async def test_create_room_takes_a_thousand_users(client, trio_of_users):
    anna, boris, _ = trio_of_users
    users = [{"id": await user_id(client, boris)}] * 1000
    reply = await client.post("/v1/rooms", json={"users": users}, headers=auth(anna))
    assert reply.status_code == 200 and len(reply.json()["users"]) == 2


async def test_list_rooms_lists_each_room_of_the_caller_once(client, trio_of_users):
    anna, boris, vera = trio_of_users
    pair = await make_room(client, anna, boris)
    group = await make_room(client, anna, boris, vera)
    alone = await make_room(client, anna)
    others = await make_room(client, boris, vera)

    async def listed(session: str) -> list[dict]:
        reply = await client.get("/v1/rooms", headers=auth(session))
        assert reply.status_code == 200 and reply.headers["content-type"] == JSON_TYPE
        return reply.json()

    rooms = await listed(anna)
    assert sorted(room["id"] for room in rooms) == sorted([pair, group, alone])
    by_id = {room["id"]: room for room in rooms}
    assert sorted(user["login"] for user in by_id[group]["users"]) == ["Анна", "Борис", "Вера"]
    assert [user["login"] for user in by_id[alone]["users"]] == ["Анна"]
    assert sorted(room["id"] for room in await listed(vera)) == sorted([group, others])
    newcomer = await register(client, "Глеб")
    assert await listed(newcomer) == []


async def test_room_info_answers_the_room_to_a_member_only(client, trio_of_users):
    anna, boris, vera = trio_of_users
    room = await make_room(client, anna, boris)
    for session in (anna, boris):
        reply = await client.get(f"/v1/rooms/{room}", headers=auth(session))
        assert reply.status_code == 200 and reply.headers["content-type"] == JSON_TYPE
        body = reply.json()
        assert body["id"] == room
        assert sorted(user["login"] for user in body["users"]) == ["Анна", "Борис"]
    assert_error(await client.get(f"/v1/rooms/{room}", headers=auth(vera)), 422,
                 "room_not_found")


async def test_an_unknown_or_malformed_room_id_is_room_not_found(client, trio_of_users):
    await make_room(client, trio_of_users[0], trio_of_users[1])
    for room in ["999", "0", "-1", "abc", "1.0", "1e3", "%201", "١", "99999999999999999999",
                 "9223372036854775808", "9223372036854775807"]:
        for suffix in ["", "/messages"]:
            reply = await client.get(f"/v1/rooms/{room}{suffix}", headers=auth(trio_of_users[0]))
            assert_error(reply, 422, "room_not_found", room + suffix)


# -- history -------------------------------------------------------------------------------------


async def test_history_is_oldest_first_and_shaped_as_messages(client, trio_of_users):
    anna, boris, vera = trio_of_users
    room = await make_room(client, anna, boris)
    texts = ["Привет", "И тебе привет", "🎉🚀 emoji", "mixed Ёё ß 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"]
    ids = await add_messages(client, room, anna, *texts[:2])
    ids += await add_messages(client, room, boris, *texts[2:])
    reply = await client.get(f"/v1/rooms/{room}/messages", headers=auth(boris))
    assert reply.status_code == 200 and reply.headers["content-type"] == JSON_TYPE
    messages = reply.json()
    assert [m["id"] for m in messages] == ids == sorted(ids)
    assert [m["text"] for m in messages] == texts
    anna_id, boris_id = await user_id(client, anna), await user_id(client, boris)
    assert [m["user_id"] for m in messages] == [anna_id, anna_id, boris_id, boris_id]
    for message in messages:
        assert message["room_id"] == room
        assert TIMESTAMP.fullmatch(message["created_at"])
    assert "И тебе привет".encode() in reply.content  # UTF-8 on the wire, not \u escapes
    assert_error(await client.get(f"/v1/rooms/{room}/messages", headers=auth(vera)), 422,
                 "room_not_found")


async def test_history_of_an_empty_room_is_empty(client, trio_of_users):
    room = await make_room(client, trio_of_users[0])
    reply = await client.get(f"/v1/rooms/{room}/messages", headers=auth(trio_of_users[0]))
    assert reply.status_code == 200 and reply.json() == []


async def test_history_pages_with_limit_before_and_after(client, trio_of_users):
    anna, boris, _ = trio_of_users
    room = await make_room(client, anna, boris)
    elsewhere = await make_room(client, anna)
    ids = []
    for n in range(60):
        ids += await add_messages(client, room, anna, f"m{n}")
        await add_messages(client, elsewhere, anna, f"elsewhere {n}")

    async def page(**params: str) -> list[int]:
        reply = await client.get(f"/v1/rooms/{room}/messages", params=params, headers=auth(boris))
        assert reply.status_code == 200, reply.text
        return [m["id"] for m in reply.json()]

    assert await page() == ids[-50:]  # the newest 50, oldest first
    assert await page(limit="5") == ids[-5:]
    assert await page(limit="500") == ids
    assert await page(limit="5", before=str(ids[-5])) == ids[-10:-5]
    assert await page(before=str(ids[3])) == ids[:3]
    assert await page(before=str(ids[0])) == []
    assert await page(limit="5", after=str(ids[10])) == ids[11:16]  # the oldest 5 after it
    assert await page(after=str(ids[-3])) == ids[-2:]
    assert await page(after=str(ids[-1])) == []
    assert await page(after="0", limit="3") == ids[:3]
    assert await page(after=str(ids[5]), before=str(ids[9])) == ids[6:9]
    # Walking back page by page from the newest visits every message once.
    seen: list[int] = []
    cursor: dict[str, str] = {}
    while batch := await page(limit="7", **cursor):
        seen = batch + seen
        cursor = {"before": str(batch[0])}
    assert seen == ids
    # And forward from the start.
    seen, last = [], 0
    while batch := await page(limit="7", after=str(last)):
        seen += batch
        last = batch[-1]
    assert seen == ids


async def test_history_with_bad_parameters_is_invalid_json(client, trio_of_users):
    room = await make_room(client, trio_of_users[0])
    for params in [
        {"limit": "0"}, {"limit": "501"}, {"limit": "-1"}, {"limit": ""}, {"limit": "ten"},
        {"limit": "2.0"}, {"limit": "٣"}, {"before": "x"}, {"before": "-1"}, {"before": ""},
        {"after": "1e2"}, {"after": "-5"}, {"after": "99999999999999999999"},
        {"before": "9223372036854775808"},
    ]:
        reply = await client.get(f"/v1/rooms/{room}/messages", params=params,
                                 headers=auth(trio_of_users[0]))
        assert_error(reply, 422, "invalid_json", params)


# -- the framework's own errors ----------------------------------------------------------------


async def test_an_unknown_route_is_not_found(client):
    for method, path in [("GET", "/index.html"), ("GET", "/v1"), ("GET", "/v1/"),
                         ("GET", "/v1/nope"), ("POST", "/v2/login"),
                         ("GET", "/v1/rooms/1/messages/2/extra"), ("GET", "/favicon.ico"),
                         ("DELETE", "/v1/info/x"), ("GET", "/static/index.html"),
                         ("GET", "/static/schema.sql"), ("GET", "/static/../schema.sql")]:
        assert_error(await client.request(method, path), 404, "not_found", path)


async def test_a_wrong_method_is_method_not_allowed_as_json(client):
    for method, path, allowed in [
        ("GET", "/v1/register", {"POST"}), ("PUT", "/v1/login", {"POST"}),
        ("GET", "/v1/logout", {"POST"}), ("POST", "/v1/info", {"GET"}),
        ("DELETE", "/v1/users", {"GET"}), ("PATCH", "/v1/rooms", {"GET", "POST"}),
        ("POST", "/v1/rooms/1", {"GET"}), ("DELETE", "/v1/rooms/1/messages", {"GET"}),
        ("OPTIONS", "/v1/info", {"GET"}),
    ]:
        reply = await client.request(method, path, json={"login": "x", "password": "y"})
        assert_error(reply, 405, "method_not_allowed", (method, path))
        assert b"<" not in reply.content
        assert allowed <= {m.strip() for m in reply.headers["allow"].split(",")}


async def test_a_body_over_64_kib_is_payload_too_large(client):
    session = await register(client, "sam")
    big = json.dumps({"login": "x" * (64 * 1024), "password": "pw"}).encode()
    for path in ["/v1/register", "/v1/login", "/v1/rooms", "/v1/logout"]:
        reply = await client.post(path, content=big, headers=auth(session))
        assert_error(reply, 413, "payload_too_large", path)
    # The session was not ended by the refused logout.
    assert (await client.get("/v1/info", headers=auth(session))).status_code == 200


async def test_a_body_of_exactly_64_kib_is_read(client):
    body = json.dumps({"login": "tom", "password": "p"}).encode()
    body += b" " * (64 * 1024 - len(body))
    assert (await client.post("/v1/register", content=body)).status_code == 200


async def test_an_unexpected_exception_is_internal_error_and_logged(client, monkeypatch, caplog):
    session = await register(client, "uma")

    async def broken(user_id: int) -> list:
        raise RuntimeError("secret detail of a bug")

    monkeypatch.setattr(client.app.store, "rooms_of", broken)
    with caplog.at_level(logging.ERROR):
        reply = await client.get("/v1/rooms", headers=auth(session))
    assert_error(reply, 500, "internal_error")
    assert b"secret detail" not in reply.content and b"Traceback" not in reply.content
    logged = [r for r in caplog.records if r.exc_info and "secret detail" in str(r.exc_info[1])]
    assert logged, caplog.text
    assert "Traceback" in caplog.text and "raise RuntimeError" in caplog.text
    # The server goes on serving.
    assert (await client.get("/v1/info", headers=auth(session))).status_code == 200


async def test_every_response_is_json_in_utf8(client):
    """Content-Type on success and on each kind of error."""
    session = await register(client, "Вика")
    replies = [
        await client.get("/v1/info", headers=auth(session)),
        await client.get("/v1/users", params={"q": "вик"}, headers=auth(session)),
        await client.get("/v1/info"),
        await client.get("/v1/missing"),
        await client.get("/v1/login"),
        await client.post("/v1/register", content=b"x" * (65 * 1024)),
        await client.post("/v1/register", content=b"nope"),
        await client.get("/v1/rooms/abc", headers=auth(session)),
    ]
    assert [r.status_code for r in replies] == [200, 200, 401, 404, 405, 413, 422, 422]
    for reply in replies:
        assert reply.headers["content-type"] == JSON_TYPE
        reply.json()
    assert replies[1].json()[0]["login"] == "Вика"
    assert "Вика".encode() in replies[0].content


async def test_unicode_round_trips_exactly(client):
    logins = ["Вася", "Петр 🚀", "👩‍👩‍👧", "Ёжик", "ﬁne", "e\u0301"]
    sessions = [await register(client, login) for login in logins]
    for session, login in zip(sessions, logins):
        assert (await client.get("/v1/info", headers=auth(session))).json()["login"] == login
    room = await make_room(client, *sessions)
    text = "И тебе привет 👋🏽 — «ёлка» \U0001F9D1\u200D\U0001F680 \u0000 tab\t\n"
    [message_id] = await add_messages(client, room, sessions[1], text)
    reply = await client.get(f"/v1/rooms/{room}/messages", headers=auth(sessions[0]))
    [message] = reply.json()
    assert (message["id"], message["text"]) == (message_id, text)
    info = await client.get(f"/v1/rooms/{room}", headers=auth(sessions[2]))
    assert sorted(u["login"] for u in info.json()["users"]) == sorted(logins)
    found = await client.get("/v1/users", params={"q": "ёж"}, headers=auth(sessions[0]))
    assert [u["login"] for u in found.json()] == ["Ёжик"]


async def test_concurrent_registrations_of_one_login_make_one_user(client):
    outcomes: list[int] = []

    async def attempt(login: str) -> None:
        reply = await client.post("/v1/register", json={"login": login, "password": "pw"})
        outcomes.append(reply.status_code)

    async with trio.open_nursery() as nursery:
        for login in ["Зоя", "зоя", "ЗОЯ", "зОя"] * 3:
            nursery.start_soon(attempt, login)
    assert sorted(outcomes) == [200] + [422] * 11
