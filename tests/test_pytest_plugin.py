"""The `echat` pytest plugin, run the way another project's suite runs it (pytester).

The inner suites have no conftest and no ini file: the fixtures come from the `pytest11` entry
point alone, and the trio tests carry `@pytest.mark.trio` as a suite without trio mode would.
"""

from __future__ import annotations

import threading

import pytest
import trio

pytest_plugins = ["pytester"]

REGISTER = """
import httpx


def register(server, login="alice"):
    response = httpx.post(server.url + "/v1/register", json={"login": login, "password": "pw"})
    return response.status_code
"""


def server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "echat-test-server"]


@pytest.fixture
def pytester(pytester: pytest.Pytester) -> pytest.Pytester:
    """pytester, checking that every inner run stopped the servers it started."""
    yield pytester
    assert server_threads() == []


def test_a_sync_test_talks_to_echat_server_with_httpx(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(REGISTER + """
def test_register_and_ask_who_i_am(echat_server):
    assert echat_server.url == f"http://127.0.0.1:{echat_server.port}"
    assert echat_server.ws_url == f"ws://127.0.0.1:{echat_server.port}"
    session = httpx.post(echat_server.url + "/v1/register",
                         json={"login": "Вася", "password": "pw"}).json()["session_id"]
    me = httpx.get(echat_server.url + "/v1/info", headers={"X-Session-Id": session})
    assert me.json()["login"] == "Вася"
""")
    pytester.runpytest().assert_outcomes(passed=1)


def test_a_pytest_trio_test_chats_over_trio_websocket(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
import json

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url


@pytest.mark.trio
async def test_a_message_reaches_the_other_member(echat_server):
    async with httpx.AsyncClient(base_url=echat_server.url) as http:
        sessions = []
        for login in ("alice", "bob"):
            response = await http.post("/v1/register", json={"login": login, "password": "pw"})
            sessions.append(response.json()["session_id"])
        bob_id = (await http.get("/v1/info", headers={"X-Session-Id": sessions[1]})).json()["id"]
        room = (await http.post("/v1/rooms", json={"users": [{"id": bob_id}]},
                                headers={"X-Session-Id": sessions[0]})).json()["id"]
    chat = f"{echat_server.ws_url}/v1/rooms/{room}/chat?session_id="
    async with open_websocket_url(chat + sessions[1]) as bob_ws:
        async with open_websocket_url(chat + sessions[0]) as alice_ws:
            await alice_ws.send_message(json.dumps({"text": "hi"}))
            with trio.fail_after(10):
                message = json.loads(await bob_ws.get_message())
    assert message["text"] == "hi"
""")
    pytester.runpytest().assert_outcomes(passed=1)


def test_echat_server_is_a_fresh_server_and_database_per_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(REGISTER + """
import pytest


def test_first(echat_server):
    assert register(echat_server) == 200


def test_second_sync(echat_server):
    assert register(echat_server) == 200


@pytest.mark.trio
async def test_third_trio(echat_server):
    assert register(echat_server) == 200
""")
    pytester.runpytest().assert_outcomes(passed=3)


def test_echat_server_session_is_one_server_for_the_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(REGISTER + """
import pytest

PORTS = set()


def test_first(echat_server_session):
    PORTS.add(echat_server_session.port)
    assert register(echat_server_session) == 200


@pytest.mark.trio
async def test_second_trio(echat_server_session):
    PORTS.add(echat_server_session.port)
    assert register(echat_server_session) == 422  # user_already_exists: the same database


def test_third(echat_server_session, echat_server):
    PORTS.add(echat_server_session.port)
    assert PORTS == {echat_server_session.port}
    assert echat_server.port != echat_server_session.port
    assert register(echat_server) == 200
""")
    pytester.runpytest().assert_outcomes(passed=3)


def test_a_failing_test_still_stops_its_server(pytester: pytest.Pytester) -> None:
    port_file = pytester.path / "port"
    pytester.makepyfile(f"""
def test_fails(echat_server):
    open({str(port_file)!r}, "w").write(str(echat_server.port))
    assert False, "the test's own failure"
""")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the test's own failure*"])
    port = int(port_file.read_text())

    async def refused() -> bool:
        try:
            await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            return True
        return False

    assert trio.run(refused)


def test_asyncio_tests_can_use_it_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
import httpx
import pytest


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_async_httpx_on_asyncio(echat_server):
    async with httpx.AsyncClient(base_url=echat_server.url) as http:
        response = await http.post("/v1/register", json={"login": "alice", "password": "pw"})
    assert response.status_code == 200
""")
    pytester.runpytest().assert_outcomes(passed=1)


def test_loading_the_plugin_imports_nothing_of_the_server(pytester: pytest.Pytester) -> None:
    # A fresh interpreter: this process has long imported the server.
    pytester.makepyfile("""
import sys


def test_only_the_plugin_is_loaded():
    assert "echat.pytest_plugin" in sys.modules
    heavy = ("echat.testing", "echat.app", "quart", "hypercorn")
    assert [name for name in sys.modules if name.startswith(heavy)] == []
""")
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


def test_the_plugin_can_be_turned_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
def test_wants_the_fixture(echat_server):
    pass
""")
    result = pytester.runpytest("-p", "no:echat")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'echat_server' not found*"])
