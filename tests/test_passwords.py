"""Passwords (argon2id, upgraded on login) and session ids (only their SHA-256 is stored)."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
from pathlib import Path

import argon2
import httpx
import pytest

from echat import accounts
from echat.passwords import Passwords
from echat.testing import serve
from helpers import auth, register, user_id

SESSION_ID = re.compile(r"[0-9a-f]{40}")


def parameters(password_hash: str) -> argon2.Parameters:
    return argon2.extract_parameters(password_hash)


# -- hashing -----------------------------------------------------------------------------------


async def test_hashes_are_argon2id_with_argon2_cffi_defaults():
    passwords = Passwords()
    password_hash = await passwords.hash("Пароль 🔑")
    assert password_hash.startswith("$argon2id$")
    defaults = argon2.PasswordHasher()
    used = parameters(password_hash)
    assert (used.type, used.time_cost, used.memory_cost, used.parallelism) == (
        argon2.Type.ID, defaults.time_cost, defaults.memory_cost, defaults.parallelism)
    assert await passwords.verify(password_hash, "Пароль 🔑") == (True, None)
    assert await passwords.verify(password_hash, "пароль 🔑") == (False, None)
    assert await passwords.hash("Пароль 🔑") != password_hash  # salted


async def test_an_unreadable_hash_never_matches():
    passwords = Passwords(fast=True)
    for stored in ["", "not a hash", "$argon2id$v=19$m=8,t=1,p=1$broken"]:
        assert await passwords.verify(stored, "anything") == (False, None)


async def test_hashing_and_verifying_run_off_the_event_loop(monkeypatch):
    threads: list[int] = []
    for name in ("hash", "verify"):
        original = getattr(argon2.PasswordHasher, name)

        def recorded(self, *args, _original=original):
            threads.append(threading.get_ident())
            return _original(self, *args)

        monkeypatch.setattr(argon2.PasswordHasher, name, recorded)
    passwords = Passwords(fast=True)
    await passwords.verify(await passwords.hash("secret"), "secret")
    assert len(threads) == 2
    assert threading.get_ident() not in threads


# -- upgrade on login --------------------------------------------------------------------------


async def test_a_hash_with_other_parameters_is_upgraded_on_the_next_login():
    defaults = argon2.PasswordHasher()
    old_hashers = [
        argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
        argon2.PasswordHasher(time_cost=2, memory_cost=1024, parallelism=2, type=argon2.Type.I),
    ]
    # A server at full strength, as `echat serve` runs: test settings hash cheaply.
    async with serve(fast_hashing=False) as server, \
            httpx.AsyncClient(base_url=server.url) as http:
        store = server.app.store
        session = await register(http, "Старожил", "old secret")
        me = await user_id(http, session)
        assert (await store.credentials("старожил"))[1].startswith("$argon2id$")
        for old_hasher in old_hashers:
            old_hash = old_hasher.hash("old secret")
            await store.set_password_hash(me, old_hash)
            refused = await http.post("/v1/login", json={"login": "старожил", "password": "x"})
            assert refused.json()["error"]["code"] == "wrong_credentials"
            assert (await store.credentials("старожил"))[1] == old_hash  # not on a failure

            reply = await http.post("/v1/login", json={"login": "СТАРОЖИЛ", "password": "old secret"})
            assert reply.status_code == 200
            upgraded = (await store.credentials("старожил"))[1]
            assert upgraded != old_hash and upgraded.startswith("$argon2id$")
            used = parameters(upgraded)
            assert (used.time_cost, used.memory_cost, used.parallelism) == (
                defaults.time_cost, defaults.memory_cost, defaults.parallelism)
            defaults.verify(upgraded, "old secret")

            # The old password still works, and a current hash is left as it is.
            reply = await http.post("/v1/login", json={"login": "Старожил", "password": "old secret"})
            assert reply.status_code == 200
            assert (await store.credentials("старожил"))[1] == upgraded


# -- session ids -------------------------------------------------------------------------------


def test_session_ids_are_40_lowercase_hex_and_unique():
    ids = [accounts.new_session_id() for _ in range(2000)]
    assert all(SESSION_ID.fullmatch(session_id) for session_id in ids)
    assert len(set(ids)) == len(ids)
    assert accounts.session_key(ids[0]) == hashlib.sha256(ids[0].encode()).digest()


async def test_the_database_holds_only_the_sha256_of_session_ids(tmp_path: Path):
    path = tmp_path / "echat.db"
    async with serve(db=str(path)) as server, httpx.AsyncClient(base_url=server.url) as http:
        sessions = [await register(http, "Ида", "pw")]
        for _ in range(3):
            reply = await http.post("/v1/login", json={"login": "ида", "password": "pw"})
            sessions.append(reply.json()["session_id"])
        sessions.append(await register(http, "Юра", "pw"))
        assert all(SESSION_ID.fullmatch(session_id) for session_id in sessions)
        await http.post("/v1/logout", headers=auth(sessions[1]))
        await server.app.store.flush()

        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        stored = {row[0] for row in conn.execute("SELECT token_hash FROM sessions")}
        alive = sessions[:1] + sessions[2:]
        assert stored == {hashlib.sha256(s.encode()).digest() for s in alive}
        # No column of any table holds a session id in any spelling.
        spellings = [form for s in sessions
                     for form in (s, s.upper(), s.encode(), bytes.fromhex(s))]
        tables = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table'")]
        for table in tables:
            for row in conn.execute(f"SELECT * FROM {table}"):
                for value in row:
                    if isinstance(value, (str, bytes)):
                        assert not any(type(form) is type(value) and form in value
                                       for form in spellings), (table, value)
        conn.close()
    # Nor do the bytes of the files, the WAL included.
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert not any(s.encode() in raw or bytes.fromhex(s) in raw for s in sessions)
    assert hashlib.sha256(sessions[0].encode()).digest() in raw


@pytest.mark.parametrize("scheme", ["X-Session-Id", "Bearer"])
async def test_a_stored_hash_does_not_open_a_session(http, server, scheme):
    session = await register(http, "Лев")
    stolen = hashlib.sha256(session.encode()).hexdigest()[:40]
    headers = (auth(stolen) if scheme == "X-Session-Id"
               else {"Authorization": f"Bearer {stolen}"})
    assert (await http.get("/v1/info", headers=headers)).status_code == 401
