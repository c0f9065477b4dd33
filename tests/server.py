"""Run a real ggstack server (uvicorn in a subprocess) for tests that talk HTTP.

Every server started here validates its own responses against the specs, so any test that
provokes an answer the spec does not allow fails with a 500 naming the mismatch.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml

if TYPE_CHECKING:
    import openai
    from llama_stack_client import LlamaStackClient


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """One server process; `start()` waits until /v1/health answers."""

    data_dir: Path
    config: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.data_dir / "run.yaml"
        config_path.write_text(yaml.safe_dump({"default_models": False, **self.config}))
        self.log_path = self.data_dir / f"server-{self.port}.log"
        command = [sys.executable, "-m", "ggstack", "serve", "--config", str(config_path),
                   "--port", str(self.port), "--data-dir", str(self.data_dir), "--validate-responses"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.process = subprocess.Popen(command, stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not start in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path and self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown code runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def mismatches(self) -> list[str]:
        """Response-validation failures the server logged."""
        text = self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""
        return [line for line in text.splitlines() if "DOES NOT MATCH SPEC" in line]


# -- fixtures ----------------------------------------------------------------------------------
# The e2e idiom: a module-scoped server, and per-test clients; after each test and when the
# server stops, the server must have logged no answer its spec forbids. Fixtures `yield from`
# these, e.g. `yield from served(tmp_path_factory.mktemp("chat"), {"models": models})`.


def check_answers(server: Server) -> None:
    """The server answered nothing its spec forbids (it validates every answer and logs mismatches)."""
    assert server.mismatches() == [], "\n".join(server.mismatches())


def served(data_dir: Path, config: dict[str, Any] | None = None, **kwargs: Any) -> Iterator[Server]:
    """A started server; stopped afterwards, then checked."""
    server = Server(data_dir, config=config or {}, **kwargs).start()
    try:
        yield server
    finally:
        server.stop()
    check_answers(server)


def http_client(server: Server, prefix: str = "", *, timeout: float = 120) -> Iterator[httpx.Client]:
    """httpx on `server.url + prefix`; the server is checked after the test."""
    with httpx.Client(base_url=server.url + prefix, timeout=timeout) as http:
        yield http
    check_answers(server)


def openai_client(server: Server, prefix: str = "/v1/openai/v1", *, timeout: float = 600) -> Iterator[openai.OpenAI]:
    """The openai SDK on `server.url + prefix` (no retries: a failure shows at once); checked after."""
    import openai

    yield openai.OpenAI(base_url=server.url + prefix, api_key="x", max_retries=0, timeout=timeout)
    check_answers(server)


def stack_client(server: Server, *, timeout: float = 60) -> Iterator[LlamaStackClient]:
    """llama-stack-client 0.2.23 on the server (no retries); checked after."""
    from llama_stack_client import LlamaStackClient

    yield LlamaStackClient(base_url=server.url, max_retries=0, timeout=timeout)
    check_answers(server)
