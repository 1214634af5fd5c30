"""The values the store hands out: frozen, plain, and shaped as the API shows them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class User:
    id: int
    login: str

    def to_json(self) -> dict:
        return {"id": self.id, "login": self.login}


@dataclass(frozen=True, slots=True)
class Room:
    id: int
    users: tuple[User, ...]
    title: str | None = None

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "users": [user.to_json() for user in self.users],
            "title": self.title,
        }


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    text: str
    user_id: int
    room_id: int
    created_at: str

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "text": self.text,
            "user_id": self.user_id,
            "room_id": self.room_id,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """The outcome of posting: the message, and whether this post stored it (False when the
    client's nonce matched an earlier message, which is returned instead)."""

    message: Message
    created: bool
