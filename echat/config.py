"""Settings of one echat server, declared once: name, default and help text.

`Config` is read by `create_app` and by the server runner. The command line (`echat serve
--max-body ...`) and the environment (`ECHAT_MAX_BODY=...`) are both generated from the fields
below, so a setting cannot exist in one and be missing from the other. Precedence: a flag beats
an environment variable, which beats the default.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ENV_PREFIX = "ECHAT_"


def setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Config:
    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(8081, "TCP port to listen on (0 picks a free one)")
    db: str = setting("echat.db", "SQLite database file (':memory:' for a throwaway database)")
    max_body: int = setting(64 * 1024, "largest request body in bytes; larger ones get 413")
    max_text: int = setting(4000, "longest message text in characters")
    outbox_frames: int = setting(
        1000, "frames queued for one slow WebSocket reader before it is closed with 1013"
    )
    ws_rate: float = setting(30.0, "messages a second one WebSocket may send (0 turns the limit off)")
    ws_burst: int = setting(150, "messages one WebSocket may send in a burst above --ws-rate")
    login_failures: int = setting(
        10, "failed logins a minute per login; a client address may fail three times as often"
    )
    ping_interval: float = setting(25.0, "seconds between pings to an idle WebSocket")
    peer_timeout: float = setting(
        75.0, "seconds a connection may send nothing (not even a pong) before it is dropped"
    )
    shutdown_grace: float = setting(
        5.0, "seconds open connections get to finish after SIGINT/SIGTERM"
    )
    metrics: bool = setting(False, "serve Prometheus metrics at GET /metrics")
    # Cheap argon2 parameters for test suites; set only by echat.testing, never from the
    # command line or the environment, so a real server always hashes at full strength.
    fast_hashing: bool = field(default=False, metadata={"cli": False})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Defaults, then `ECHAT_*` variables, then `overrides` (the command line's values)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in settings():
            raw = environ.get(env_name(f))
            if raw is not None:
                values[f.name] = parse_value(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def settings() -> list[dataclasses.Field]:
    """The fields a user may set, in declaration order."""
    return [f for f in dataclasses.fields(Config) if f.metadata.get("cli", True)]


def env_name(f: dataclasses.Field) -> str:
    return ENV_PREFIX + f.name.upper()


def flag_name(f: dataclasses.Field) -> str:
    return "--" + f.name.replace("_", "-")


def parse_value(f: dataclasses.Field, raw: str) -> Any:
    """Convert text from a flag or a variable to the field's type; ValueError names the setting."""
    kind = type(f.default)
    if kind is bool:
        # bool("false") is True; a switch is spelled the way shells and .env files spell it.
        switch = raw.strip().lower()
        if switch in ("1", "true", "yes", "on"):
            return True
        if switch in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{env_name(f)}/{flag_name(f)}: {raw!r} is not true or false")
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{env_name(f)}/{flag_name(f)}: {raw!r} is not a valid {kind.__name__}") from None
    if kind is float and not math.isfinite(value):
        raise ValueError(f"{env_name(f)}/{flag_name(f)}: {raw!r} is not a finite number")
    if kind in (int, float) and value < 0:
        raise ValueError(f"{env_name(f)}/{flag_name(f)}: must not be negative")
    return value
