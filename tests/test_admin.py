"""The operator's commands against a database a server is using: backup, check, users.

The server runs in this process (echat.testing) on a database file; each command runs as
`echat.cli.main` in a worker thread, as it would from a shell beside the server.
"""

from __future__ import annotations

import io
import sqlite3
import sys

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from echat import cli
from echat.testing import serve
from helpers import auth, chat_url, make_room, post_message, register, send_json


async def echat(*argv: str) -> int:
    return await trio.to_thread.run_sync(cli.main, list(argv))


async def login(http: httpx.AsyncClient, name: str, password: str = "secret") -> httpx.Response:
    return await http.post("/v1/login", json={"login": name, "password": password})


@pytest.fixture(autouse=True)
def no_echat_variables(monkeypatch):
    for name in [name for name in __import__("os").environ if name.startswith("ECHAT_")]:
        monkeypatch.delenv(name)


async def test_backup_copies_a_database_while_messages_are_written(tmp_path, capsys):
    db, copy = tmp_path / "live.db", tmp_path / "copy.db"
    async with serve(db=str(db)) as server, httpx.AsyncClient(base_url=server.url) as http:
        alice, bob = await register(http, "alice"), await register(http, "bob")
        room = await make_room(http, alice, bob)
        async with open_websocket_url(chat_url(server, room, alice)) as ws, \
                trio.open_nursery() as nursery:
            first = await post_message(ws, "before the backup", "n0")

            async def keep_writing() -> None:
                for n in range(1, 10_000):
                    await send_json(ws, {"text": f"during {n}"})
                    await trio.sleep(0)

            nursery.start_soon(keep_writing)
            assert await echat("backup", str(copy), "--db", str(db)) == 0
            nursery.cancel_scope.cancel()
    assert f"copied {db} to {copy}" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.partial"))
    with sqlite3.connect(copy) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM messages ORDER BY id")]
        assert ids == list(range(first, first + len(ids)))  # a prefix, nothing torn
        assert conn.execute("SELECT text FROM messages WHERE id = ?", (first,)).fetchone() == (
            "before the backup",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert await echat("check", "--db", str(copy)) == 0
    assert capsys.readouterr().out.strip() == f"echat: {copy}: ok"


async def test_backup_never_overwrites_and_never_invents_a_database(tmp_path, capsys):
    db, taken = tmp_path / "echat.db", tmp_path / "taken.db"
    taken.write_text("precious")
    async with serve(db=str(db)):
        assert await echat("backup", str(taken), "--db", str(db)) == 1
    assert taken.read_text() == "precious"
    assert "exists already" in capsys.readouterr().err
    missing = tmp_path / "missing.db"
    for argv in (["backup", str(tmp_path / "new.db")], ["check"], ["users", "list"]):
        assert await echat(*argv, "--db", str(missing)) == 1
        assert f"cannot use the database {missing}: no such file" in capsys.readouterr().err
    assert not missing.exists() and not (tmp_path / "new.db").exists()


async def test_check_finds_a_damaged_database(tmp_path, capsys):
    db = tmp_path / "echat.db"
    async with serve(db=str(db)) as server, httpx.AsyncClient(base_url=server.url) as http:
        for n in range(200):
            await register(http, f"user {n} " + "x" * 50)
    assert await echat("check", "--db", str(db)) == 0
    with sqlite3.connect(db) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        index_page = conn.execute(
            "SELECT rootpage FROM sqlite_schema WHERE name = 'sqlite_autoindex_users_1'"
        ).fetchone()[0]
    with db.open("r+b") as file:  # scribble over the login index
        file.seek((index_page - 1) * page_size)
        file.write(b"\xff" * page_size)
    capsys.readouterr()
    assert await echat("check", "--db", str(db)) == 1
    out = capsys.readouterr()
    assert f"{db}: database disk image is malformed" in out.err
    assert "ok" not in out.out


async def test_users_list_disable_enable_and_passwd(tmp_path, capsys, monkeypatch):
    db = tmp_path / "echat.db"
    async with serve(db=str(db), session_check_interval=0.05) as server, \
            httpx.AsyncClient(base_url=server.url) as http:
        alice, bob = await register(http, "Alice"), await register(http, "Bob")
        room = await make_room(http, alice, bob)
        assert await echat("users", "list", "--db", str(db)) == 0
        listed = capsys.readouterr().out.splitlines()
        assert listed[0].split() == ["id", "created", "disabled", "sessions", "login"]
        assert [line.split()[-1] for line in listed[1:]] == ["Alice", "Bob"]
        assert [line.split()[-2] for line in listed[1:]] == ["1", "1"]

        async with open_websocket_url(chat_url(server, room, bob)) as ws:
            assert await echat("users", "disable", "bob", "--db", str(db)) == 0
            assert "Bob is disabled; 1 session(s) ended" in capsys.readouterr().out
            with trio.fail_after(5), pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason.code == 1008
        assert (await http.get("/v1/info", headers=auth(bob))).status_code == 401
        refused = await login(http, "Bob")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        assert (await login(http, "Bob", "wrong")).json()["error"]["code"] == "wrong_credentials"
        found = await http.get("/v1/users/?q=o", headers=auth(alice))
        assert found.json() == []  # not offered for new rooms
        assert await echat("users", "list", "--db", str(db)) == 0
        bob_line = capsys.readouterr().out.splitlines()[2].split()
        assert bob_line[-1] == "Bob" and bob_line[-2] == "0" and bob_line[2] != "-"

        assert await echat("users", "enable", "Bob", "--db", str(db)) == 0
        assert (await login(http, "Bob")).status_code == 200
        found = await http.get("/v1/users/?q=o", headers=auth(alice))
        assert [user["login"] for user in found.json()] == ["Bob"]

        monkeypatch.setattr(sys, "stdin", io.StringIO("new secret\n"))
        assert await echat("users", "passwd", "alice", "--db", str(db)) == 0
        assert "new password for Alice; 1 session(s) ended" in capsys.readouterr().out
        await trio.sleep(0.1)  # the server notices within session_check_interval
        assert (await http.get("/v1/info", headers=auth(alice))).status_code == 401
        assert (await login(http, "Alice")).status_code == 422
        assert (await login(http, "Alice", "new secret")).status_code == 200

        assert await echat("users", "disable", "nobody", "--db", str(db)) == 1
        assert "no user 'nobody'" in capsys.readouterr().err
        monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
        assert await echat("users", "passwd", "Alice", "--db", str(db)) == 1
        assert "a password is 1 to 1024 characters" in capsys.readouterr().err


async def test_check_names_rows_that_point_nowhere(tmp_path, capsys):
    db = tmp_path / "echat.db"
    async with serve(db=str(db)) as server, httpx.AsyncClient(base_url=server.url) as http:
        await make_room(http, await register(http, "ann"), await register(http, "ben"))
        await register(http, "cat")
    with sqlite3.connect(db) as conn:  # foreign keys are off in a plain connection
        conn.execute("DELETE FROM users WHERE login = 'ben'")
        conn.execute("INSERT INTO messages (room_id, user_id, text, created_at)"
                     " VALUES (1, 3, 'hi', '2024-01-01T00:00:00'), (99, 3, 'lost', '')")
    assert await echat("check", "--db", str(db)) == 1
    found = capsys.readouterr().out.splitlines()
    assert f"echat: {db}: a row of room_members points at a missing row of users" in found
    assert f"echat: {db}: row 2 of messages points at a missing row of rooms" in found
