"""Password hashing with argon2id; the only module that imports argon2.

Hashing is slow by design (tens of milliseconds and 64 MiB at the default parameters), so it
runs in trio's worker threads, never on the event loop and never on the store's writer thread.
A limiter keeps at most one hash per core in flight: a login storm queues instead of taking the
whole machine's memory and CPU from the chat.
"""

from __future__ import annotations

import os

import argon2
import trio


class Passwords:
    def __init__(self, *, fast: bool = False) -> None:
        if fast:
            # For test suites only (echat.testing): hundreds of registrations in milliseconds.
            self._hasher = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        else:
            self._hasher = argon2.PasswordHasher()  # argon2-cffi's defaults: argon2id, RFC 9106 low-memory
        self._limiter = trio.CapacityLimiter(os.cpu_count() or 1)

    async def hash(self, password: str) -> str:
        return await trio.to_thread.run_sync(self._hasher.hash, password, limiter=self._limiter)

    async def verify(self, password_hash: str, password: str) -> tuple[bool, str | None]:
        """Whether `password` matches, and a fresh hash when the stored one used older parameters.

        Returns (False, None) for a mismatch or an unreadable hash.
        """
        return await trio.to_thread.run_sync(
            self._verify_sync, password_hash, password, limiter=self._limiter
        )

    def _verify_sync(self, password_hash: str, password: str) -> tuple[bool, str | None]:
        try:
            self._hasher.verify(password_hash, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False, None
        if self._hasher.check_needs_rehash(password_hash):
            return True, self._hasher.hash(password)
        return True, None
