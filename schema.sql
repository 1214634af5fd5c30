-- The echat schema: the one description of the database, applied by echat/store.py to a new
-- database. The version it describes is set at the end (PRAGMA user_version); an older database
-- is brought up to it by the upgrade steps in echat/store.py. Times are UTC text
-- 'YYYY-MM-DDTHH:MM:SS', the format the API returns.

-- Accounts. `login` is shown as the user typed it (trimmed); `login_key` is its Unicode case
-- fold (NFKC + casefold), which makes 'Вася' and 'вася' one login and serves login lookup and
-- user search, because SQLite's NOCASE and LIKE fold ASCII only.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    login         TEXT NOT NULL,
    login_key     TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL
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
-- set by any member.
CREATE TABLE rooms (
    id         INTEGER PRIMARY KEY,
    member_key TEXT NOT NULL,
    title      TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX rooms_by_member_key ON rooms (member_key);

-- Who is in which room; the reverse index answers "rooms of a user".
CREATE TABLE room_members (
    room_id INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
CREATE INDEX room_members_by_user ON room_members (user_id, room_id);

-- Messages. AUTOINCREMENT because ids are cursors (history paging, `after=`): an id is never
-- handed out twice, even after the newest message is deleted.
CREATE TABLE messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id    INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    text       TEXT NOT NULL,
    created_at TEXT NOT NULL
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

PRAGMA user_version = 1;
