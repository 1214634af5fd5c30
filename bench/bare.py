"""The bare stack: what the benchmark compares echat with.

    .venv/bin/python -m bench.bare --port 9000

A minimal quart-trio app served exactly as `echat serve` serves (echat's hypercorn settings,
hypercorn's trio worker), with echat's benchmarked routes answering canned data: no session
check, no storage, no password hashing. Its room socket is a bare broadcast: each text frame is
parsed, given an id, encoded once and queued for every other socket of the room through the
same kind of bounded outbox and writer task echat uses, and acknowledged when it carries a
nonce. So a row's ratio is the share of the framework's speed that echat keeps while doing its
real work. `/v1/rooms/{id}/floor` is a socket with nothing at all behind it, for the memory
the framework itself takes per connection.
"""

from __future__ import annotations

import argparse
from functools import partial

import trio
from hypercorn.trio import serve
from quart import Response, request, websocket
from quart_trio import QuartTrio

from echat import jsonio
from echat.config import Config
from echat.server import hypercorn_config, wait_for_signal

CREATED_AT = "2026-01-01T00:00:00"
USER = {"id": 1, "login": "bench"}
PAGE = [
    {"id": i, "text": f"canned message {i}", "user_id": 1, "room_id": 1, "created_at": CREATED_AT}
    for i in range(1, 51)
]
SESSION = {"session_id": "0" * 40}
OUTBOX_FRAMES = Config().outbox_frames


def create_bare_app() -> QuartTrio:
    app = QuartTrio("bare")
    rooms: dict[int, set[trio.MemorySendChannel[str]]] = {}
    next_id = 0

    def answer(value: object) -> Response:
        return Response(jsonio.dumps(value), content_type=jsonio.CONTENT_TYPE)

    @app.get("/v1/info")
    async def info() -> Response:
        return answer(USER)

    @app.get("/v1/rooms/<int:room_id>/messages")
    async def history(room_id: int) -> Response:
        return answer(PAGE)

    @app.post("/v1/login")
    async def login() -> Response:
        jsonio.loads(await request.get_data(as_text=False))
        return answer(SESSION)

    @app.websocket("/v1/rooms/<int:room_id>/chat")
    async def chat(room_id: int) -> None:
        nonlocal next_id
        outbox, inbox = trio.open_memory_channel[str](OUTBOX_FRAMES)
        room = rooms.setdefault(room_id, set())
        room.add(outbox)
        try:
            await websocket.accept()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_write_loop, inbox)
                while True:
                    frame = jsonio.loads(await websocket.receive())
                    next_id += 1
                    message = jsonio.dumps({"id": next_id, "text": frame["text"], "user_id": 1,
                                            "room_id": room_id, "created_at": CREATED_AT})
                    for other in room:
                        if other is not outbox:
                            other.send_nowait(message)
                    if "nonce" in frame:
                        outbox.send_nowait(jsonio.dumps(
                            {"ack": frame["nonce"], "id": next_id, "created_at": CREATED_AT}
                        ))
        finally:
            room.discard(outbox)

    @app.websocket("/v1/rooms/<int:room_id>/floor")
    async def floor(room_id: int) -> None:
        """The framework alone: a socket that is accepted and read, with no outbox and no
        writer task; what any app on this stack pays per connection at least."""
        await websocket.accept()
        while True:
            await websocket.receive()

    return app


async def _write_loop(inbox: trio.MemoryReceiveChannel[str]) -> None:
    async for frame in inbox:
        await websocket.send(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description="the bare stack the benchmark compares with")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    config = hypercorn_config(Config(port=args.port))
    trio.run(partial(serve, create_bare_app(), config, shutdown_trigger=wait_for_signal))


if __name__ == "__main__":
    main()
