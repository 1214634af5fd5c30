"""Schema upgrades: a database made by any earlier released echat opens in this one with its data.

tests/schemas/v<N>.sql is schema.sql exactly as released at version N. Each test builds a database
of that version with data in it, as that release would have written it, and opens it with the
current store: the upgrade runs by itself, keeps every row, and ends with the same schema as a
database created new.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from echat.store import SCHEMA_VERSION, UPGRADES, open_store

RELEASED = Path(__file__).parent / "schemas"
RELEASED_VERSIONS = sorted(int(path.stem[1:]) for path in RELEASED.glob("v*.sql"))


def released_database(path: Path, version: int) -> None:
    """A database of a released version holding two users, a session, a room with messages
from both, and an empty room."""
    conn = sqlite3.connect(path)
    conn.executescript((RELEASED / f"v{version}.sql").read_text(encoding="utf-8"))
    conn.executescript(
        """
        INSERT INTO users (id, login, login_key, password_hash, created_at) VALUES
            (1, 'Вася', 'вася', 'hash-1', '2026-01-01T00:00:00'),
            (2, 'ann', 'ann', 'hash-2', '2026-01-01T00:00:01');
        INSERT INTO rooms (id, member_key, title, created_at)
            VALUES (1, '1,2', 'old friends', '2026-01-01T00:00:02');
        INSERT INTO rooms (id, member_key, title, created_at)
            VALUES (2, '1', NULL, '2026-01-01T00:00:02');
        INSERT INTO room_members (room_id, user_id) VALUES (1, 1), (1, 2), (2, 1);
        INSERT INTO messages (room_id, user_id, text, created_at) VALUES
            (1, 1, 'привет 👋', '2026-01-01T00:00:03'),
            (1, 2, 'hi', '2026-01-01T00:00:04');
        """
    )
    conn.execute(
        "INSERT INTO sessions (token_hash, user_id, created_at) VALUES (?, 1, ?)",
        (hashlib.sha256(b"a" * 40).digest(), "2026-01-01T00:00:05"),
    )
    conn.commit()
    conn.close()


def schema_of(path: Path) -> dict[str, object]:
    """Tables with their columns, and the indexes and triggers: what the queries rely on."""
    conn = sqlite3.connect(path)
    try:
        shape: dict[str, object] = {}
        for kind, name, table in conn.execute(
            "SELECT type, name, tbl_name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'"
        ):
            if kind == "table":
                columns = conn.execute(f"PRAGMA table_info('{name}')").fetchall()
                shape[f"table {name}"] = sorted(
                    (col_name, col_type, notnull, default, pk)
                    for _, col_name, col_type, notnull, default, pk in columns
                )
            elif kind == "index":
                shape[f"index {name}"] = (table, conn.execute(
                    f"PRAGMA index_info('{name}')").fetchall())
            else:
                shape[f"{kind} {name}"] = table
        shape["user_version"] = conn.execute("PRAGMA user_version").fetchone()[0]
        return shape
    finally:
        conn.close()


def test_every_version_since_the_first_has_an_upgrade_step():
    assert RELEASED_VERSIONS[0] == 1
    assert sorted(UPGRADES) == list(range(2, SCHEMA_VERSION + 1))


@pytest.mark.parametrize("version", RELEASED_VERSIONS)
async def test_a_released_database_is_upgraded_with_its_data(tmp_path, version):
    old = tmp_path / "old.db"
    released_database(old, version)
    async with open_store(str(old)) as store:
        user = await store.session_user(hashlib.sha256(b"a" * 40).digest())
        assert user is not None and user.login == "Вася"
        credentials = await store.credentials("ann")
        assert credentials is not None and credentials[1] == "hash-2"
        history = await store.messages(1, 1, limit=10, before=None, after=None)
        assert [m.text for m in history] == ["привет 👋", "hi"]
        rooms = await store.rooms_of(2)
        assert [room.id for room in rooms] == [1]
        # Read state is filled in from the history: the last message, and every message of
        # the others unread (there were no read markers before version 2).
        for member in (1, 2):
            room = (await store.rooms_of(member))[0]
            assert room.id == 1 and room.last_message is not None
            assert room.last_message.text == "hi"
            assert (room.unread, room.last_read_message_id) == (1, None)
        empty = await store.room(2, 1)
        assert (empty.last_message, empty.unread) == (None, 0)
        # The upgraded database takes new writes like a new one, and keeps them up to date.
        message = await store.add_message(1, 2, "after the upgrade")
        assert message.message.id == 3
        assert [room.id for room in await store.rooms_of(1)] == [1, 2]
        room = await store.room(1, 1)
        assert (room.unread, room.last_message) == (2, message.message)
        assert await store.mark_read(1, 1, 2) == 2
        assert (await store.room(1, 1)).unread == 1

    new = tmp_path / "new.db"
    async with open_store(str(new)):
        pass
    assert schema_of(old) == schema_of(new)
    conn = sqlite3.connect(old)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()
