"""The servers the benches measure: started on a free port with their log kept, polled until they
answer, stopped with SIGINT (as a user's Ctrl-C) so they shut down as they would in use.

Every bench script started its servers with its own copy of these few functions; they live here
once. Scripts run as `PYTHONPATH=. python bench/<name>.py` and import `bench.servers`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

#: Loading models and opening Chroma takes a while on a loaded 2-core machine.
START_TIMEOUT_S = 300.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(process: subprocess.Popen, url: str, log: Path, timeout: float = START_TIMEOUT_S) -> None:
    """Until `url` answers 200; a server that exits or never answers is killed and named with its log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop(process)
    raise RuntimeError(f"{url} did not answer in {timeout:.0f} s; see {log}")


def launch(command: list[str], log: Path, ready: str, *, cwd: Path | None = None,
           env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `command` with its output in `log` and wait until `ready` (a URL) answers."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    wait_ready(process, ready, log)
    return process


def serve_ggstack(config: dict[str, Any], data_dir: Path, *, ready_path: str = "/v1/health",
                  log: Path | None = None) -> tuple[subprocess.Popen, str]:
    """`ggstack serve` with `config` as its run config (written into `data_dir`); (process, base URL)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config_path = data_dir / "run.yaml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = launch([sys.executable, "-m", "ggstack", "serve", "--config", str(config_path), "--port", str(port),
                      "--data-dir", str(data_dir)], log or data_dir / "server.log", url + ready_path,
                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return process, url


def stop(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGINT, then SIGKILL if it has not exited within `timeout` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
