"""Settings of one echat server, declared once: name, default and help text.

`Config` is read by `create_app` and by the server runner. The command line (`echat serve
--max-body ...`), the environment (`ECHAT_MAX_BODY=...`) and the TOML file of `--config`
(`max_body = 65536`) are all generated from the fields below, so a setting cannot exist in one
and be missing from another. Precedence: a flag beats an environment variable, which beats the
file, which beats the default.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from echat.proxies import parse_networks

ENV_PREFIX = "ECHAT_"


def setting(default: Any, help: str, check: Callable[[Any], object] | None = None) -> Any:
    """A field users may set. `check(value)` raises ValueError for a value of the right type
    that is still wrong."""
    return field(default=default, metadata={"help": help, "check": check})


def tcp_port(port: int) -> None:
    if port > 65535:
        raise ValueError(f"{port} is not a TCP port (0 to 65535)")


def one_of(*choices: str) -> Callable[[str], None]:
    def check(value: str) -> None:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
    return check


@dataclass(frozen=True)
class Config:
    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(8081, "TCP port to listen on (0 picks a free one)", tcp_port)
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
    log_format: str = setting(
        "text", "access and error log lines as 'text' or 'json' (one object a line)",
        one_of("text", "json"),
    )
    trusted_proxies: str = setting(
        "", "addresses or networks of reverse proxies whose X-Forwarded-For names the client "
        "(comma separated, e.g. '127.0.0.1, 10.0.0.0/8'); none by default",
        parse_networks,
    )
    # Cheap argon2 parameters for test suites; set only by echat.testing, never from the
    # command line or the environment, so a real server always hashes at full strength.
    fast_hashing: bool = field(default=False, metadata={"cli": False})
    # How often open sockets are matched against the sessions in the database, to close those
    # of sessions the operator ended from another process (`echat users disable`). Tests
    # shorten it.
    session_check_interval: float = field(default=10.0, metadata={"cli": False})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *,
                 file_values: Mapping[str, Any] | None = None, **overrides: Any) -> Config:
        """Defaults, then `file_values` (see `read_file`), then `ECHAT_*` variables, then
        `overrides` (the command line's values)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = dict(file_values or {})
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


class ConfigFileError(ValueError):
    """A config file that cannot be used; the message is one line naming the file."""


def read_file(path: str) -> dict[str, Any]:
    """The settings a TOML file sets, by field name (`port = 9000`, `log_format = "json"`).

    Raises ConfigFileError for an unreadable file, bad TOML, an unknown key or a wrong value.
    """
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise ConfigFileError(f"{path}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigFileError(f"{path}: not valid TOML: {error}") from None
    fields = {f.name: f for f in settings()}
    values = {}
    for name, value in document.items():
        f = fields.get(name)
        if f is None:
            raise ConfigFileError(f"{path}: unknown setting {name!r}")
        try:
            values[name] = typed_value(f, value)
        except ValueError as error:
            raise ConfigFileError(f"{path}: {name}: {error}") from None
    return values


def typed_value(f: dataclasses.Field, value: Any) -> Any:
    """A TOML value checked as the field's type (an integer is a fine float; a bool is no
    number)."""
    kind = type(f.default)
    if isinstance(value, bool) != (kind is bool) or not isinstance(
        value, (int, float) if kind is float else kind
    ):
        names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
        raise ValueError(f"{value!r} is not {names[kind]}")
    value = kind(value)
    check_value(f, value)
    return value


def check_value(f: dataclasses.Field, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise ValueError("must not be negative")
    check = f.metadata.get("check")
    if check is not None:
        check(value)


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
    try:
        check_value(f, value)
    except ValueError as error:
        raise ValueError(f"{env_name(f)}/{flag_name(f)}: {error}") from None
    return value
