"""The values the store hands out: frozen, plain, and shaped as the API shows them."""

from __future__ import annotations

from dataclasses import dataclass, field

from echat import jsonio


@dataclass(frozen=True, slots=True)
class User:
    id: int
    login: str

    def to_json(self) -> dict:
        return {"id": self.id, "login": self.login}


@dataclass(frozen=True, slots=True)
class Account:
    """A user as the operator sees them (`echat users list`)."""

    id: int
    login: str
    created_at: str
    disabled_at: str | None
    sessions: int


@dataclass(frozen=True, slots=True)
class Room:
    """A room as one member sees it: `last_read_message_id` and `unread` are that member's."""

    id: int
    users: tuple[User, ...]
    title: str | None = None
    last_message: Message | None = None
    last_read_message_id: int | None = None
    unread: int = 0

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "users": [user.to_json() for user in self.users],
            "title": self.title,
            "last_message": None if self.last_message is None else self.last_message.to_json(),
            "last_read_message_id": self.last_read_message_id,
            "unread": self.unread,
        }


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    text: str
    user_id: int
    room_id: int
    created_at: str
    edited_at: str | None = None
    _encoded: str | None = field(default=None, init=False, repr=False, compare=False)

    def encoded(self) -> str:
        """`to_json()` as JSON text, encoded at the first call only: a new message goes out
        in a frame to every member and then in history pages (echat.recent keeps the same
        object), all from one encoding."""
        if self._encoded is None:
            object.__setattr__(self, "_encoded", jsonio.dumps(self.to_json()))
        return self._encoded  # type: ignore[return-value]

    def to_json(self) -> dict:
        shown = {
            "id": self.id,
            "text": self.text,
            "user_id": self.user_id,
            "room_id": self.room_id,
            "created_at": self.created_at,
        }
        # Absent until the message is edited: a message nobody edited looks exactly as the
        # original server showed it.
        if self.edited_at is not None:
            shown["edited_at"] = self.edited_at
        return shown


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """The outcome of posting: the message, and whether this post stored it (False when the
    client's nonce matched an earlier message, which is returned instead)."""

    message: Message
    created: bool
    # The room's members when it was stored (author included): whose feeds it wakes.
    members: tuple[int, ...] = ()


# -- results of writes that are announced on the room's sockets as event frames ---------------
# Each names its room and the `?events=` kind that receives it; `to_json()` is the frame.


@dataclass(frozen=True, slots=True)
class MessageEdited:
    message: Message
    kind = "edit"

    @property
    def room_id(self) -> int:
        return self.message.room_id

    def to_json(self) -> dict:
        return {"type": "edit", "message": self.message.to_json()}


@dataclass(frozen=True, slots=True)
class MessageDeleted:
    room_id: int
    message_id: int
    kind = "edit"

    def to_json(self) -> dict:
        return {"type": "delete", "room_id": self.room_id, "message_id": self.message_id}


@dataclass(frozen=True, slots=True)
class ReadMarkerMoved:
    """A member's read marker moved forward (announced by the read-state endpoint)."""

    room_id: int
    user_id: int
    message_id: int
    kind = "read"

    def to_json(self) -> dict:
        return {"type": "read", "room_id": self.room_id, "user_id": self.user_id,
                "message_id": self.message_id}


RoomEvent = MessageEdited | MessageDeleted | ReadMarkerMoved


@dataclass(frozen=True, slots=True)
class RoomLeft:
    """A member left a room; `deleted` when they were the last and the room is gone."""

    room_id: int
    user_id: int
    deleted: bool
