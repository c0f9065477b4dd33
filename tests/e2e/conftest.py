"""Client fixtures shared by the e2e modules that drive the bundled models through one module server.

A module defines its own `server` fixture (what it serves differs); `client` and `http` here wrap it
with a timeout long enough for SmolLM2 generations on 2 loaded cores. A module that needs other
clients defines its own fixture of the same name, which pytest prefers."""

from __future__ import annotations

import pytest

from tests.server import http_client, stack_client

MODEL_TIMEOUT = 300


@pytest.fixture
def client(server):
    yield from stack_client(server, timeout=MODEL_TIMEOUT)


@pytest.fixture
def http(server):
    yield from http_client(server, timeout=MODEL_TIMEOUT)
