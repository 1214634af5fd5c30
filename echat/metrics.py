"""What an operator sees of a running server: the figures of GET /v1/status and GET /metrics.

`Metrics` holds plain counters updated from the trio thread only (the commit listener, socket
writers, request hooks), so they need no locks. `install(app)` is called only for a server
started with `--metrics`: it times every HTTP request and serves the Prometheus text format
(version 0.0.4) at `/metrics`. The page is written here rather than with prometheus-client: it
is a few lines of text, and the server keeps one dependency fewer.
"""

from __future__ import annotations

import math
import os
import resource
import sys
import time
from bisect import bisect_left
from typing import TYPE_CHECKING

from quart import Response, g, request

if TYPE_CHECKING:
    from echat.app import EchatApp

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Prometheus' default latency buckets (seconds): they span a cached read to a slow argon2 login.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Requests that matched no route are counted under one label, so that scanners probing random
# paths cannot grow the page (and the server's memory) without bound.
UNMATCHED_ROUTE = "unmatched"
# Likewise for methods: any token is a valid HTTP method.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _Histogram:
    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(DURATION_BUCKETS) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.sum += seconds


class Metrics:
    def __init__(self) -> None:
        self._started = time.monotonic()
        self.messages_stored = 0
        self.frames_delivered = 0
        self._requests: dict[tuple[str, str, str], int] = {}
        self._durations: dict[tuple[str, str], _Histogram] = {}

    def uptime(self) -> float:
        """Seconds since the app was created."""
        return time.monotonic() - self._started

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, str(status))
        self._requests[key] = self._requests.get(key, 0) + 1
        histogram = self._durations.get((route, method))
        if histogram is None:
            histogram = self._durations[(route, method)] = _Histogram()
        histogram.observe(seconds)

    def render(self, *, sockets: int, slow_closed: int, feeds_waiting: int,
               rows: dict[str, int]) -> str:
        """The Prometheus text page, given the figures kept elsewhere (hub, database)."""
        lines: list[str] = []

        def family(name: str, kind: str, help: str) -> None:
            lines.append(f"# HELP {name} {help}")
            lines.append(f"# TYPE {name} {kind}")

        family("echat_open_sockets", "gauge", "WebSocket connections open now.")
        lines.append(f"echat_open_sockets {sockets}")
        family("echat_feed_requests_waiting", "gauge",
               "GET /v1/feed requests held open now, waiting for a message.")
        lines.append(f"echat_feed_requests_waiting {feeds_waiting}")
        family("echat_messages_stored_total", "counter",
               "Messages stored since the server started.")
        lines.append(f"echat_messages_stored_total {self.messages_stored}")
        family("echat_frames_delivered_total", "counter",
               "Frames written to WebSockets since the server started.")
        lines.append(f"echat_frames_delivered_total {self.frames_delivered}")
        family("echat_slow_clients_closed_total", "counter",
               "WebSockets closed with 1013 because their outbox overflowed.")
        lines.append(f"echat_slow_clients_closed_total {slow_closed}")
        family("echat_rows", "gauge", "Rows in the database, by table.")
        for table, count in sorted(rows.items()):
            lines.append(f'echat_rows{{table="{_label(table)}"}} {count}')
        family("echat_uptime_seconds", "gauge", "Seconds since the server started.")
        lines.append(f"echat_uptime_seconds {self.uptime():.3f}")
        family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.")
        lines.append(f"process_resident_memory_bytes {rss_bytes()}")

        family("echat_http_requests_total", "counter", "HTTP requests answered, by route.")
        for (route, method, status), count in sorted(self._requests.items()):
            labels = f'route="{_label(route)}",method="{method}",status="{status}"'
            lines.append(f"echat_http_requests_total{{{labels}}} {count}")
        family("echat_http_request_duration_seconds", "histogram",
               "Time to answer an HTTP request, by route.")
        for (route, method), histogram in sorted(self._durations.items()):
            labels = f'route="{_label(route)}",method="{method}"'
            cumulative = 0
            for bound, count in zip((*DURATION_BUCKETS, math.inf), histogram.counts):
                cumulative += count
                le = "+Inf" if bound == math.inf else repr(bound)
                lines.append(
                    f'echat_http_request_duration_seconds_bucket{{{labels},le="{le}"}} {cumulative}'
                )
            lines.append(f"echat_http_request_duration_seconds_sum{{{labels}}} {histogram.sum!r}")
            lines.append(f"echat_http_request_duration_seconds_count{{{labels}}} {cumulative}")
        return "\n".join(lines) + "\n"


def rss_bytes() -> int:
    """Resident memory of this process now (Linux), or its peak where /proc is missing."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def install(app: EchatApp) -> None:
    """Time every HTTP request of `app` and serve the metrics page at GET /metrics."""

    @app.before_request
    async def start_timer() -> None:
        g.echat_request_started = time.perf_counter()

    @app.after_request
    async def record_request(response: Response) -> Response:
        started = g.get("echat_request_started")
        if started is not None:
            rule = request.url_rule
            app.metrics.observe_request(
                rule.rule if rule is not None else UNMATCHED_ROUTE,
                request.method if request.method in METHODS else "other",
                response.status_code, time.perf_counter() - started,
            )
        return response

    @app.get("/metrics")
    async def metrics_page() -> Response:
        stats = app.hub.statistics()
        page = app.metrics.render(
            sockets=stats.connections, slow_closed=stats.slow_closed,
            feeds_waiting=stats.feeds_waiting,
            rows=await app.store.row_counts(),
        )
        return Response(page, content_type=CONTENT_TYPE)


def _label(value: str) -> str:
    """A label value escaped as the text format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
