"""Pick and open the store implementations from settings, for the app's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio.to_thread

from ggstack.core.config import Settings
from ggstack.stores.chroma import ChromaVectorStore
from ggstack.stores.files import DiskFileStore
from ggstack.stores.keywords import KeywordIndex
from ggstack.stores.sql import SqlMetadataStore


@dataclass(frozen=True)
class Stores:
    metadata: SqlMetadataStore
    files: DiskFileStore
    vectors: ChromaVectorStore


@asynccontextmanager
async def open_stores(settings: Settings) -> AsyncIterator[Stores]:
    """SQL at `settings.sqlalchemy_url`, files in `files_dir` (default `<data_dir>/files`), Chroma at `chroma_url`
    or embedded in `<data_dir>/chroma`. Opening is blocking (schema, Chroma start), so it
    runs in a worker thread."""
    data_dir = settings.data_dir
    await anyio.to_thread.run_sync(lambda: data_dir.mkdir(parents=True, exist_ok=True))
    metadata = await anyio.to_thread.run_sync(SqlMetadataStore.open, settings.sqlalchemy_url)
    try:
        files = await anyio.to_thread.run_sync(DiskFileStore, settings.files_dir or data_dir / "files")
        # The keyword index lives in the metadata database, beside what it indexes the files of.
        keywords = await anyio.to_thread.run_sync(KeywordIndex.open, settings.sqlalchemy_url)
        try:
            if settings.chroma_url:
                vectors = await anyio.to_thread.run_sync(ChromaVectorStore.server, settings.chroma_url, keywords)
            else:
                vectors = await anyio.to_thread.run_sync(ChromaVectorStore.embedded, data_dir / "chroma", keywords)
            try:
                yield Stores(metadata=metadata, files=files, vectors=vectors)
            finally:
                await anyio.to_thread.run_sync(vectors.close)
        finally:
            await anyio.to_thread.run_sync(keywords.close)
    finally:
        await anyio.to_thread.run_sync(metadata.close)
