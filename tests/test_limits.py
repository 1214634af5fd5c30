"""Size limits through a real socket, each with the contract's answer, and each set by its flag.

The rest of the limits (login and password length, 1,000 users in a room request, `limit`
bounds, text length of edits) are in test_api.py and test_message_life.py.
"""

from __future__ import annotations

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url
from wsproto.events import AcceptConnection
from wsproto.extensions import PerMessageDeflate

from echat import ws_limits
from echat.testing import serve
from helpers import (auth, chat_url, make_room, open_raw_socket, receive_json, register,
                     send_json)


async def test_bodies_over_max_body_are_413_also_without_a_content_length():
    async with serve(max_body=1000) as server, httpx.AsyncClient(base_url=server.url) as http:
        session = await register(http, "sizer")
        fits = b'{"title": "' + b"x" * 50 + b'"}'
        fits += b" " * (1000 - len(fits))
        room = await make_room(http, session)
        url = f"/v1/rooms/{room}"
        assert (await http.put(url, content=fits, headers=auth(session))).status_code == 200

        async def chunked(data: bytes):
            for start in range(0, len(data), 100):
                yield data[start:start + 100]

        for body in (fits + b" ", chunked(fits + b" ")):
            response = await http.put(url, content=body, headers=auth(session))
            assert response.status_code == 413
            assert response.json() == {"error": {"code": "payload_too_large"}}
        # Refused before the session is even looked at: a large body costs no database read.
        response = await http.post("/v1/logout", content=b"x" * 1001)
        assert response.status_code == 413


async def test_max_text_is_the_longest_message_on_the_socket():
    async with serve(max_text=10) as server, httpx.AsyncClient(base_url=server.url) as http:
        session = await register(http, "texter")
        room = await make_room(http, session)
        async with open_websocket_url(chat_url(server, room, session)) as ws:
            await send_json(ws, {"text": "ж" * 11, "nonce": "long"})
            assert await receive_json(ws) == {"error": {"code": "text_too_long"}}
            await send_json(ws, {"text": "ж" * 10, "nonce": "fits"})
            assert (await receive_json(ws))["ack"] == "fits"
        history = (await http.get(f"/v1/rooms/{room}/messages", headers=auth(session))).json()
        assert [m["text"] for m in history] == ["ж" * 10]


@pytest.mark.parametrize("max_body", [2000, 65536])
async def test_a_frame_over_the_message_limit_is_closed_with_1009(max_body):
    async with serve(max_body=max_body) as server, \
            httpx.AsyncClient(base_url=server.url) as http:
        limit = ws_limits.max_message_size(server.config)
        assert limit >= max_body
        session = await register(http, "framer")
        room = await make_room(http, session)
        async with open_websocket_url(chat_url(server, room, session)) as ws:
            frame = '{"text": "fits", "nonce": "n"}'
            await ws.send_message(frame + " " * (limit - len(frame)))
            assert (await receive_json(ws))["ack"] == "n"
            # The frame is counted in characters: 1-byte and 2-byte ones alike.
            await ws.send_message('{"text": "' + "ж" * limit + '"}')
            with trio.fail_after(5), pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason.code == 1009
        history = (await http.get(f"/v1/rooms/{room}/messages", headers=auth(session))).json()
        assert [m["text"] for m in history] == ["fits"]


async def test_the_longest_escaped_message_fits_the_frame_limit():
    """A client may JSON-escape every character: 4,000 emoji as surrogate pairs still fit."""
    async with serve() as server, httpx.AsyncClient(base_url=server.url) as http:
        session = await register(http, "escaper")
        room = await make_room(http, session)
        async with open_websocket_url(chat_url(server, room, session)) as ws:
            await ws.send_message('{"text": "' + "\\ud83d\\ude00" * 4000 + '", "nonce": "e"}')
            assert (await receive_json(ws))["ack"] == "e"
        history = (await http.get(f"/v1/rooms/{room}/messages", headers=auth(session))).json()
        assert history[0]["text"] == "😀" * 4000


async def test_permessage_deflate_is_declined():
    """Offered compression is not accepted, so no compressed frame is ever inflated."""
    async with serve() as server, httpx.AsyncClient(base_url=server.url) as http:
        session = await register(http, "zipper")
        room = await make_room(http, session)
        stream, _, events = await open_raw_socket(
            server, f"/v1/rooms/{room}/chat?session_id={session}", extensions=[PerMessageDeflate()])
        assert isinstance(events[0], AcceptConnection)
        assert events[0].extensions == []
        await stream.aclose()
