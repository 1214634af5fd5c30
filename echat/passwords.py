"""Password hashing with argon2id; the only module that imports argon2.

Hashing is slow by design (tens of milliseconds and 64 MiB at the default parameters), so it
runs on threads of its own, never on the event loop and never on the store's writer thread:
one per core, so a login storm queues instead of taking the whole machine's memory. On Linux
those threads run at idle priority (SCHED_IDLE, inherited by argon2's own lanes): a storm of
logins gets only the CPU time the chat leaves, so it cannot stall other requests even on two
cores. Elsewhere they run at normal priority.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Any

import argon2
import trio


class Passwords:
    def __init__(self, *, fast: bool = False) -> None:
        if fast:
            # For test suites only (echat.testing): hundreds of registrations in milliseconds.
            self._hasher = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        else:
            self._hasher = argon2.PasswordHasher()  # argon2-cffi's defaults: argon2id, RFC 9106 low-memory

    async def hash(self, password: str) -> str:
        return await _run_hashing(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> tuple[bool, str | None]:
        """Whether `password` matches, and a fresh hash when the stored one used older parameters.

        Returns (False, None) for a mismatch or an unreadable hash.
        """
        return await _run_hashing(self._verify_sync, password_hash, password)

    def _verify_sync(self, password_hash: str, password: str) -> tuple[bool, str | None]:
        try:
            self._hasher.verify(password_hash, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False, None
        if self._hasher.check_needs_rehash(password_hash):
            return True, self._hasher.hash(password)
        return True, None


# -- the hashing threads (shared by every Passwords of the process) ---------------------------

# (function, arguments, the caller's trio token, and what delivers (result, error) to the caller)
_Job = tuple[Callable[..., Any], tuple, trio.lowlevel.TrioToken,
             Callable[[Any, BaseException | None], None]]
_jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
_threads_started = False
_start_lock = threading.Lock()


async def _run_hashing(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` on a hashing thread. Like trio.to_thread.run_sync, the wait cannot be
    cancelled: a hash that has started finishes."""
    _start_threads()
    done = trio.Event()
    outcome: list[Any] = []

    def deliver(value: Any, error: BaseException | None) -> None:
        outcome.extend((value, error))
        done.set()

    _jobs.put((fn, args, trio.lowlevel.current_trio_token(), deliver))
    with trio.CancelScope(shield=True):
        await done.wait()
    value, error = outcome
    if error is not None:
        raise error
    return value


def _start_threads() -> None:
    global _threads_started
    with _start_lock:
        if _threads_started:
            return
        for n in range(os.cpu_count() or 1):
            threading.Thread(target=_hash_loop, name=f"echat-hash-{n}", daemon=True).start()
        _threads_started = True


def _hash_loop() -> None:
    lower_priority()
    while True:
        fn, args, token, deliver = _jobs.get()
        value, error = None, None
        try:
            value = fn(*args)
        except Exception as failure:
            error = failure
        try:
            token.run_sync_soon(deliver, value, error)
        except trio.RunFinishedError:
            pass  # the caller's trio run has ended; nobody is waiting


def lower_priority() -> None:
    """Make the calling thread run only when a core would otherwise be idle (Linux)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        pass  # not Linux, or not allowed: normal priority
