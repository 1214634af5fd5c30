"""The SQLite store on its own, on a database file in tmp_path.

What the contract and the issue ask of storage: the schema version in PRAGMA user_version,
WAL, foreign keys, a busy timeout, indexes that serve each query (checked with EXPLAIN QUERY
PLAN on the statements the store really runs), group commit with announcements in id order,
and ':memory:' leaving nothing behind.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import trio
import trio.testing

import echat.store
from echat.errors import InternalError, RoomNotFound, UserAlreadyExists, UserNotFound
from echat.models import StoredMessage
from echat.store import SCHEMA_VERSION, UnusableDatabase, open_store


@dataclass
class Traced:
    """Every statement the store's connections ran, and each connection's settings."""

    statements: list[str] = field(default_factory=list)
    settings: list[dict[str, object]] = field(default_factory=list)

    def count(self, sql: str) -> int:
        return sum(1 for statement in self.statements if statement == sql)


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> Iterator[Traced]:
    """Watch the store's connections: their pragmas as opened, then every statement."""
    trace = Traced()
    connect = echat.store._connect

    def traced_connect(path: str) -> sqlite3.Connection:
        conn = connect(path)
        trace.settings.append({
            name: conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("foreign_keys", "busy_timeout")
        })
        conn.set_trace_callback(trace.statements.append)  # expanded SQL, values inlined
        return conn

    monkeypatch.setattr(echat.store, "_connect", traced_connect)
    yield trace


def database(tmp_path: Path) -> str:
    return str(tmp_path / "echat.db")


async def users_and_room(store: echat.store.Store) -> tuple[int, int, int]:
    """Two users and their room: (first user id, second user id, room id)."""
    alice = await store.create_user("Alice", "alice", "hash")
    bob = await store.create_user("Bob", "bob", "hash")
    room = await store.open_room(alice.id, [bob.id])
    return alice.id, bob.id, room.id


# -- the file ----------------------------------------------------------------------------------


async def test_a_new_database_gets_the_schema_wal_and_its_version(tmp_path):
    async with open_store(database(tmp_path)):
        pass
    conn = sqlite3.connect(database(tmp_path))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type='table'")}
    assert {"users", "sessions", "rooms", "room_members", "messages"} <= tables
    schema = (Path(echat.store.__file__).parent / "schema.sql").read_text(encoding="utf-8")
    assert f"PRAGMA user_version = {SCHEMA_VERSION};" in schema


async def test_every_connection_has_foreign_keys_and_a_busy_timeout(tmp_path, traced):
    async with open_store(database(tmp_path)) as store:
        assert len(traced.settings) == 1 + echat.store.READ_CONNECTIONS
        assert all(s == {"foreign_keys": 1, "busy_timeout": echat.store.BUSY_TIMEOUT_MS}
                   for s in traced.settings), traced.settings
        assert echat.store.BUSY_TIMEOUT_MS >= 1000
        # Foreign keys at work: a session of a user who does not exist cannot be stored.
        with pytest.raises(InternalError):
            await store.create_session(b"k" * 32, 12345)
        assert await store.session_user(b"k" * 32) is None


async def test_reopening_a_file_keeps_its_data(tmp_path):
    async with open_store(database(tmp_path)) as store:
        alice, bob, room = await users_and_room(store)
        await store.create_session(b"s" * 32, bob)
        await store.add_message(room, alice, "Привет 🚀")
    async with open_store(database(tmp_path)) as store:
        user, password_hash, disabled = await store.credentials("bob")
        assert (user.id, user.login, password_hash, disabled) == (bob, "Bob", "hash", False)
        assert (await store.session_user(b"s" * 32)).id == bob
        assert [m.text for m in await store.messages(room, bob, limit=10)] == ["Привет 🚀"]
        assert (await store.open_room(bob, [alice])).id == room
        with pytest.raises(UserAlreadyExists):
            await store.create_user("ALICE", "alice", "hash")
    conn = sqlite3.connect(database(tmp_path))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_a_newer_schema_version_is_refused_and_left_alone(tmp_path):
    conn = sqlite3.connect(database(tmp_path))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(UnusableDatabase, match="newer"):
        async with open_store(database(tmp_path)):
            pass
    conn = sqlite3.connect(database(tmp_path))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    assert conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0] == 0


async def test_a_database_of_something_else_is_refused(tmp_path):
    conn = sqlite3.connect(database(tmp_path))
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.close()
    with pytest.raises(UnusableDatabase, match="not an echat database"):
        async with open_store(database(tmp_path)):
            pass


async def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    Path(database(tmp_path)).write_text("just text, long enough to be read as a header " * 4)
    with pytest.raises(UnusableDatabase, match="not a database"):
        async with open_store(database(tmp_path)):
            pass
    with pytest.raises(UnusableDatabase, match="unable to open"):
        async with open_store(str(tmp_path / "missing" / "echat.db")):
            pass


async def test_memory_leaves_no_file_behind(tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    async with open_store(":memory:") as first, open_store(":memory:") as second:
        await first.create_user("Alice", "alice", "hash")
        assert await second.credentials("alice") is None  # each is its own database
        assert len(list(scratch.iterdir())) == 2
    assert list(scratch.iterdir()) == []
    assert list(workdir.iterdir()) == []


async def test_a_closed_store_refuses_writes(tmp_path):
    async with open_store(database(tmp_path)) as store:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        await store.create_user("Alice", "alice", "hash")


# -- indexes -----------------------------------------------------------------------------------


def query_plans(path: str, statements: list[str]) -> dict[str, list[str]]:
    """EXPLAIN QUERY PLAN of each query (SELECT, WITH, UPDATE, DELETE) the store ran."""
    conn = sqlite3.connect(path)
    plans = {}
    for statement in statements:
        if statement.split(None, 1)[0].upper() in {"SELECT", "WITH", "UPDATE", "DELETE"}:
            rows = conn.execute("EXPLAIN QUERY PLAN " + statement).fetchall()
            plans[statement] = [row[3] for row in rows]
    return plans


async def test_each_query_is_served_by_an_index(tmp_path, traced):
    path = database(tmp_path)
    async with open_store(path) as store:
        alice, bob, room = await users_and_room(store)
        for n in range(20):
            await store.create_user(f"User {n}", f"user {n}", "hash")
        await store.create_session(b"s" * 32, alice)
        traced.statements.clear()  # what follows is the workload whose plans are checked
        await store.credentials("alice")
        await store.session_user(b"s" * 32)
        await store.search_users("user", 5)
        await store.open_room(bob, [alice])
        for n in range(5):
            await store.add_message(room, alice, f"m{n}", nonce=f"nonce {n}")
        await store.add_message(room, alice, "again", nonce="nonce 0")
        await store.rooms_of(alice)
        await store.room(room, bob)
        await store.is_member(room, bob)
        await store.messages(room, bob, limit=3)
        await store.messages(room, bob, limit=3, before=4)
        await store.messages(room, bob, limit=3, after=2)
        await store.messages(room, bob, limit=3, after=1, before=5)
        await store.feed(b"s" * 32, 0, 3)
        await store.feed(b"s" * 32, 2, 100)
        await store.mark_read(room, bob, 3)
        await store.delete_message(room, alice, 5)
        await store.delete_session(b"s" * 32)
    plans = query_plans(path, traced.statements)

    def plans_of(fragment: str) -> list[str]:
        found = [line for sql, plan in plans.items() if fragment in sql for line in plan]
        assert found, f"no statement containing {fragment!r} ran"
        return found

    # Login lookup, sessions, members of a room, rooms of a user, history of a room.
    assert "SEARCH users USING INDEX sqlite_autoindex_users_1 (login_key=?)" in plans_of(
        "WHERE login_key =")
    assert any("PRIMARY KEY (token_hash=?)" in line for line in plans_of("token_hash ="))
    assert any(line.startswith("SEARCH") and "room_members_by_user (user_id=?)" in line
               for line in plans_of("mine.user_id ="))
    assert any(line.startswith("SEARCH m USING PRIMARY KEY (room_id=?)")
               for line in plans_of("JOIN room_members m"))
    history = plans_of("edited_at FROM messages WHERE room_id =")
    assert all("messages_by_room (room_id=?" in line for line in history), history
    assert not any("TEMP B-TREE" in line for line in history), history
    # The feed and the unread recount start at a message id within one room.
    feed = plans_of("WITH bounds AS MATERIALIZED")
    reads = [line for line in feed if line.startswith(("SEARCH messages ", "SEARCH m "))]
    assert len(reads) == 4 and all("messages_by_room (room_id=? AND id>?" in line
                                   for line in reads), feed
    assert any("messages_by_room (room_id=? AND id>?)" in line
               for line in plans_of("SET last_read_id"))
    # Nothing reads a whole table, except the substring search of logins, which cannot use
    # an index for the match (it walks the login index to return rows already in order), and
    # the feed's walk over its own short list of the user's rooms.
    allowed = ("SCAN CONSTANT ROW", "SCAN json_each", "SCAN b")
    for sql, plan in plans.items():
        for line in plan:
            if line.startswith("SCAN") and not line.startswith(allowed):
                assert "instr(login_key" in sql and "USING INDEX" in line, (sql, line)


async def test_the_indexes_exist(tmp_path):
    async with open_store(database(tmp_path)):
        pass
    conn = sqlite3.connect(database(tmp_path))
    indexes = {row[0]: row[1] for row in conn.execute(
        "SELECT name, tbl_name FROM sqlite_schema WHERE type = 'index'")}
    assert indexes["messages_by_room"] == "messages"
    assert indexes["room_members_by_user"] == "room_members"
    assert indexes["sessions_by_user"] == "sessions"
    columns = [row[2] for row in conn.execute("PRAGMA index_info(messages_by_room)")]
    assert columns == ["room_id", "id"]
    unique_login = [
        name for name, table in indexes.items() if table == "users"
        and conn.execute(f"PRAGMA index_info({name})").fetchall()[0][2] == "login_key"
    ]
    assert unique_login


# -- group commit --------------------------------------------------------------------------------


async def test_concurrent_writes_share_commits_and_are_announced_in_id_order(tmp_path, traced):
    path = database(tmp_path)
    announced: list[tuple[int, object]] = []

    def on_commit(result: object, origin: object) -> None:
        assert isinstance(result, StoredMessage)
        announced.append((result.message.id, origin))

    async with open_store(path, on_commit=on_commit) as store:
        alice, bob, room = await users_and_room(store)
        solo = (await store.open_room(alice, [])).id
        # Hold the database's write lock from outside so the writer stalls at its first
        # BEGIN IMMEDIATE while every post below queues up behind it.
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        commits = traced.count("COMMIT")
        results: dict[int, StoredMessage] = {}

        async def post(n: int) -> None:
            author, where = (alice, solo) if n % 3 == 0 else (bob, room)
            results[n] = await store.add_message(where, author, f"m{n}", origin=n)

        async with trio.open_nursery() as nursery:
            for n in range(300):
                nursery.start_soon(post, n)
            await trio.testing.wait_all_tasks_blocked()
            blocker.execute("ROLLBACK")
        blocker.close()
        # The one post the writer may have taken before it stalled, then all the others.
        assert traced.count("COMMIT") - commits <= 2
        assert len(results) == 300
        ids = [results[n].message.id for n in range(300)]
        assert len(set(ids)) == 300
        assert [message_id for message_id, _ in announced] == sorted(ids)
        assert {origin: message_id for message_id, origin in announced} == dict(enumerate(ids))
        history = await store.messages(room, bob, limit=500)
        assert [m.id for m in history] == sorted(results[n].message.id for n in range(300)
                                                 if n % 3)
        assert all(m.text == f"m{n}" for n, m in ((int(m.text[1:]), m) for m in history))


async def test_a_refused_write_does_not_undo_the_others_of_its_batch(tmp_path):
    path = database(tmp_path)
    async with open_store(path) as store:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        outcomes: dict[str, object] = {}

        async def create(login: str) -> None:
            try:
                outcomes[login] = (await store.create_user(login, login.lower(), "hash")).login
            except UserAlreadyExists as error:
                outcomes[login] = error

        async def open_room_with_a_stranger() -> None:
            try:
                await store.open_room(1, [999])
            except UserNotFound as error:
                outcomes["room"] = error

        async with trio.open_nursery() as nursery:
            for login in ["Anna", "ANNA", "Boris", "anna", "Vera"]:
                nursery.start_soon(create, login)
            nursery.start_soon(open_room_with_a_stranger)
            await trio.testing.wait_all_tasks_blocked()
            blocker.execute("ROLLBACK")
        blocker.close()
        refused = [login for login, outcome in outcomes.items()
                   if isinstance(outcome, UserAlreadyExists)]
        assert len(refused) == 2
        assert isinstance(outcomes["room"], UserNotFound)
        for key in ["anna", "boris", "vera"]:
            assert await store.credentials(key) is not None
        assert await store.rooms_of(1) == []


async def test_a_message_from_a_non_member_is_refused_and_not_announced(tmp_path):
    announced = []
    async with open_store(database(tmp_path),
                          on_commit=lambda result, origin: announced.append(result)) as store:
        alice, bob, room = await users_and_room(store)
        carol = (await store.create_user("Carol", "carol", "hash")).id
        with pytest.raises(RoomNotFound):
            await store.add_message(room, carol, "let me in")
        with pytest.raises(RoomNotFound):
            await store.messages(room, carol, limit=10)
        stored = await store.add_message(room, alice, "hi", nonce="n1")
        again = await store.add_message(room, alice, "hi", nonce="n1")
        assert stored.created and not again.created and again.message == stored.message
        assert [r.message.id for r in announced if r.created] == [stored.message.id]
        assert [m.id for m in await store.messages(room, bob, limit=10)] == [stored.message.id]


async def test_a_refused_message_leaves_the_rest_of_its_batch_stored(tmp_path):
    path = database(tmp_path)
    async with open_store(path) as store:
        alice, bob, room = await users_and_room(store)
        carol = (await store.create_user("Carol", "carol", "hash")).id
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # so that the posts below queue into one batch
        outcomes: dict[str, object] = {}

        async def post(name: str, user: int) -> None:
            try:
                outcomes[name] = (await store.add_message(room, user, name, nonce=name)).created
            except RoomNotFound as error:
                outcomes[name] = error

        async with trio.open_nursery() as nursery:
            for name, user in [("a1", alice), ("c1", carol), ("b1", bob), ("c2", carol),
                               ("a2", alice)]:
                nursery.start_soon(post, name, user)
            await trio.testing.wait_all_tasks_blocked()
            blocker.execute("ROLLBACK")
        blocker.close()
        assert outcomes["a1"] is outcomes["b1"] is outcomes["a2"] is True
        assert isinstance(outcomes["c1"], RoomNotFound) and isinstance(outcomes["c2"], RoomNotFound)
        assert sorted(m.text for m in await store.messages(room, bob, limit=10)) == [
            "a1", "a2", "b1"]
        assert [room_.unread for room_ in await store.rooms_of(bob)] == [2]
    with closing(sqlite3.connect(path)) as conn:
        assert sorted(n for (n,) in conn.execute("SELECT nonce FROM message_nonces")) == [
            "a1", "a2", "b1"]


async def test_an_expired_nonce_stores_the_message_again_and_is_deleted(tmp_path):
    path = database(tmp_path)
    long_ago = (datetime.now(timezone.utc) - timedelta(minutes=11)).strftime("%Y-%m-%dT%H:%M:%S")
    async with open_store(path) as store:
        alice, bob, room = await users_and_room(store)
        first = await store.add_message(room, alice, "hi", nonce="n1")
        await store.add_message(room, bob, "old", nonce="n2")
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.execute("UPDATE message_nonces SET created_at = ?", (long_ago,))
        again = await store.add_message(room, alice, "hi", nonce="n1")
        assert again.created and again.message.id != first.message.id
        resent = await store.add_message(room, alice, "hi", nonce="n1")
        assert not resent.created and resent.message == again.message
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT user_id, nonce, message_id FROM message_nonces").fetchall() == [
            (alice, "n1", again.message.id)]
