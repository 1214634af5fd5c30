"""What only a real process shows: kill -9 loses no acknowledged message, and SIGTERM closes
every socket with 1001 after storing what it received, then exits promptly."""

from __future__ import annotations

import sqlite3

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from helpers import auth, make_room, receive_json, register, send_json
from server_process import server_process


async def all_messages(http: httpx.AsyncClient, session: str, room: int) -> list[dict]:
    """The whole history, oldest first, paged with `after`."""
    messages: list[dict] = []
    while True:
        response = await http.get(f"/v1/rooms/{room}/messages", headers=auth(session),
                                  params={"after": messages[-1]["id"] if messages else 0, "limit": 500})
        page = response.json()
        if not page:
            return messages
        messages.extend(page)


async def test_kill_9_during_a_load_loses_no_acknowledged_message(tmp_path):
    db = tmp_path / "echat.db"
    senders = 8
    acked: dict[str, dict] = {}
    async with server_process(db, "--ws-rate", "0") as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            sessions = [await register(http, f"user{i}") for i in range(senders)]
            room = await make_room(http, sessions[0], *sessions[1:])
        killed = trio.Event()

        async def send(index: int, session: str) -> None:
            url = f"{server.ws_url}/v1/rooms/{room}/chat?session_id={session}"
            try:
                async with open_websocket_url(url) as ws:
                    async with trio.open_nursery() as nursery:
                        async def read_acks() -> None:
                            while True:
                                frame = await receive_json(ws, timeout=30)
                                if "ack" in frame:
                                    acked[frame["ack"]] = frame
                                    if len(acked) == 300:
                                        server.kill()
                                        killed.set()
                        nursery.start_soon(read_acks)
                        for n in range(10_000):
                            await send_json(ws, {"text": f"{index}:{n} ✓", "nonce": f"{index}:{n}"})
            except* (ConnectionClosed, OSError, trio.BrokenResourceError):
                pass  # the server died under us, as intended

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for index, session in enumerate(sessions):
                    nursery.start_soon(send, index, session)
        assert killed.is_set()
        assert await server.process.wait() == -9

    assert len(acked) >= 300
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    async with server_process(db) as server, httpx.AsyncClient(base_url=server.url) as http:
        session = (await http.post("/v1/login", json={"login": "user0", "password": "secret"})).json()["session_id"]
        stored = await all_messages(http, session, room)
    by_id = {m["id"]: m for m in stored}
    for nonce, ack in acked.items():
        assert by_id[ack["id"]]["text"] == f"{nonce} ✓"
    ids = [m["id"] for m in stored]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # Each sender's messages are stored in the order it sent them.
    for index in range(senders):
        sequence = [int(m["text"].split(":")[1].split()[0]) for m in stored if m["text"].startswith(f"{index}:")]
        assert sequence == sorted(sequence)


async def test_sigterm_closes_sockets_with_1001_after_storing_and_exits(tmp_path):
    db = tmp_path / "echat.db"
    async with server_process(db) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            a = await register(http, "a")
            b = await register(http, "b")
            room = await make_room(http, a, b)
        url = f"{server.ws_url}/v1/rooms/{room}/chat?session_id="
        async with open_websocket_url(url + a) as sender, open_websocket_url(url + b) as receiver:
            for n in range(20):
                await send_json(sender, {"text": f"before shutdown {n}"})
            await send_json(sender, {"text": "last", "nonce": "last"})
            while (await receive_json(sender)).get("ack") != "last":
                pass
            server.terminate()
            for ws in (sender, receiver):
                with trio.fail_after(10), pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await ws.get_message()
                assert closed.value.reason.code == 1001
        with trio.fail_after(10):
            assert await server.process.wait() == 0
    with sqlite3.connect(db) as conn:
        texts = [row[0] for row in conn.execute("SELECT text FROM messages ORDER BY id")]
    assert texts == [f"before shutdown {n}" for n in range(20)] + ["last"]
