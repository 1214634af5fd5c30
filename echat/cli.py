"""The `echat` command line (also `python -m echat`).

    echat serve [--host H] [--port P] [--db PATH] [...every setting of echat.config...]
    echat --version
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import Field
from functools import partial
from typing import Any

import trio

from echat import __version__
from echat.config import Config, env_name, flag_name, parse_value, settings
from echat.server import serve
from echat.store import UnusableDatabase


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="echat", description="A small, fast chat server.")
    parser.add_argument("--version", action="version", version=f"echat {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser(
        "serve",
        help="run the server",
        description="Run the server. Each setting may also come from its ECHAT_* variable; "
        "a flag beats the variable, which beats the default.",
    )
    for f in settings():
        help = f"{f.metadata['help']} [env {env_name(f)}; default {f.default!r}]"
        if isinstance(f.default, bool):
            # A switch takes no value; default None lets the environment decide when absent.
            serve_cmd.add_argument(flag_name(f), dest=f.name, action="store_const", const=True,
                                   default=None, help=help)
            continue
        serve_cmd.add_argument(
            flag_name(f),
            dest=f.name,
            metavar=f.name.upper(),
            type=partial(_parse_argument, f),
            default=None,
            help=help,
        )
    return parser


def _parse_argument(f: Field, raw: str) -> Any:
    # argparse shows the message of an ArgumentTypeError only; a ValueError it replaces with
    # the repr of the converter.
    try:
        return parse_value(f, raw)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = Config.from_env(**{f.name: getattr(args, f.name) for f in settings()})
    except ValueError as error:
        parser.error(str(error))
    if not 0 <= config.port <= 65535:
        parser.error(f"ECHAT_PORT/--port: {config.port} is not a TCP port (0 to 65535)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        trio.run(partial(serve, config))
    except OSError as error:
        print(f"echat: cannot serve on {config.host}:{config.port}: {error.strerror or error}",
              file=sys.stderr)
        return 1
    except UnusableDatabase as error:
        print(f"echat: cannot use the database {config.db}: {error}", file=sys.stderr)
        return 1
    return 0
