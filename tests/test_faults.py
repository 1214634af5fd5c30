"""Storage faults: a full disk, and a database that can no longer be written.

Writes then answer `500 internal_error` (an error frame on a socket, which stays open), reads
keep working, nothing unacknowledged is stored, and once the fault is gone the same server
writes again: the writer thread is not wedged. kill -9 under load is in test_durability.py.

The faults are real: a small tmpfs holding the database is filled up, and the database file and
its WAL on a loop-mounted ext4 image are made immutable (`chattr +i`). Linux refuses to remount
a filesystem read-only while a file on it is open for writing, as the server's database is, so
an immutable file is the nearest thing to a read-only disk under a running server. (The WAL's
shared-memory index stays writable: SQLite maps it into memory, and a write there would kill the
process with SIGBUS rather than fail a call.) Both need root and mount; without them the tests
are skipped.
"""

from __future__ import annotations

import errno
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from trio_websocket import open_websocket_url

from echat.testing import serve
from helpers import auth, chat_url, make_room, receive_json, register, send_json


def run(*command: str) -> bool:
    return subprocess.run(command, capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if not run("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield disk
    run("umount", "-l", str(disk))


@pytest.fixture
def ext4_disk(tmp_path: Path) -> Iterator[Path]:
    """A loop-mounted 16 MiB ext4 image."""
    image, disk = tmp_path / "disk.img", tmp_path / "ext4"
    disk.mkdir()
    with image.open("wb") as f:
        f.truncate(16 * 2**20)
    if not (run("mkfs.ext4", "-q", "-F", str(image)) and run("mount", "-o", "loop", str(image),
                                                            str(disk))):
        pytest.skip("cannot mount an ext4 image here (needs root, mkfs.ext4 and loop devices)")
    yield disk
    run("chattr", "-i", *map(str, disk.iterdir()))
    run("umount", "-l", str(disk))


def fill(disk: Path) -> Path:
    """Write a file until the disk is full; returns it (delete it to free the space)."""
    filler = disk / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
    return filler


async def check_writes_fail_reads_work_then_recover(db: Path, break_it: Callable[[], object],
                                                    mend_it: Callable[[], object]) -> None:
    async with serve(db=str(db), ws_rate=0) as server, \
            httpx.AsyncClient(base_url=server.url) as http:
        alice, bob = await register(http, "alice"), await register(http, "bob")
        room = await make_room(http, alice, bob)
        history = f"/v1/rooms/{room}/messages"
        async with open_websocket_url(chat_url(server, room, alice)) as ws:
            await send_json(ws, {"text": "before", "nonce": "1"})
            assert (await receive_json(ws))["ack"] == "1"
            break_it()
            # Writes fail with the contract's error; the socket stays open.
            for n in range(3):
                await send_json(ws, {"text": f"lost {n}", "nonce": f"lost {n}"})
                assert (await receive_json(ws))["error"]["code"] == "internal_error"
            writes = [("POST", "/v1/register", {"login": "carol", "password": "pw"}),
                      ("PUT", f"/v1/rooms/{room}", {"title": "lost"}),
                      ("POST", "/v1/login", {"login": "bob", "password": "secret"})]
            for method, path, body in writes:
                response = await http.request(method, path, json=body, headers=auth(alice))
                assert response.status_code == 500, (path, response.text)
                assert response.json()["error"]["code"] == "internal_error"
            # Reads work.
            response = await http.get(history, headers=auth(bob))
            assert [m["text"] for m in response.json()] == ["before"]
            assert (await http.get("/v1/rooms", headers=auth(bob))).status_code == 200
            assert (await http.get("/v1/info", headers=auth(alice))).json()["login"] == "alice"
            mend_it()
            # The same server, the same socket: writes work again.
            await send_json(ws, {"text": "after", "nonce": "2"})
            assert (await receive_json(ws))["ack"] == "2"
        assert (await http.post("/v1/register", json={"login": "carol", "password": "pw"})
                ).status_code == 200
        response = await http.get(history, headers=auth(bob))
        assert [m["text"] for m in response.json()] == ["before", "after"]
        assert (await http.get(f"/v1/rooms/{room}", headers=auth(bob))).json()["title"] is None
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_a_full_disk_fails_writes_only_until_space_is_freed(small_disk):
    filler: list[Path] = []
    await check_writes_fail_reads_work_then_recover(
        small_disk / "echat.db", lambda: filler.append(fill(small_disk)),
        lambda: filler[0].unlink())


async def test_an_unwritable_database_fails_writes_only_until_it_is_writable(ext4_disk):
    db = ext4_disk / "echat.db"
    files = [str(db), f"{db}-wal"]
    await check_writes_fail_reads_work_then_recover(
        db, lambda: run("chattr", "+i", *files) or pytest.fail("chattr +i failed"),
        lambda: run("chattr", "-i", *files))
