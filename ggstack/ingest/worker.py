"""The background indexer: turns `in_progress` vector-store files into chunks.

The durable queue is the metadata store itself: a file is queued by writing its
VECTOR_STORE_FILE document with status `in_progress`, and it leaves the queue when the
worker writes `completed`, `failed` or (batch cancel) `cancelled`. The in-memory
asyncio queue only says what to look at next; on start every `in_progress` document is
queued again, so a crash (even kill -9) loses no work and leaves no store in progress
forever. Re-running a file is safe because indexing is idempotent (see pipeline).

Each document carries a `generation` (new on every attach) and, once a worker claims it,
the `run` id of the process. A job's result is written only if its generation is still
current, so a detach or re-attach while a job runs is never overwritten by stale work.
A file whose indexing kept killing the server is failed after MAX_ATTEMPTS claims.

Replicas (several servers on one PostgreSQL database): a claim is a lease
(ggstack/stores/leases.py), renewed while the file is indexed; a result is written only while
this process still holds the file. Every replica polls for `in_progress` files nobody holds
(queued by a replica that died, or whose lease ran out) and claims them, so a replica killed
mid-file has its work redone by another once the lease expires. Redoing a file is invisible:
chunk ids are the file's id and position, and the file's chunks are replaced, never added to.
On SQLite the database belongs to one process, so claims there are plain (as before replicas).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ggstack.core.errors import DomainError, NotFoundError
from ggstack.core.progress import Progress
from ggstack.ingest import records
from ggstack.ingest.chunking import chunking_params
from ggstack.ingest.extract import ExtractionError
from ggstack.ingest.pipeline import EmbeddingBusy, index_file
from ggstack.ingest.records import FILE_BATCH, VECTOR_STORE, VECTOR_STORE_FILE
from ggstack.stores.base import FileStore, MetadataStore, VectorStore
from ggstack.stores.leases import Leases

log = logging.getLogger("ggstack.ingest.worker")

#: Files indexed at once: one can extract or write to Chroma while another embeds.
CONCURRENCY = 2
MAX_ATTEMPTS = 3
#: How often expired uploads are swept from disk (they vanish from the API at once anyway).
SWEEP_INTERVAL_SECONDS = 600
#: A job whose file is already being indexed waits this long before being looked at again.
BUSY_RETRY_SECONDS = 0.2

Key = tuple[str, str]


def in_progress(doc: dict[str, Any]) -> bool:
    return bool(doc["status"] == "in_progress")


def failure(message: str, code: str = "server_error") -> dict[str, Any]:
    # The spec allows only server_error and rate_limit_exceeded as last_error codes.
    return {"status": "failed", "last_error": {"code": code, "message": message}}


class IngestWorker:
    """Start with `await start()` (resumes unfinished work), stop with `await close()`."""

    def __init__(self, *, metadata: MetadataStore, files: FileStore, vectors: VectorStore, models: Any,
                 concurrency: int = CONCURRENCY, leases: Leases | None = None) -> None:
        self.metadata = metadata
        self.files = files
        self.vectors = vectors
        self.models = models
        #: Claims on files, so cancel can tell "running" from "queued" (and replicas share the work).
        self.leases = leases or Leases(metadata, shared=False)
        self._concurrency = concurrency
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._running: set[Key] = set()
        self._queued: set[Key] = set()
        self._waiters: dict[Key, set[asyncio.Future[None]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._progress: Progress | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        resumed = await self.resume()
        if resumed:
            log.info("resuming %d unfinished vector store file(s)", resumed)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._consume(), name=f"ingest-{i}") for i in range(self._concurrency)]
        self._tasks.append(loop.create_task(self._sweep(), name="ingest-sweep"))
        if self.leases.shared:
            self._tasks.append(self.leases.every_half_lease(self._poll, "unclaimed files"))

    async def close(self) -> None:
        """Stop; a file being indexed stays in_progress and is redone at the next start."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def resume(self) -> int:
        """Queue every in_progress file of every store (oldest first); a file claimed too many
        times already is failed when it is claimed again (`_job`)."""
        unfinished = await self._unfinished()
        for key in unfinished:
            self.submit(*key)
        return len(unfinished)

    async def _unfinished(self) -> list[Key]:
        """(store, file) of every in_progress file, oldest store first."""
        keys: list[Key] = []
        stores = await self.metadata.list(VECTOR_STORE, limit=None, order="asc")
        for store in stores.items:
            page = await self.metadata.list(VECTOR_STORE_FILE, parent=store["id"], limit=None, order="asc",
                                            where={"status": "in_progress"})
            keys += [(store["id"], doc["id"]) for doc in page.items if not self.leases.held(doc)]
        return keys

    # -- what handlers call -----------------------------------------------------------------

    def submit(self, store_id: str, file_id: str) -> None:
        """Look at this file soon; its document must already say in_progress."""
        key = (store_id, file_id)
        if key not in self._queued:  # queued once is enough: the job reads the document then
            self._queued.add(key)
            self._queue.put_nowait(key)

    async def wait(self, store_id: str, file_id: str, timeout: float) -> dict[str, Any] | None:
        """Wait up to `timeout` for the file to leave in_progress; its document (None if gone)."""
        key = (store_id, file_id)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Registered before reading, so a job that ends now still resolves our future.
        self._waiters.setdefault(key, set()).add(done)
        try:
            doc = await self.metadata.get(VECTOR_STORE_FILE, file_id, parent=store_id)
            if doc is not None and doc["status"] == "in_progress":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(done), timeout)
                doc = await self.metadata.get(VECTOR_STORE_FILE, file_id, parent=store_id)
            return doc
        finally:
            waiting = self._waiters.get(key)
            if waiting is not None:
                waiting.discard(done)
                if not waiting:
                    del self._waiters[key]

    async def cancel_batch(self, store_id: str, batch_id: str) -> int:
        """Cancel the batch's files not yet started; running ones finish. Returns how many."""
        await self.metadata.update(FILE_BATCH, batch_id, {"cancelled": True}, parent=store_id)
        page = await self.metadata.list(VECTOR_STORE_FILE, parent=store_id, limit=None, order="asc",
                                        where={"batch_id": batch_id, "status": "in_progress"})
        cancelled = 0
        for doc in page.items:
            def change(current: dict[str, Any]) -> None:
                nonlocal cancelled
                if (current.get("batch_id") == batch_id and current["status"] == "in_progress"
                        and not self.leases.held(current)):
                    current["status"] = "cancelled"
                    cancelled += 1

            await self.metadata.update(VECTOR_STORE_FILE, doc["id"], change, parent=store_id)
            self._signal((store_id, doc["id"]))
        return cancelled

    def backlog(self) -> int:
        """Files queued or being indexed by this process (for /metrics)."""
        return self._queue.qsize() + len(self._running)

    # -- the loop ---------------------------------------------------------------------------

    async def _consume(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            if key in self._running:
                # Re-attached while its previous job runs: look again when that one is done.
                asyncio.get_running_loop().call_later(BUSY_RETRY_SECONDS, self.submit, *key)
                continue
            self._running.add(key)
            try:
                await self._job(*key)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The job's own errors become a failed file; this is a bug or a lost database.
                log.exception("indexing %s into %s stopped unexpectedly", key[1], key[0])
            finally:
                self._running.discard(key)
                self._signal(key)
                self._report()

    def _report(self) -> None:
        """Advance the terminal's indexing bar: files done since the backlog was last empty."""
        backlog = self.backlog()
        if self._progress is None:
            self._progress = Progress("indexing files", 0, unit="files")
        self._progress.update(self._progress.done + 1, self._progress.done + 1 + backlog)
        if backlog == 0:
            self._progress.close()
            self._progress = None

    def _signal(self, key: Key) -> None:
        for done in self._waiters.pop(key, ()):
            if not done.done():
                done.set_result(None)

    async def _sweep(self) -> None:
        while True:
            try:
                await records.purge_expired_files(self.metadata, self.files)
            except Exception:
                log.exception("sweeping expired files failed")
            await asyncio.sleep(SWEEP_INTERVAL_SECONDS)

    # -- claims ---------------------------------------------------------------------------

    async def _claim(self, store_id: str, file_id: str) -> dict[str, Any] | None:
        """Take the file for this process; None if it is done, gone, or another replica holds it."""
        def unfinished(doc: dict[str, Any]) -> bool:
            if doc["status"] != "in_progress":
                return False
            doc["attempts"] = int(doc.get("attempts") or 0) + 1
            return True

        return await self.leases.take(VECTOR_STORE_FILE, file_id, unfinished, parent=store_id)

    async def _poll(self) -> None:
        """Replicas: queue the in_progress files nobody holds (their replica died, or has not
        claimed them yet: whichever claims first does the work)."""
        for key in await self._unfinished():
            if key not in self._running:
                self.submit(*key)

    async def _job(self, store_id: str, file_id: str) -> None:
        doc = await self._claim(store_id, file_id)
        if doc is None:
            return
        if int(doc["attempts"]) > MAX_ATTEMPTS:
            await self._finish(store_id, doc, failure(
                f"indexing was interrupted {MAX_ATTEMPTS} times (the server stopped while processing this "
                "file); giving up"))
            return
        store = await self.metadata.get(VECTOR_STORE, store_id)
        if store is None:
            return
        async with self.leases.kept(VECTOR_STORE_FILE, file_id, in_progress, parent=store_id):
            result = await self._index(store, doc)
        await self._finish(store_id, doc, result)

    async def _index(self, store: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
        """The file's final state: completed with its usage, or failed with a reason."""
        try:
            file = await records.get_file(self.metadata, self.files, doc["id"])
            data = await self.files.read(file["key"])
            engine = await self.models.embedder(store["embedding_model"])
            if engine.dimension != store["embedding_dimension"]:
                return failure(f"embedding model {store['embedding_model']} now makes {engine.dimension}-"
                               f"dimensional vectors; this store holds {store['embedding_dimension']}")
            size, overlap = chunking_params(doc.get("chunking_strategy"))
            indexed = await index_file(data=data, content_type=file.get("content_type"), filename=file["filename"],
                                       engine=engine, vectors=self.vectors, store_id=store["id"], file_id=doc["id"],
                                       attributes=doc.get("attributes") or {}, max_chunk_size_tokens=size,
                                       chunk_overlap_tokens=overlap)
        except ExtractionError as exc:
            return failure(exc.message)
        except EmbeddingBusy as exc:
            return failure(str(exc), "rate_limit_exceeded")
        except DomainError as exc:
            return failure(exc.message)
        except Exception:
            log.exception("indexing %s into %s failed", doc["id"], store["id"])
            return failure("internal error while indexing the file; see the server log")
        return {"status": "completed", "last_error": None, "usage_bytes": indexed.usage_bytes,
                "chunk_count": indexed.chunks}

    async def _finish(self, store_id: str, claimed: dict[str, Any], result: dict[str, Any]) -> None:
        applied = False

        def change(current: dict[str, Any]) -> None:
            nonlocal applied
            if (current.get("generation") == claimed.get("generation") and current["status"] == "in_progress"
                    and self.leases.mine(current)):  # a replica that took over writes its own result
                current.update(result)
                if current.get("last_error") is None:
                    current.pop("last_error", None)
                applied = True

        final = await self.metadata.update(VECTOR_STORE_FILE, claimed["id"], change, parent=store_id)
        if final is None:
            # Detached (or the store deleted) while indexing: drop what this job wrote.
            with contextlib.suppress(NotFoundError):
                await self.vectors.delete_file(store_id, claimed["id"])
            return
        if applied and final["status"] == "completed" and final.get("attributes") != claimed.get("attributes"):
            # Attributes changed while indexing; the chunks were written with the old ones.
            with contextlib.suppress(NotFoundError):
                await self.vectors.set_file_attributes(store_id, claimed["id"], final.get("attributes") or {})
