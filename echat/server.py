"""Running an echat app on hypercorn's trio worker, with echat's settings and shutdown order.

Shutdown, in order: the trigger fires (a signal, or the embedding code); every WebSocket is
closed with 1001 once what it sent is stored, and the requests under way get up to
`shutdown_grace` seconds to finish (`EchatApp.close_connections`); hypercorn stops accepting
and drops what is left (idle keep-alive connections); then the store drains its queue and
closes.
"""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Awaitable, Callable

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from echat import ws_limits
from echat.app import EchatApp, create_app
from echat.config import Config


AFTER_IDLE_GRACE = 0.2


def hypercorn_config(config: Config) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = [f"{config.host}:{config.port}"]
    # echat waits for its own requests and sockets (close_connections); what hypercorn still
    # holds after that is idle: keep-alive connections, and the ping task of each closed
    # WebSocket, which sleeps out its ping interval.
    hc.graceful_timeout = AFTER_IDLE_GRACE
    hc.websocket_ping_interval = config.ping_interval or None
    # A peer that sends nothing, not even the pong to our ping, for this long is gone.
    hc.read_timeout = int(config.peer_timeout) or None
    hc.websocket_max_message_size = ws_limits.max_message_size(config)
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    return hc


def check_port_free(host: str, port: int) -> None:
    """Raise OSError now, before the store opens, if the address cannot be bound: taken
    (EADDRINUSE) or not an address of this machine.

    hypercorn binds only after the app has started, and fails there with a traceback.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host.strip("[]"), port))


async def wait_for_signal() -> None:
    """Return at the first SIGINT or SIGTERM."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


async def serve(
    config: Config,
    *,
    app: EchatApp | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] = wait_for_signal,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until `shutdown_trigger` returns, then shut down in order.

    `task_status.started()` reports the bound addresses (`["http://127.0.0.1:8081"]`), once
    the store is open and the socket listens.
    """
    check_port_free(config.host, config.port)
    ws_limits.decline_compression()
    app = app if app is not None else create_app(config)

    async def shutdown() -> None:
        await shutdown_trigger()
        with trio.move_on_after(config.shutdown_grace):
            await app.close_connections()

    async with app.storage():
        await hypercorn_serve(app, hypercorn_config(config),
                              shutdown_trigger=shutdown, task_status=task_status)
