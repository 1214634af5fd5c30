"""A real echat server inside other projects' tests.

    async with echat.testing.serve() as server:        # trio code
        ... server.url, server.ws_url, server.port

    with echat.testing.run_in_thread() as server:      # plain synchronous code
        httpx.get(server.url + "/v1/info")

Both start the same app as `echat serve` (REST and WebSocket) on an ephemeral port of
127.0.0.1 with a throwaway database, and stop it, freeing everything, when the block ends,
also when the block fails. An error of the block or of starting (a port already taken is an
OSError with errno EADDRINUSE) is raised as itself, not wrapped in an exception group.
`fast_hashing=True` (the default here, and only here) uses cheap argon2 parameters so a suite
that registers hundreds of users stays fast. Any other setting of `echat.config.Config` may be
passed by name (`outbox_frames=10`).

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
from typing import Any, NoReturn

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
    try:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                partial(serve_app, config, app=app, shutdown_trigger=stop.wait)
            )
            bound = int(binds[0].rsplit(":", 1)[1])
            authority = f"{_url_host(host)}:{bound}"
            try:
                yield TestServer(f"http://{authority}", f"ws://{authority}", bound, config, app)
            finally:
                stop.set()
    except BaseExceptionGroup as group:
        # The nursery wraps everything, even the block's own exception; callers expect
        # `pytest.raises(ValueError)` or `except OSError` to work, so a lone error goes out bare.
        if len(group.exceptions) != 1:
            raise
        _raise_alone(group.exceptions[0])


@contextmanager
def run_in_thread(*, db: str = ":memory:", host: str = "127.0.0.1", port: int = 0,
                  fast_hashing: bool = True, **settings: Any) -> Iterator[TestServer]:
    """Run `serve(...)` on its own trio loop in a background thread (synchronous code).

    Leaving the block stops the server through the loop's trio token and joins the thread.
    """
    # The running server, the loop's token and its stop event; or None when it never started.
    started: queue.SimpleQueue[tuple[TestServer, trio.lowlevel.TrioToken, trio.Event] | None]
    started = queue.SimpleQueue()
    failure: list[BaseException] = []

    async def main() -> None:
        stop = trio.Event()
        async with serve(db=db, host=host, port=port, fast_hashing=fast_hashing,
                         **settings) as server:
            started.put((server, trio.lowlevel.current_trio_token(), stop))
            await stop.wait()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as error:  # raised again in the caller's thread
            failure.append(error)
        finally:
            started.put(None)

    thread = threading.Thread(target=run, name="echat-test-server", daemon=True)
    thread.start()
    running = started.get()
    if running is None:
        thread.join()
        raise failure[0]
    server, token, stop = running
    try:
        yield server
    finally:
        try:
            token.run_sync_soon(stop.set)
        except trio.RunFinishedError:
            pass  # it stopped on its own, by failing: that failure is raised below
        thread.join()
        if failure:
            raise failure[0]


def _raise_alone(error: BaseException) -> NoReturn:
    """Raise `error` keeping its own context, not the exception group it was taken from."""
    context = error.__context__
    try:
        raise error
    finally:
        error.__context__ = context
        del error, context


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
