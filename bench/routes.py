"""Non-inference routes under load: ggstack against a bare Starlette app, in one run, with `wrk`.

Both servers run under uvicorn with one worker on this machine, one after the other (never at
the same time, so neither takes the other's cores). The bare app answers `GET /v1/health` with
a fixed JSON object and `GET /v1/models` with a fixed list: the floor any Starlette server
pays for a JSON answer. ggstack runs as `ggstack serve` with its defaults (bundled models
registered, telemetry on (a span per call), /metrics counting, the Host/Origin guard on,
response validation off). Both run with uvicorn's defaults, so the same event loop and HTTP
parser (uvloop and httptools when installed; the script prints which); ggstack's protocol, a
subclass of uvicorn's, writes each complete answer in one system call where stock uvicorn
(the bare app) writes headers and body apart (ggstack.http.serving). Each route gets `--duration` seconds of
`wrk` at 16 connections on 2 threads after a short warm-up; the script prints req/s, p50 and
p99 latency and ggstack's share of the bare app's rate.

`wrk` is a Debian package (`apt-get install wrk`), not a Python dependency.

Run: `python bench/routes.py [--duration 10] [--connections 16] [--rounds 2]`.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.servers import free_port, launch, serve_ggstack, stop

ROUTES = ("/v1/health", "/v1/models", "/v1/openai/v1/models")
BARE_APP = '''
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

MODELS = {"data": [{"identifier": "m%d" % i, "provider_id": "llama-cpp", "type": "model",
                    "metadata": {}, "model_type": "llm"} for i in range(3)]}


async def health(request):
    return JSONResponse({"status": "OK"})


async def models(request):
    return JSONResponse(MODELS)


async def openai_models(request):
    return JSONResponse({"object": "list", "data": MODELS["data"]})


app = Starlette(routes=[Route("/v1/health", health), Route("/v1/models", models),
                        Route("/v1/openai/v1/models", openai_models)])
'''
LATENCY = re.compile(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def start_bare(tmp: Path) -> tuple[subprocess.Popen, str]:
    (tmp / "bare_app.py").write_text(BARE_APP)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = launch([sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port), "--log-level", "warning",
                      "--no-access-log"], tmp / "bare.log", url + "/v1/health", cwd=tmp)
    return process, url


def start_ggstack(tmp: Path) -> tuple[subprocess.Popen, str]:
    return serve_ggstack({"default_models": True}, tmp / "ggstack")


def uvicorn_parts() -> str:
    """The loop and HTTP parser uvicorn's "auto" settings pick here (both servers use them)."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"{loop} + {http}"


def wrk(url: str, duration: int, connections: int) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) from one wrk run; non-2xx answers fail the run."""
    subprocess.run(["wrk", "-t2", "-c", str(connections), "-d2s", url], check=True, capture_output=True)
    out = subprocess.run(["wrk", "-t2", "-c", str(connections), f"-d{duration}s", "--latency", url],
                         check=True, capture_output=True, text=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"{url} answered errors under load:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = {int(p): float(v) * UNIT_MS[u] for p, v, u in LATENCY.findall(out)}
    return rate, latency[50], latency[99]


def measure(start, tmp: Path, args: argparse.Namespace) -> dict[str, tuple[float, float, float]]:
    process, url = start(tmp)
    try:
        return {route: wrk(url + route, args.duration, args.connections) for route in ROUTES}
    finally:
        stop(process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per route")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="bare, ggstack, bare, ggstack, ...; best counts")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    print(f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or 'CPU'}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}, "
          f"uvicorn {uvicorn_parts()} for both servers")
    best: dict[tuple[str, str], tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        for round_ in range(args.rounds):
            for name, start in (("bare", start_bare), ("ggstack", start_ggstack)):
                tmp = Path(tmp_name) / f"{name}{round_}"
                tmp.mkdir()
                for route, result in measure(start, tmp, args).items():
                    if result[0] > best.get((name, route), (0.0,))[0]:
                        best[(name, route)] = result
    print(f"\n{args.connections} connections, {args.duration} s per route, best of {args.rounds} rounds, "
          f"load after {os.getloadavg()[0]:.1f}")
    print("| route | bare Starlette req/s (p50/p99 ms) | ggstack req/s (p50/p99 ms) | ggstack / bare |")
    print("| --- | --- | --- | --- |")
    for route in ROUTES:
        bare, ours = best[("bare", route)], best[("ggstack", route)]
        print(f"| {route} | {bare[0]:.0f} ({bare[1]:.1f}/{bare[2]:.1f}) | {ours[0]:.0f} ({ours[1]:.1f}/{ours[2]:.1f}) "
              f"| {ours[0] / bare[0]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
