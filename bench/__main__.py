"""`make bench`: echat and the bare stack under the same load, side by side.

    .venv/bin/python -m bench [--only idle,rest,fanout,rooms,history] [--tiny] [--out DIR]

Builds a database (bench/fixture.py), starts `echat serve` on it and the bare stack
(bench/bare.py) as two processes, runs each scenario against both, one after the other, and
prints a markdown table: echat, bare, echat ÷ bare, and the issue's target where it names one.
The table and every figure behind it are saved as JSON in DIR (bench-results/).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import httpx
import trio

from bench import fixture, load
from bench.fixture import FULL, PASSWORD, ROOM_SIZE, TINY, Fixture, Sizes
from bench.servers import Server, running

# Every benchmark client comes from 127.0.0.1, so a login storm of 50 clients would hit the
# per-address failure limit (a login counts as failed until argon2 says otherwise); real storms
# come from many addresses. Everything else runs with the defaults of `echat serve`.
ECHAT_FLAGS = ("--login-failures", "1000")
IDLE_WARMUP = 50


@dataclass
class Row:
    scenario: str
    unit: str
    echat: float
    bare: float
    echat_detail: str = ""
    bare_detail: str = ""
    target: str = ""
    met: bool | None = None

    @property
    def ratio(self) -> float:
        return self.echat / self.bare if self.bare else math.nan


@dataclass
class Run:
    sizes: Sizes
    fixture: Fixture
    echat: Server
    bare: Server
    db: Path
    log_dir: Path
    details: dict


def latencies(sample: load.Sample) -> str:
    text = f"{sample.p50_ms:.1f} / {sample.p99_ms:.1f} ms"
    return text if not sample.errors else f"{text}, {sample.errors} errors"


def rate_row(scenario: str, unit: str, echat: load.Sample, bare: load.Sample,
             target: str = "", met: bool | None = None) -> Row:
    if echat.errors or bare.errors:
        met = False
    return Row(scenario, unit, echat.rate, bare.rate, latencies(echat), latencies(bare),
               target, met)


def median_run(samples: list[load.Sample]) -> load.Sample:
    """The run with the median rate (the lower middle one of an even number)."""
    return sorted(samples, key=lambda sample: sample.rate)[(len(samples) - 1) // 2]


# -- scenarios ------------------------------------------------------------------------------


async def rest(run: Run) -> list[Row]:
    sizes, members = run.sizes, run.fixture.members
    clients = sizes.rest_clients

    def info(c: int) -> tuple:
        return "GET", "/v1/info", {"X-Session-Id": members[c].session_id}, None

    def history(c: int) -> tuple:
        path = f"/v1/rooms/{run.fixture.shallow_room}/messages"
        return "GET", path, {"X-Session-Id": members[c].session_id}, None

    def login(c: int) -> tuple:
        return "POST", "/v1/login", {}, {"login": members[c].login, "password": PASSWORD}

    rows = []
    for name, maker in (("GET /v1/info", info), ("GET /v1/rooms/{id}/messages (50)", history)):
        echat, bare = await in_turns(run, lambda server: load.http_load(
            server.url, maker, clients=clients, requests=sizes.rest_requests), name)
        row = rate_row(f"{name}, {clients} clients{median_of(run)}", "req/s", echat, bare,
                       "≥ 0.75 of bare")
        row.met = row.met is not False and row.ratio >= 0.75
        rows.append(row)
    name = "POST /v1/login"
    samples = [await load.http_load(server.url, login, clients=clients,
                                    requests=sizes.login_requests, warm_up=False)
               for server in (run.echat, run.bare)]
    run.details[name] = [s.to_json() for s in samples]
    rows.append(rate_row(f"{name}, {clients} clients", "req/s", *samples, "argon2 by design"))

    storms = []
    for server in (run.echat, run.bare):
        quiet = await load.http_load(server.url, info, clients=sizes.storm_info_clients,
                                     requests=sizes.storm_info_requests)
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(load.http_load, server.url, login, warm_up=False,
                                       clients=sizes.storm_login_clients, requests=0, stop=stop))
            await trio.sleep(0.5)  # the storm is under way before it is measured
            storm = await load.http_load(server.url, info, clients=sizes.storm_info_clients,
                                         requests=sizes.storm_info_requests)
            stop.set()
        run.details[f"login storm, {server.name}"] = {"quiet": quiet.to_json(),
                                                      "storm": storm.to_json()}
        storms.append((quiet, storm))
    (equiet, estorm), (bquiet, bstorm) = storms
    echat_ratio, bare_ratio = estorm.p99_ms / equiet.p99_ms, bstorm.p99_ms / bquiet.p99_ms
    rows.append(Row(
        f"GET /v1/info p99 during a login storm ÷ quiet p99 ({sizes.storm_info_clients} "
        f"clients, {sizes.storm_login_clients} logging in)", "×", echat_ratio, bare_ratio,
        f"{equiet.p99_ms:.1f} → {estorm.p99_ms:.1f} ms", f"{bquiet.p99_ms:.1f} → "
        f"{bstorm.p99_ms:.1f} ms", "echat ≤ 3×",
        echat_ratio <= 3 and not (estorm.errors or equiet.errors),
    ))
    return rows


async def fanout(run: Run) -> list[Row]:
    rows = []
    for (clients, messages), room in zip(run.sizes.fanout, run.fixture.fanout_rooms):
        sessions = [m.session_id for m in run.fixture.members[:clients]]
        stored_before = await _stored_messages(run.echat)
        name = f"fan-out, {clients} clients × {messages} messages, one room"
        echat, bare = await in_turns(run, lambda server: load.chat_load(
            server.ws_url, [(room, sessions)], messages), name)
        stored = await _stored_messages(run.echat) - stored_before
        run.details[name]["stored"] = stored
        row = rate_row(name + median_of(run), "deliveries/s", echat, bare,
                       "≥ 0.75 of bare, all stored")
        row.met = row.met is not False and row.ratio >= 0.75 and (
            stored == clients * messages * run.sizes.rounds)
        rows.append(row)
    return rows


async def in_turns(run: Run, measure: Callable[[Server], Awaitable[load.Sample]],
                   name: str) -> tuple[load.Sample, load.Sample]:
    """`measure` each server `rounds` times, taking turns, and return each one's median run
    (an error in any run shows in the row). A short run swings with whatever else the two
    cores do: single runs of the same code differ by ±0.1 in ratio."""
    runs: dict[str, list[load.Sample]] = {"echat": [], "bare": []}
    for _ in range(run.sizes.rounds):
        for server in (run.echat, run.bare):
            runs[server.name].append(await measure(server))
    echat, bare = (replace(median_run(samples), errors=sum(s.errors for s in samples))
                   for samples in runs.values())
    run.details[name] = {"echat": echat.to_json(), "bare": bare.to_json(),
                         **{f"{key}_runs": [s.to_json() for s in samples]
                            for key, samples in runs.items()}}
    return echat, bare


def median_of(run: Run) -> str:
    return f", median of {run.sizes.rounds} runs" if run.sizes.rounds > 1 else ""


async def rooms(run: Run) -> list[Row]:
    sizes, members = run.sizes, run.fixture.members
    talking = [
        (room, [m.session_id for m in members[i * ROOM_SIZE:(i + 1) * ROOM_SIZE]])
        for i, room in enumerate(run.fixture.small_rooms[:sizes.rooms])
    ]
    stored_before = await _stored_messages(run.echat)
    echat = await load.chat_load(run.echat.ws_url, talking, sizes.room_messages)
    stored = await _stored_messages(run.echat) - stored_before
    bare = await load.chat_load(run.bare.ws_url, talking, sizes.room_messages)
    name = f"{sizes.rooms} rooms × {ROOM_SIZE} members × {sizes.room_messages} messages, at once"
    run.details[name] = {"echat": echat.to_json(), "bare": bare.to_json(), "stored": stored}
    row = rate_row(name, "deliveries/s", echat, bare, "all stored")
    row.met = row.met is not False and stored == sizes.rooms * ROOM_SIZE * sizes.room_messages
    return [row]


async def _stored_messages(echat: Server) -> int:
    async with httpx.AsyncClient() as client:
        return (await client.get(echat.url + "/v1/status")).json()["messages"]


async def idle(run: Run) -> list[Row]:
    count = run.sizes.idle_sockets
    results = []
    # The framework's floor (a socket with nothing behind it) on a bare stack process of its
    # own: memory freed by the other sockets would be reused and hide the cost.
    async with running("bare", run.db, run.log_dir) as fresh_bare:
        for server, path in ((run.echat, "chat"), (run.bare, "chat"), (fresh_bare, "floor")):
            urls = [
                load.chat_url(server.ws_url, run.fixture.small_rooms[i // ROOM_SIZE],
                              member.session_id).replace("/chat?", f"/{path}?")
                for i, member in enumerate(run.fixture.members[:count])
            ]
            results.append(await load.idle_load(urls, server.rss, hold=run.sizes.idle_hold,
                                                warmup=urls[:IDLE_WARMUP]))
    echat, bare, floor = results
    run.details["idle"] = {"echat": echat.to_json(), "bare": bare.to_json(),
                           "framework": floor.to_json()}
    return [Row(
        f"{count} idle WebSockets: server memory per socket", "KiB", echat.bytes_each / 1024,
        bare.bytes_each / 1024, f"{echat.sockets} held, {echat.errors} errors",
        f"{bare.sockets} held, {bare.errors} errors; the framework alone: "
        f"{floor.bytes_each / 1024:.1f} KiB", "echat ≤ 40 KiB, none lost",
        echat.bytes_each <= 40 * 1024 and echat.errors == 0 and echat.sockets == count,
    )]


async def history(run: Run) -> list[Row]:
    sizes, fx = run.sizes, run.fixture
    session = {"X-Session-Id": fx.members[0].session_id}
    rows: list[Row] = []
    rooms = ((fx.shallow_room, fx.shallow_first, sizes.shallow_messages),
             (fx.deep_room, fx.deep_first, sizes.deep_messages))
    pages: dict[str, list[str]] = {"newest": [], "middle": []}
    for room, first, count in rooms:
        for page, query in (("newest", ""), ("middle", f"?before={first + count // 2}")):
            path = f"/v1/rooms/{room}/messages{query}"
            pages[page].append(path)
            samples = [await load.http_load(
                server.url, lambda c: ("GET", path, session, None),
                clients=sizes.rest_clients, requests=sizes.history_requests,
            ) for server in (run.echat, run.bare)]
            name = f"history, {page} page of {count:,} messages, {sizes.rest_clients} clients"
            run.details[name] = [s.to_json() for s in samples]
            rows.append(rate_row(name, "req/s", *samples))
    # The target compares the two rooms on echat: one client fetching a page of each in turn,
    # so that both see the same machine (the rates above are minutes apart).
    for page, paths in pages.items():
        medians = [await load.alternating_latency(server.url, paths, session,
                                                  sizes.history_rounds)
                   for server in (run.echat, run.bare)]
        (eshallow, edeep), (bshallow, bdeep) = medians
        name = (f"history, {page} page: time at {sizes.deep_messages:,} messages ÷ at "
                f"{sizes.shallow_messages:,} (one client, taking turns)")
        run.details[name] = {"echat_s": medians[0], "bare_s": medians[1]}
        rows.append(Row(
            name, "×", edeep / eshallow, bdeep / bshallow,
            f"{eshallow * 1000:.2f} → {edeep * 1000:.2f} ms",
            f"{bshallow * 1000:.2f} → {bdeep * 1000:.2f} ms", "echat ≤ 2×", edeep <= 2 * eshallow,
        ))
    return rows


SCENARIOS: dict[str, Callable[[Run], Awaitable[list[Row]]]] = {
    # Idle first, on servers that have held no socket yet: memory freed by earlier scenarios
    # would be reused by the new sockets and hide their cost.
    "idle": idle,
    "rest": rest,
    "fanout": fanout,
    "rooms": rooms,
    "history": history,
}


# -- the report -----------------------------------------------------------------------------


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}, "
            f"{platform.system()}")


def number(value: float) -> str:
    if math.isnan(value):
        return "–"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def table(rows: list[Row]) -> str:
    lines = [
        "| scenario | unit | echat | bare | echat ÷ bare | echat p50 / p99 | bare p50 / p99 "
        "| target | met |",
        "|---|---|---:|---:|---:|---|---|---|---|",
    ]
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(
            f"| {row.scenario} | {row.unit} | {number(row.echat)} | {number(row.bare)} "
            f"| {number(row.ratio)} | {row.echat_detail} | {row.bare_detail} | {row.target} "
            f"| {met} |"
        )
    return "\n".join(lines)


async def bench(sizes: Sizes, only: list[str], out: Path) -> dict:
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="echat-bench-") as scratch:
        db = Path(scratch) / "bench.db"
        seed_start = time.perf_counter()
        built = await fixture.build(str(db), sizes, history="history" in only)
        seeded = time.perf_counter() - seed_start
        print(f"fixture built in {seeded:.1f} s", file=sys.stderr)
        async with running("echat", db, out, ECHAT_FLAGS) as echat, \
                running("bare", db, out) as bare:
            run = Run(sizes, built, echat, bare, db, out, {"fixture_seconds": seeded})
            rows: list[Row] = []
            for name in only:
                scenario_start = time.perf_counter()
                rows += await SCENARIOS[name](run)
                print(f"{name}: {time.perf_counter() - scenario_start:.1f} s", file=sys.stderr)
    return {
        "machine": machine(),
        "command": shlex.join(["python", "-m", "bench", *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "sizes": asdict(sizes),
        "rows": [{**asdict(row), "ratio": row.ratio} for row in rows],
        "table": table(rows),
        "details": run.details,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"comma-separated scenarios among {', '.join(SCENARIOS)}")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny sizes: checks the tool works, measures nothing")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in only if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)}")
    only = [name for name in SCENARIOS if name in only]
    args.out.mkdir(parents=True, exist_ok=True)
    result = trio.run(bench, TINY if args.tiny else FULL, only, args.out)
    text = json.dumps(result, indent=2, ensure_ascii=False)
    stamp = result["started"].replace(":", "")
    (args.out / f"bench-{stamp}.json").write_text(text, encoding="utf-8")
    (args.out / "latest.json").write_text(text, encoding="utf-8")
    print(f"{result['machine']}; `{result['command']}`, {result['seconds']} s\n")
    print(result["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
