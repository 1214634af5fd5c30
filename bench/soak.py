"""Soak: many WebSocket clients for a long time, with random disconnects; does memory stay flat?

    .venv/bin/python bench/soak.py [--clients 200] [--seconds 600] [--sample 30] [--rooms 20]

Starts `echat serve` as a child process (its own database in a temporary directory), with a
sampler thread inside it that records, every `--sample` seconds: resident memory (VmRSS); after
a full garbage collection, the memory tracemalloc traces and the number of objects the collector
tracks; SQLite's own heap (`sqlite3_memory_used()`: page caches, statements); and resident
memory again after glibc's `malloc_trim(0)`, which tells memory Python still holds from memory
the allocator merely kept. Then `--clients` clients, spread over
`--rooms` rooms, each send a message (with a nonce) every 0.5-3 s, read what the room sends, and
after a random 5-60 s either close properly or drop the TCP connection without a close frame,
and reconnect after up to 2 s, catching up from the history with `?after=`.
Server pings are off: trio-websocket fails when a ping arrives while it closes
(python-trio/trio-websocket#184), and the stray Cancelled it raises stops every client.

Printed: one line per sample, then a summary. Not part of `make test`: it takes minutes.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import random
import sys
import tempfile
import threading
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

from servers import free_port, wait_until_answering


# -- the server side (runs in the child process) ----------------------------------------------


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def sample_forever(out: Path, interval: float) -> None:
    libc = ctypes.CDLL("libc.so.6")
    # The library the sqlite3 module is linked to (Debian's libsqlite3), so this is its heap.
    sqlite = ctypes.CDLL("libsqlite3.so.0")
    sqlite.sqlite3_memory_used.restype = ctypes.c_int64
    with out.open("a", buffering=1) as stats:
        while True:
            time.sleep(interval)
            rss = rss_kib()
            # Collected first, so that the count is of live objects, not of garbage cycles
            # waiting for the collector.
            gc.collect()
            traced, _peak = tracemalloc.get_traced_memory()
            objects = len(gc.get_objects())
            sqlite_bytes = sqlite.sqlite3_memory_used()
            libc.malloc_trim(0)
            stats.write(json.dumps({"t": time.time(), "rss_kib": rss, "traced": traced,
                                    "objects": objects, "sqlite": sqlite_bytes,
                                    "rss_trimmed_kib": rss_kib()}) + "\n")


def child(stats: Path, interval: float, argv: list[str]) -> int:
    from echat.cli import main

    tracemalloc.start(1)
    threading.Thread(target=sample_forever, args=(stats, interval), daemon=True).start()
    return main(argv)


# -- the clients (the parent process) ---------------------------------------------------------


@dataclass
class Counts:
    sent: int = 0
    acked: int = 0
    received: int = 0
    connects: int = 0
    abrupt_drops: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def client(url: str, http: httpx.AsyncClient, session: str, room: int, index: int,
                 deadline: float, counts: Counts) -> None:
    rng = random.Random(index)
    last_seen = 0
    n = 0
    events = "&events=typing,presence" if index % 4 == 0 else ""
    while trio.current_time() < deadline:
        lifetime = rng.uniform(5, 60)
        try:
            async with open_websocket_url(f"{url}/v1/rooms/{room}/chat?session_id={session}"
                                          f"{events}") as ws:
                counts.connects += 1
                page = await http.get(f"/v1/rooms/{room}/messages",
                                      params={"after": last_seen, "limit": 500},
                                      headers={"X-Session-Id": session})
                if page.status_code != 200:
                    counts.error(f"history {page.status_code}")
                elif page.json():
                    last_seen = page.json()[-1]["id"]
                with trio.move_on_at(min(deadline, trio.current_time() + lifetime)):
                    async with trio.open_nursery() as nursery:
                        async def read() -> None:
                            nonlocal last_seen
                            while True:
                                frame = json.loads(await ws.get_message())
                                if "ack" in frame:
                                    counts.acked += 1
                                elif "error" in frame:
                                    counts.error(frame["error"]["code"])
                                elif "text" in frame:
                                    counts.received += 1
                                    last_seen = max(last_seen, frame["id"])
                        nursery.start_soon(read)
                        while True:
                            await trio.sleep(rng.uniform(0.5, 3.0))
                            n += 1
                            await ws.send_message(json.dumps(
                                {"text": f"soak {index}:{n} " + "x" * rng.randrange(200),
                                 "nonce": f"{index}:{n}"}))
                            counts.sent += 1
                if rng.random() < 0.3:
                    # Gone without a close frame, like a phone losing its network.
                    counts.abrupt_drops += 1
                    await ws._stream.aclose()
        except (ConnectionClosed, HandshakeError, OSError, trio.BrokenResourceError,
                httpx.TransportError) as error:
            # httpx.RemoteProtocolError included: a keep-alive connection the server closed
            # for idleness just as it was reused (httpx does not retry).
            counts.error(type(error).__name__)
        await trio.sleep(rng.uniform(0, 2))


async def setup(http: httpx.AsyncClient, clients: int, rooms: int) -> list[tuple[str, int]]:
    sessions, ids = [], []
    for i in range(clients):
        response = await http.post("/v1/register", json={"login": f"soak{i}", "password": "pw"})
        sessions.append(response.json()["session_id"])
        info = await http.get("/v1/info", headers={"X-Session-Id": sessions[-1]})
        ids.append(info.json()["id"])
    per_room = -(-clients // rooms)
    placed = []
    for r in range(rooms):
        members = list(range(r * per_room, min(clients, (r + 1) * per_room)))
        if not members:
            break
        owner = sessions[members[0]]
        room = (await http.post("/v1/rooms", headers={"X-Session-Id": owner},
                                json={"users": [{"id": ids[m]} for m in members[1:]]})).json()["id"]
        placed += [(sessions[m], room) for m in members]
    return placed


def read_samples(stats: Path) -> list[dict]:
    if not stats.exists():
        return []
    return [json.loads(line) for line in stats.read_text().splitlines() if line.strip()]


async def run(args: argparse.Namespace) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="echat-soak-"))
    stats = scratch / "stats.jsonl"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (scratch / "server.log").open("wb")
    process = await trio.lowlevel.open_process(
        [sys.executable, __file__, "--child", str(stats), str(args.sample), "serve",
         "--port", str(port), "--db", str(scratch / "soak.db"), "--ping-interval", "0"],
        stdout=log, stderr=log)
    counts = Counts()
    start = time.time()
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            await wait_until_answering(http)
            placed = await setup(http, args.clients, args.rooms)
            print(f"{len(placed)} clients in {args.rooms} rooms; server pid {process.pid}; "
                  f"samples every {args.sample:g} s", flush=True)
            deadline = trio.current_time() + args.seconds

            async def report() -> None:
                shown = 0
                while True:
                    await trio.sleep(1)
                    samples = read_samples(stats)
                    for s in samples[shown:]:
                        try:
                            sockets = (await http.get("/v1/status")).json()["sockets"]
                        except httpx.TransportError:
                            sockets = -1  # see the client's except clause
                        print(f"t={s['t'] - start:6.0f}s rss={s['rss_kib'] / 1024:6.1f} MB "
                              f"after-trim={s['rss_trimmed_kib'] / 1024:6.1f} MB "
                              f"traced={s['traced'] / 2**20:6.2f} MB objects={s['objects']:7d} "
                              f"sqlite={s['sqlite'] / 2**20:6.2f} MB "
                              f"sockets={sockets:4d} sent={counts.sent} "
                              f"acked={counts.acked} received={counts.received} "
                              f"connects={counts.connects} drops={counts.abrupt_drops} "
                              f"errors={sum(counts.errors.values())}",
                              flush=True)
                    shown = len(samples)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(report)
                async with trio.open_nursery() as clients:
                    for index, (session, room) in enumerate(placed):
                        clients.start_soon(client, url.replace("http", "ws"), http, session,
                                           room, index, deadline, counts)
                        await trio.sleep(0.01)
                await trio.sleep(2 * args.sample + 2)  # two more samples with every client gone
                nursery.cancel_scope.cancel()
    finally:
        process.terminate()
        await process.wait()
    samples = read_samples(stats)
    print(f"errors: {counts.errors or 'none'}")
    if len(samples) >= 3:
        first, warm, last = samples[0], samples[len(samples) // 3], samples[-1]
        for key, unit, scale in (("rss_kib", "MB", 1024), ("rss_trimmed_kib", "MB", 1024),
                                 ("traced", "MB", 2**20), ("sqlite", "MB", 2**20),
                                 ("objects", "", 1)):
            print(f"{key:16} first {first[key] / scale:9.1f}{unit}  after a third "
                  f"{warm[key] / scale:9.1f}{unit}  last {last[key] / scale:9.1f}{unit}")
    print(f"server log and samples: {scratch}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(child(Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--sample", type=float, default=30)
    parser.add_argument("--rooms", type=int, default=20)
    trio.run(run, parser.parse_args())


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
