"""`FileStore` on the local disk: `<data_dir>/files/<ab>/<key>` with random hex keys.

The client's filename never becomes a path. A blob is written to `files/tmp/` and renamed
into place only when complete, so a crash or an over-limit upload leaves no partial blob
where a reader could find it.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

import anyio.to_thread

from ggstack.core.errors import NotFoundError, TooLargeError
from ggstack.stores.base import StoredBlob

KEY_PATTERN = re.compile(r"[0-9a-f]{32}")


class DiskFileStore:
    """Blobs under `root` (normally `<data_dir>/files`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        # Keys come back from the metadata store; checking them keeps a corrupted or
        # hostile value from ever naming a path outside the root.
        if not KEY_PATTERN.fullmatch(key):
            raise NotFoundError("stored file content not found")
        return self.root / key[:2] / key

    async def save(self, chunks: AsyncIterator[bytes], *, max_bytes: int) -> StoredBlob:
        key = uuid.uuid4().hex
        tmp = self._tmp / f"{key}.part"
        digest = hashlib.sha256()
        size = 0
        handle: BinaryIO = await anyio.to_thread.run_sync(tmp.open, "wb")
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise TooLargeError(
                        f"file is larger than the upload limit of {max_bytes} bytes "
                        f"(max_upload_bytes)")
                await anyio.to_thread.run_sync(_write_and_hash, handle, digest, chunk)
            await anyio.to_thread.run_sync(_finish, handle, tmp, self.path(key))
        except BaseException:
            # Cancellation (client gone) included: never leave a partial file behind.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_discard, handle, tmp)
            raise
        return StoredBlob(key=key, size=size, sha256=digest.hexdigest())

    async def read(self, key: str) -> bytes:
        path = self.path(key)
        try:
            return await anyio.to_thread.run_sync(path.read_bytes)
        except FileNotFoundError:
            raise NotFoundError("stored file content not found") from None

    async def stream(self, key: str, *, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        path = self.path(key)
        try:
            handle: BinaryIO = await anyio.to_thread.run_sync(path.open, "rb")
        except FileNotFoundError:
            raise NotFoundError("stored file content not found") from None
        try:
            while chunk := await anyio.to_thread.run_sync(handle.read, chunk_size):
                yield chunk
        finally:
            handle.close()

    async def delete(self, key: str) -> bool:
        path = self.path(key)
        try:
            await anyio.to_thread.run_sync(path.unlink)
        except FileNotFoundError:
            return False
        return True


def _write_and_hash(handle: BinaryIO, digest: Any, chunk: bytes) -> None:
    handle.write(chunk)
    digest.update(chunk)


def _finish(handle: BinaryIO, tmp: Path, final: Path) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    final.parent.mkdir(exist_ok=True)
    os.replace(tmp, final)


def _discard(handle: BinaryIO, tmp: Path) -> None:
    handle.close()
    tmp.unlink(missing_ok=True)
