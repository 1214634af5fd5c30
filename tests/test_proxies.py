"""The client address behind a reverse proxy: X-Forwarded-For believed from trusted proxies only.

Units for the rule, then a real server whose login limits per address follow it.
"""

from __future__ import annotations

import httpx
import pytest

from echat.proxies import TrustedProxies, parse_networks
from echat.testing import serve

PROXIES = TrustedProxies(parse_networks("127.0.0.1, 10.0.0.0/8, ::1"))


@pytest.mark.parametrize("peer, forwarded, client", [
    ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),  # not a proxy: its header is a claim
    ("127.0.0.1", [], "127.0.0.1"),  # a trusted proxy that forwarded nothing
    ("127.0.0.1", ["198.51.100.1"], "198.51.100.1"),
    # The client wrote the left entries itself; the nearest proxy appended the real one.
    ("127.0.0.1", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),
    # Through two trusted proxies (10.1.2.3 forwarded to 127.0.0.1).
    ("127.0.0.1", ["6.6.6.6, 198.51.100.1, 10.1.2.3"], "198.51.100.1"),
    ("127.0.0.1", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),  # the header twice
    ("::1", ["2001:db8::7"], "2001:db8::7"),
    ("127.0.0.1", ["10.0.0.1, 10.0.0.2"], "10.0.0.1"),  # all trusted: the furthest one
    ("127.0.0.1", ["unknown, 198.51.100.1"], "198.51.100.1"),
    ("127.0.0.1", ["198.51.100.1, not-an-address"], "127.0.0.1"),  # garbage: stop there
])
def test_the_client_is_the_last_untrusted_hop(peer, forwarded, client):
    assert PROXIES.client(peer, forwarded) == client


def test_a_bad_entry_is_named():
    with pytest.raises(ValueError, match="'10.0.0.300' is not an IP address or network"):
        parse_networks("127.0.0.1, 10.0.0.300")
    assert parse_networks(" ") == ()


async def fail_logins(http: httpx.AsyncClient, count: int, forwarded_for: str) -> list[int]:
    statuses = []
    for n in range(count):
        reply = await http.post("/v1/login", json={"login": f"nobody-{forwarded_for}-{n}",
                                                   "password": "x"},
                                headers={"X-Forwarded-For": forwarded_for})
        statuses.append(reply.status_code)
    return statuses


async def test_login_limits_count_the_forwarded_client_of_a_trusted_proxy():
    # One failure a minute per login, three per address.
    async with serve(login_failures=1, trusted_proxies="127.0.0.1") as server, \
            httpx.AsyncClient(base_url=server.url) as http:
        assert await fail_logins(http, 4, "198.51.100.1") == [422, 422, 422, 429]
        assert await fail_logins(http, 1, "198.51.100.2") == [422]  # someone else


async def test_without_trusted_proxies_the_header_is_ignored():
    async with serve(login_failures=1) as server, \
            httpx.AsyncClient(base_url=server.url) as http:
        assert await fail_logins(http, 3, "198.51.100.1") == [422, 422, 422]
        # A new address in the header does not buy new guesses.
        assert await fail_logins(http, 1, "198.51.100.2") == [429]
