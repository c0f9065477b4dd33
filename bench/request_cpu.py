"""CPU the server's event loop spends per request on the POST routes, ggstack against another checkout of it.

The routes bench (bench/routes.py) loads cheap GET routes with wrk; this one measures what a
request to an inference or search route costs the event loop before and after its handler
(reading the body, the spec's JSON Schema check, the model, tokenising, rendering, the span),
which is what delays the next request of a burst. Each checkout runs as `ggstack serve` (bundled
SmolLM2 and all-MiniLM-L6-v2, telemetry on), one at a time, and gets `--requests` requests per
route sent back to back on one connection (so at most one is in the server at a time); the
event-loop thread's CPU time is read from /proc before and after (the process's too, which
includes the model's threads). Chat asks for one token so the model's share stays small.
Checkouts run in turns (A B B A ...), `--rounds` each, and the median counts.

Run: `PYTHONPATH=. python bench/request_cpu.py --peer /path/to/other/checkout [--requests 200] [--rounds 2]
[--routes chat,embeddings,search]`
(the peer is any directory holding ggstack, e.g. `git worktree add /tmp/main main`).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.servers import free_port, launch, stop

HERE = Path(__file__).resolve().parent.parent
TEXT = ("The harbour master keeps a ledger of every ship that enters the port. Each entry names the "
        "vessel, its cargo and the berth it was given. Storms close the port for days at a time.\n") * 8


def clock_ticks(path: str) -> int:
    """utime + stime from a /proc .../stat file, in clock ticks."""
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_ms(pid: int) -> tuple[float, float]:
    """(event-loop thread, whole process) CPU time in ms; the loop is the main thread."""
    tick_ms = 1000.0 / os.sysconf("SC_CLK_TCK")
    return (clock_ticks(f"/proc/{pid}/task/{pid}/stat") * tick_ms, clock_ticks(f"/proc/{pid}/stat") * tick_ms)


def start(checkout: Path, data_dir: Path) -> tuple[Any, str]:
    data_dir.mkdir(parents=True)
    config = data_dir / "run.yaml"
    config.write_text(yaml.safe_dump({"default_models": True}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    path = os.pathsep.join([str(checkout), *filter(None, [os.environ.get("PYTHONPATH")])])
    process = launch([sys.executable, "-m", "ggstack", "serve", "--config", str(config), "--port", str(port),
                      "--data-dir", str(data_dir)], data_dir / "server.log", url + "/v1/health",
                     cwd=checkout, env={**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"})
    return process, url


def model_ids(http: httpx.Client) -> tuple[str, str]:
    models = http.get("/v1/models").json()["data"]
    llm = next(m["identifier"] for m in models if m.get("model_type") == "llm")
    embedding = next(m["identifier"] for m in models if m.get("model_type") == "embedding")
    return llm, embedding


def vector_store(http: httpx.Client) -> str:
    """A store holding one small file, ready to search."""
    file_id = http.post("/v1/openai/v1/files", data={"purpose": "assistants"},
                        files={"file": ("harbour.txt", TEXT.encode(), "text/plain")}).json()["id"]
    store = http.post("/v1/openai/v1/vector_stores", json={"name": "bench", "file_ids": [file_id]}).json()
    deadline = time.monotonic() + 120
    while store["file_counts"]["completed"] < 1:
        if time.monotonic() > deadline or store["file_counts"].get("failed"):
            raise RuntimeError(f"the bench file was not ingested: {store}")
        time.sleep(0.2)
        store = http.get(f"/v1/openai/v1/vector_stores/{store['id']}").json()
    return store["id"]


def workloads(http: httpx.Client, routes: set[str]) -> dict[str, Callable[[], None]]:
    llm, embedding = model_ids(http)
    store = vector_store(http) if "search" in routes else "none"
    messages = [{"role": "system", "content": "You are a terse assistant."},
                {"role": "user", "content": "Name one colour of the sea."}]

    def post(path: str, body: dict[str, Any]) -> Callable[[], None]:
        def send() -> None:
            answer = http.post(path, json=body)
            answer.raise_for_status()
            answer.read()
        return send

    every = {
        "chat, 1 token": post("/v1/openai/v1/chat/completions",
                              {"model": llm, "messages": messages, "max_tokens": 1, "temperature": 0}),
        "chat, 1 token, stream": post("/v1/openai/v1/chat/completions",
                                      {"model": llm, "messages": messages, "max_tokens": 1, "temperature": 0,
                                       "stream": True}),
        "embeddings, 1 input": post("/v1/openai/v1/embeddings", {"model": embedding, "input": "ships in a storm"}),
        "vector store search": post(f"/v1/openai/v1/vector_stores/{store}/search",
                                    {"query": "which berth was the ship given", "max_num_results": 3}),
    }
    return {name: send for name, send in every.items() if KINDS[name] in routes}


#: `--routes` names: the kind of each route.
KINDS = {"chat, 1 token": "chat", "chat, 1 token, stream": "chat", "embeddings, 1 input": "embeddings",
         "vector store search": "search"}


def measure(checkout: Path, tmp: Path, requests: int, routes: set[str]) -> dict[str, tuple[float, float, float]]:
    """Route -> (loop CPU ms, process CPU ms, wall ms) per request."""
    process, url = start(checkout, tmp)
    try:
        with httpx.Client(base_url=url, timeout=120) as http:
            results = {}
            for name, send in workloads(http, routes).items():
                for _ in range(max(5, requests // 10)):
                    send()
                loop0, proc0 = cpu_ms(process.pid)
                wall0 = time.perf_counter()
                for _ in range(requests):
                    send()
                wall = (time.perf_counter() - wall0) * 1000
                loop1, proc1 = cpu_ms(process.pid)
                results[name] = ((loop1 - loop0) / requests, (proc1 - proc0) / requests, wall / requests)
            return results
    finally:
        stop(process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", type=Path, required=True, help="the other checkout (B is this one)")
    parser.add_argument("--requests", type=int, default=200, help="per route per round")
    parser.add_argument("--rounds", type=int, default=2, help="per checkout, in turns A B B A ...")
    parser.add_argument("--routes", default="chat,embeddings,search", help="which of chat, embeddings, search")
    args = parser.parse_args()
    routes = set(args.routes.split(","))
    sides = {"peer": args.peer.resolve(), "this": HERE}
    print(f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or 'CPU'}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}; "
          f"peer {sides['peer']}, this {sides['this']}")
    runs: dict[str, list[dict[str, tuple[float, float, float]]]] = {"peer": [], "this": []}
    order = [side for round_ in range(args.rounds) for side in (("peer", "this") if round_ % 2 == 0 else ("this", "peer"))]
    with tempfile.TemporaryDirectory() as tmp_name:
        for index, side in enumerate(order):
            runs[side].append(measure(sides[side], Path(tmp_name) / f"{side}{index}", args.requests, routes))
            print(f"  {side}: " + ", ".join(f"{route} {loop:.2f}" for route, (loop, _, _) in runs[side][-1].items()),
                  flush=True)
    print(f"\n{args.requests} requests per route back to back, median of {args.rounds} rounds, "
          f"load after {os.getloadavg()[0]:.1f}; ms per request")
    print("| route | peer: loop CPU / process CPU / wall | this: loop CPU / process CPU / wall | loop CPU this/peer |")
    print("| --- | --- | --- | --- |")
    for route in runs["this"][0]:
        peer = [statistics.median(run[route][i] for run in runs["peer"]) for i in range(3)]
        this = [statistics.median(run[route][i] for run in runs["this"]) for i in range(3)]
        print(f"| {route} | {peer[0]:.2f} / {peer[1]:.2f} / {peer[2]:.2f} | {this[0]:.2f} / {this[1]:.2f} / "
              f"{this[2]:.2f} | {this[0] / peer[0]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
