"""The deployment files, tried for real: deploy/nginx.conf in Debian's nginx in front of echat,
and deploy/echat.service checked by systemd-analyze.

nginx runs unprivileged-style from a scratch prefix with a self-signed certificate for
127.0.0.1; the site file is used as shipped except for the lines that name the machine (ports,
certificate paths) and one added `proxy_bind`, which makes nginx connect to echat from
127.0.0.2, the only address echat trusts here. Clients reach nginx from 127.0.0.3 and 127.0.0.4
and echat directly from 127.0.0.1 (the sockets, which cannot choose, reach nginx from there too),
so each party has an address of its own. Skipped where nginx,
openssl or systemd-analyze is not installed (.ci/run installs nginx).
"""

from __future__ import annotations

import logging
import re
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from echat.testing import serve
from helpers import auth, make_room, receive_json, register, send_json
from server_process import free_port

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PROXY_ADDRESS = "127.0.0.2"  # nginx's side of its connections to echat


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=echat test",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30)
    return cert, key


def site_for_test(https_port: int, echat_port: int, cert: Path, key: Path) -> str:
    """deploy/nginx.conf with this machine's ports and certificate; each replaced line must be
    there, so the test follows the file and fails when it changes shape."""
    site = (DEPLOY / "nginx.conf").read_text()
    replacements = [
        ("    listen [::]:443 ssl http2;\n", ""),
        ("    listen 443 ssl http2;", f"    listen 127.0.0.1:{https_port} ssl http2;"),
        ("    server 127.0.0.1:8081;", f"    server 127.0.0.1:{echat_port};"),
        ("/etc/letsencrypt/live/chat.example.org/fullchain.pem", str(cert)),
        ("/etc/letsencrypt/live/chat.example.org/privkey.pem", str(key)),
        ("        proxy_pass http://echat;",
         f"        proxy_pass http://echat;\n        proxy_bind {PROXY_ADDRESS};"),
    ]
    for old, new in replacements:
        assert old in site, old
        site = site.replace(old, new)
    # The port 80 server (redirects and certbot) needs port 80: not here.
    site, redirects = re.subn(r"\nserver \{\n    listen 80;.*?\n\}\n", "\n", site, flags=re.S)
    assert redirects == 1
    return site


@asynccontextmanager
async def running_nginx(prefix: Path, site: str) -> AsyncIterator[None]:
    (prefix / "echat.conf").write_text(site)
    temp = {name: prefix / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    (prefix / "nginx.conf").write_text(
        f"pid {prefix / 'nginx.pid'};\nerror_log {prefix / 'error.log'};\n"
        "worker_processes 1;\nevents {}\nhttp {\n"
        + "".join(f"    {name}_temp_path {path};\n" if name != "body"
                  else f"    client_body_temp_path {path};\n" for name, path in temp.items())
        + f"    include {prefix / 'echat.conf'};\n}}\n")
    process = await trio.lowlevel.open_process(
        [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e",
         str(prefix / "error.log"), "-g", "daemon off;"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        process.terminate()
        with trio.CancelScope(shield=True):
            await process.wait()


async def wait_for_port(port: int) -> None:
    with trio.fail_after(10):
        while True:
            try:
                await trio.open_tcp_stream("127.0.0.1", port)
                return
            except OSError:
                await trio.sleep(0.02)


def https_client(url: str, tls: ssl.SSLContext, source: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(verify=tls, local_address=source)
    return httpx.AsyncClient(base_url=url, transport=transport)


async def fail_login(http: httpx.AsyncClient, login: str, forwarded_for: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    reply = await http.post("/v1/login", json={"login": login, "password": "x"}, headers=headers)
    return reply.status_code


@pytest.mark.skipif(not Path(NGINX).exists(),
                    reason="nginx is not installed (apt-get install nginx)")
async def test_nginx_serves_echat_over_https_with_websockets_and_the_real_client_address(
        tmp_path, certificate, caplog):
    caplog.set_level(logging.INFO, logger="echat.access")
    cert, key = certificate
    tls = ssl.create_default_context(cafile=str(cert))
    https_port = free_port()
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    # One failed login a minute per login, three per client address.
    async with serve(trusted_proxies=PROXY_ADDRESS, login_failures=1) as echat, \
            running_nginx(prefix, site_for_test(https_port, echat.port, cert, key)):
        await wait_for_port(https_port)
        url = f"https://127.0.0.1:{https_port}"
        async with https_client(url, tls, "127.0.0.3") as http:
            page = await http.get("/")
            assert page.status_code == 200
            assert "script-src 'self'" in page.headers["Content-Security-Policy"]
            assert page.headers["Strict-Transport-Security"] == "max-age=31536000"

            alice, bob = await register(http, "alice"), await register(http, "bob")
            room = await make_room(http, alice, bob)
            chat = f"wss://127.0.0.1:{https_port}/v1/rooms/{room}/chat?session_id="
            async with open_websocket_url(chat + bob, ssl_context=tls) as bob_ws, \
                    open_websocket_url(chat + alice, ssl_context=tls) as alice_ws:
                await send_json(alice_ws, {"text": "через nginx", "nonce": "n1"})
                assert (await receive_json(alice_ws))["ack"] == "n1"
                assert (await receive_json(bob_ws))["text"] == "через nginx"
                await send_json(bob_ws, {"text": "и обратно"})
                assert (await receive_json(alice_ws))["text"] == "и обратно"
            history = await http.get(f"/v1/rooms/{room}/messages", headers=auth(alice))
            assert [m["text"] for m in history.json()] == ["через nginx", "и обратно"]

            # Three failures from 127.0.0.3 use up its address's minute; what it claims in
            # X-Forwarded-For is replaced by nginx and changes nothing.
            assert [await fail_login(http, f"guess{n}", "10.9.9.9") for n in range(3)] == [
                422] * 3
            assert await fail_login(http, "guess3", "10.9.9.10") == 429
        async with https_client(url, tls, "127.0.0.4") as http:
            assert await fail_login(http, "guess4") == 422  # someone else behind the proxy
        async with httpx.AsyncClient(base_url=echat.url) as direct:
            # Not from the proxy: the header is not believed, 127.0.0.1 counts for itself.
            assert await fail_login(direct, "guess5", "127.0.0.3") == 422
            assert await fail_login(direct, "guess6", "127.0.0.3") == 422

    lines = [r for r in caplog.records if r.name == "echat.access"]
    assert {r.client for r in lines} == {"127.0.0.3", "127.0.0.4", "127.0.0.1"}
    # trio-websocket connects to nginx from 127.0.0.1; never is nginx's own address the client.
    assert {r.client for r in lines if r.method == "WS"} == {"127.0.0.1"}
    # Nothing nginx wrote down holds a session id.
    for written in prefix.rglob("*"):
        if written.is_file():
            text = written.read_text(errors="replace")
            assert alice not in text and bob not in text, written


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_systemd_unit_is_valid_and_hardened(tmp_path):
    unit = tmp_path / "echat.service"
    # verify wants the program to exist: the echat of this environment stands in for
    # /opt/echat/venv/bin/echat.
    text = (DEPLOY / "echat.service").read_text()
    assert "ExecStart=/opt/echat/venv/bin/echat serve --config /etc/echat/echat.toml" in text
    unit.write_text(text.replace("/opt/echat/venv/bin/echat",
                                 str(Path(sys.executable).with_name("echat"))))
    verified = subprocess.run(["systemd-analyze", "verify", str(unit)],
                              capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0 and verified.stderr == "", verified.stderr
    security = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)],
                              capture_output=True, text=True, timeout=60)
    exposure = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    assert exposure is not None, security.stdout + security.stderr
    # systemd's scale runs from 0 (locked down) to 10 (exposed); below 2 is "OK".
    assert float(exposure.group(1)) < 2.0


def test_the_example_config_file_is_what_echat_reads():
    from echat.config import Config, read_file

    values = read_file(str(DEPLOY / "echat.toml"))
    config = Config.from_env({}, file_values=values)
    assert (config.host, config.port, config.db) == ("127.0.0.1", 8081, "/var/lib/echat/echat.db")
    assert config.trusted_proxies == "127.0.0.1, ::1"
