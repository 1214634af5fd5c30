"""What the feed and read state cost: long-poll latency, held-request memory, rooms list at scale.

    .venv/bin/python bench/feed_bench.py all          # or: latency | memory | rooms
    .venv/bin/python bench/feed_bench.py rooms --messages 100000   # a quicker, smaller run

Each scenario starts `python -m echat serve` as a child process on a database prepared here
(users and sessions written straight into a new database, so no argon2 hashing is timed), and
drives it from this process over real sockets.

- latency: one member sends on a room socket; another member has a socket open to the room
  and a feed request held (`wait=30`). Both are timed from the same send: send -> socket
  frame, and send -> feed answer.
- memory: the server's resident memory with 1,000 idle keep-alive connections, then with a
  held feed request on each (the difference is what holding costs), and socket delivery
  latency (send -> frame at another member) without and with them, in turns.
- rooms: GET /v1/rooms for a user in 500 rooms holding 1,000,000 messages in all, for a user
  in 500 rooms of one message each (the same answer size without the history), and for a user
  in 5 rooms, all in one database; also the first feed page (`after=0`) of the first and last.

- writer: the writer thread's CPU time per message stored (`_insert_message` in batches of 200,
  each in its savepoint, fsync off so only the SQL and Python count): the price of keeping
  unread counts and last messages in the same transaction. For the figure without them, run
  it with PYTHONPATH pointing at a checkout from before (the import line is printed).

The load average is printed with each scenario: other work on the machine shows in it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

import echat.store
from echat.store import schema_sql
from servers import free_port

# Seconds to let the server settle after the held requests arrive, before measuring.
SETTLE = 2.0
PASSWORD_HASH = "not a usable hash: these users never log in"
CREATED_AT = "2026-01-01T00:00:00"


# -- the server and its database ------------------------------------------------------------


def new_database(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(schema_sql())
    return conn


def add_users(conn: sqlite3.Connection, logins: list[str]) -> list[tuple[int, str]]:
    """Users with one session each: [(user id, session id)]."""
    made = []
    conn.execute("BEGIN")
    for login in logins:
        user_id = conn.execute(
            "INSERT INTO users (login, login_key, password_hash, created_at) VALUES (?, ?, ?, ?)",
            (login, login.casefold(), PASSWORD_HASH, CREATED_AT),
        ).lastrowid
        session_id = secrets.token_hex(20)
        conn.execute("INSERT INTO sessions (token_hash, user_id, created_at) VALUES (?, ?, ?)",
                     (hashlib.sha256(session_id.encode()).digest(), user_id, CREATED_AT))
        made.append((user_id, session_id))
    conn.execute("COMMIT")
    return made


class Server:
    def __init__(self, process: subprocess.Popen, port: int) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}"

    def rss_mib(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")


# `echat serve` with hypercorn's keep-alive timeout (5 s, not an echat setting) given as the
# first argument: the memory scenario counts idle connections, which must stay open meanwhile.
KEEP_ALIVE_BOOT = """
import sys
import echat.server
keep_alive = float(sys.argv.pop(1))
made = echat.server.hypercorn_config
def with_keep_alive(config):
    hypercorn = made(config)
    hypercorn.keep_alive_timeout = keep_alive
    return hypercorn
echat.server.hypercorn_config = with_keep_alive
from echat.cli import main
raise SystemExit(main())
"""


@asynccontextmanager
async def running_server(db: Path, keep_alive: float | None = None) -> AsyncIterator[Server]:
    port = free_port()
    command = [sys.executable, "-m", "echat"]
    if keep_alive is not None:
        command = [sys.executable, "-c", KEEP_ALIVE_BOOT, str(keep_alive)]
    process = subprocess.Popen(
        [*command, "serve", "--port", str(port), "--db", str(db),
         "--ws-rate", "0", "--metrics", "--ping-interval", "0", "--peer-timeout", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    server = Server(process, port)
    try:
        async with httpx.AsyncClient() as http:
            with trio.fail_after(30):
                while True:
                    try:
                        await http.get(server.url + "/v1/status")
                        break
                    except httpx.TransportError:
                        await trio.sleep(0.05)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)


async def feeds_waiting(http: httpx.AsyncClient) -> int:
    page = (await http.get("/metrics")).text
    return int(next(line.split()[1] for line in page.splitlines()
                    if line.startswith("echat_feed_requests_waiting ")))


async def until_waiting(http: httpx.AsyncClient, count: int) -> None:
    with trio.fail_after(60):
        while await feeds_waiting(http) != count:
            await trio.sleep(0.01)


async def make_room(http: httpx.AsyncClient, session: str, others: list[int]) -> int:
    response = await http.post("/v1/rooms", json={"users": [{"id": i} for i in others]},
                               headers={"X-Session-Id": session})
    response.raise_for_status()
    return response.json()["id"]


def chat_url(server: Server, room: int, session: str) -> str:
    return f"{server.ws_url}/v1/rooms/{room}/chat?session_id={session}"


# -- figures --------------------------------------------------------------------------------


def summary(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p99 = ms[min(len(ms) - 1, round(0.99 * len(ms)) - 1)]
    return (f"{name:<44} median {statistics.median(ms):7.2f} ms   p99 {p99:7.2f} ms   "
            f"max {ms[-1]:7.2f} ms   (n={len(ms)})")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) {five:.2f} (5 min) on {os.cpu_count()} cores"


async def socket_latency(sender: WebSocketConnection, receiver: WebSocketConnection,
                         count: int) -> list[float]:
    """Send `count` messages one at a time; seconds from each send to the receiver's frame."""
    samples = []
    for n in range(count):
        start = time.perf_counter()
        await sender.send_message(json.dumps({"text": f"ping {n}"}))
        frame = json.loads(await receiver.get_message())
        samples.append(time.perf_counter() - start)
        assert frame["text"] == f"ping {n}", frame
        await trio.sleep(0.002)  # one message in flight at a time, as a person types
    return samples


# -- scenarios ------------------------------------------------------------------------------


async def bench_latency(args: argparse.Namespace, scratch: Path) -> None:
    print(f"\n== latency: send on a socket -> another member's socket and held feed ({load()})")
    conn = new_database(scratch / "latency.db")
    (alice_id, alice), (bob_id, bob) = add_users(conn, ["alice", "bob"])
    conn.close()
    async with running_server(scratch / "latency.db") as server, \
            httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        room = await make_room(http, alice, [bob_id])
        socket_times: list[float] = []
        feed_times: list[float] = []
        cursor = 0
        async with open_websocket_url(chat_url(server, room, alice)) as sender, \
                open_websocket_url(chat_url(server, room, bob)) as receiver:
            for n in range(args.samples + 10):
                got: dict[str, float] = {}
                answer: list[dict] = []

                async def hold(after: int) -> None:
                    response = await http.get("/v1/feed", params={"after": after, "wait": 30},
                                              headers={"X-Session-Id": bob})
                    got["feed"] = time.perf_counter()
                    answer.append(response.json())

                async def listen() -> None:
                    frame = json.loads(await receiver.get_message())
                    got["socket"] = time.perf_counter()
                    assert frame["text"] == f"m{n}"

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(hold, cursor)
                    await until_waiting(http, 1)
                    nursery.start_soon(listen)
                    start = time.perf_counter()
                    await sender.send_message(json.dumps({"text": f"m{n}"}))
                [messages] = [a["messages"] for a in answer]
                assert [m["text"] for m in messages] == [f"m{n}"], messages
                cursor = answer[0]["cursor"]
                if n >= 10:  # the first few warm up connections and caches
                    socket_times.append(got["socket"] - start)
                    feed_times.append(got["feed"] - start)
    print(summary("send -> socket frame", socket_times))
    print(summary("send -> held feed answer (same sends)", feed_times))
    print(f"({load()})")


async def bench_memory(args: argparse.Namespace, scratch: Path) -> None:
    held, cycles = args.held, args.cycles
    print(f"\n== memory: {held} held feed requests, and socket delivery beside them ({load()})")
    conn = new_database(scratch / "memory.db")
    (_, p), (q_id, q) = add_users(conn, ["p", "q"])
    holders = add_users(conn, [f"holder{i}" for i in range(held)])
    conn.close()
    per_cycle = max(1, args.samples // cycles)
    before: list[float] = []
    during: list[float] = []
    rss: dict[str, float] = {}
    async with running_server(scratch / "memory.db", keep_alive=600) as server, \
            httpx.AsyncClient(base_url=server.url, timeout=120) as http:
        room = await make_room(http, p, [q_id])
        async with open_websocket_url(chat_url(server, room, p)) as sender, \
                open_websocket_url(chat_url(server, room, q)) as receiver:
            await socket_latency(sender, receiver, 20)  # warm-up
            # A few connections at a time: hypercorn's listen backlog is 100.
            opening = trio.CapacityLimiter(50)

            async def connect(client: httpx.AsyncClient) -> None:
                async with opening:
                    await client.get("/v1/info")

            async def hold(client: httpx.AsyncClient, session: str) -> None:
                # On the connection `connect` opened: each client's pool holds just that one.
                await client.get("/v1/feed", params={"after": 2**62, "wait": 60},
                                 headers={"X-Session-Id": session})

            # Made once: each client would otherwise build its own, slowly, and never use it.
            unused_tls = ssl.create_default_context()
            # Without and with the held requests in turns, so that other work on the machine
            # weighs on both alike.
            for cycle in range(cycles):
                before += await socket_latency(sender, receiver, per_cycle)
                if cycle == 0:
                    await trio.sleep(0.5)
                    rss["start"] = server.rss_mib()
                clients = [httpx.AsyncClient(base_url=server.url, timeout=120, verify=unused_tls)
                           for _ in holders]
                try:
                    async with trio.open_nursery() as nursery:
                        for client in clients:
                            nursery.start_soon(connect, client)
                    if cycle == 0:
                        await trio.sleep(1.0)
                        rss["connected"] = server.rss_mib()
                    async with trio.open_nursery() as nursery:
                        for client, (_, session) in zip(clients, holders):
                            nursery.start_soon(hold, client, session)
                        await until_waiting(http, held)
                        # Settled: a thousand requests arriving at once leave the server a
                        # full garbage collection to run, which is the burst's cost, not the
                        # cost of holding them.
                        await trio.sleep(SETTLE)
                        if cycle == 0:
                            rss["held"] = server.rss_mib()
                        during += await socket_latency(sender, receiver, per_cycle)
                        assert await feeds_waiting(http) == held
                        # Clients that go away take their held requests with them.
                        nursery.cancel_scope.cancel()
                finally:
                    for client in clients:
                        await client.aclose()
                await until_waiting(http, 0)
    print(f"server RSS: {rss['start']:.1f} MiB before, {rss['connected']:.1f} MiB with {held} "
          f"idle connections, {rss['held']:.1f} MiB with a feed request held on each")
    print(f"held requests: +{rss['held'] - rss['connected']:.1f} MiB = "
          f"{(rss['held'] - rss['connected']) * 1024 / held:.1f} KiB a request "
          f"({(rss['held'] - rss['start']) * 1024 / held:.1f} KiB with its connection)")
    print(summary("socket delivery, nothing held", before))
    print(summary(f"socket delivery, {held} feeds held", during))
    print(f"({cycles} turns of {per_cycle} messages each way; {load()})")


def build_rooms_database(path: Path, rooms: int, messages: int) -> tuple[str, str, str]:
    """Sessions of three users: one in `rooms` rooms holding `messages` in all, each room
    shared with one other user who writes every other message; one in as many rooms of one
    message each (the same answer size, no history); one in 5 rooms of 100 messages each. The
    read-state columns are filled in as the server would have kept them."""
    conn = new_database(path)
    (big_id, big), (light_id, light), (small_id, small) = add_users(
        conn, ["big", "light", "small"])
    partners = add_users(conn, [f"partner{i}" for i in range(rooms + 5)])
    conn.execute("BEGIN")
    plan = [(big_id, partner_id, messages // rooms) for partner_id, _ in partners[:rooms]]
    plan += [(light_id, partner_id, 1) for partner_id, _ in partners[:rooms]]
    plan += [(small_id, partner_id, 100) for partner_id, _ in partners[rooms:]]
    for owner_id, partner_id, count in plan:
        room_id = conn.execute(
            "INSERT INTO rooms (member_key, created_at) VALUES (?, ?)",
            (",".join(map(str, sorted((owner_id, partner_id)))), CREATED_AT),
        ).lastrowid
        conn.executemany("INSERT INTO room_members (room_id, user_id) VALUES (?, ?)",
                         [(room_id, owner_id), (room_id, partner_id)])
        conn.executemany(
            "INSERT INTO messages (room_id, user_id, text, created_at) VALUES (?, ?, ?, ?)",
            ((room_id, owner_id if n % 2 else partner_id, f"message {n} of room {room_id}",
              CREATED_AT) for n in range(count)),
        )
    # Rooms interleave in time in real life; here each room's messages come in one run,
    # which the listing does not care about (it orders by last message id).
    conn.execute("UPDATE rooms SET last_message_id ="
                 " (SELECT max(id) FROM messages WHERE room_id = rooms.id)")
    conn.execute("UPDATE room_members SET unread = (SELECT count(*) FROM messages m"
                 " WHERE m.room_id = room_members.room_id AND m.user_id != room_members.user_id)")
    conn.execute("COMMIT")
    conn.close()
    return big, light, small


async def time_get(http: httpx.AsyncClient, path: str, session: str, runs: int,
                   check: Callable[[object], None]) -> list[float]:
    samples = []
    for n in range(runs + 20):
        start = time.perf_counter()
        response = await http.get(path, headers={"X-Session-Id": session})
        elapsed = time.perf_counter() - start
        response.raise_for_status()
        check(response.json())
        if n >= 20:
            samples.append(elapsed)
    return samples


async def bench_rooms(args: argparse.Namespace, scratch: Path) -> None:
    print(f"\n== rooms: GET /v1/rooms, {args.rooms} rooms and {args.messages:,} messages vs "
          f"5 rooms ({load()})")
    path = scratch / "rooms.db"
    started = time.perf_counter()
    big, light, small = build_rooms_database(path, args.rooms, args.messages)
    print(f"database built in {time.perf_counter() - started:.1f} s, "
          f"{path.stat().st_size / 2**20:.0f} MiB")

    def rooms_of(count: int) -> Callable[[object], None]:
        def check(rooms: object) -> None:
            assert isinstance(rooms, list) and len(rooms) == count
            assert all(room["last_message"] is not None and room["unread"] > 0 for room in rooms)
        return check

    def first_page(page: object) -> None:
        assert isinstance(page, dict) and len(page["messages"]) == 100

    async with running_server(path) as server, \
            httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        big_rooms = await time_get(http, "/v1/rooms", big, args.samples, rooms_of(args.rooms))
        light_rooms = await time_get(http, "/v1/rooms", light, args.samples,
                                     rooms_of(args.rooms))
        small_rooms = await time_get(http, "/v1/rooms", small, args.samples, rooms_of(5))
        big_feed = await time_get(http, "/v1/feed?after=0", big, args.samples, first_page)
        small_feed = await time_get(http, "/v1/feed?after=0", small, args.samples, first_page)
        size = len((await http.get("/v1/rooms", headers={"X-Session-Id": big})).content)
    print(summary(f"GET /v1/rooms, {args.rooms} rooms ({size / 1024:.0f} KiB)", big_rooms))
    print(summary(f"GET /v1/rooms, {args.rooms} rooms of 1 message", light_rooms))
    print(summary("GET /v1/rooms, 5 rooms", small_rooms))
    print(summary(f"GET /v1/feed?after=0, {args.rooms} rooms", big_feed))
    print(summary("GET /v1/feed?after=0, 5 rooms", small_feed))
    print(f"ratio {args.rooms} rooms with their history / {args.rooms} rooms of one message: "
          f"{statistics.median(big_rooms) / statistics.median(light_rooms):.1f}x")
    print(f"ratio {args.rooms} rooms / 5 rooms: "
          f"{statistics.median(big_rooms) / statistics.median(small_rooms):.1f}x (rooms list), "
          f"{statistics.median(big_feed) / statistics.median(small_feed):.1f}x (first feed page)")
    print(f"({load()})")


async def bench_writer(args: argparse.Namespace, scratch: Path) -> None:
    print(f"\n== writer: CPU time per message stored, echat from {echat.store.__file__}")
    batches, per_batch = 100, 200
    runs = []
    for run in range(5):
        conn = echat.store._connect_writer(str(scratch / f"writer{run}.db"))
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN")
        alice = echat.store._insert_user(conn, "alice", "alice", PASSWORD_HASH)
        bob = echat.store._insert_user(conn, "bob", "bob", PASSWORD_HASH)
        room = echat.store._open_room(conn, alice.id, [bob.id]).id
        conn.execute("COMMIT")
        started = time.thread_time()
        for batch in range(batches):
            conn.execute("BEGIN IMMEDIATE")
            for n in range(per_batch):
                conn.execute("SAVEPOINT job")
                author = alice.id if n % 2 else bob.id
                echat.store._insert_message(conn, room, author, f"message {batch} {n}", None)
                conn.execute("RELEASE job")
            conn.execute("COMMIT")
        runs.append((time.thread_time() - started) / (batches * per_batch))
        conn.close()
    print(f"{'writer CPU per message':<44} median {statistics.median(runs) * 1e6:7.1f} us   "
          f"runs {' '.join(f'{r * 1e6:.1f}' for r in runs)}   ({load()})")


SCENARIOS = {"latency": bench_latency, "memory": bench_memory, "rooms": bench_rooms,
             "writer": bench_writer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=[*SCENARIOS, "all"])
    parser.add_argument("--samples", type=int, default=300, help="timed runs per figure")
    parser.add_argument("--held", type=int, default=1000, help="feed requests held at once")
    parser.add_argument("--cycles", type=int, default=5,
                        help="memory: turns without and with the held requests")
    parser.add_argument("--rooms", type=int, default=500)
    parser.add_argument("--messages", type=int, default=1_000_000)
    args = parser.parse_args()
    with open("/proc/cpuinfo") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo
                      if line.startswith("model name")), "unknown")
    print(f"{model}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"SQLite {sqlite3.sqlite_version}")
    chosen = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    with tempfile.TemporaryDirectory(prefix="echat-feed-bench-") as scratch:
        for name in chosen:
            trio.run(SCENARIOS[name], args, Path(scratch))


if __name__ == "__main__":
    main()
