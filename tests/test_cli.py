"""The `echat` command as a user runs it: child processes started from another directory.

A server started with `--port 0` reports its address in the log line "Running on http://...";
tests wait for that line, never for time to pass. Usage errors are checked by calling
`echat.cli.main` in the test process (argparse exits before anything starts), and once as a
process for the exit code.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import trio

import echat
from echat import cli
from echat.config import flag_name, settings
from helpers import auth, register

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).with_name("echat")  # the console script next to the interpreter
READY = re.compile(r"Running on (http://\S+)")
STARTUP_TIMEOUT = 30.0  # two shared cores: Python and its imports can be slow to start


@dataclass
class Running:
    process: trio.Process
    url: str
    stderr: bytearray = field(default_factory=bytearray)

    @property
    def log(self) -> str:
        return self.stderr.decode("utf-8", "replace")


def environment(**variables: str) -> dict[str, str]:
    """This process's environment without any ECHAT_* setting, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECHAT_")}
    env.update(variables)
    return env


@asynccontextmanager
async def started(command: list[str], cwd: Path, env: dict[str, str] | None = None
                  ) -> AsyncIterator[Running]:
    """Run `command` until the block ends; yields once it logs the address it serves on."""
    process = await trio.lowlevel.open_process(
        command, cwd=cwd, env=env or environment(), stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ready = trio.Event()
    running: list[Running] = []
    stderr = bytearray()

    async def read_log() -> None:
        assert process.stderr is not None
        async for chunk in process.stderr:
            stderr.extend(chunk)
            found = READY.search(stderr.decode("utf-8", "replace"))
            if found and not ready.is_set():
                running.append(Running(process, found.group(1), stderr))
                ready.set()
        ready.set()  # the process ended before it served: reported below

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_log)
            with trio.fail_after(STARTUP_TIMEOUT):
                await ready.wait()
            assert running, f"{command} did not start:\n{stderr.decode('utf-8', 'replace')}"
            yield running[0]
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()


async def stop(running: Running, signum: int = signal.SIGTERM) -> int:
    """Send `signum` and wait (generously) for the exit code."""
    running.process.send_signal(signum)
    with trio.fail_after(20):
        return await running.process.wait()


async def exercise(url: str) -> None:
    """A user's first steps, with non-ASCII on the way."""
    async with httpx.AsyncClient(base_url=url) as http:
        session = await register(http, "Вася 🚀")
        reply = await http.get("/v1/info", headers=auth(session))
        assert reply.json()["login"] == "Вася 🚀"


@contextmanager
def taken_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port that is in use (listening) for the duration of the block."""
    with socket.socket() as listener:
        listener.bind((host, 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A working directory that is not the repository."""
    directory = tmp_path / "elsewhere"
    directory.mkdir()
    return directory


# -- version and usage -----------------------------------------------------------------------


@pytest.mark.parametrize("command", [[str(SCRIPT)], [sys.executable, "-m", "echat"]])
def test_version(command, elsewhere):
    done = subprocess.run([*command, "--version"], cwd=elsewhere, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout.strip() == f"echat {echat.__version__}"


@pytest.mark.parametrize("argv, variables, message", [
    (["serve", "--port", "abc"], {}, "ECHAT_PORT/--port: 'abc' is not a valid int"),
    (["serve", "--port", "-1"], {}, "--port: must not be negative"),
    (["serve", "--port", "70000"], {}, "70000 is not a TCP port"),
    (["serve", "--max-body", "1.5"], {}, "'1.5' is not a valid int"),
    (["serve", "--ws-rate", "fast"], {}, "'fast' is not a valid float"),
    (["serve", "--ws-rate", "nan"], {}, "'nan' is not a finite number"),
    (["serve", "--shutdown-grace", "inf"], {}, "'inf' is not a finite number"),
    (["serve"], {"ECHAT_PORT": "abc"}, "ECHAT_PORT/--port: 'abc' is not a valid int"),
    (["serve"], {"ECHAT_PORT": "65536"}, "65536 is not a TCP port"),
    (["serve"], {"ECHAT_MAX_BODY": "big"}, "ECHAT_MAX_BODY/--max-body: 'big'"),
    (["serve", "--no-such-flag", "1"], {}, "unrecognized arguments: --no-such-flag"),
    ([], {}, "required: command"),
])
def test_a_bad_value_is_a_usage_error(argv, variables, message, monkeypatch, capsys):
    for name in [name for name in os.environ if name.startswith("ECHAT_")]:
        monkeypatch.delenv(name)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit:
        cli.main(argv)
    assert exit.value.code == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("usage: echat")
    assert message in stderr
    assert "functools.partial" not in stderr and "Traceback" not in stderr


def test_serve_help_lists_every_setting_with_its_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines anywhere
    assert "flag, else its ECHAT_* variable, else the --config file, else its default" in text
    for f in settings():
        assert re.search(rf"{flag_name(f)} .*?default {re.escape(repr(f.default))}\]", text), f.name


@pytest.mark.parametrize("content, message", [
    ("prot = 9000\n", "unknown setting 'prot'"),
    ("port = \"9000\"\n", "port: '9000' is not an integer"),
    ("port = 70000\n", "port: 70000 is not a TCP port"),
    ("metrics = 1\n", "metrics: 1 is not true or false"),
    ("ws_rate = true\n", "ws_rate: True is not a number"),
    ("ws_rate = nan\n", "ws_rate: nan is not a finite number"),
    ("max_body = -1\n", "max_body: must not be negative"),
    ("log_format = \"xml\"\n", "log_format: 'xml' is not one of text, json"),
    ("trusted_proxies = \"localhost\"\n", "'localhost' is not an IP address or network"),
    ("port = \n", "not valid TOML"),
    (None, "No such file or directory"),
])
def test_a_bad_config_file_is_one_clear_line(content, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ECHAT_PORT", raising=False)
    path = tmp_path / "echat.toml"
    if content is not None:
        path.write_text(content)
    assert cli.main(["serve", "--config", str(path)]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"echat: {path}: ") and message in line


async def test_a_flag_beats_a_variable_beats_the_config_file(tmp_path, elsewhere):
    config = tmp_path / "echat.toml"
    with taken_port("127.0.0.2") as port:
        config.write_text(f'host = "127.0.0.2"\nport = {port}\ndb = "{tmp_path / "file.db"}"\n'
                          'ws_rate = 1.5\nmetrics = true\n')
        env = environment(ECHAT_PORT="0", ECHAT_DB=str(tmp_path / "env.db"))
        serve = [str(SCRIPT), "serve", "--config", str(config), "--db", str(tmp_path / "flag.db")]
        async with started(serve, cwd=elsewhere, env=env) as running, \
                httpx.AsyncClient(base_url=running.url) as http:
            assert running.url.startswith("http://127.0.0.2:")  # the file's host
            assert not running.url.endswith(f":{port}")  # the variable beat the file's port
            assert (await http.get("/metrics")).status_code == 200  # the file's switch
            await exercise(running.url)
    assert (tmp_path / "flag.db").is_file()  # the flag beat the variable and the file
    assert not (tmp_path / "env.db").exists() and not (tmp_path / "file.db").exists()


async def test_json_logs_are_one_object_a_line_without_secrets(tmp_path, elsewhere):
    serve = [str(SCRIPT), "serve", "--port", "0", "--db", ":memory:", "--log-format", "json"]
    async with started(serve, cwd=elsewhere) as running, \
            httpx.AsyncClient(base_url=running.url) as http:
        session = await register(http, "Вася", "hunter2")
        await http.get("/v1/rooms?limit=1", headers=auth(session))
        assert await stop(running) == 0
    lines = [json.loads(line) for line in running.log.splitlines()]
    access = [line for line in lines if line["logger"] == "echat.access"]
    assert [(line["method"], line["path"], line["status"]) for line in access] == [
        ("POST", "/v1/register", 200), ("GET", "/v1/rooms", 200)]
    assert all(line["client"] == "127.0.0.1" and line["ms"] >= 0 for line in access)
    assert session not in running.log and "hunter2" not in running.log


def test_a_usage_error_exits_with_2(elsewhere):
    done = subprocess.run([str(SCRIPT), "serve", "--port", "http"], cwd=elsewhere,
                          env=environment(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--port: 'http' is not a valid int" in done.stderr


@pytest.mark.parametrize("content, message", [
    (None, "unable to open database file"),
    (b"plain text, not SQLite " * 10, "file is not a database"),
])
def test_an_unusable_database_is_a_clear_error(content, message, tmp_path, monkeypatch, capsys):
    db = tmp_path / "missing" / "echat.db" if content is None else tmp_path / "notes.txt"
    if content is not None:
        db.write_bytes(content)
    monkeypatch.delenv("ECHAT_PORT", raising=False)
    # `serve` points the root logger at this test's captured stderr: put it back afterwards,
    # or the servers of later tests log into a closed stream.
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    assert cli.main(["serve", "--port", "0", "--db", str(db)]) == 1
    stderr = capsys.readouterr().err
    assert f"echat: cannot use the database {db}: {message}" in stderr
    assert "Traceback" not in stderr


# -- serving -------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[str(SCRIPT)], [sys.executable, "-m", "echat"]],
                         ids=["echat", "python -m echat"])
async def test_serve_from_another_directory_with_a_database_file(command, tmp_path, elsewhere):
    db = tmp_path / "data" / "chat.db"
    db.parent.mkdir()
    serve = [*command, "serve", "--host", "127.0.0.1", "--port", "0", "--db", str(db)]
    async with started(serve, cwd=elsewhere) as running:
        assert running.url.startswith("http://127.0.0.1:")
        await exercise(running.url)
        assert await stop(running) == 0
    assert db.is_file()
    assert list(elsewhere.iterdir()) == []
    assert "Traceback" not in running.log
    # The data outlives the process.
    async with started(serve, cwd=elsewhere) as again, \
            httpx.AsyncClient(base_url=again.url) as http:
        reply = await http.post("/v1/login", json={"login": "ВАСЯ 🚀", "password": "secret"})
        assert reply.status_code == 200, reply.text


async def test_serve_a_memory_database_and_stop_on_sigint(elsewhere):
    serve = [str(SCRIPT), "serve", "--port", "0", "--db", ":memory:"]
    async with started(serve, cwd=elsewhere) as running:
        await exercise(running.url)
        assert await stop(running, signal.SIGINT) == 0
    assert list(elsewhere.iterdir()) == []


async def test_sigterm_stops_it_promptly_with_a_client_connected(tmp_path, elsewhere):
    serve = [str(SCRIPT), "serve", "--port", "0", "--db", str(tmp_path / "echat.db")]
    async with started(serve, cwd=elsewhere) as running, \
            httpx.AsyncClient(base_url=running.url) as http:
        await register(http, "idle")  # leaves a keep-alive connection open
        assert await stop(running) == 0
    assert "Traceback" not in running.log


async def test_environment_variables_do_what_the_flags_do(tmp_path, elsewhere):
    db = tmp_path / "from-env.db"
    env = environment(ECHAT_HOST="127.0.0.2", ECHAT_PORT="0", ECHAT_DB=str(db))
    async with started([str(SCRIPT), "serve"], cwd=elsewhere, env=env) as running:
        assert running.url.startswith("http://127.0.0.2:")
        await exercise(running.url)
    assert db.is_file()


async def test_a_flag_beats_its_environment_variable(tmp_path, elsewhere):
    with taken_port("127.0.0.2") as port:
        env = environment(ECHAT_HOST="127.0.0.2", ECHAT_PORT=str(port),
                          ECHAT_DB=str(tmp_path / "env.db"))
        serve = [str(SCRIPT), "serve", "--host", "127.0.0.1", "--port", "0",
                 "--db", str(tmp_path / "flag.db")]
        async with started(serve, cwd=elsewhere, env=env) as running:
            assert running.url.startswith("http://127.0.0.1:")
            assert not running.url.endswith(f":{port}")
            await exercise(running.url)
    assert (tmp_path / "flag.db").is_file()
    assert not (tmp_path / "env.db").exists()


def test_a_port_in_use_is_a_clear_error(elsewhere):
    with taken_port() as port:
        done = subprocess.run(
            [str(SCRIPT), "serve", "--port", str(port), "--db", ":memory:"],
            cwd=elsewhere, env=environment(), capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"echat: cannot serve on 127.0.0.1:{port}" in done.stderr
    assert "in use" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(elsewhere.iterdir()) == []


def test_a_host_that_is_not_an_address_is_a_clear_error(elsewhere):
    done = subprocess.run(
        [str(SCRIPT), "serve", "--host", "999.1.1.1", "--port", "0", "--db", ":memory:"],
        cwd=elsewhere, env=environment(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "echat: cannot serve on 999.1.1.1:0" in done.stderr
    assert "Traceback" not in done.stderr


# -- installed from a wheel --------------------------------------------------------------------


async def test_non_editable_install_from_a_wheel_serves_from_another_directory(tmp_path,
                                                                             elsewhere):
    """`pip install` of the built wheel (not editable) into a fresh venv.

    Offline and quick: the wheel is built from this checkout, installed with --no-deps, and
    the dependencies are borrowed from the test environment through a .pth file. A .pth line
    that names a directory adds only that directory, not the .pth files inside it, so the
    test environment's editable echat stays out of the fresh venv.
    """
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    await trio.run_process([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                            "--wheel-dir", str(wheels), str(REPO)], capture_stdout=True)
    [wheel] = wheels.glob("echat-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("echat/schema.sql")
        client = {name: archive.read(f"echat/static/{name}")
                  for name in ("index.html", "app.js", "style.css")}
    assert shipped == (REPO / "schema.sql").read_bytes()

    await trio.run_process([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    await trio.run_process([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                            "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                           capture_stdout=True)
    site_packages = Path(sysconfig.get_path(
        "purelib", vars={"base": str(venv), "platbase": str(venv)}))
    (site_packages / "echat-test-dependencies.pth").write_text(
        sysconfig.get_path("purelib") + "\n")

    python = venv / "bin" / "python"
    where = await trio.run_process(
        [str(python), "-c", "import echat, importlib.resources as r; print(echat.__file__); "
         "print(r.files('echat').joinpath('schema.sql').read_text()[:2])"],
        cwd=elsewhere, capture_stdout=True)
    module, schema_start = where.stdout.decode().split("\n")[:2]
    assert Path(module).is_relative_to(site_packages)
    assert schema_start == "--"
    installed_schema = site_packages / "echat" / "schema.sql"
    assert installed_schema.is_file() and not installed_schema.is_symlink()

    db = tmp_path / "installed.db"
    serve = [str(venv / "bin" / "echat"), "serve", "--port", "0", "--db", str(db)]
    async with started(serve, cwd=elsewhere) as running, \
            httpx.AsyncClient(base_url=running.url) as http:
        await exercise(running.url)
        assert (await http.get("/")).content == client["index.html"]
        assert (await http.get("/static/app.js")).content == client["app.js"]
        assert await stop(running) == 0
    assert db.is_file()
    assert list(elsewhere.iterdir()) == []
    shutil.rmtree(venv)
