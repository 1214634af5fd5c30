"""pytest fixtures for projects that test against a real echat server.

Installed with echat (the `pytest11` entry point `echat`), so any suite in an environment with
echat gets:

- `echat_server`: a fresh server with an empty database for each test;
- `echat_server_session`: one server for the whole run.

Each runs on its own trio loop in a background thread (`echat.testing.run_in_thread`), so sync,
trio and asyncio tests can all use it; the value has `.url`, `.ws_url` and `.port`. Nothing of
echat is imported until a fixture is used, so the plugin costs suites that do not use it nothing.
Opt out with `-p no:echat`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from echat.testing import TestServer


@pytest.fixture
def echat_server() -> Iterator[TestServer]:
    """A real echat server with an empty database, for this test only (.url, .ws_url, .port)."""
    from echat.testing import run_in_thread

    with run_in_thread() as server:
        yield server


@pytest.fixture(scope="session")
def echat_server_session() -> Iterator[TestServer]:
    """One real echat server for the whole run: what a test stores, later tests see."""
    from echat.testing import run_in_thread

    with run_in_thread() as server:
        yield server
