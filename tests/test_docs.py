"""The README is the manual: every setting and every route must be in it."""

from __future__ import annotations

import re
from pathlib import Path

from echat.app import create_app
from echat.config import Config, env_name, flag_name, settings
from helpers import route_table

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def normalize(path: str) -> str:
    """`/v1/rooms/<room_id>` and `/v1/rooms/{id}` both become `/v1/rooms/{}`."""
    return re.sub(r"<[^>]*>|\{[^}]*\}", "{}", path).rstrip("/") or "/"


def documented_routes() -> set[str]:
    found = re.findall(r"`(GET|POST|PUT|DELETE|PATCH|WS) (/[^` ?]*)", README)
    return {f"{method} {normalize(path)}" for method, path in found}


def test_every_setting_is_in_the_settings_table():
    for f in settings():
        assert f"`{flag_name(f)}` | `{env_name(f)}`" in README, f.name


def test_every_route_is_in_the_readme():
    app = create_app(Config(metrics=True))
    documented = documented_routes()
    missing = sorted(f"{method} {path}" for method, path in route_table(app, websocket=True)
                     if f"{method} {normalize(path)}" not in documented)
    assert missing == []
