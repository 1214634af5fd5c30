"""GET /v1/status for everyone, GET /metrics (Prometheus text) only with --metrics."""

from __future__ import annotations

from functools import partial

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import open_websocket_url

import echat
from echat.cli import build_parser
from echat.config import Config, settings
from echat.testing import serve
from helpers import (
    auth,
    chat_url,
    make_room,
    post_message,
    receive_json,
    register,
    wait_for_sockets,
)

STATUS_FIELDS = {"version", "uptime_s", "users", "rooms", "messages", "sessions", "sockets",
                 "rss_bytes"}


async def status(http: httpx.AsyncClient) -> dict:
    response = await http.get("/v1/status")  # no session
    assert response.status_code == 200, response.text
    return response.json()


async def test_status_follows_users_rooms_messages_sessions_and_sockets(server, http):
    start = await status(http)
    assert set(start) == STATUS_FIELDS
    assert start["version"] == echat.__version__
    assert start["rss_bytes"] > 1_000_000
    assert isinstance(start["uptime_s"], (int, float)) and start["uptime_s"] >= 0
    assert {k: start[k] for k in ("users", "rooms", "messages", "sessions", "sockets")} == {
        "users": 0, "rooms": 0, "messages": 0, "sessions": 0, "sockets": 0}

    alice, bob = await register(http, "alice"), await register(http, "bob")
    phone = (await http.post("/v1/login", json={"login": "alice", "password": "secret"})
             ).json()["session_id"]
    room = await make_room(http, alice, bob)
    now = await status(http)
    assert (now["users"], now["sessions"], now["rooms"]) == (2, 3, 1)
    assert now["uptime_s"] >= start["uptime_s"]

    async with open_websocket_url(chat_url(server, room, alice)) as alice_ws:
        async with open_websocket_url(chat_url(server, room, phone)) as phone_ws:
            await wait_for_sockets(http, 2)
            first = await post_message(alice_ws, "one", "n1")
            await post_message(alice_ws, "two", "n2")
            assert [(await receive_json(phone_ws))["text"] for _ in "12"] == ["one", "two"]
            assert await post_message(alice_ws, "one", "n1") == first  # a resend, not stored
            assert (await status(http))["messages"] == 2
        await wait_for_sockets(http, 1)
    await wait_for_sockets(http, 0)

    await http.delete(f"/v1/rooms/{room}/messages/{first}", headers=auth(alice))
    await http.post("/v1/logout", headers=auth(phone))
    end = await status(http)
    assert (end["users"], end["sessions"], end["rooms"], end["messages"]) == (2, 2, 1, 1)


async def test_metrics_are_not_served_without_the_flag(http):
    response = await http.get("/metrics")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_metrics_is_a_switch_on_the_command_line_and_in_the_environment():
    def config(argv: list[str], environ: dict[str, str]) -> Config:
        args = build_parser().parse_args(["serve", *argv])
        return Config.from_env(environ, **{f.name: getattr(args, f.name) for f in settings()})

    assert config([], {}).metrics is False
    assert config(["--metrics"], {}).metrics is True
    assert config([], {"ECHAT_METRICS": "true"}).metrics is True
    assert config([], {"ECHAT_METRICS": "0"}).metrics is False
    assert config(["--metrics"], {"ECHAT_METRICS": "no"}).metrics is True


async def test_metrics_scrape_parses_as_prometheus_text():
    async with serve(metrics=True) as server, httpx.AsyncClient(base_url=server.url) as http:
        alice, bob = await register(http, "alice"), await register(http, "bob")
        room = await make_room(http, alice, bob)
        for _ in range(2):
            assert (await http.get(f"/v1/rooms/{room}", headers=auth(bob))).status_code == 200
        assert (await http.get("/v1/no/such/route")).status_code == 404
        async with open_websocket_url(chat_url(server, room, alice)) as alice_ws, \
                open_websocket_url(chat_url(server, room, bob)) as bob_ws:
            await wait_for_sockets(http, 2)
            await post_message(alice_ws, "hello", "n1")
            await receive_json(bob_ws)

            async with trio.open_nursery() as nursery:
                # A feed request held while the page is scraped (nothing ever answers it).
                nursery.start_soon(partial(http.get, "/v1/feed", headers=auth(bob),
                                           params={"after": 10**9, "wait": 30}))
                with trio.fail_after(5):
                    while server.app.hub.statistics().feeds_waiting != 1:
                        await trio.sleep(0.005)
                scrape = await http.get("/metrics")
                nursery.cancel_scope.cancel()
            assert scrape.status_code == 200
            assert scrape.headers["content-type"].startswith("text/plain; version=0.0.4")
            families = {f.name: f for f in text_string_to_metric_families(scrape.text)}

    def value(name: str, **labels: str) -> float:
        matching = [s.value for s in families[name].samples
                    if s.name.startswith(name) and all(s.labels.get(k) == v
                                                       for k, v in labels.items())]
        assert len(matching) == 1, (name, labels, families[name].samples)
        return matching[0]

    assert families["echat_open_sockets"].type == "gauge"
    assert value("echat_open_sockets") == 2
    assert families["echat_messages_stored"].type == "counter"
    assert value("echat_messages_stored") == 1
    assert value("echat_frames_delivered") == 2  # bob's message, alice's ack
    assert value("echat_slow_clients_closed") == 0
    assert families["echat_feed_requests_waiting"].type == "gauge"
    assert value("echat_feed_requests_waiting") == 1
    assert value("echat_rows", table="messages") == 1
    assert value("echat_rows", table="users") == 2
    assert value("process_resident_memory_bytes") > 1_000_000

    route = "/v1/rooms/<room_id>"
    assert value("echat_http_requests", route=route, method="GET", status="200") == 2
    assert value("echat_http_requests", route="unmatched", method="GET", status="404") == 1
    assert value("echat_http_requests", route="/v1/register", method="POST", status="200") == 2

    latency = families["echat_http_request_duration_seconds"]
    assert latency.type == "histogram"
    samples = [s for s in latency.samples if s.labels.get("route") == route]
    buckets = [s.value for s in samples if s.name.endswith("_bucket")]
    (count,) = [s.value for s in samples if s.name.endswith("_count")]
    (total,) = [s.value for s in samples if s.name.endswith("_sum")]
    assert buckets == sorted(buckets) and buckets[-1] == count == 2
    assert [s.labels["le"] for s in samples if s.name.endswith("_bucket")][-1] == "+Inf"
    assert 0 < total < 60
