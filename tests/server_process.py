"""`echat serve` as a child process, for what only a real process shows: signals, kill -9,
restarts on the same database file."""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class ServerProcess:
    process: trio.Process
    url: str
    ws_url: str
    log: Path

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs in the server."""
        self.process.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)


@asynccontextmanager
async def server_process(db: Path, *flags: str, ready_timeout: float = 15.0) -> AsyncIterator[ServerProcess]:
    """Start `python -m echat serve` on a free port with `db`; yields once it answers HTTP."""
    port = free_port()
    log = db.with_name(f"{db.name}.{port}.log")
    with log.open("wb") as output:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "echat", "serve", "--port", str(port), "--db", str(db), *flags],
            stdout=output, stderr=output,
        )
    running = ServerProcess(process, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", log)
    try:
        await _wait_until_answering(running, ready_timeout)
        yield running
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()


async def _wait_until_answering(server: ServerProcess, timeout: float) -> None:
    async with httpx.AsyncClient() as client:
        with trio.fail_after(timeout):
            while True:
                if server.process.poll() is not None:
                    raise RuntimeError(f"echat exited early:\n{server.log.read_text()}")
                try:
                    await client.get(server.url + "/v1/info")
                    return
                except httpx.TransportError:
                    await trio.sleep(0.05)
