"""Password hashing runs on threads at idle priority (Linux), so a login storm cannot take the
CPU from the chat; the event loop keeps its normal priority."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from echat import passwords
from echat.passwords import Passwords

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SCHED_IDLE is Linux only")


async def test_hashing_threads_run_at_idle_priority():
    await Passwords(fast=True).hash("warm up")
    policy, name = await passwords._run_hashing(
        lambda: (os.sched_getscheduler(0), threading.current_thread().name)
    )
    assert policy == os.SCHED_IDLE
    assert name.startswith("echat-hash-")
    assert os.sched_getscheduler(0) == os.SCHED_OTHER


async def test_a_hashing_error_reaches_the_caller():
    def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await passwords._run_hashing(fail)


async def test_at_most_one_hashing_thread_per_core():
    await Passwords(fast=True).hash("x")
    hashing = [t for t in threading.enumerate() if t.name.startswith("echat-hash-")]
    assert len(hashing) == (os.cpu_count() or 1)
