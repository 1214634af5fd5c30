"""The newest messages of the busiest rooms, kept in memory so the first page of a room's
history (what every client asks for when it opens a room) needs no trip to the database.

Kept exact by the store's commit path: `committed` is called in commit order with every
announced result (a new message, an edit, a deletion, a member leaving), so a cached room's
newest messages and members are always what the database holds. Rooms never gain members (a
room is one set of people; another set opens another room), so only leaving changes them.

Concurrency rule: used from the trio thread only. A room is loaded by a read on a reader
thread; if anything was committed while that read was on its way (`changes` moved), the
loaded copy may be older than the database and is not kept.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from echat.models import Message, MessageDeleted, MessageEdited, RoomLeft, StoredMessage

# The newest this many messages of a room: the default page of GET .../messages.
MESSAGES_KEPT = 50
ROOMS_KEPT = 500


@dataclass
class RoomTail:
    members: set[int]
    messages: list[Message]  # the room's newest messages, oldest first
    whole: bool  # the room has no older messages than these


class RecentMessages:
    def __init__(self, rooms: int = ROOMS_KEPT) -> None:
        self._rooms_kept = rooms
        self._rooms: OrderedDict[int, RoomTail] = OrderedDict()
        self.changes = 0

    def page(self, room_id: int, user_id: int, limit: int) -> list[Message] | None:
        """The newest `limit` messages, oldest first, if known here and the user is a member;
        None means: ask the database."""
        tail = self._rooms.get(room_id)
        if tail is None or user_id not in tail.members:
            return None
        if limit > len(tail.messages) and not tail.whole:
            return None
        self._rooms.move_to_end(room_id)
        return tail.messages[-limit:]

    def keep(self, room_id: int, tail: RoomTail, changes: int) -> None:
        """Keep a room read from the database when `changes` was the count; dropped if
        something was committed since."""
        if changes != self.changes:
            return
        self._rooms[room_id] = tail
        if len(self._rooms) > self._rooms_kept:
            self._rooms.popitem(last=False)

    def committed(self, result: object) -> None:
        """Apply an announced write, in commit order."""
        self.changes += 1
        if isinstance(result, StoredMessage):
            tail = self._rooms.get(result.message.room_id)
            if tail is not None and result.created:
                tail.messages.append(result.message)
                if len(tail.messages) > MESSAGES_KEPT:
                    del tail.messages[0]
                    tail.whole = False
        elif isinstance(result, MessageEdited):
            tail = self._rooms.get(result.room_id)
            if tail is not None:
                tail.messages = [result.message if m.id == result.message.id else m
                                 for m in tail.messages]
        elif isinstance(result, MessageDeleted):
            tail = self._rooms.get(result.room_id)
            if tail is not None:
                tail.messages = [m for m in tail.messages if m.id != result.message_id]
        elif isinstance(result, RoomLeft):
            if result.deleted:
                self._rooms.pop(result.room_id, None)
            elif (tail := self._rooms.get(result.room_id)) is not None:
                tail.members.discard(result.user_id)

    def forget(self, room_id: int) -> None:
        """Drop a room changed without an announcement (an import)."""
        self.changes += 1
        self._rooms.pop(room_id, None)
