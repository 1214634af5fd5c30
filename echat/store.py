"""SQLite storage: every SQL statement of echat, and every connection, live in this module.

Concurrency rule: only the writer thread touches the write connection. Writes are jobs (a plain
function of a connection) put on a queue; the writer thread takes whatever is queued, runs it in
one transaction (group commit: one fsync for many senders, each job in its own savepoint so one
failing job does not undo the others), commits, and then hands the finished batch back to the
trio thread in commit order. That hand-back is the only path from a commit to the rest of the
server: results that announce something (a new message, an edit or deletion, a member leaving)
are passed to the `on_commit` listener there, in commit order, before the waiting callers wake.
So every subscriber of a room is fed in the order of the history endpoint, and an edit never
reaches anyone before the message it edits.

Reads run on a few read-only connections, each owned by a reader thread of its own that takes
read jobs from a queue, each in its own transaction so a multi-statement read sees one snapshot
(WAL lets them run beside the writer). Dedicated threads rather than trio's worker threads: a
read is a fraction of a millisecond, and the hand-off (a queue put, and the same hand-back to
trio as the writer's) costs less than a capacity limiter, a context copy and a thread from
trio's cache for every request. Each connection keeps its prepared statements (sqlite3's
statement cache), so a query is compiled once per connection, not once per request.
"""

from __future__ import annotations

import logging
import queue
import shutil
import sqlite3
import tempfile
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import trio

from echat.errors import (
    EchatError,
    Forbidden,
    InternalError,
    MessageNotFound,
    RoomNotFound,
    UserAlreadyExists,
    UserNotFound,
)
from echat.models import (
    Account,
    Message,
    MessageDeleted,
    MessageEdited,
    ReadMarkerMoved,
    Room,
    RoomLeft,
    StoredMessage,
    User,
)
from echat.recent import MESSAGES_KEPT, RecentMessages, RoomTail

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2

# How a database of an earlier released version is brought up to date: the statements that take
# version N-1 to N, run in one transaction with the version change. A new database gets
# schema.sql whole instead, so a change goes into both places; a test checks that an upgraded
# database and a new one end up with the same tables, columns, indexes and triggers.
UPGRADES: dict[int, str] = {
    2: """
        ALTER TABLE users ADD COLUMN disabled_at TEXT;
        ALTER TABLE rooms ADD COLUMN last_message_id INTEGER;
        ALTER TABLE rooms ADD COLUMN created_seq INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE room_members ADD COLUMN last_read_id INTEGER;
        ALTER TABLE room_members ADD COLUMN unread INTEGER NOT NULL DEFAULT 0;
        UPDATE rooms SET last_message_id = (SELECT max(id) FROM messages WHERE room_id = rooms.id);
        -- Nobody has a read marker yet, so every message of the others is unread. A room made
        -- before this version with no message in it keeps created_seq 0: it lists last.
        UPDATE room_members SET unread = (
            SELECT count(*) FROM messages m
            WHERE m.room_id = room_members.room_id AND m.user_id != room_members.user_id
        );
    """,
}

# How long a client nonce protects against a resent message (the contract's 10 minutes).
NONCE_WINDOW = timedelta(minutes=10)

# Upper bound on jobs in one transaction: large enough that a burst of senders shares one
# commit, small enough that the first of them is not kept waiting behind thousands.
MAX_BATCH = 512

READ_CONNECTIONS = 4
BUSY_TIMEOUT_MS = 5000
MAX_SQLITE_INT = 2**63 - 1

CommitListener = Callable[[Any, object], None]


class UnusableDatabase(RuntimeError):
    """The database file cannot be opened, or holds something this echat cannot use."""


def now_text() -> str:
    """The current UTC time as the API shows it: seconds precision, no suffix."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def schema_sql() -> str:
    return resources.files("echat").joinpath("schema.sql").read_text(encoding="utf-8")


@dataclass(eq=False)
class _Job:
    fn: Callable[..., Any]
    args: tuple
    announce: bool
    origin: object
    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None
    error: BaseException | None = None


_STOP = object()


class Store:
    """Async access to the database. Build one with `open_store`."""

    def __init__(self, path: str, on_commit: CommitListener | None) -> None:
        self._path = path
        self._on_commit = on_commit
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._reads: queue.SimpleQueue = queue.SimpleQueue()
        self._reader_threads: list[threading.Thread] = []
        self._recent = RecentMessages()
        self._trio_token = trio.lowlevel.current_trio_token()
        self._writer_thread: threading.Thread | None = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    async def _open(self) -> None:
        writer = await trio.to_thread.run_sync(_connect_writer, self._path)
        self._writer_thread = threading.Thread(
            target=self._write_loop, args=(writer,), name="echat-writer", daemon=True
        )
        self._writer_thread.start()
        for n in range(READ_CONNECTIONS):
            reader = await trio.to_thread.run_sync(_connect_reader, self._path)
            thread = threading.Thread(
                target=self._read_loop, args=(reader,), name=f"echat-reader-{n}", daemon=True
            )
            thread.start()
            self._reader_threads.append(thread)

    async def _close(self) -> None:
        self._closed = True
        if self._writer_thread is not None:
            self._jobs.put(_STOP)
            await trio.to_thread.run_sync(self._writer_thread.join)
        for _ in self._reader_threads:
            self._reads.put(_STOP)
        for thread in self._reader_threads:
            await trio.to_thread.run_sync(thread.join)

    # -- the writer thread -----------------------------------------------------------------

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        try:
            stopping = False
            while not stopping:
                jobs = [self._jobs.get()]
                while len(jobs) < MAX_BATCH:
                    try:
                        jobs.append(self._jobs.get_nowait())
                    except queue.Empty:
                        break
                if _STOP in jobs:
                    # Nothing is queued after the stop by a well-behaved caller; anything that
                    # is gets an error instead of waiting forever.
                    stopping = True
                    at = jobs.index(_STOP)
                    late = jobs[at + 1 :]
                    jobs = jobs[:at]
                    for job in late:
                        job.error = RuntimeError("the store is closed")
                    self._hand_back(late)
                if jobs:
                    _run_batch(conn, jobs)
                    self._hand_back(jobs)
        finally:
            conn.close()

    def _hand_back(self, jobs: list[_Job]) -> None:
        if jobs:
            self._trio_token.run_sync_soon(self._finish, jobs)

    def _finish(self, jobs: list[_Job]) -> None:
        """In the trio thread, in commit order: announce, then wake each caller."""
        for job in jobs:
            if job.announce and job.error is None:
                self._recent.committed(job.result)
                if self._on_commit is not None:
                    try:
                        self._on_commit(job.result, job.origin)
                    except Exception:
                        log.exception("commit listener failed")
            job.done.set()

    async def _write(self, fn: Callable[..., Any], *args: Any, announce: bool = False,
                     origin: object = None) -> Any:
        """Run `fn(conn, *args)` on the writer thread inside a transaction.

        Cancellation: the job is already queued and will commit; only the wait is abandoned.
        """
        if self._closed:
            raise RuntimeError("the store is closed")
        job = _Job(fn, args, announce, origin)
        self._jobs.put(job)
        await job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    async def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(conn, *args)` on a reader thread inside a read transaction.

        Cancellation abandons the wait only; the read still runs, and its answer is dropped.
        """
        if self._closed:
            raise RuntimeError("the store is closed")
        job = _Job(fn, args, announce=False, origin=None)
        self._reads.put(job)
        await job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    # -- the reader threads ----------------------------------------------------------------

    def _read_loop(self, conn: sqlite3.Connection) -> None:
        try:
            while (job := self._reads.get()) is not _STOP:
                try:
                    conn.execute("BEGIN")
                    try:
                        job.result = job.fn(conn, *job.args)
                    finally:
                        conn.execute("COMMIT")
                except Exception as error:
                    job.error = error
                self._trio_token.run_sync_soon(job.done.set)
        finally:
            conn.close()

    async def flush(self) -> None:
        """Wait until every write queued before this call is committed and announced."""
        await self._write(_nothing)

    # -- accounts and sessions -------------------------------------------------------------

    async def create_user(self, login: str, login_key: str, password_hash: str) -> User:
        """Raises UserAlreadyExists when `login_key` is taken."""
        return await self._write(_insert_user, login, login_key, password_hash)

    async def credentials(self, login_key: str) -> tuple[User, str, bool] | None:
        """The user with that login key, their password hash and whether the operator disabled
        them; or None."""
        return await self._read(_select_credentials, login_key)

    async def set_password_hash(self, user_id: int, password_hash: str, *,
                                end_sessions: bool = False) -> int:
        """Store a new hash; with `end_sessions`, also end every session of the user.
        Returns the number of sessions ended."""
        return await self._write(_update_password_hash, user_id, password_hash, end_sessions)

    async def accounts(self) -> list[Account]:
        """Every user, by id, with their state and number of sessions (for the operator)."""
        return await self._read(_select_accounts)

    async def set_disabled(self, user_id: int, disabled: bool) -> int:
        """Disable a user (they can no longer log in, and their sessions end) or enable them
        again. Returns the number of sessions ended."""
        return await self._write(_update_disabled, user_id, disabled)

    async def live_sessions(self, token_hashes: list[bytes]) -> set[bytes]:
        """Those of `token_hashes` that still open a session (not logged out, user enabled)."""
        return await self._read(_select_live_sessions, token_hashes)

    async def create_session(self, token_hash: bytes, user_id: int) -> None:
        await self._write(_insert_session, token_hash, user_id)

    async def session_user(self, token_hash: bytes) -> User | None:
        return await self._read(_select_session_user, token_hash)

    async def delete_session(self, token_hash: bytes) -> bool:
        """End a session; False when there was none."""
        return await self._write(_delete_session, token_hash)

    async def search_users(self, key: str, limit: int) -> list[User]:
        """Enabled users whose login key contains `key`, ordered by login."""
        return await self._read(_search_users, key, limit)

    # -- rooms and messages ----------------------------------------------------------------

    async def rooms_of(self, user_id: int) -> list[Room]:
        """The user's rooms as they see them, latest activity first."""
        return await self._read(_rooms_seen_by, user_id, None)

    async def room(self, room_id: int, user_id: int) -> Room:
        """The room, if `user_id` is a member; raises RoomNotFound otherwise."""
        room = await self._read(_select_room, room_id, user_id)
        if room is None:
            raise RoomNotFound()
        return room

    async def open_room(self, creator_id: int, user_ids: list[int]) -> Room:
        """The room of exactly the creator and `user_ids`, created if there is none.

        Raises UserNotFound when a listed id is not a user.
        """
        return await self._write(_open_room, creator_id, user_ids)

    async def is_member(self, room_id: int, user_id: int) -> bool:
        return await self._read(_is_member, room_id, user_id)

    async def messages(self, room_id: int, user_id: int, *, limit: int,
                       before: int | None = None, after: int | None = None) -> list[Message]:
        """History of a room the user is in, oldest first: the newest `limit` messages, or with
        `after` the oldest `limit` after it. Raises RoomNotFound for a room the user is not in.

        The newest page of a recently read room comes from memory (echat.recent)."""
        if before is None and after is None and limit <= MESSAGES_KEPT:
            page = self._recent.page(room_id, user_id, limit)
            if page is not None:
                return page
            changes = self._recent.changes
            tail = await self._read(_select_tail, room_id, user_id)
            if tail is None:
                raise RoomNotFound()
            self._recent.keep(room_id, tail, changes)
            return tail.messages[-limit:]
        found = await self._read(_select_messages, room_id, user_id, limit, before, after)
        if found is None:
            raise RoomNotFound()
        return found

    async def add_message(self, room_id: int, user_id: int, text: str, nonce: str | None = None,
                          *, origin: object = None) -> StoredMessage:
        """Store a message and announce it to the commit listener with `origin`.

        A `nonce` the same user sent within the last 10 minutes returns the earlier message
        with `created=False`, and nothing is stored or announced. Raises RoomNotFound when the
        user is not a member. Cancellation: the message may still be stored and announced.
        """
        return await self._write(_insert_message, room_id, user_id, text, nonce,
                                 announce=True, origin=origin)

    async def edit_message(self, room_id: int, user_id: int, message_id: int,
                           text: str) -> Message:
        """Replace the text of the user's own message and announce the edit.

        Raises RoomNotFound (not a member), MessageNotFound (no such message in that room) or
        Forbidden (someone else's message).
        """
        edited = await self._write(_update_message, room_id, user_id, message_id, text,
                                   announce=True)
        return edited.message

    async def delete_message(self, room_id: int, user_id: int, message_id: int) -> None:
        """Delete the user's own message and announce it; raises as `edit_message`."""
        await self._write(_delete_message, room_id, user_id, message_id, announce=True)

    async def set_title(self, room_id: int, user_id: int, title: str | None) -> Room:
        """Set (or with None clear) the title of a room the user is in; RoomNotFound otherwise."""
        return await self._write(_update_title, room_id, user_id, title)

    async def leave_room(self, room_id: int, user_id: int) -> RoomLeft:
        """Take the user out of the room, deleting it with its messages if nobody is left; the
        commit listener closes the user's sockets to it. RoomNotFound for a non-member."""
        return await self._write(_leave_room, room_id, user_id, announce=True)

    async def mark_read(self, room_id: int, user_id: int, message_id: int) -> int:
        """Move the user's read marker in the room forward to `message_id`; returns the marker
        now (the current one when it is already past). A move is announced as a
        `ReadMarkerMoved`. Raises RoomNotFound (not a member) or MessageNotFound (no such message
        in that room)."""
        marker = await self._write(_mark_read, room_id, user_id, message_id, announce=True)
        return marker.message_id if isinstance(marker, ReadMarkerMoved) else marker

    async def feed(self, session_key: bytes, after: int, limit: int) -> list[Message] | None:
        """The oldest `limit` messages after `after` of every room of the session's user, oldest
        first; None when the session has ended (so a held request notices a logout)."""
        return await self._read(_select_feed, session_key, after, limit)

    async def import_messages(self, room_id: int, rows: Iterable[tuple[int, str, str]]) -> int:
        """Store many messages at once in one transaction, for imports and benchmark fixtures:
        `rows` are (user_id, text, created_at), oldest first. Nothing is announced and no nonce
        is kept. Raises RoomNotFound if an author is not a member. Returns how many were stored.
        """
        try:
            return await self._write(_insert_messages, room_id, rows)
        finally:
            self._recent.forget(room_id)

    async def row_counts(self) -> dict[str, int]:
        """Rows in users, rooms, messages and sessions, read without counting them."""
        return await self._read(_select_row_counts)


@asynccontextmanager
async def open_store(path: str, *, on_commit: CommitListener | None = None) -> AsyncIterator[Store]:
    """Open (creating or upgrading) the database at `path` for the duration of the block.

    `path` ':memory:' gives a private database in a temporary directory, deleted on exit, so it
    behaves exactly like a file (WAL, several connections) and leaves nothing behind.
    `on_commit(result, origin)` is called in the trio thread, in commit order, for each write
    that announces (see `Store.add_message`).
    """
    scratch = None
    if path == ":memory:":
        scratch = tempfile.mkdtemp(prefix="echat-")
        path = str(Path(scratch) / "echat.db")
    store = Store(path, on_commit)
    try:
        await store._open()
        yield store
    finally:
        with trio.CancelScope(shield=True):
            await store._close()
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)


# -- operator tools on a database file (synchronous; the server may be running) ---------------


def backup_database(source: str, target: str) -> None:
    """Copy the database at `source` to the new file `target` with SQLite's online backup.

    The copy is one consistent snapshot even while a server writes to `source` (it is read in
    one read transaction, beside the writer, thanks to WAL). It is written to a temporary name
    and renamed when complete, so `target` never holds half a database. Raises
    UnusableDatabase when `source` cannot be read or the copy fails its quick check.
    """
    partial = Path(target).with_name(Path(target).name + ".partial")
    try:
        with _closing(_connect_existing(source)) as conn, \
                _closing(sqlite3.connect(partial, isolation_level=None)) as copy:
            conn.backup(copy)
            copy.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            result = copy.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            raise UnusableDatabase(f"the copy fails its check: {result}")
        partial.replace(target)
    except sqlite3.Error as error:
        raise UnusableDatabase(str(error)) from error
    finally:
        partial.unlink(missing_ok=True)


def check_database(path: str) -> list[str]:
    """What is wrong with the database at `path`: SQLite's integrity and foreign key checks
    and the schema version. Empty when it is sound. Raises UnusableDatabase when it cannot be
    read at all."""
    try:
        with _closing(_connect_existing(path)) as conn:
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            if problems == ["ok"]:
                problems = []
            problems += [
                # WITHOUT ROWID tables have no row number to give.
                f"{'a row' if rowid is None else f'row {rowid}'} of {table} points at a"
                f" missing row of {parent}"
                for table, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check")
            ]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as error:
        raise UnusableDatabase(str(error)) from error
    if version != SCHEMA_VERSION:
        problems.append(f"schema version {version}, this echat's is {SCHEMA_VERSION}"
                        " (`echat serve` upgrades an older one)")
    return problems


def _connect_existing(path: str) -> sqlite3.Connection:
    """A read-only connection to a database that must exist already (sqlite3.connect would
    create an empty one)."""
    if not Path(path).is_file():
        raise UnusableDatabase("no such file")
    return _connect_reader(path)


@contextmanager
def _closing(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    # sqlite3.Connection's own `with` commits; it does not close.
    try:
        yield conn
    finally:
        conn.close()


# -- connections and schema (worker threads) --------------------------------------------------


def _connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves. check_same_thread=False: a
    # connection is opened in one worker thread and used in another, never two at once.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _connect_writer(path: str) -> sqlite3.Connection:
    try:
        conn = _connect(path)
    except sqlite3.Error as error:
        raise UnusableDatabase(str(error)) from error
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit is on disk before anyone is told about it, so an acknowledged message
        # survives a power cut too, not only kill -9. Group commit pays for the fsync.
        conn.execute("PRAGMA synchronous = FULL")
        _apply_schema(conn)
    except BaseException as error:
        conn.close()
        if isinstance(error, sqlite3.Error):  # not SQLite, unreadable, read-only...
            raise UnusableDatabase(str(error)) from error
        raise
    return conn


def _connect_reader(path: str) -> sqlite3.Connection:
    conn = _connect(path)
    conn.execute("PRAGMA query_only = ON")
    return conn


def _apply_schema(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise UnusableDatabase(
            f"the database has schema version {version}, newer than this echat's {SCHEMA_VERSION}"
        )
    if version == 0:
        if conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]:
            raise UnusableDatabase("the database file is not an echat database")
        conn.executescript("BEGIN IMMEDIATE;\n" + schema_sql() + "\nCOMMIT;")
        return
    for step in range(version + 1, SCHEMA_VERSION + 1):
        log.info("upgrading the database schema to version %d", step)
        conn.executescript(
            f"BEGIN IMMEDIATE;\n{UPGRADES[step]}\nPRAGMA user_version = {step};\nCOMMIT;"
        )


def _run_batch(conn: sqlite3.Connection, jobs: list[_Job]) -> None:
    """One transaction for the batch; each job in a savepoint so a refusal is its own."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        for job in jobs:
            conn.execute("SAVEPOINT job")
            try:
                job.result = job.fn(conn, *job.args)
            except EchatError as error:
                job.error = error
                conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
        conn.execute("COMMIT")
    except Exception:
        # The transaction as a whole failed (disk full, I/O error, read-only file, or a bug in
        # a job): nothing in it is stored, so every job of the batch reports the failure. The
        # cause is logged here, once; callers answer internal_error.
        log.exception("write transaction failed")
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("rollback failed")
        for job in jobs:
            job.result = None
            job.error = InternalError("storage failed")


def _nothing(conn: sqlite3.Connection) -> None:
    return None


# -- statements (each runs inside a transaction opened by the caller) -------------------------


def _insert_user(conn: sqlite3.Connection, login: str, login_key: str, password_hash: str) -> User:
    try:
        cursor = conn.execute(
            "INSERT INTO users (login, login_key, password_hash, created_at) VALUES (?, ?, ?, ?)",
            (login, login_key, password_hash, now_text()),
        )
    except sqlite3.IntegrityError:
        raise UserAlreadyExists() from None
    return User(cursor.lastrowid, login)


def _select_credentials(conn: sqlite3.Connection,
                        login_key: str) -> tuple[User, str, bool] | None:
    row = conn.execute(
        "SELECT id, login, password_hash, disabled_at IS NOT NULL FROM users"
        " WHERE login_key = ?",
        (login_key,),
    ).fetchone()
    return None if row is None else (User(row[0], row[1]), row[2], bool(row[3]))


def _update_password_hash(conn: sqlite3.Connection, user_id: int, password_hash: str,
                          end_sessions: bool) -> int:
    conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))
    if not end_sessions:
        return 0
    return conn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,)).rowcount


def _select_accounts(conn: sqlite3.Connection) -> list[Account]:
    rows = conn.execute(
        "SELECT u.id, u.login, u.created_at, u.disabled_at,"
        " (SELECT count(*) FROM sessions s WHERE s.user_id = u.id)"
        " FROM users u ORDER BY u.id"
    )
    return [Account(*row) for row in rows]


def _update_disabled(conn: sqlite3.Connection, user_id: int, disabled: bool) -> int:
    if not disabled:
        conn.execute("UPDATE users SET disabled_at = NULL WHERE id = ?", (user_id,))
        return 0
    conn.execute(
        "UPDATE users SET disabled_at = coalesce(disabled_at, ?) WHERE id = ?",
        (now_text(), user_id),
    )
    return conn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,)).rowcount


def _select_live_sessions(conn: sqlite3.Connection, token_hashes: list[bytes]) -> set[bytes]:
    live = set()
    for token_hash in token_hashes:
        if _select_session_user(conn, token_hash) is not None:
            live.add(token_hash)
    return live


def _insert_session(conn: sqlite3.Connection, token_hash: bytes, user_id: int) -> None:
    conn.execute(
        "INSERT INTO sessions (token_hash, user_id, created_at) VALUES (?, ?, ?)",
        (token_hash, user_id, now_text()),
    )


def _select_session_user(conn: sqlite3.Connection, token_hash: bytes) -> User | None:
    row = conn.execute(
        "SELECT u.id, u.login FROM sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.token_hash = ? AND u.disabled_at IS NULL",
        (token_hash,),
    ).fetchone()
    return None if row is None else User(*row)


def _delete_session(conn: sqlite3.Connection, token_hash: bytes) -> bool:
    return conn.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,)).rowcount > 0


def _search_users(conn: sqlite3.Connection, key: str, limit: int) -> list[User]:
    # instr() rather than LIKE: the key is matched literally, so '%' and '_' need no escaping.
    # A disabled account is not offered for new rooms.
    rows = conn.execute(
        "SELECT id, login FROM users WHERE instr(login_key, ?) > 0 AND disabled_at IS NULL"
        " ORDER BY login_key, id LIMIT ?",
        (key, limit),
    )
    return [User(*row) for row in rows]


_MESSAGE_COLUMNS = "id, text, user_id, room_id, created_at, edited_at"


def _rooms_seen_by(conn: sqlite3.Connection, user_id: int, room_id: int | None) -> list[Room]:
    """The rooms of a user as that user sees them, latest activity first; only `room_id` when
    given ([] when they are not in it). Every room object of the API is built here.

    Two queries whatever the number of rooms: the last message is one join through
    rooms.last_message_id and the unread count is a column, both kept as messages are stored.
    """
    only, params = ("", (user_id,)) if room_id is None else (" AND mine.room_id = ?",
                                                             (user_id, room_id))
    rows = conn.execute(
        "SELECT r.id, r.title, mine.last_read_id, mine.unread,"
        " last.id, last.text, last.user_id, last.room_id, last.created_at, last.edited_at"
        " FROM room_members mine JOIN rooms r ON r.id = mine.room_id"
        " LEFT JOIN messages last ON last.id = r.last_message_id"
        f" WHERE mine.user_id = ?{only}"
        " ORDER BY coalesce(r.last_message_id, r.created_seq) DESC, r.id DESC",
        params,
    ).fetchall()
    members: dict[int, list[User]] = {}
    for member_room, member_id, login in conn.execute(
        "SELECT m.room_id, u.id, u.login FROM room_members mine"
        " JOIN room_members m ON m.room_id = mine.room_id JOIN users u ON u.id = m.user_id"
        f" WHERE mine.user_id = ?{only} ORDER BY m.room_id, u.id",
        params,
    ):
        members.setdefault(member_room, []).append(User(member_id, login))
    return [
        Room(found_id, tuple(members[found_id]), title,
             None if last[0] is None else Message(*last), last_read_id, unread)
        for found_id, title, last_read_id, unread, *last in rows
    ]


def _is_member(conn: sqlite3.Connection, room_id: int, user_id: int) -> bool:
    if not 0 < room_id <= MAX_SQLITE_INT:
        return False
    row = conn.execute(
        "SELECT 1 FROM room_members WHERE room_id = ? AND user_id = ?", (room_id, user_id)
    ).fetchone()
    return row is not None


def _select_room(conn: sqlite3.Connection, room_id: int, user_id: int) -> Room | None:
    if not 0 < room_id <= MAX_SQLITE_INT:
        return None
    rooms = _rooms_seen_by(conn, user_id, room_id)
    return rooms[0] if rooms else None


def _open_room(conn: sqlite3.Connection, creator_id: int, user_ids: list[int]) -> Room:
    members = sorted(set(user_ids) | {creator_id})
    if any(not 0 < user_id <= MAX_SQLITE_INT for user_id in members):
        raise UserNotFound()
    member_key = ",".join(map(str, members))
    found = conn.execute(
        "SELECT count(*) FROM users WHERE id IN (SELECT value FROM json_each(?))",
        ("[" + member_key + "]",),
    ).fetchone()[0]
    if found != len(members):
        raise UserNotFound()
    row = conn.execute(
        "SELECT id FROM rooms WHERE member_key = ? ORDER BY id LIMIT 1", (member_key,)
    ).fetchone()
    if row is not None:
        room_id = row[0]
    else:
        room_id = conn.execute(
            "INSERT INTO rooms (member_key, created_at, created_seq) VALUES (?, ?, coalesce("
            "(SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0))",
            (member_key, now_text()),
        ).lastrowid
        conn.executemany(
            "INSERT INTO room_members (room_id, user_id) VALUES (?, ?)",
            [(room_id, user_id) for user_id in members],
        )
    room = _select_room(conn, room_id, creator_id)
    assert room is not None
    return room


def _select_messages(conn: sqlite3.Connection, room_id: int, user_id: int, limit: int,
                     before: int | None, after: int | None) -> list[Message] | None:
    if not _is_member(conn, room_id, user_id):
        return None
    where = "room_id = ?"
    params: list[Any] = [room_id]
    if before is not None:
        where += " AND id < ?"
        params.append(before)
    if after is not None:
        where += " AND id > ?"
        params.append(after)
        order = "ASC"
    else:
        order = "DESC"
    rows = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE {where} ORDER BY id {order} LIMIT ?",
        (*params, limit),
    ).fetchall()
    if order == "DESC":
        rows.reverse()
    return [Message(*row) for row in rows]


def _select_tail(conn: sqlite3.Connection, room_id: int, user_id: int) -> RoomTail | None:
    """The room's members and newest MESSAGES_KEPT messages; None if the user is not in it."""
    if not _is_member(conn, room_id, user_id):
        return None
    members = {row[0] for row in conn.execute(
        "SELECT user_id FROM room_members WHERE room_id = ?", (room_id,)
    )}
    messages = _select_messages(conn, room_id, user_id, MESSAGES_KEPT + 1, None, None)
    assert messages is not None
    whole = len(messages) <= MESSAGES_KEPT
    return RoomTail(members, messages[-MESSAGES_KEPT:], whole)


def _message_by_id(conn: sqlite3.Connection, message_id: int) -> Message:
    row = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)
    ).fetchone()
    return Message(*row)


def _insert_message(conn: sqlite3.Connection, room_id: int, user_id: int, text: str,
                    nonce: str | None) -> StoredMessage:
    now = datetime.now(timezone.utc)
    created_at = now.strftime("%Y-%m-%dT%H:%M:%S")
    if nonce is not None:
        cutoff = (now - NONCE_WINDOW).strftime("%Y-%m-%dT%H:%M:%S")
        conn.execute("DELETE FROM message_nonces WHERE created_at < ?", (cutoff,))
        row = conn.execute(
            "SELECT message_id FROM message_nonces WHERE user_id = ? AND nonce = ?",
            (user_id, nonce),
        ).fetchone()
        if row is not None:
            return StoredMessage(_message_by_id(conn, row[0]), created=False)
    # The membership test is part of the insert, so a user who has just left cannot post.
    cursor = conn.execute(
        "INSERT INTO messages (room_id, user_id, text, created_at)"
        " SELECT ?, ?, ?, ? WHERE EXISTS"
        " (SELECT 1 FROM room_members WHERE room_id = ? AND user_id = ?)",
        (room_id, user_id, text, created_at, room_id, user_id),
    )
    if cursor.rowcount == 0:
        raise RoomNotFound()
    message = Message(cursor.lastrowid, text, user_id, room_id, created_at)
    if nonce is not None:
        conn.execute(
            "INSERT INTO message_nonces (user_id, nonce, message_id, created_at)"
            " VALUES (?, ?, ?, ?)",
            (user_id, nonce, message.id, created_at),
        )
    # Plain statements rather than triggers: a trigger on the messages insert cost a fifth of
    # the writer's throughput. The new id is above every read marker, so each other member
    # has one more unread message. The members are then read for the feed waiters with a
    # SELECT: RETURNING on the UPDATE costs twice as much in SQLite. They come back as one
    # row: the sqlite3 module lets go of the GIL for every row it steps to, and each time
    # the busy event loop has to hand it back. In a 20-member room's fan-out, one row instead
    # of 20 gave 7% more deliveries a second (A/B, 8 runs each).
    conn.execute(
        "UPDATE room_members SET unread = unread + 1 WHERE room_id = ? AND user_id != ?",
        (room_id, user_id),
    )
    conn.execute("UPDATE rooms SET last_message_id = ? WHERE id = ?", (message.id, room_id))
    (members,) = conn.execute(
        "SELECT group_concat(user_id) FROM room_members WHERE room_id = ?", (room_id,)
    ).fetchone()
    return StoredMessage(message, True, tuple(map(int, members.split(","))))


def _insert_messages(conn: sqlite3.Connection, room_id: int,
                     rows: Iterable[tuple[int, str, str]]) -> int:
    members = {user_id for (user_id,) in conn.execute(
        "SELECT user_id FROM room_members WHERE room_id = ?", (room_id,)
    )}
    written_by: Counter[int] = Counter()

    def checked() -> Iterable[tuple[int, int, str, str]]:
        for user_id, text, created_at in rows:
            if user_id not in members:
                raise RoomNotFound()
            written_by[user_id] += 1
            yield room_id, user_id, text, created_at

    stored = conn.executemany(
        "INSERT INTO messages (room_id, user_id, text, created_at) VALUES (?, ?, ?, ?)", checked()
    ).rowcount
    # The read state _insert_message keeps, brought up to date once for the whole import.
    conn.executemany(
        "UPDATE room_members SET unread = unread + ? WHERE room_id = ? AND user_id = ?",
        [(stored - written_by[member], room_id, member) for member in members],
    )
    conn.execute(
        "UPDATE rooms SET last_message_id = (SELECT max(id) FROM messages WHERE room_id = ?)"
        " WHERE id = ?",
        (room_id, room_id),
    )
    return stored


def _own_message(conn: sqlite3.Connection, room_id: int, user_id: int, message_id: int) -> None:
    """Refuse unless the user is in the room and wrote that message in it."""
    if not _is_member(conn, room_id, user_id):
        raise RoomNotFound()
    row = conn.execute(
        "SELECT user_id FROM messages WHERE id = ? AND room_id = ?", (message_id, room_id)
    ).fetchone()
    if row is None:
        raise MessageNotFound()
    if row[0] != user_id:
        raise Forbidden("only the author may change a message")


def _update_message(conn: sqlite3.Connection, room_id: int, user_id: int, message_id: int,
                    text: str) -> MessageEdited:
    _own_message(conn, room_id, user_id, message_id)
    conn.execute(
        "UPDATE messages SET text = ?, edited_at = ? WHERE id = ?", (text, now_text(), message_id)
    )
    return MessageEdited(_message_by_id(conn, message_id))


def _delete_message(conn: sqlite3.Connection, room_id: int, user_id: int,
                    message_id: int) -> MessageDeleted:
    _own_message(conn, room_id, user_id, message_id)
    # The author's own message counts as unread for no one but the others who had not read it.
    conn.execute(
        "UPDATE room_members SET unread = unread - 1"
        " WHERE room_id = ? AND user_id != ? AND coalesce(last_read_id, 0) < ?",
        (room_id, user_id, message_id),
    )
    conn.execute("DELETE FROM messages WHERE id = ?", (message_id,))
    conn.execute(
        "UPDATE rooms SET last_message_id = (SELECT max(id) FROM messages WHERE room_id = ?)"
        " WHERE id = ? AND last_message_id = ?",
        (room_id, room_id, message_id),
    )
    return MessageDeleted(room_id, message_id)


def _mark_read(conn: sqlite3.Connection, room_id: int, user_id: int,
               message_id: int) -> ReadMarkerMoved | int:
    """The marker moved (announced), or the current one when `message_id` is not past it."""
    row = None
    if 0 < room_id <= MAX_SQLITE_INT:
        row = conn.execute(
            "SELECT last_read_id FROM room_members WHERE room_id = ? AND user_id = ?",
            (room_id, user_id),
        ).fetchone()
    if row is None:
        raise RoomNotFound()
    if not 0 < message_id <= MAX_SQLITE_INT or conn.execute(
        "SELECT 1 FROM messages WHERE id = ? AND room_id = ?", (message_id, room_id)
    ).fetchone() is None:
        raise MessageNotFound()
    current = row[0]
    if current is not None and current >= message_id:
        return current
    # A count of what comes after the new marker only, never of the whole history: the index
    # on (room_id, id) starts at the marker.
    conn.execute(
        "UPDATE room_members SET last_read_id = ?, unread = (SELECT count(*) FROM messages"
        " WHERE room_id = ? AND id > ? AND user_id != ?) WHERE room_id = ? AND user_id = ?",
        (message_id, room_id, message_id, user_id, room_id, user_id),
    )
    return ReadMarkerMoved(room_id, user_id, message_id)


def _select_feed(conn: sqlite3.Connection, session_key: bytes, after: int,
                 limit: int) -> list[Message] | None:
    user = _select_session_user(conn, session_key)
    if user is None:
        return None
    # The answer is the `limit` lowest ids above `after` over all the user's rooms, so it lies
    # within each room's first `limit` messages above `after`: `upto` bounds each room's range
    # scan there. Rooms with nothing new are skipped by their last_message_id. The cost is at
    # most rooms x limit index steps, however long the histories, where a scan of all messages
    # in id order would cross every other room's traffic.
    rows = conn.execute(
        "WITH bounds AS MATERIALIZED ("
        " SELECT mine.room_id AS room_id, coalesce((SELECT id FROM messages"
        "   WHERE room_id = mine.room_id AND id > :after ORDER BY id LIMIT 1 OFFSET :limit - 1),"
        "   r.last_message_id) AS upto"
        " FROM room_members mine JOIN rooms r ON r.id = mine.room_id"
        " WHERE mine.user_id = :user AND r.last_message_id > :after)"
        " SELECT m.id, m.text, m.user_id, m.room_id, m.created_at, m.edited_at"
        " FROM bounds b JOIN messages m ON m.room_id = b.room_id"
        " WHERE m.id > :after AND m.id <= b.upto ORDER BY m.id LIMIT :limit",
        {"after": after, "limit": limit, "user": user.id},
    ).fetchall()
    return [Message(*row) for row in rows]


def _update_title(conn: sqlite3.Connection, room_id: int, user_id: int,
                  title: str | None) -> Room:
    if not _is_member(conn, room_id, user_id):
        raise RoomNotFound()
    conn.execute("UPDATE rooms SET title = ? WHERE id = ?", (title, room_id))
    room = _select_room(conn, room_id, user_id)
    assert room is not None
    return room


def _leave_room(conn: sqlite3.Connection, room_id: int, user_id: int) -> RoomLeft:
    if not _is_member(conn, room_id, user_id):
        raise RoomNotFound()
    conn.execute("DELETE FROM room_members WHERE room_id = ? AND user_id = ?", (room_id, user_id))
    remaining = [row[0] for row in conn.execute(
        "SELECT user_id FROM room_members WHERE room_id = ? ORDER BY user_id", (room_id,)
    )]
    if not remaining:
        # Messages, nonces and memberships go with it (ON DELETE CASCADE).
        conn.execute("DELETE FROM rooms WHERE id = ?", (room_id,))
        return RoomLeft(room_id, user_id, deleted=True)
    # The room now belongs to a smaller set of people, so it is the one `_open_room` finds for
    # that set. If those people already had another room, both now share a member key and
    # `_open_room` keeps returning the older one; the newer stays reachable by its id.
    conn.execute(
        "UPDATE rooms SET member_key = ? WHERE id = ?", (",".join(map(str, remaining)), room_id)
    )
    return RoomLeft(room_id, user_id, deleted=False)


def _select_row_counts(conn: sqlite3.Connection) -> dict[str, int]:
    # How these stay exact without counting rows: see row_counts in schema.sql.
    counts = dict(conn.execute("SELECT name, n FROM row_counts").fetchall())
    stored = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
    counts["messages"] = (stored[0] if stored else 0) - counts.pop("messages_deleted")
    return counts
