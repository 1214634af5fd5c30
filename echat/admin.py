"""The operator's commands on the box: `echat backup`, `echat check`, `echat users ...`.

Each works on the database file directly, also while a server is using it (SQLite's WAL lets a
reader and this one writer share it with the server's; a write waits for the server's
transaction). A server notices a session ended here within `session_check_interval` seconds and
closes its sockets. Each command returns its exit code: 0 done, 1 it could not be done (the
reason on stderr, one line).
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TextIO

import trio

from echat import accounts
from echat.errors import EchatError
from echat.models import Account
from echat.passwords import Passwords
from echat.store import UnusableDatabase, backup_database, check_database, open_store


class Refused(Exception):
    """The command cannot do what was asked; the message says why."""


def run(command: Callable[[], int], db: str) -> int:
    try:
        return command()
    except Refused as error:
        print(f"echat: {error}", file=sys.stderr)
    except UnusableDatabase as error:
        print(f"echat: cannot use the database {db}: {error}", file=sys.stderr)
    return 1


def backup(db: str, target: str) -> int:
    def copy() -> int:
        if Path(target).exists():
            raise Refused(f"{target} exists already; name a new file")
        backup_database(db, target)
        print(f"echat: copied {db} to {target} ({Path(target).stat().st_size} bytes)")
        return 0
    return run(copy, db)


def check(db: str) -> int:
    def examine() -> int:
        problems = check_database(db)
        for problem in problems:
            print(f"echat: {db}: {problem}")
        if not problems:
            print(f"echat: {db}: ok")
        return 1 if problems else 0
    return run(examine, db)


def users(db: str, action: str, login: str | None, password_input: TextIO | None = None) -> int:
    def act() -> int:
        if not Path(db).is_file():
            raise UnusableDatabase("no such file")
        if action == "list":
            trio.run(list_users, db)
            return 0
        assert login is not None
        password = None
        if action == "passwd":
            password = read_new_password(password_input or sys.stdin)
        trio.run(partial(change_user, db, action, login, password))
        return 0
    return run(act, db)


async def list_users(db: str) -> None:
    async with open_store(db) as store:
        found = await store.accounts()
    print(f"{'id':>6}  {'created':19}  {'disabled':19}  {'sessions':>8}  login")
    for account in found:
        print(account_line(account))


def account_line(account: Account) -> str:
    disabled = account.disabled_at or "-"
    return (f"{account.id:>6}  {account.created_at:19}  {disabled:19}  {account.sessions:>8}  "
            f"{account.login}")


async def change_user(db: str, action: str, login: str, password: str | None) -> None:
    async with open_store(db) as store:
        found = await store.credentials(accounts.login_key(login.strip()))
        if found is None:
            raise Refused(f"no user {login!r}")
        user = found[0]
        if action == "passwd":
            assert password is not None
            hashed = await Passwords(fast=False).hash(password)
            ended = await store.set_password_hash(user.id, hashed, end_sessions=True)
            print(f"echat: new password for {user.login}; {ended} session(s) ended")
        else:
            ended = await store.set_disabled(user.id, action == "disable")
            print(f"echat: {user.login} is {action}d; {ended} session(s) ended")


def read_new_password(source: TextIO) -> str:
    """Asked twice at a terminal; otherwise the first line of `source` (for scripts)."""
    if source.isatty():
        password = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != password:
            raise Refused("the passwords differ; nothing changed")
    else:
        password = source.readline().rstrip("\r\n")
    try:
        accounts.check_password(password)
    except EchatError:
        raise Refused(f"a password is 1 to {accounts.MAX_PASSWORD} characters") from None
    return password
