"""Load generators: concurrent HTTP clients, chatting WebSockets, idle WebSockets.

Each returns a `Sample`; none knows which server it talks to, so echat and the bare stack are
measured by the same code.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass

import httpx
import trio
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    connect_websocket_url,
)
from wsproto.utilities import LocalProtocolError

# Handshakes in flight at once: more would overflow the listen backlog (hypercorn's is 100)
# and measure SYN retries instead of the server.
HANDSHAKES_AT_ONCE = 64
HTTP_TIMEOUT = 60.0
# Deliveries not made by then count as missing.
CHAT_TIMEOUT = 120.0
# echat drops a message whose nonce its sender used in the last ten minutes (in any room), so
# every message of a run has its own.
_nonces = itertools.count()


@dataclass
class Sample:
    """A rate (requests or deliveries a second) with its latencies in milliseconds."""

    rate: float
    p50_ms: float
    p99_ms: float
    count: int
    errors: int

    def to_json(self) -> dict:
        return asdict(self)


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, round(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def sample(count: int, errors: int, elapsed: float, latencies: list[float]) -> Sample:
    latencies.sort()
    return Sample(
        rate=count / elapsed if elapsed > 0 else 0.0,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        count=count,
        errors=errors,
    )


# -- HTTP -----------------------------------------------------------------------------------

# What one client sends: (method, path, headers, JSON body or None), given its number.
RequestMaker = Callable[[int], tuple[str, str, dict[str, str], object]]


async def http_load(base_url: str, make_request: RequestMaker, *, clients: int, requests: int,
                    stop: trio.Event | None = None, warm_up: bool = True) -> Sample:
    """`clients` concurrent clients, each on a keep-alive connection of its own, send
    `requests` requests in all (or, with `stop`, keep sending until it is set). With
    `warm_up`, a first round of one request each is not counted; leave it out for slow
    requests (a client that finished its round early would sit idle past the server's
    keep-alive timeout while the others finish)."""
    latencies: list[float] = []
    failures: list[str] = []
    issued = 0

    async with AsyncExitStack() as stack:
        # A connection each, never shared: a pooled one could sit idle while the other clients
        # keep the rest busy, and be closed by the server's keep-alive timeout just as it is
        # picked again.
        https = [await stack.enter_async_context(httpx.AsyncClient(
            base_url=base_url, limits=httpx.Limits(max_connections=1), timeout=HTTP_TIMEOUT
        )) for _ in range(clients)]

        async def one(client: int) -> float:
            method, path, headers, body = make_request(client)
            start = time.perf_counter()
            try:
                response = await https[client].request(method, path, headers=headers, json=body)
            except httpx.TransportError as error:
                took = time.perf_counter() - start
                failures.append(f"{error!r} after {took:.1f} s")
                return took
            took = time.perf_counter() - start
            if response.status_code != 200:
                failures.append(f"{response.status_code} {response.text[:200]}")
            return took

        async def run(client: int) -> None:
            nonlocal issued
            while (issued < requests) if stop is None else not stop.is_set():
                issued += 1
                latencies.append(await one(client))

        if warm_up:
            async with trio.open_nursery() as nursery:
                for client in range(clients):
                    nursery.start_soon(one, client)
            failures.clear()
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for client in range(clients):
                nursery.start_soon(run, client)
        elapsed = time.perf_counter() - start
    if failures:
        print(f"{base_url}: {len(failures)} failed requests, e.g. {failures[0]}", file=sys.stderr)
    return sample(len(latencies), len(failures), elapsed, latencies)


async def alternating_latency(base_url: str, paths: list[str], headers: dict[str, str],
                              rounds: int) -> list[float]:
    """One client GETs each of `paths` in turn, `rounds` times over; the median latency of
    each path, in seconds. Taking turns makes both see the same machine, however busy."""
    taken: list[list[float]] = [[] for _ in paths]
    async with httpx.AsyncClient(base_url=base_url, timeout=HTTP_TIMEOUT) as http:
        for path in paths:  # warm-up
            (await http.get(path, headers=headers)).raise_for_status()
        for _ in range(rounds):
            for i, path in enumerate(paths):
                start = time.perf_counter()
                (await http.get(path, headers=headers)).raise_for_status()
                taken[i].append(time.perf_counter() - start)
    return [percentile(sorted(values), 0.5) for values in taken]


# -- WebSockets -----------------------------------------------------------------------------


def chat_url(ws_url: str, room_id: int, session_id: str) -> str:
    return f"{ws_url}/v1/rooms/{room_id}/chat?session_id={session_id}"


@asynccontextmanager
async def open_sockets(urls: list[str]) -> AsyncIterator[list[WebSocketConnection]]:
    """Open a socket to each URL, HANDSHAKES_AT_ONCE at a time, and close them when the block
    ends. Yields those that opened, once every attempt is over."""
    sockets: list[WebSocketConnection | None] = [None] * len(urls)
    limiter = trio.CapacityLimiter(HANDSHAKES_AT_ONCE)
    pending = len(urls)
    tried, close = trio.Event(), trio.Event()

    async def hold(i: int) -> None:
        nonlocal pending
        try:
            async with trio.open_nursery() as own:
                try:
                    async with limiter:
                        sockets[i] = ws = await connect_websocket_url(own, urls[i])
                finally:
                    pending -= 1
                    if not pending:
                        tried.set()
                await close.wait()
                await ws.aclose()
        # A socket that fails to open is left out. LocalProtocolError: trio-websocket answers
        # a ping that arrives while it closes and fails (python-trio/trio-websocket#184).
        except* (OSError, HandshakeError, LocalProtocolError):
            pass

    async with trio.open_nursery() as nursery:
        for i in range(len(urls)):
            nursery.start_soon(hold, i)
        if urls:
            await tried.wait()
        try:
            yield [ws for ws in sockets if ws is not None]
        finally:
            close.set()


async def chat_load(ws_url: str, rooms: list[tuple[int, list[str]]], messages: int) -> Sample:
    """Every member of every room (room id, members' session ids) sends `messages` messages at
    once, each after the ack of the one before, and reads what the others send.

    The rate is deliveries a second (a message received by one member); the latency of a
    delivery runs from just before the sender sent it to the receiver reading it (the text
    carries the send time). A missing delivery counts as an error.
    """
    latencies: list[float] = []
    expected_each = [(len(members) - 1) * messages for _, members in rooms for _ in members]
    last_delivery = 0.0

    urls = [chat_url(ws_url, room, member) for room, members in rooms for member in members]
    async with open_sockets(urls) as sockets:
        if len(sockets) != len(urls):
            raise RuntimeError(f"only {len(sockets)} of {len(urls)} sockets opened")

        async def member(index: int, ws: WebSocketConnection) -> None:
            acks_send, acks = trio.open_memory_channel[None](1)

            async def read() -> None:
                nonlocal last_delivery
                received = acked = 0
                while received < expected_each[index] or acked < messages:
                    try:
                        frame = json.loads(await ws.get_message())
                    except ConnectionClosed:
                        both.cancel_scope.cancel()  # what it did not get counts as missing
                        return
                    if "ack" in frame:
                        acked += 1
                        acks_send.send_nowait(None)
                    elif "text" in frame:
                        now = time.perf_counter()
                        latencies.append(now - float(frame["text"]))
                        last_delivery = max(last_delivery, now)
                        received += 1

            async with trio.open_nursery() as both:
                both.start_soon(read)
                for n in range(messages):
                    text = repr(time.perf_counter())
                    await ws.send_message(json.dumps({"text": text, "nonce": str(next(_nonces))}))
                    await acks.receive()

        start = time.perf_counter()
        with trio.move_on_after(CHAT_TIMEOUT):
            async with trio.open_nursery() as chatting:
                for index, ws in enumerate(sockets):
                    chatting.start_soon(member, index, ws)
    delivered = len(latencies)
    return sample(delivered, sum(expected_each) - delivered, last_delivery - start, latencies)


@dataclass
class IdleResult:
    sockets: int
    errors: int
    rss_before: int
    rss_after: int

    @property
    def bytes_each(self) -> float:
        return (self.rss_after - self.rss_before) / max(1, self.sockets)

    def to_json(self) -> dict:
        return {**asdict(self), "kib_each": self.bytes_each / 1024}


async def idle_load(urls: list[str], rss: Callable[[], int], *,
                    hold: float, warmup: list[str]) -> IdleResult:
    """Open every URL's socket and hold them idle for `hold` seconds; the server's resident
    memory is read before (after opening and closing the `warmup` sockets, so one-off costs
    such as the first socket's imports are not counted) and after. A socket that fails to
    open or is closed while held is an error."""
    async with open_sockets(warmup):
        pass
    await trio.sleep(0.5)
    before = rss()
    async with open_sockets(urls) as sockets:
        await trio.sleep(hold)
        after = rss()
        closed = sum(1 for ws in sockets if ws.closed is not None)
    return IdleResult(len(sockets), len(urls) - len(sockets) + closed, before, after)
