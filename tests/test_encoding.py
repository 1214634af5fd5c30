"""Messages are encoded once: the frame text and the history page are built from it."""

from __future__ import annotations

import json

from echat import jsonio
from echat.models import Message


def test_a_history_page_from_encoded_messages_is_the_page_encoded_whole():
    messages = [
        Message(1, 'Привет, "мир" \\ 🙂', 7, 3, "2026-01-01T00:00:00"),
        Message(2, "line\nbreak\t<b>", 8, 3, "2026-01-01T00:00:01", edited_at="2026-01-01T00:01:00"),
    ]
    page = jsonio.array(m.encoded() for m in messages)
    assert page == jsonio.dumps([m.to_json() for m in messages])
    assert json.loads(page)[1]["edited_at"] == "2026-01-01T00:01:00"
    assert jsonio.array([]) == "[]"


def test_the_encoding_is_kept_and_leaves_equality_alone():
    message = Message(1, "hi", 7, 3, "2026-01-01T00:00:00")
    first = message.encoded()
    assert message.encoded() is first
    twin = Message(1, "hi", 7, 3, "2026-01-01T00:00:00")
    assert message == twin and hash(message) == hash(twin)
    assert "_encoded" not in repr(message)
