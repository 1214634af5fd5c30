"""The OpenAPI 3.1 document of the REST API, served at GET /v1/openapi.json.

Written from the contract (`shared/spec/API.md`), not generated from the routes: it states what
clients may rely on, and the test suite fuzzes the running server against it (schemathesis).
Each path is one entry of `PATHS`, built with `operation()`; adding an endpoint is adding an
entry. Objects allow fields beyond those listed: the contract lets new fields appear beside old
ones, and old clients ignore them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from echat import __version__
from echat.accounts import MAX_LOGIN, MAX_PASSWORD
from echat.api import (
    DEFAULT_FEED_LIMIT,
    MAX_FEED_LIMIT,
    MAX_FEED_WAIT,
    MAX_HISTORY_LIMIT,
    MAX_ROOM_USERS,
    MAX_SEARCH_LIMIT,
    MAX_TITLE,
)
from echat.config import Config
from echat.errors import EchatError
from echat.store import MAX_SQLITE_INT as MAX_ID

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    return {"type": "object", "required": list(required),
            "properties": {**required, **(optional or {})}}


ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
TIMESTAMP = {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$"}

SCHEMAS: dict[str, Schema] = {
    "User": obj({"id": ID, "login": {"type": "string"}}),
    "Room": obj({"id": ID, "users": {"type": "array", "items": ref("User")},
                 "title": {"type": ["string", "null"]},
                 "last_message": {"oneOf": [ref("Message"), {"type": "null"}]},
                 "last_read_message_id": {"type": ["integer", "null"], "minimum": 1},
                 "unread": {"type": "integer", "minimum": 0}}),
    "RoomWithPresence": {"allOf": [ref("Room"), obj(
        {"online": {"type": "array", "items": ID}})]},
    "Message": obj({"id": ID, "text": {"type": "string"}, "user_id": ID, "room_id": ID,
                    "created_at": TIMESTAMP}, {"edited_at": TIMESTAMP}),
    "Session": obj({"session_id": {"type": "string", "pattern": "^[0-9a-f]{40}$"}}),
    "Empty": {"type": "object", "maxProperties": 0},
    "Status": obj({name: {"type": "integer", "minimum": 0} for name in
                   ("users", "rooms", "messages", "sessions", "sockets", "rss_bytes")}
                  | {"version": {"type": "string"}, "uptime_s": {"type": "number"}}),
    "Error": obj({"error": obj({"code": {"type": "string"}}, {"message": {"type": "string"}})}),
}

STATUS_OF = {error.code: error.status for error in EchatError.__subclasses__()}

# Each refusal status, with the meaning the contract gives it.
ERROR_STATUS = {
    401: "no session, or a malformed, unknown or ended one",
    403: "someone else's message, or a disabled account",
    413: "body over --max-body",
    422: "invalid input, or a thing that does not exist for the caller",
    429: "too many failed logins: retry after Retry-After seconds",
}


def error_response(status: int, codes: list[str]) -> Schema:
    schema = {"allOf": [ref("Error"), obj({"error": obj({"code": {"enum": codes}})})]}
    response: Schema = {"description": ERROR_STATUS[status],
                        "content": {"application/json": {"schema": schema}}}
    if status == 429:
        response["headers"] = {"Retry-After": {"required": True,
                                               "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
    return response


def operation(summary: str, answer: Schema, *, errors: Sequence[str] = (), session: bool = True,
              body: Schema | None = None, query: dict[str, Schema] | None = None) -> Schema:
    """One method of a path: `answer` is the schema of the 200 body, `errors` the codes it may
    refuse with (401 and 413 are added for a session and a body), `session` whether it needs one.
    """
    codes = [*errors, *(["unauthorized"] if session else []),
             *(["payload_too_large"] if body is not None else [])]
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(STATUS_OF[code], []).append(code)
    shown: Schema = {"summary": summary, "responses": {
        "200": {"description": "OK", "content": {"application/json": {"schema": answer}}},
        **{str(status): error_response(status, listed) for status, listed in by_status.items()},
    }}
    if body is not None:
        shown["requestBody"] = {"required": True,
                                "content": {"application/json": {"schema": body}}}
    if query:
        shown["parameters"] = [{"name": name, "in": "query", "required": False, "schema": schema}
                               for name, schema in query.items()]
    if not session:
        shown["security"] = []
    return shown


def path_ids(*names: str) -> list[Schema]:
    return [{"name": name, "in": "path", "required": True, "schema": ID} for name in names]


def listed(name: str) -> Schema:
    return {"type": "array", "items": ref(name)}


CREDENTIALS = obj({"login": {"type": "string", "minLength": 1, "maxLength": MAX_LOGIN},
                   "password": {"type": "string", "minLength": 1, "maxLength": MAX_PASSWORD}})
LIMIT_SEARCH = {"type": "integer", "minimum": 1, "maximum": MAX_SEARCH_LIMIT, "default": 50}
LIMIT_HISTORY = {"type": "integer", "minimum": 1, "maximum": MAX_HISTORY_LIMIT, "default": 50}
MESSAGE_ID = {"type": "integer", "minimum": 0, "maximum": MAX_ID}
TITLE = {"type": ["string", "null"], "maxLength": MAX_TITLE}

USER_SEARCH = operation(
    "Users whose login contains q (case-insensitive); no q finds no one", listed("User"),
    errors=["invalid_json"], query={"q": {"type": "string"}, "limit": LIMIT_SEARCH})

PATHS: dict[str, Schema] = {
    "/v1/register": {"post": operation(
        "Create an account and a session", ref("Session"), session=False, body=CREDENTIALS,
        errors=["invalid_json", "invalid_login", "invalid_password", "user_already_exists"])},
    "/v1/login": {"post": operation(
        "A new session (other sessions stay)", ref("Session"), session=False, body=CREDENTIALS,
        errors=["invalid_json", "user_not_found", "wrong_credentials", "forbidden",
                "too_many_requests"])},
    "/v1/logout": {"post": operation("End this session; its sockets close with 1008",
                                     ref("Empty"))},
    "/v1/info": {"get": operation("The caller", ref("User"))},
    "/v1/users": {"get": USER_SEARCH},
    "/v1/users/": {"get": USER_SEARCH},
    "/v1/rooms": {
        "get": operation("Every room of the caller", listed("Room")),
        "post": operation(
            "The room of the caller and these users (the existing one for the same people)",
            ref("Room"), errors=["invalid_json", "user_not_found"],
            body=obj({"users": {"type": "array", "maxItems": MAX_ROOM_USERS,
                                "items": obj({"id": ID})}})),
    },
    "/v1/rooms/{room_id}": {
        "parameters": path_ids("room_id"),
        "get": operation("A room of the caller, with who is online", ref("RoomWithPresence"),
                         errors=["room_not_found"]),
        "put": operation("Set or clear the title", ref("Room"),
                         errors=["invalid_json", "room_not_found"],
                         body=obj({"title": TITLE})),
    },
    "/v1/rooms/{room_id}/members/me": {
        "parameters": path_ids("room_id"),
        "delete": operation("Leave the room", ref("Empty"), errors=["room_not_found"]),
    },
    "/v1/rooms/{room_id}/messages": {
        "parameters": path_ids("room_id"),
        "get": operation(
            "History, oldest first: the newest `limit`, or the oldest `limit` after `after`",
            listed("Message"), errors=["invalid_json", "room_not_found"],
            query={"limit": LIMIT_HISTORY, "before": MESSAGE_ID, "after": MESSAGE_ID}),
    },
    "/v1/rooms/{room_id}/messages/{message_id}": {
        "parameters": path_ids("room_id", "message_id"),
        "put": operation("Edit one's own message", ref("Message"),
                         errors=["invalid_json", "empty_text", "text_too_long", "room_not_found",
                                 "message_not_found", "forbidden"],
                         body=obj({"text": {"type": "string", "minLength": 1}})),
        "delete": operation("Delete one's own message", ref("Empty"),
                            errors=["room_not_found", "message_not_found", "forbidden"]),
    },
    "/v1/rooms/{room_id}/read": {
        "parameters": path_ids("room_id"),
        "put": operation("Move the caller's read marker forward (never back); the marker now",
                         obj({"room_id": ID, "message_id": ID}),
                         errors=["invalid_json", "room_not_found", "message_not_found"],
                         body=obj({"message_id": ID})),
    },
    "/v1/feed": {"get": operation(
        "Messages of every room of the caller after the cursor, oldest first; with `wait`"
        " (seconds, to the millisecond), held until one arrives or the time is up",
        obj({"messages": listed("Message"), "cursor": MESSAGE_ID}), errors=["invalid_json"],
        query={"after": MESSAGE_ID,
               "limit": {"type": "integer", "minimum": 1, "maximum": MAX_FEED_LIMIT,
                         "default": DEFAULT_FEED_LIMIT},
               "wait": {"type": "number", "minimum": 0, "maximum": MAX_FEED_WAIT,
                        "multipleOf": 0.001, "default": 0}})},
    "/v1/status": {"get": operation("Server figures", ref("Status"), session=False)},
    "/v1/openapi.json": {"get": operation("This document", {"type": "object"}, session=False)},
}


def document(config: Config) -> Schema:
    """The document for a server with `config` (its text limit is part of the contract)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "echat",
            "version": __version__,
            "description": (
                "The e_chat /v1 API. Every error is {\"error\": {\"code\": ...}}. Live chat is "
                "the WebSocket WS /v1/rooms/{room_id}/chat, outside this document. Message "
                f"texts are at most {config.max_text} characters; bodies at most "
                f"{config.max_body} bytes."
            ),
        },
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "header", "name": "X-Session-Id"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"session": []}, {"bearer": []}],
    }
