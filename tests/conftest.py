"""Shared fixtures: a real server on a socket, an HTTP client for it, and the in-process app."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from echat.app import create_app
from echat.config import Config
from echat.testing import TestServer, serve


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    """A real echat server on an ephemeral port with a throwaway database."""
    async with serve() as running:
        yield running


@pytest.fixture
async def http(server: TestServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url) as client:
        yield client


@pytest.fixture
async def app_client():
    """Quart's in-process test client, the store open."""
    app = create_app(Config(db=":memory:", fast_hashing=True))
    async with app.storage():
        yield app.test_client()
