"""The servers under test, each a process of its own: `echat serve` and the bare stack.

`free_port` and `wait_until_answering` also serve the scripts beside this package that start
a server of their own (`soak.py`, `deflate_bomb.py`, `feed_bench.py`; run as files, they import
this module as `servers`)."""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


@dataclass(frozen=True)
class Server:
    name: str
    url: str
    ws_url: str
    pid: int

    def rss(self) -> int:
        """Resident memory of the server process, in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def command(name: str, port: int, db: Path, flags: Sequence[str]) -> list[str]:
    if name == "echat":
        return [sys.executable, "-m", "echat", "serve", "--port", str(port), "--db", str(db),
                *flags]
    return [sys.executable, "-m", "bench.bare", "--port", str(port), *flags]


@asynccontextmanager
async def running(name: str, db: Path, log_dir: Path,
                  flags: Sequence[str] = ()) -> AsyncIterator[Server]:
    """Start `echat` (on `db`, with `flags`) or `bare` on a free port; stop it with SIGTERM
    afterwards. Its output goes to a log file in `log_dir`."""
    port = free_port()
    log = log_dir / f"{name}-{port}.log"
    with log.open("wb") as output:
        process = await trio.lowlevel.open_process(command(name, port, db, flags), stdout=output,
                                                   stderr=output)
    server = Server(name, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", process.pid)
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            await wait_until_answering(http, process=process, log=log)
        yield server
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                with trio.move_on_after(STOP_TIMEOUT):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
            await process.wait()


async def wait_until_answering(http: httpx.AsyncClient, timeout: float = READY_TIMEOUT,
                               process: trio.Process | None = None, log: Path | None = None,
                               ) -> None:
    """Until the server at `http`'s base URL answers (any status); fails at once if `process`
    has exited, showing its `log`."""
    with trio.fail_after(timeout):
        while True:
            if process is not None and process.poll() is not None:
                output = log.read_text() if log is not None else ""
                raise RuntimeError(f"the server exited early:\n{output}")
            try:
                await http.get("/v1/info")
                return
            except httpx.TransportError:
                await trio.sleep(0.05)
