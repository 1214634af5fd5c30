"""Log lines: one access line per request, and the format of every line (`--log-format`).

An access line holds the client address, method, path, status and duration. The path is the
URL path only: the query string is never logged, because a WebSocket handshake carries the
session id there (`?session_id=`), and bodies (passwords) are never looked at. A WebSocket's
line is written when it closes, with method `WS`, status 101 once accepted (or the status of
the refusal), and how long it was open.

`text` lines are for people (`2024-05-01 10:00:00,123 INFO echat.access: 127.0.0.1 "GET
/v1/rooms" 200 3.1ms`); `json` lines are one object each for log collectors, the access fields
as keys of their own. Used from the trio thread (access lines) and any thread (logging).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import datetime, timezone
from typing import Any

from hypercorn.typing import ASGISendCallable, ASGISendEvent

access_log = logging.getLogger("echat.access")

# Keys of an access line's `extra`, in the order a JSON line lists them.
ACCESS_FIELDS = ("client", "method", "path", "status", "ms")


def configure(log_format: str) -> None:
    """Send every log line to stderr, as text or JSON."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({key: getattr(record, key) for key in ACCESS_FIELDS if hasattr(record, key)})
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class AccessRecorder:
    """Watches one request's ASGI messages for its status; `write()` logs the line."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.websocket = scope["type"] == "websocket"
        self.method = "WS" if self.websocket else scope.get("method", "?")
        self.path = printable(scope.get("path", ""))
        self.client = (scope.get("client") or ("-",))[0]
        # A request that ends before answering (the client went away) shows 0.
        self.status = 0
        self.started = time.perf_counter()

    def watch(self, send: ASGISendCallable) -> ASGISendCallable:
        async def send_watched(message: ASGISendEvent) -> None:
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                self.status = message["status"]  # type: ignore[typeddict-item]
            elif kind == "websocket.accept":
                self.status = 101
            elif kind == "websocket.close" and self.status == 0:
                self.status = 403  # closed before accepting: ASGI's refusal
            await send(message)
        return send_watched

    def write(self) -> None:
        ms = round((time.perf_counter() - self.started) * 1000, 1)
        access_log.info(
            '%s "%s %s" %s %sms', self.client, self.method, self.path, self.status, ms,
            extra={"client": self.client, "method": self.method, "path": self.path,
                   "status": self.status, "ms": ms},
        )


def printable(path: str) -> str:
    """The path with control characters escaped, so a crafted URL (`%0a`) cannot forge a
    line of its own."""
    if path.isprintable():
        return path
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                   for ch in path)
