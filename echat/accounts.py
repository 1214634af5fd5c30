"""Logins, passwords' shape, and sessions: the rules, not the storage.

A session id is 40 lowercase hex characters from `secrets`; the database keeps only its
SHA-256 (`session_key`), so a leaked database file opens no session.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from dataclasses import dataclass

from werkzeug.datastructures import Headers, MultiDict

from echat.errors import InvalidLogin, InvalidPassword
from echat.models import User

MAX_LOGIN = 64
MAX_PASSWORD = 1024
_SESSION_ID = re.compile(r"[0-9a-f]{40}")
# Control characters, lone surrogates and line/paragraph separators have no place in a name
# shown in a member list. Format characters (Cf) are allowed: emoji sequences need U+200D.
_FORBIDDEN_IN_LOGIN = {"Cc", "Cs", "Zl", "Zp"}


def login_key(login: str) -> str:
    """The Unicode case fold of a login: NFKC, casefold, NFKC again ('Вася' and 'ВАСЯ' agree)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", login).casefold())


def clean_login(login: str) -> str:
    """The login as stored: trimmed. Raises InvalidLogin when empty, too long, or with control
    characters."""
    login = login.strip()
    if not login or len(login) > MAX_LOGIN:
        raise InvalidLogin()
    if any(unicodedata.category(ch) in _FORBIDDEN_IN_LOGIN for ch in login):
        raise InvalidLogin()
    return login


def check_password(password: str) -> None:
    if not password or len(password) > MAX_PASSWORD:
        raise InvalidPassword()


def new_session_id() -> str:
    return secrets.token_hex(20)


def session_key(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("ascii")).digest()


def presented_session_id(headers: Headers, args: MultiDict, *, allow_query: bool) -> str | None:
    """The session id a request names, first found wins: X-Session-Id, Authorization: Bearer,
    then (WebSocket handshakes only) ?session_id=. None when absent or malformed."""
    value = headers.get("X-Session-Id")
    if value is None:
        scheme, _, token = headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            value = token
    if value is None and allow_query:
        value = args.get("session_id")
    if value is None:
        return None
    value = value.strip()
    return value if _SESSION_ID.fullmatch(value) else None


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    key: bytes
