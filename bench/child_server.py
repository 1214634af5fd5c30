"""For benchmarks that run the server in a child process: a free port, and waiting for it."""

from __future__ import annotations

import socket

import httpx
import trio


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def wait_until_answering(http: httpx.AsyncClient, timeout: float = 20) -> None:
    """Until GET /v1/status answers on `http`'s base URL."""
    with trio.fail_after(timeout):
        while True:
            try:
                await http.get("/v1/status")
                return
            except httpx.TransportError:
                await trio.sleep(0.1)
