"""How fast the embeddable test server is ready, and how fast it stops.

    .venv/bin/python bench/fixture_ready.py [--runs 50]

Ready: from entering `echat.testing.serve()` / `run_in_thread()` to the first request answered
(GET /v1/info, answered 401 by the app: routing, session check and error rendering included).
Stop: from leaving the block to the line after it (graceful shutdown, store closed, and for
run_in_thread the thread joined). The HTTP clients are made once, outside the timings.
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx
import trio

from echat.testing import run_in_thread, serve

WARMUP = 3


async def time_serve(client: httpx.AsyncClient) -> tuple[float, float]:
    start = time.perf_counter()
    async with serve() as server:
        response = await client.get(server.url + "/v1/info")
        ready = time.perf_counter()
    stopped = time.perf_counter()
    assert response.status_code == 401, response.text
    return ready - start, stopped - ready


def time_run_in_thread(client: httpx.Client) -> tuple[float, float]:
    start = time.perf_counter()
    with run_in_thread() as server:
        response = client.get(server.url + "/v1/info")
        ready = time.perf_counter()
    stopped = time.perf_counter()
    assert response.status_code == 401, response.text
    return ready - start, stopped - ready


def report(name: str, samples: list[tuple[float, float]]) -> None:
    for label, values in (("ready", [s[0] for s in samples]), ("stop", [s[1] for s in samples])):
        ms = sorted(v * 1000 for v in values)
        p95 = ms[min(len(ms) - 1, round(0.95 * len(ms)) - 1)]
        print(f"{name:<16} {label:<6} median {statistics.median(ms):6.1f} ms   "
              f"p95 {p95:6.1f} ms   max {ms[-1]:6.1f} ms   (n={len(ms)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()

    async def serve_runs() -> list[tuple[float, float]]:
        async with httpx.AsyncClient() as client:
            for _ in range(WARMUP):
                await time_serve(client)
            return [await time_serve(client) for _ in range(args.runs)]

    report("serve()", trio.run(serve_runs))
    with httpx.Client() as client:
        for _ in range(WARMUP):
            time_run_in_thread(client)
        report("run_in_thread()", [time_run_in_thread(client) for _ in range(args.runs)])


if __name__ == "__main__":
    main()
