-- The echat schema: the one description of the database, applied by echat/store.py to a new
-- database. The version it describes is set at the end (PRAGMA user_version); an older database
-- is brought up to it by the upgrade steps in echat/store.py. Times are UTC text
-- 'YYYY-MM-DDTHH:MM:SS', the format the API returns.

-- Accounts. `login` is shown as the user typed it (trimmed); `login_key` is its Unicode case
-- fold (NFKC + casefold), which makes 'Вася' and 'вася' one login and serves login lookup and
-- user search, because SQLite's NOCASE and LIKE fold ASCII only. `disabled_at` is set by the
-- operator (`echat users disable`): such an account can no longer log in.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    login         TEXT NOT NULL,
    login_key     TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    disabled_at   TEXT
);

-- Login sessions, many per user. Only the SHA-256 of a session id is stored, so a copy of the
-- database does not let anyone in.
CREATE TABLE sessions (
    token_hash BLOB PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Rooms. `member_key` is the sorted member ids ('1,5,9'): the original's rule is one room per
-- set of people, and this column finds that room with one index lookup. `title` is optional,
-- set by any member. AUTOINCREMENT because a room is deleted when its last member leaves, and
-- its id, still cached by former members' clients, must never name someone else's new room.
-- `last_message_id` is the newest message (NULL when none), kept by the store in the same
-- transaction as each message stored or deleted, so a list of rooms shows each last message by
-- one join instead of a search per room. Rooms are listed by latest activity: the last
-- message's id, else `created_seq`, the highest message id handed out when the room was made,
-- which puts a new room among the others as if it were a message sent at that moment.
CREATE TABLE rooms (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    member_key      TEXT NOT NULL,
    title           TEXT,
    created_at      TEXT NOT NULL,
    last_message_id INTEGER,
    created_seq     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX rooms_by_member_key ON rooms (member_key);

-- Who is in which room; the reverse index answers "rooms of a user". `last_read_id` is the
-- member's read marker (NULL: nothing read), which only moves forward. `unread` counts the
-- messages of others after it; the store keeps it in the same transaction as each message
-- stored or deleted and recounts it when the marker moves, so it is never a count over a
-- room's whole history.
CREATE TABLE room_members (
    room_id      INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    last_read_id INTEGER,
    unread       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
CREATE INDEX room_members_by_user ON room_members (user_id, room_id);

-- Messages. AUTOINCREMENT because ids are cursors (history paging, `after=`): an id is never
-- handed out twice, even after the newest message is deleted. `edited_at` stays NULL until the
-- author edits the text.
CREATE TABLE messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id    INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    text       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    edited_at  TEXT
);
CREATE INDEX messages_by_room ON messages (room_id, id);

-- Client nonces of recent WebSocket messages, so that a client resending after a dropped
-- connection gets the first message's ack instead of a duplicate. Rows older than the dedupe
-- window are deleted as new ones arrive.
CREATE TABLE message_nonces (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    nonce      TEXT NOT NULL,
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    PRIMARY KEY (user_id, nonce)
) WITHOUT ROWID;
CREATE INDEX message_nonces_by_age ON message_nonces (created_at);
CREATE INDEX message_nonces_by_message ON message_nonces (message_id);

-- How many rows users, rooms and sessions hold, and how many messages were ever deleted, for
-- GET /v1/status and /metrics. The triggers below keep them in the same transaction as the
-- change, so they are exact and reading them is a few rows, where count(*) would scan a
-- million messages on every request and max(id) would overcount (rooms, messages and sessions
-- are deleted). SQLite fires them for rows removed by ON DELETE CASCADE too. Messages, the one
-- table written all the time, have no insert trigger (it cost a fifth of the writer's message
-- throughput): their AUTOINCREMENT counter in sqlite_sequence already goes up by one for each
-- message ever stored, and is rolled back with it, so stored minus deleted is the count.
CREATE TABLE row_counts (
    name TEXT PRIMARY KEY,
    n    INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO row_counts (name, n)
    VALUES ('users', 0), ('rooms', 0), ('sessions', 0), ('messages_deleted', 0);
CREATE TRIGGER users_added AFTER INSERT ON users
    BEGIN UPDATE row_counts SET n = n + 1 WHERE name = 'users'; END;
CREATE TRIGGER users_removed AFTER DELETE ON users
    BEGIN UPDATE row_counts SET n = n - 1 WHERE name = 'users'; END;
CREATE TRIGGER rooms_added AFTER INSERT ON rooms
    BEGIN UPDATE row_counts SET n = n + 1 WHERE name = 'rooms'; END;
CREATE TRIGGER rooms_removed AFTER DELETE ON rooms
    BEGIN UPDATE row_counts SET n = n - 1 WHERE name = 'rooms'; END;
CREATE TRIGGER sessions_added AFTER INSERT ON sessions
    BEGIN UPDATE row_counts SET n = n + 1 WHERE name = 'sessions'; END;
CREATE TRIGGER sessions_removed AFTER DELETE ON sessions
    BEGIN UPDATE row_counts SET n = n - 1 WHERE name = 'sessions'; END;
CREATE TRIGGER messages_removed AFTER DELETE ON messages
    BEGIN UPDATE row_counts SET n = n + 1 WHERE name = 'messages_deleted'; END;

PRAGMA user_version = 2;
