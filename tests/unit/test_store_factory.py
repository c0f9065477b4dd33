"""open_stores wires the three stores from settings into one data dir."""

from __future__ import annotations

import pytest

from ggstack.core.config import Settings
from ggstack.stores.base import Chunk
from ggstack.stores.factory import open_stores

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_open_stores_puts_everything_under_data_dir(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", default_models=False)

    async def body():
        yield b"hello"

    async with open_stores(settings) as stores:
        await stores.metadata.put("file", "file-1", {"id": "file-1"})
        blob = await stores.files.save(body(), max_bytes=10)
        await stores.vectors.create("vs_1", dimension=2)
        await stores.vectors.upsert_chunks("vs_1", [Chunk("file-1", 0, "hello", embedding=[1.0, 0.0])])
    assert (tmp_path / "data" / "ggstack.db").is_file()
    assert stores.files.path(blob.key).is_relative_to(tmp_path / "data" / "files")
    assert (tmp_path / "data" / "chroma").is_dir()

    async with open_stores(settings) as again:
        assert await again.metadata.get("file", "file-1") == {"id": "file-1"}
        assert await again.files.read(blob.key) == b"hello"
        assert await again.vectors.count("vs_1") == 1
