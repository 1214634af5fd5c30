"""Rate limits: failed-login windows per key, a token bucket per WebSocket, a sliding window.

All are plain in-memory objects used from the trio thread only, with time passed in or read
from trio's clock, so tests can drive them with a fake clock.
"""

from __future__ import annotations

from collections import deque

import trio


class FailureWindow:
    """At most `limit` failures per key in a sliding `window` of seconds.

    A key with no recent failures holds no memory: expired entries are dropped as they are
    seen, and `sweep()` drops keys nobody has tried for a window.
    """

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until `key` may try again; 0 when it may try now."""
        failures = self._failures.get(key)
        if not failures:
            return 0.0
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return 0.0
        if len(failures) < self.limit:
            return 0.0
        return failures[0] + self.window - now

    def fail(self, key: str, now: float) -> None:
        self._failures.setdefault(key, deque()).append(now)

    def __len__(self) -> int:
        return len(self._failures)

    def reset(self, key: str) -> None:
        self._failures.pop(key, None)

    def forgive(self, key: str, stamp: float) -> None:
        """Take back one failure recorded at `stamp` (an attempt that turned out well)."""
        failures = self._failures.get(key)
        if failures and stamp in failures:
            failures.remove(stamp)

    def sweep(self, now: float) -> None:
        stale = [k for k, f in self._failures.items() if not f or f[-1] <= now - self.window]
        for key in stale:
            del self._failures[key]


class LoginGuard:
    """Throttles password guessing: per login (one account attacked from many places) and per
    client address (one place trying many accounts)."""

    def __init__(self, failures_per_login: int) -> None:
        self.by_login = FailureWindow(failures_per_login)
        # An address may hold several people (a household, an office behind NAT).
        self.by_address = FailureWindow(failures_per_login * 3)

    def retry_after(self, login_key: str, address: str) -> float:
        now = trio.current_time()
        return max(self.by_login.retry_after(login_key, now),
                   self.by_address.retry_after(address, now))

    def failed(self, login_key: str, address: str) -> float:
        """Count a failure; returns its time stamp, for `succeeded` to take it back."""
        now = trio.current_time()
        self.by_login.fail(login_key, now)
        self.by_address.fail(address, now)
        if len(self.by_login) + len(self.by_address) > 10_000:
            self.by_login.sweep(now)
            self.by_address.sweep(now)
        return now

    def succeeded(self, login_key: str, address: str, stamp: float) -> None:
        """An attempt counted as failed at `stamp` turned out well.

        The login's count is reset; the address only loses this attempt: resetting it would let
        an attacker launder guesses at other accounts by logging into one of their own now and
        then.
        """
        self.by_login.reset(login_key)
        self.by_address.forgive(address, stamp)


class TokenBucket:
    """`rate` tokens a second up to `burst`; `take()` spends one if there is one."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = trio.current_time()

    def take(self) -> bool:
        now = trio.current_time()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class RateWindow:
    """At most `limit` events in any `window` seconds; `take()` records one if it is allowed."""

    def __init__(self, limit: int, window: float) -> None:
        self.window = window
        # The oldest of the last `limit` accepted events decides: the deque drops older ones.
        self._accepted: deque[float] = deque(maxlen=limit)

    def take(self) -> bool:
        now = trio.current_time()
        accepted = self._accepted
        if len(accepted) == accepted.maxlen and accepted[0] > now - self.window:
            return False
        accepted.append(now)
        return True


class FloodGuard:
    """The per-connection message limit: a token bucket, and patience for a client that keeps
    sending while refused. `check()` answers "ok", "refuse" (tell the client, store nothing) or
    "close" (it has been refused `burst` times within the time a full bucket takes to refill).
    """

    def __init__(self, rate: float, burst: int) -> None:
        self._bucket = TokenBucket(rate, burst)
        self._refusals = FailureWindow(limit=burst, window=burst / rate)

    def check(self) -> str:
        if self._bucket.take():
            return "ok"
        now = trio.current_time()
        self._refusals.fail("", now)
        return "close" if self._refusals.retry_after("", now) > 0 else "refuse"
