"""JSON in and out, the one way the API reads and writes bodies and frames."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from echat.errors import InvalidJson

CONTENT_TYPE = "application/json; charset=utf-8"

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(value: Any) -> str:
    """Compact JSON with non-ASCII kept as is (`"Вася"`, not `"\\u0412..."`)."""
    return _encoder.encode(value)


def array(encoded: Iterable[str]) -> str:
    """A JSON array of values already encoded with `dumps`."""
    return "[" + ",".join(encoded) + "]"


def loads(data: str | bytes) -> Any:
    """Parse a request body or a frame; anything that is not JSON text is `invalid_json`.

    A lone surrogate (`"\\ud800"`) parses in Python but cannot be stored or sent as UTF-8,
    so it is refused here with the rest of the malformed input. Once the text itself is known
    to be valid UTF-8, only a `\\u` escape can make one, so only text with one is checked
    again after parsing: that check encodes the whole value, which would otherwise cost every
    frame and body.
    """
    try:
        if isinstance(data, bytes):
            data = data.decode("utf-8")
        else:
            data.encode("utf-8")
        value = json.loads(data)
        if "\\u" in data:
            dumps(value).encode("utf-8")
    except (UnicodeError, ValueError, RecursionError):
        raise InvalidJson() from None
    return value
