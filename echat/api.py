"""The REST half of /v1: thin handlers that validate, make one call, and shape the answer.

Every refusal is raised as an `echat.errors` exception; `echat.app.render_error` writes it.
"""

from __future__ import annotations

import re
from typing import Any

import trio
from quart import Blueprint, Response, request

from echat import __version__, accounts, jsonio
from echat.accounts import Session
from echat.app import EchatApp, current_echat, json_response
from echat.errors import (
    EchatError,
    EmptyText,
    Forbidden,
    InvalidJson,
    MessageNotFound,
    PayloadTooLarge,
    RoomNotFound,
    TextTooLong,
    TooManyRequests,
    Unauthorized,
    UserNotFound,
    WrongCredentials,
)
from echat.hub import CLOSE_POLICY
from echat.jsonio import loads
from echat.metrics import rss_bytes
from echat.store import MAX_SQLITE_INT

api = Blueprint("api", __name__, url_prefix="/v1")

MAX_ROOM_USERS = 1000
MAX_SEARCH_LIMIT = 100
MAX_HISTORY_LIMIT = 500
MAX_TITLE = 100
DEFAULT_FEED_LIMIT = 100
MAX_FEED_LIMIT = 500
MAX_FEED_WAIT = 60.0
# Seconds to hold a feed request: a plain decimal, to the millisecond at most.
_SECONDS = re.compile(r"[0-9]{1,2}(\.[0-9]{1,3})?")


# -- request parsing ------------------------------------------------------------------------


@api.before_request
async def refuse_large_body() -> None:
    """A declared body over --max-body is refused on every route, also those that never read
    it (logout); the framework checks only bodies that are read."""
    length = request.content_length
    if length is not None and length > current_echat().echat_config.max_body:
        raise PayloadTooLarge()


async def request_json() -> dict[str, Any]:
    """The body as a JSON object, whatever the Content-Type says (the original's clients are
    sloppy about it). Raises InvalidJson otherwise, PayloadTooLarge past --max-body."""
    value = loads(await request.get_data(as_text=False))
    if not isinstance(value, dict):
        raise InvalidJson()
    return value


def require_str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise InvalidJson(f"'{name}' must be a string")
    return value


def check_text(text: object, max_text: int) -> str:
    """A message text as the contract allows it (posted or edited); raises the matching error
    otherwise."""
    if not isinstance(text, str):
        raise InvalidJson("'text' must be a string")
    if not text.strip():
        raise EmptyText()
    if len(text) > max_text:
        raise TextTooLong()
    return text


def query_int(name: str, default: int | None, low: int, high: int) -> int | None:
    """An integer query parameter within [low, high]; a bad one is invalid_json."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or not low <= int(raw) <= high:
        raise InvalidJson(f"'{name}' must be an integer from {low} to {high}")
    return int(raw)


def query_seconds(name: str, high: float) -> float:
    """A duration query parameter in seconds (`2`, `0.5`) from 0 to `high`; 0 when absent, and
    invalid_json when bad."""
    raw = request.args.get(name)
    if raw is None:
        return 0.0
    if _SECONDS.fullmatch(raw) is None or float(raw) > high:
        raise InvalidJson(f"'{name}' must be a number of seconds from 0 to {high:g}")
    return float(raw)


def path_id(raw: str, error: type[EchatError]) -> int:
    """A positive id from the path; anything else is `error` (the thing does not exist)."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or not 0 < int(raw) <= MAX_SQLITE_INT:
        raise error()
    return int(raw)


async def require_session() -> Session:
    session_id = accounts.presented_session_id(request.headers, request.args, allow_query=False)
    return await authenticate(current_echat(), session_id)


async def authenticate(app: EchatApp, session_id: str | None) -> Session:
    """The session a request names; Unauthorized for a missing, malformed or ended one."""
    if session_id is None:
        raise Unauthorized()
    key = accounts.session_key(session_id)
    user = await app.sessions.user(key, app.store.session_user)
    if user is None:
        raise Unauthorized()
    return Session(user, key)


def client_address() -> str:
    """The client's address; behind a trusted proxy, the one it forwarded (echat.proxies)."""
    return request.remote_addr or "unknown"


# -- accounts -------------------------------------------------------------------------------


async def start_session(user_id: int) -> Response:
    session_id = accounts.new_session_id()
    await current_echat().store.create_session(accounts.session_key(session_id), user_id)
    return json_response({"session_id": session_id})


@api.post("/register")
async def register() -> Response:
    body = await request_json()
    # The body's shape first: a missing field is invalid_json whatever the other one holds.
    raw_login, password = require_str(body, "login"), require_str(body, "password")
    login = accounts.clean_login(raw_login)
    accounts.check_password(password)
    app = current_echat()
    user = await app.store.create_user(
        login, accounts.login_key(login), await app.passwords.hash(password)
    )
    return await start_session(user.id)


@api.post("/login")
async def login() -> Response:
    body = await request_json()
    login_key = accounts.login_key(require_str(body, "login").strip())
    password = require_str(body, "password")
    app = current_echat()
    guard, address = app.login_guard, client_address()
    wait = guard.retry_after(login_key, address)
    if wait > 0:
        raise TooManyRequests(wait)
    # Counted as failed before the slow checks, so that concurrent guesses cannot all pass the
    # check above together; a success takes it back.
    attempt = guard.failed(login_key, address)
    found = await app.store.credentials(login_key)
    if found is None:
        raise UserNotFound()
    user, password_hash, disabled = found
    matches, new_hash = await app.passwords.verify(password_hash, password)
    if not matches:
        raise WrongCredentials()
    if disabled:
        # Told only to whoever knows the password, so it reveals nothing to a guesser.
        raise Forbidden("this account is disabled")
    guard.succeeded(login_key, address, attempt)
    if new_hash is not None:
        await app.store.set_password_hash(user.id, new_hash)
    return await start_session(user.id)


@api.post("/logout")
async def logout() -> Response:
    session = await require_session()
    app = current_echat()
    # Shielded: a cancelled wait would leave the session in the cache while the delete still
    # commits, and the ended session would keep working.
    with trio.CancelScope(shield=True):
        await app.store.delete_session(session.key)
        app.sessions.drop(session.key)
    app.hub.close_session(session.key, CLOSE_POLICY)
    return json_response({})


@api.get("/info")
async def info() -> Response:
    session = await require_session()
    return json_response(session.user.to_json())


@api.get("/users")
@api.get("/users/")
async def search_users() -> Response:
    await require_session()
    limit = query_int("limit", 50, 1, MAX_SEARCH_LIMIT)
    query = accounts.login_key(request.args.get("q", "").strip())
    if not query:
        # The original never lists every user: an empty search finds no one.
        return json_response([])
    users = await current_echat().store.search_users(query, limit)
    return json_response([user.to_json() for user in users])


# -- rooms and history ----------------------------------------------------------------------


@api.get("/rooms")
async def list_rooms() -> Response:
    session = await require_session()
    rooms = await current_echat().store.rooms_of(session.user.id)
    return json_response([room.to_json() for room in rooms])


@api.post("/rooms")
async def create_room() -> Response:
    session = await require_session()
    listed = (await request_json()).get("users")
    if not isinstance(listed, list) or len(listed) > MAX_ROOM_USERS:
        raise InvalidJson(f"'users' must be a list of at most {MAX_ROOM_USERS} users")
    user_ids = []
    for entry in listed:
        user_id = entry.get("id") if isinstance(entry, dict) else None
        # bool is an int in Python; `true` is not a user id.
        if not isinstance(user_id, int) or isinstance(user_id, bool):
            raise InvalidJson("each user must be an object with an integer 'id'")
        user_ids.append(user_id)
    room = await current_echat().store.open_room(session.user.id, user_ids)
    return json_response(room.to_json())


@api.get("/rooms/<room_id>")
async def room_info(room_id: str) -> Response:
    session = await require_session()
    app = current_echat()
    room = await app.store.room(path_id(room_id, RoomNotFound), session.user.id)
    return json_response({**room.to_json(), "online": app.hub.online(room.id)})


@api.get("/rooms/<room_id>/messages")
async def history(room_id: str) -> Response:
    session = await require_session()
    room = path_id(room_id, RoomNotFound)
    limit = query_int("limit", 50, 1, MAX_HISTORY_LIMIT)
    before = query_int("before", None, 0, MAX_SQLITE_INT)
    after = query_int("after", None, 0, MAX_SQLITE_INT)
    messages = await current_echat().store.messages(
        room, session.user.id, limit=limit, before=before, after=after
    )
    return Response(jsonio.array(message.encoded() for message in messages),
                    content_type=jsonio.CONTENT_TYPE)


# -- sync without a socket, and read state -------------------------------------------------


@api.get("/feed")
async def feed() -> Response:
    session = await require_session()
    after = query_int("after", 0, 0, MAX_SQLITE_INT)
    limit = query_int("limit", DEFAULT_FEED_LIMIT, 1, MAX_FEED_LIMIT)
    wait = query_seconds("wait", MAX_FEED_WAIT)
    app = current_echat()
    # Registered before the read, so what is committed after the read reaches the waiter.
    with app.hub.hold_feed(session.user.id, session.key, after, limit) as waiter:
        messages = await app.store.feed(session.key, after, limit)
        if messages == [] and wait > 0:
            # Until messages arrive for the caller (answered with them: nothing came between
            # the read and them), a logout of this session, shutdown, or the time is up.
            with trio.move_on_after(wait):
                await waiter.woken.wait()
            messages = None if waiter.session_ended else waiter.messages
    if messages is None:
        raise Unauthorized()
    # Built around the messages' own encodings: a held request answers with messages just
    # announced, already encoded for the room's sockets.
    cursor = messages[-1].id if messages else after
    return Response(
        f'{{"messages":{jsonio.array(m.encoded() for m in messages)},"cursor":{cursor}}}',
        content_type=jsonio.CONTENT_TYPE,
    )


@api.put("/rooms/<room_id>/read")
async def mark_read(room_id: str) -> Response:
    session = await require_session()
    room = path_id(room_id, RoomNotFound)
    message_id = (await request_json()).get("message_id")
    if not isinstance(message_id, int) or isinstance(message_id, bool):
        raise InvalidJson("'message_id' must be an integer")
    marker = await current_echat().store.mark_read(room, session.user.id, message_id)
    return json_response({"room_id": room, "message_id": marker})


# -- room and message life ------------------------------------------------------------------


@api.put("/rooms/<room_id>")
async def set_room_title(room_id: str) -> Response:
    session = await require_session()
    room = path_id(room_id, RoomNotFound)
    body = await request_json()
    if "title" not in body:
        raise InvalidJson("'title' is required (null clears it)")
    title = body["title"]
    if title is not None:
        if not isinstance(title, str) or len(title) > MAX_TITLE:
            raise InvalidJson(f"'title' must be a string of at most {MAX_TITLE} characters or null")
        # A blank title is no title, so clients need not tell "" from null.
        title = title.strip() or None
    updated = await current_echat().store.set_title(room, session.user.id, title)
    return json_response(updated.to_json())


@api.delete("/rooms/<room_id>/members/me")
async def leave_room(room_id: str) -> Response:
    session = await require_session()
    await current_echat().store.leave_room(path_id(room_id, RoomNotFound), session.user.id)
    return json_response({})


@api.put("/rooms/<room_id>/messages/<message_id>")
async def edit_message(room_id: str, message_id: str) -> Response:
    session = await require_session()
    app = current_echat()
    room = path_id(room_id, RoomNotFound)
    message = path_id(message_id, MessageNotFound)
    text = check_text((await request_json()).get("text"), app.echat_config.max_text)
    edited = await app.store.edit_message(room, session.user.id, message, text)
    return json_response(edited.to_json())


@api.delete("/rooms/<room_id>/messages/<message_id>")
async def delete_message(room_id: str, message_id: str) -> Response:
    session = await require_session()
    room = path_id(room_id, RoomNotFound)
    message = path_id(message_id, MessageNotFound)
    await current_echat().store.delete_message(room, session.user.id, message)
    return json_response({})


# -- server status --------------------------------------------------------------------------


@api.get("/status")
async def status() -> Response:
    """Figures for operators and dashboards; no session needed."""
    app = current_echat()
    rows = await app.store.row_counts()
    return json_response({
        "version": __version__,
        "uptime_s": round(app.metrics.uptime(), 3),
        "users": rows["users"],
        "rooms": rows["rooms"],
        "messages": rows["messages"],
        "sessions": rows["sessions"],
        "sockets": app.hub.statistics().connections,
        "rss_bytes": rss_bytes(),
    })


@api.get("/openapi.json")
async def openapi_document() -> Response:
    """The OpenAPI 3.1 document of this API (echat.openapi); no session needed."""
    return Response(current_echat().openapi_json, content_type=jsonio.CONTENT_TYPE)
