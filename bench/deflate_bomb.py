"""What one compressed WebSocket frame costs the server, with and without echat's refusal of
permessage-deflate (echat/ws_limits.py).

    .venv/bin/python bench/deflate_bomb.py

Starts a test server in a child process twice: as echat runs it, and with hypercorn's default
(compression accepted). Each time one client asks for permessage-deflate and sends a single
text frame of 60 MiB of zeros compressed to about 60 KB, then the child's peak resident memory
(VmHWM) is printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from pathlib import Path

import httpx
import trio
import wsproto
from wsproto.events import AcceptConnection, Request
from wsproto.extensions import PerMessageDeflate

from servers import free_port, wait_until_answering

INFLATED = 60 * 2**20


def memory(pid: int) -> str:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return " ".join(line.split(":")[1].strip() for line in lines
                    if line.startswith(("VmHWM", "VmRSS")))


def compressed_text_frame(payload: bytes) -> bytes:
    """FIN, RSV1 (compressed), text; masked, as a client's frames are."""
    assert len(payload) < 2**16
    mask = os.urandom(4)
    head = bytes([0x80 | 0x40 | 0x1, 0x80 | 126]) + len(payload).to_bytes(2, "big") + mask
    return head + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def attack(accept_compression: bool) -> None:
    port = free_port()
    patch = "import echat.ws_limits as w; w.decline_compression = lambda: None\n"
    child = ((patch if accept_compression else "")
             + "import time\nfrom echat.testing import run_in_thread\n"
             + f"with run_in_thread(port={port}):\n    time.sleep(600)\n")
    process = subprocess.Popen([sys.executable, "-c", child])
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            await wait_until_answering(http)
            session = (await http.post("/v1/register", json={"login": "u", "password": "p"})
                       ).json()["session_id"]
            room = (await http.post("/v1/rooms", json={"users": []},
                                    headers={"X-Session-Id": session})).json()["id"]
            before = memory(process.pid)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
            await stream.send_all(client.send(Request(
                host="127.0.0.1", target=f"/v1/rooms/{room}/chat?session_id={session}",
                extensions=[PerMessageDeflate()])))
            client.receive_data(await stream.receive_some())
            accepted = [e for e in client.events() if isinstance(e, AcceptConnection)]
            deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
            bomb = deflate.compress(b"\0" * INFLATED) + deflate.flush(zlib.Z_SYNC_FLUSH)
            await stream.send_all(compressed_text_frame(bomb))
            with trio.move_on_after(3):
                while await stream.receive_some():
                    pass
            print(f"compression {'accepted' if accepted[0].extensions else 'declined'}: "
                  f"one {len(bomb)}-byte frame; server VmHWM/VmRSS before {before}, "
                  f"after {memory(process.pid)}")
    finally:
        process.terminate()
        process.wait()


if __name__ == "__main__":
    trio.run(attack, False)
    trio.run(attack, True)
