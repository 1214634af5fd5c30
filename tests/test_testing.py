"""echat.testing: the embeddable server from trio code (`serve`) and sync code (`run_in_thread`)."""

from __future__ import annotations

import errno
import gc
import os
import sqlite3
import sys
import threading
from contextlib import closing, suppress

import argon2
import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from echat.cli import build_parser
from echat.config import Config
from echat.testing import TestServer, run_in_thread, serve
from helpers import auth, make_room, receive_json, register, send_json

CYCLES = 100
# trio keeps finished worker threads idle for 10 s to reuse them; they are named so only while
# idle. A per-cycle leak would show as ~CYCLES threads, so a handful of idle ones is the cache.
TRIO_IDLE_WORKER = "Trio thread "
TRIO_IDLE_WORKERS_MAX = 8

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc/self/fd")


def open_fds() -> dict[str, str]:
    """This process's descriptors, after garbage from earlier tests (sockets nobody holds any
    more, closed only when collected) is gone, so only what is still held counts."""
    gc.collect()
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:  # the directory's own descriptor, closed by now
            pass
    return found


def threads() -> tuple[set[threading.Thread], int]:
    """The running threads other than trio's idle workers, and how many idle workers there are."""
    idle = [t for t in threading.enumerate() if t.name.startswith(TRIO_IDLE_WORKER)]
    return set(threading.enumerate()) - set(idle), len(idle)


def all_tasks() -> list[str]:
    def walk(task: trio.lowlevel.Task):
        yield task.name
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                yield from walk(child)

    return list(walk(trio.lowlevel.current_root_task()))


async def refuses(port: int) -> bool:
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return True
    await stream.aclose()
    return False


async def chat_once(server: TestServer, http: httpx.AsyncClient) -> None:
    """Two users, a room, a message over one socket received on the other."""
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    room = await make_room(http, alice, bob)
    chat = f"{server.ws_url}/v1/rooms/{room}/chat"
    async with open_websocket_url(f"{chat}?session_id={bob}") as bob_ws:
        async with open_websocket_url(f"{chat}?session_id={alice}") as alice_ws:
            await send_json(alice_ws, {"text": "Привет 🚀"})
            message = await receive_json(bob_ws)
    assert message["text"] == "Привет 🚀"
    assert message["room_id"] == room


async def test_serve_runs_the_whole_api_on_an_ephemeral_port() -> None:
    async with serve() as server, httpx.AsyncClient(base_url=server.url) as http:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.ws_url == f"ws://127.0.0.1:{server.port}"
        await chat_once(server, http)


def test_run_in_thread_from_plain_sync_code() -> None:
    with run_in_thread() as server, httpx.Client(base_url=server.url) as http:
        assert server.url == f"http://127.0.0.1:{server.port}"
        sessions = [
            http.post("/v1/register", json={"login": login, "password": "pw"}).json()["session_id"]
            for login in ("alice", "bob")
        ]
        bob_id = http.get("/v1/info", headers=auth(sessions[1])).json()["id"]
        room = http.post("/v1/rooms", json={"users": [{"id": bob_id}]},
                         headers=auth(sessions[0])).json()["id"]

        async def alice_tells_bob() -> dict:
            chat = f"{server.ws_url}/v1/rooms/{room}/chat"
            async with open_websocket_url(f"{chat}?session_id={sessions[1]}") as bob_ws:
                async with open_websocket_url(f"{chat}?session_id={sessions[0]}") as alice_ws:
                    await send_json(alice_ws, {"text": "hi"})
                    return await receive_json(bob_ws)

        # The test's own trio loop on this thread, the server's on its own thread.
        assert trio.run(alice_tells_bob)["text"] == "hi"
        assert [m["text"] for m in http.get(f"/v1/rooms/{room}/messages",
                                            headers=auth(sessions[0])).json()] == ["hi"]


async def test_fast_hashing_is_cheap_argon2_and_the_default_only_here(tmp_path) -> None:
    hashes = {}
    for fast in (True, False):
        db = tmp_path / f"fast-{fast}.db"
        async with serve(db=str(db), fast_hashing=fast) as server, \
                httpx.AsyncClient(base_url=server.url) as http:
            await register(http, "alice")
        with closing(sqlite3.connect(db)) as conn:
            (hashes[fast],) = conn.execute("SELECT password_hash FROM users").fetchone()
    cheap = argon2.extract_parameters(hashes[True])
    assert (cheap.time_cost, cheap.memory_cost) == (1, 8)
    default = argon2.PasswordHasher()
    full = argon2.extract_parameters(hashes[False])
    assert (full.time_cost, full.memory_cost) == (default.time_cost, default.memory_cost)


def test_echat_serve_cannot_turn_fast_hashing_on(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--fast-hashing"])
    assert "--fast-hashing" in capsys.readouterr().err
    assert Config.from_env({"ECHAT_FAST_HASHING": "1"}).fast_hashing is False


class BlockFailed(Exception):
    pass


async def serve_and_leave(ending: str) -> None:
    """Start a server, chat on it, and leave the block normally, by an error or cancelled."""
    with trio.CancelScope() as scope, suppress(BlockFailed):
        async with serve() as server, httpx.AsyncClient(base_url=server.url) as http:
            await chat_once(server, http)
            if ending == "error":
                raise BlockFailed
            if ending == "cancel":
                scope.cancel()
                await trio.sleep_forever()


@linux_only
async def test_start_stop_cycles_leak_no_fds_threads_or_tasks() -> None:
    await serve_and_leave("normal")  # what httpx, trio and sqlite set up once and keep
    fds, (kept_threads, _), tasks = open_fds(), threads(), all_tasks()

    for cycle in range(CYCLES):
        await serve_and_leave(("normal", "error", "cancel")[cycle % 3])

    assert open_fds() == fds
    running, idle_workers = threads()
    assert running == kept_threads
    assert idle_workers <= TRIO_IDLE_WORKERS_MAX
    assert all_tasks() == tasks


@linux_only
def test_run_in_thread_cycles_leak_no_fds_or_threads() -> None:
    def serve_and_leave_thread(failing: bool) -> None:
        with suppress(BlockFailed), run_in_thread() as server:
            assert httpx.get(server.url + "/v1/info").status_code == 401
            if failing:
                raise BlockFailed

    serve_and_leave_thread(failing=False)
    fds, (kept_threads, _) = open_fds(), threads()

    for cycle in range(CYCLES):
        serve_and_leave_thread(failing=cycle % 2 == 1)

    assert open_fds() == fds
    running, idle_workers = threads()
    assert running == kept_threads
    assert idle_workers <= TRIO_IDLE_WORKERS_MAX


async def test_two_servers_side_by_side_each_with_its_own_database() -> None:
    async with serve() as first, serve() as second:
        assert first.port != second.port
        for server in (first, second):  # the same logins register on both
            async with httpx.AsyncClient(base_url=server.url) as http:
                await chat_once(server, http)
    assert await refuses(first.port)
    assert await refuses(second.port)


async def test_a_failing_block_raises_its_own_error_and_stops_the_server() -> None:
    with pytest.raises(ValueError, match="the test failed"):
        async with serve() as server:
            port = server.port
            raise ValueError("the test failed")
    assert await refuses(port)


async def test_a_cancelled_block_stops_the_server() -> None:
    with trio.CancelScope() as scope:
        async with serve() as server:
            port = server.port
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert await refuses(port)


def test_a_failing_block_stops_the_thread_server() -> None:
    kept_threads, _ = threads()
    with pytest.raises(ValueError, match="the test failed"):
        with run_in_thread() as server:
            port = server.port
            raise ValueError("the test failed")
    assert trio.run(refuses, port)
    assert threads()[0] == kept_threads


async def test_a_port_already_taken_is_an_oserror_eaddrinuse() -> None:
    async with serve() as first:
        with pytest.raises(OSError) as caught:
            async with serve(port=first.port):
                pytest.fail("a second server started on a taken port")
        assert caught.value.errno == errno.EADDRINUSE
        async with httpx.AsyncClient() as http:  # the first one is untouched
            assert (await http.get(first.url + "/v1/info")).status_code == 401


def test_a_port_already_taken_is_an_oserror_eaddrinuse_from_the_thread_too() -> None:
    with run_in_thread() as first:
        kept_threads, _ = threads()
        with pytest.raises(OSError) as caught:
            with run_in_thread(port=first.port):
                pytest.fail("a second server started on a taken port")
        assert caught.value.errno == errno.EADDRINUSE
        assert threads()[0] == kept_threads
        assert httpx.get(first.url + "/v1/info").status_code == 401
