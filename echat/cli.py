"""The `echat` command line (also `python -m echat`).

    echat serve [--config FILE] [--host H] [--port P] [--db PATH] [...every setting...]
    echat backup PATH          a consistent copy of the database, also while it is served
    echat check                the database's integrity check
    echat users list | passwd LOGIN | disable LOGIN | enable LOGIN
    echat --version

Every command takes `--config FILE` and `--db PATH`; a setting comes from its flag, else its
ECHAT_* variable, else the config file, else its default.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import Field
from functools import partial
from typing import Any

import trio

from echat import __version__, admin, logs
from echat.config import (
    Config,
    ConfigFileError,
    env_name,
    flag_name,
    parse_value,
    read_file,
    settings,
)
from echat.server import serve
from echat.store import UnusableDatabase

PRECEDENCE = ("Each setting comes from its flag, else its ECHAT_* variable, else the --config "
              "file, else its default.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="echat", description="A small, fast chat server.")
    parser.add_argument("--version", action="version", version=f"echat {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser(
        "serve", help="run the server", description=f"Run the server. {PRECEDENCE}")
    add_settings(serve_cmd, settings())
    db_only = [f for f in settings() if f.name == "db"]
    backup_cmd = commands.add_parser(
        "backup", help="copy the database, also while it is served",
        description="Write a consistent copy of the database to PATH (a new file) with "
        f"SQLite's online backup; the server may keep running. {PRECEDENCE}")
    backup_cmd.add_argument("path", metavar="PATH", help="the copy to write")
    add_settings(backup_cmd, db_only)
    check_cmd = commands.add_parser(
        "check", help="check the database's integrity",
        description=f"Run SQLite's integrity and foreign key checks; exit 1 on a problem. "
        f"{PRECEDENCE}")
    add_settings(check_cmd, db_only)
    users_cmd = commands.add_parser(
        "users", help="list users, set a password, disable or enable a user",
        description="passwd reads the new password twice at a terminal, else one line from "
        "stdin; it and disable end the user's sessions (a running server closes their "
        f"sockets within seconds). A disabled user cannot log in. {PRECEDENCE}")
    actions = users_cmd.add_subparsers(dest="action", required=True)
    add_settings(actions.add_parser("list", help="every user, with state and sessions"),
                 db_only)
    for action, help in [("passwd", "set a new password"), ("disable", "refuse their logins"),
                         ("enable", "allow their logins again")]:
        action_cmd = actions.add_parser(action, help=help)
        action_cmd.add_argument("login", metavar="LOGIN")
        add_settings(action_cmd, db_only)
    return parser


def add_settings(command: argparse.ArgumentParser, fields: list[Field]) -> None:
    """`--config` and a flag for each of `fields`; each absent one is None."""
    command.add_argument("--config", metavar="FILE", default=None,
                         help="TOML file of settings, by field name (port = 9000)")
    for f in fields:
        help = f"{f.metadata['help']} [env {env_name(f)}; default {f.default!r}]"
        if isinstance(f.default, bool):
            # A switch takes no value; default None lets the environment decide when absent.
            command.add_argument(flag_name(f), dest=f.name, action="store_const", const=True,
                                 default=None, help=help)
            continue
        command.add_argument(
            flag_name(f),
            dest=f.name,
            metavar=f.name.upper(),
            type=partial(_parse_argument, f),
            default=None,
            help=help,
        )


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
        file_values = read_file(args.config) if args.config is not None else {}
        config = Config.from_env(file_values=file_values, **{
            f.name: getattr(args, f.name) for f in settings() if hasattr(args, f.name)})
    except ConfigFileError as error:
        print(f"echat: {error}", file=sys.stderr)
        return 2
    except ValueError as error:
        parser.error(str(error))
    if args.command == "backup":
        return admin.backup(config.db, args.path)
    if args.command == "check":
        return admin.check(config.db)
    if args.command == "users":
        return admin.users(config.db, args.action, getattr(args, "login", None))
    logs.configure(config.log_format)
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
