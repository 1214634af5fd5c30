"""A real echat server inside other projects' tests.

    async with echat.testing.serve() as server:        # trio code
        ... server.url, server.ws_url, server.port

    with echat.testing.run_in_thread() as server:      # plain synchronous code
        httpx.get(server.url + "/v1/status")

Both start the same app as `echat serve` (REST and WebSocket) on an ephemeral port of
127.0.0.1 with a throwaway database, and stop it, freeing everything, when the block ends,
also when the block fails. `fast_hashing=True` (the default here, and only here) uses cheap
argon2 parameters so a suite that registers hundreds of users stays fast. Any other setting of
`echat.config.Config` may be passed by name (`outbox_frames=10`).

WebSocket pings are off here unless `ping_interval` is given: hypercorn sends its first ping the
moment a socket opens, and trio-websocket fails when a ping arrives while it is closing
(python-trio/trio-websocket#184), which would make short tests flaky.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from echat.app import EchatApp, create_app
from echat.config import Config
from echat.server import serve as serve_app


@dataclass(frozen=True)
class TestServer:
    """A running server: `url` (http://127.0.0.1:PORT), `ws_url` (ws://127.0.0.1:PORT), `port`."""

    __test__ = False  # not a pytest test class

    url: str
    ws_url: str
    port: int
    config: Config
    app: EchatApp


@asynccontextmanager
async def serve(*, db: str = ":memory:", host: str = "127.0.0.1", port: int = 0,
                fast_hashing: bool = True, **settings: Any) -> AsyncIterator[TestServer]:
    """Run a server for the duration of the block (trio code). See the module docstring."""
    settings.setdefault("ping_interval", 0.0)
    config = Config(host=host, port=port, db=db, fast_hashing=fast_hashing, **settings)
    app = create_app(config)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve_app, config, app=app, shutdown_trigger=stop.wait))
        bound_port = int(binds[0].rsplit(":", 1)[1])
        authority = f"{_url_host(host)}:{bound_port}"
        try:
            yield TestServer(f"http://{authority}", f"ws://{authority}", bound_port, config, app)
        finally:
            stop.set()


@contextmanager
def run_in_thread(*, db: str = ":memory:", host: str = "127.0.0.1", port: int = 0,
                  fast_hashing: bool = True, **settings: Any) -> Iterator[TestServer]:
    """Run a server on its own trio loop in a background thread (synchronous code)."""
    started: queue.SimpleQueue = queue.SimpleQueue()
    stop_token: list[tuple[trio.lowlevel.TrioToken, trio.Event]] = []

    async def main() -> None:
        stop = trio.Event()
        stop_token.append((trio.lowlevel.current_trio_token(), stop))
        async with serve(db=db, host=host, port=port, fast_hashing=fast_hashing,
                         **settings) as server:
            started.put(server)
            await stop.wait()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as error:  # handed to the caller, who re-raises it
            started.put(error)

    thread = threading.Thread(target=run, name="echat-test-server", daemon=True)
    thread.start()
    first = started.get()
    if isinstance(first, BaseException):
        thread.join()
        raise first
    try:
        yield first
    finally:
        token, stop = stop_token[0]
        token.run_sync_soon(stop.set)
        thread.join()
        if not started.empty():
            failure = started.get()
            raise failure


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
