"""Failed logins are rate-limited per login and per client address (contract: "Limits").

Small `--login-failures` settings keep the tests short. Tests that move time use trio's
MockClock (pytest-trio's `mock_clock` fixture): time stands still until the test jumps it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
from quart.testing import QuartClient

from echat.app import create_app
from echat.config import Config
from echat.ratelimit import FailureWindow, LoginGuard
from echat.testing import serve
from helpers import auth, register

RIGHT = "right password"


@asynccontextmanager
async def in_process(**settings: Any) -> AsyncIterator[QuartClient]:
    app = create_app(Config(db=":memory:", fast_hashing=True, **settings))
    async with app.storage():
        yield app.test_client()


async def attempt(client: QuartClient, login: str, password: str = "wrong",
                  address: str = "10.0.0.1") -> tuple[int, str, str | None]:
    """One login from `address`: (status, error code or "ok", Retry-After)."""
    response = await client.post("/v1/login", json={"login": login, "password": password},
                                 scope_base={"client": (address, 40000)})
    body = await response.get_json()
    code = body["error"]["code"] if "error" in body else "ok"
    return response.status_code, code, response.headers.get("Retry-After")


async def create_user(client: QuartClient, login: str) -> None:
    response = await client.post("/v1/register", json={"login": login, "password": RIGHT})
    assert response.status_code == 200


def retry_after_seconds(value: str | None) -> int:
    """The Retry-After header of a 429: an integer number of seconds within the window."""
    assert value is not None and re.fullmatch(r"[0-9]+", value), value
    seconds = int(value)
    assert 1 <= seconds <= 60
    return seconds


# -- through the API ---------------------------------------------------------------------------


async def test_failed_logins_per_login_get_429_over_a_socket():
    async with serve(login_failures=3) as server, \
            httpx.AsyncClient(base_url=server.url) as http:
        await register(http, "Вася", RIGHT)
        bystander = await register(http, "bystander", RIGHT)

        async def login(name: str, password: str) -> httpx.Response:
            return await http.post("/v1/login", json={"login": name, "password": password})

        for _ in range(3):
            response = await login("Вася", "wrong")
            assert response.json() == {"error": {"code": "wrong_credentials"}}
        for name, password in [("Вася", "wrong"), ("Вася", RIGHT), ("ВАСЯ", RIGHT),
                               (" вася ", RIGHT)]:
            refused = await login(name, password)
            assert refused.status_code == 429, (name, refused.text)
            assert refused.json() == {"error": {"code": "too_many_requests"}}
            assert refused.headers["content-type"] == "application/json; charset=utf-8"
            retry_after_seconds(refused.headers.get("Retry-After"))
        # Only that login is locked: the address has failed 3 times of its 9.
        assert (await login("bystander", RIGHT)).status_code == 200
        # A client cannot pick its own address with a header.
        for n in range(6):  # 6 more failures from 127.0.0.1: 9 in all
            assert (await login(f"nobody{n}", "wrong")).status_code == 422
        assert (await login("bystander", RIGHT)).status_code == 429
        spoofed = await http.post("/v1/login", json={"login": "bystander", "password": RIGHT},
                                  headers={"Remote-Addr": "10.9.9.9",
                                           "X-Forwarded-For": "10.9.9.9"})
        assert spoofed.status_code == 429
        # Sessions already open are not touched by any of this.
        assert (await http.get("/v1/info", headers=auth(bystander))).status_code == 200


async def test_the_default_is_ten_failures_a_minute_per_login():
    async with in_process() as client:
        await create_user(client, "alice")
        for _ in range(10):
            assert (await attempt(client, "alice"))[1] == "wrong_credentials"
        assert (await attempt(client, "alice", RIGHT))[:2] == (429, "too_many_requests")


async def test_unknown_logins_are_limited_too():
    async with in_process(login_failures=3) as client:
        for _ in range(3):
            assert (await attempt(client, "ghost"))[1] == "user_not_found"
        status, code, retry_after = await attempt(client, "GHOST")
        assert (status, code) == (429, "too_many_requests")
        retry_after_seconds(retry_after)
        # Registering the name now does not lift the lock on guessing its password.
        await create_user(client, "ghost")
        assert (await attempt(client, "ghost", RIGHT))[0] == 429


async def test_a_success_resets_the_count_of_the_login():
    async with in_process(login_failures=3) as client:
        await create_user(client, "bob")
        for _ in range(2):  # 4 failures of the address's 9
            for _ in range(2):
                assert (await attempt(client, "bob"))[1] == "wrong_credentials"
            assert (await attempt(client, "bob", RIGHT))[1] == "ok"
        for _ in range(3):
            assert (await attempt(client, "bob"))[1] == "wrong_credentials"
        assert (await attempt(client, "bob", RIGHT))[0] == 429


async def test_an_address_may_fail_three_times_as_often_as_a_login():
    async with in_process(login_failures=2) as client:
        await create_user(client, "carol")
        for n in range(6):  # one failure each on six logins: no login reaches its 2
            assert (await attempt(client, f"guess{n}", address="10.0.0.7"))[1] == "user_not_found"
        status, code, retry_after = await attempt(client, "carol", RIGHT, address="10.0.0.7")
        assert (status, code) == (429, "too_many_requests")
        retry_after_seconds(retry_after)
        # The same login from another address is fine.
        assert (await attempt(client, "carol", RIGHT, address="10.0.0.8"))[1] == "ok"
        assert (await attempt(client, "guess0", address="10.0.0.8"))[1] == "user_not_found"


async def test_a_success_does_not_reset_the_address():
    async with in_process(login_failures=2) as client:
        await create_user(client, "dave")
        for n in range(5):
            assert (await attempt(client, f"guess{n}"))[1] == "user_not_found"
        # Logging into one's own account neither counts as a failure nor clears the others.
        assert (await attempt(client, "dave", RIGHT))[1] == "ok"
        assert (await attempt(client, "dave", RIGHT))[1] == "ok"
        assert (await attempt(client, "guess5"))[1] == "user_not_found"
        assert (await attempt(client, "dave", RIGHT))[0] == 429


async def test_concurrent_guesses_cannot_pass_the_limit_together():
    async with in_process(login_failures=3) as client:
        await create_user(client, "erin")
        codes: list[str] = []

        async def guess(n: int) -> None:
            codes.append((await attempt(client, "erin", f"guess {n}"))[1])

        async with trio.open_nursery() as nursery:
            for n in range(30):
                nursery.start_soon(guess, n)
        assert sorted(codes) == ["too_many_requests"] * 27 + ["wrong_credentials"] * 3


async def test_the_window_slides_and_retry_after_counts_down(mock_clock):
    async with in_process(login_failures=3) as client:
        await create_user(client, "frank")
        start = trio.current_time()
        for at in (0, 10, 20):
            mock_clock.jump(start + at - trio.current_time())
            assert (await attempt(client, "frank"))[1] == "wrong_credentials"
        assert await attempt(client, "frank") == (429, "too_many_requests", "40")
        mock_clock.jump(39.5)  # t = 59.5: half a second left, rounded up
        assert await attempt(client, "frank", RIGHT) == (429, "too_many_requests", "1")
        mock_clock.jump(0.5)  # t = 60: the failure at 0 has left the window
        assert (await attempt(client, "frank"))[1] == "wrong_credentials"
        # Failures at 10, 20 and 60 now: the next one may come when 10 leaves, at 70.
        assert await attempt(client, "frank", RIGHT) == (429, "too_many_requests", "10")
        mock_clock.jump(10)
        assert (await attempt(client, "frank", RIGHT))[1] == "ok"


# -- the parts, with time passed in --------------------------------------------------------------


def test_failure_window_counts_failures_within_the_window():
    window = FailureWindow(limit=2, window=60)
    assert window.retry_after("k", now=0) == 0
    window.fail("k", now=0)
    assert window.retry_after("k", now=0) == 0
    window.fail("k", now=5)
    assert window.retry_after("k", now=5) == 55
    assert window.retry_after("k", now=30) == 30
    assert window.retry_after("other", now=30) == 0
    assert window.retry_after("k", now=60) == 0  # the first failure expired
    window.fail("k", now=61)
    assert window.retry_after("k", now=61) == 4
    assert window.retry_after("k", now=121) == 0
    assert len(window) == 0  # a key with no recent failures holds no memory


def test_failure_window_reset_forgive_and_sweep():
    window = FailureWindow(limit=2, window=60)
    for key in ("a", "b", "c"):
        window.fail(key, now=0)
        window.fail(key, now=1)
    window.reset("a")
    assert window.retry_after("a", now=2) == 0
    window.forgive("b", 1)
    assert window.retry_after("b", now=2) == 0
    window.forgive("b", 1)  # taking back a failure that is not there changes nothing
    window.fail("b", now=3)
    assert window.retry_after("b", now=3) == 57
    window.fail("d", now=50)
    window.sweep(now=63)
    assert len(window) == 1 and window.retry_after("d", now=63) == 0
    assert window.retry_after("d", now=63) == 0


async def test_login_guard_per_login_and_per_address(mock_clock):
    guard = LoginGuard(failures_per_login=2)
    assert guard.retry_after("login", "addr") == 0
    guard.failed("login", "addr")
    stamp = guard.failed("login", "addr")
    assert guard.retry_after("login", "elsewhere") == 60  # the login is locked everywhere
    assert guard.retry_after("someone else", "addr") == 0  # the address has 2 of its 6
    guard.succeeded("login", "addr", stamp)
    assert guard.retry_after("login", "elsewhere") == 0
    for n in range(5):
        mock_clock.jump(1)
        guard.failed(f"login{n}", "addr")
    # One failure of the first two was forgiven by the success: 6 failures, the first at 0.
    assert guard.retry_after("anyone", "addr") == pytest.approx(55)
    assert guard.retry_after("anyone", "other addr") == 0
    mock_clock.jump(59)
    assert guard.retry_after("anyone", "addr") == 0
