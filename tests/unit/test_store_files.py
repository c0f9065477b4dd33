"""DiskFileStore on a real tmp dir."""

from __future__ import annotations

import hashlib

import anyio
import pytest

from ggstack.core.errors import NotFoundError, TooLargeError
from ggstack.http.errors import from_domain
from ggstack.stores.files import DiskFileStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def chunks_of(data: bytes, size: int = 1000):
    for start in range(0, len(data), size):
        yield data[start:start + size]


def all_files(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


async def test_save_read_stream_delete(tmp_path):
    store = DiskFileStore(tmp_path / "files")
    data = bytes(range(256)) * 50
    blob = await store.save(chunks_of(data), max_bytes=len(data))
    assert blob.size == len(data)
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    assert await store.read(blob.key) == data
    assert b"".join([c async for c in store.stream(blob.key, chunk_size=999)]) == data
    assert store.path(blob.key).is_relative_to(tmp_path / "files")
    assert all_files(tmp_path) == [store.path(blob.key)]
    assert await store.delete(blob.key) is True
    assert await store.delete(blob.key) is False
    with pytest.raises(NotFoundError):
        await store.read(blob.key)


async def test_upload_over_limit_is_payload_too_large_and_leaves_nothing(tmp_path):
    store = DiskFileStore(tmp_path / "files")
    with pytest.raises(TooLargeError) as err:
        await store.save(chunks_of(b"x" * 5000), max_bytes=4096)
    assert "4096" in err.value.message and from_domain(err.value).status == 413
    assert all_files(tmp_path) == []


async def test_failed_upload_stream_leaves_nothing(tmp_path):
    store = DiskFileStore(tmp_path / "files")

    async def broken():
        yield b"partial"
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        await store.save(broken(), max_bytes=100)
    assert all_files(tmp_path) == []


async def test_cancelled_upload_leaves_nothing(tmp_path):
    store = DiskFileStore(tmp_path / "files")

    async def slow():
        yield b"first"
        await anyio.sleep(10)
        yield b"never"

    with anyio.move_on_after(0.2):
        await store.save(slow(), max_bytes=100)
    assert all_files(tmp_path) == []


async def test_empty_upload_is_a_blob(tmp_path):
    store = DiskFileStore(tmp_path / "files")
    blob = await store.save(chunks_of(b""), max_bytes=10)
    assert blob.size == 0 and await store.read(blob.key) == b""


@pytest.mark.parametrize("key", ["../../etc/passwd", "", "ABCDEF", "0" * 31, "0" * 32 + "/x"])
async def test_keys_that_are_not_ours_are_refused(tmp_path, key):
    store = DiskFileStore(tmp_path / "files")
    with pytest.raises(NotFoundError):
        await store.read(key)
