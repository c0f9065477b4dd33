"""Leases: background work claimed through the metadata store, so replicas share it safely.

Background work (a vector-store file being indexed, an eval job, a fine-tuning job) is a
document in the metadata store. The process doing it writes its `run` id and a `lease_until`
time into that document, in the same row-locked update that checks nobody else holds it
(PostgreSQL: SKIP LOCKED, so a row another replica is claiming right now is passed over, not
waited for), and renews the lease while it works. A document whose lease ran out belongs to a
replica that died (or lost the database): another replica takes it over, and what "take over"
means is the owner's business (ingestion redoes the file; eval and training jobs, whose state
lived in the dead process's memory, are failed with the reason).

On SQLite (`shared` false) the database belongs to one process: only documents this process
claimed are held, and a start finds every unfinished one left by a previous run. That is
exactly the single-process behaviour from before replicas existed, with no renewals at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from ggstack.stores.base import MetadataStore

log = logging.getLogger("ggstack.stores.leases")

#: How long a claim lasts unrenewed (renewed every third of it) unless the settings say otherwise.
DEFAULT_LEASE_SECONDS = 30.0

Doc = dict[str, Any]


class Leases:
    """One per server process: its `run_id`, and claims and renewals on documents."""

    def __init__(self, metadata: MetadataStore, *, shared: bool,
                 seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.metadata = metadata
        #: other server processes use the same database: claims expire unless renewed
        self.shared = shared
        self.seconds = seconds
        self.run_id = uuid.uuid4().hex

    # -- reading a document's claim ---------------------------------------------------------

    def mine(self, doc: Doc) -> bool:
        return doc.get("run") == self.run_id

    def held(self, doc: Doc) -> bool:
        """Being worked on now: by this process, or (replicas) under another's unexpired lease."""
        if self.mine(doc):
            return True
        return self.shared and doc.get("run") is not None and float(doc.get("lease_until") or 0) > time.time()

    def stamp(self, doc: Doc) -> None:
        """Mark `doc` (inside an update, or before it is first stored) as this process's."""
        doc["run"] = self.run_id
        doc["lease_until"] = time.time() + self.seconds

    # -- changing it ------------------------------------------------------------------------

    async def take(self, kind: str, id: str, change: Callable[[Doc], bool], *,
                   parent: str | None = None) -> Doc | None:
        """Claim the document if nobody else holds it and `change` (which edits it in place)
        says it wants it; returns the new document, or None if it was not taken."""
        taken = False

        def claim(doc: Doc) -> None:
            nonlocal taken
            if not (self.shared and self.held(doc)) and change(doc):
                self.stamp(doc)
                taken = True

        doc = await self.metadata.update(kind, id, claim, parent=parent, skip_locked=self.shared)
        return doc if taken else None

    async def reap(self, kind: str, docs: Iterable[Doc], key: str, active: Callable[[Doc], bool],
                   outcome: Doc) -> list[Doc]:
        """Claim each `active` document nobody holds and write `outcome` into it (work whose owner
        is gone and cannot be resumed: failed with the reason); the documents this process changed."""
        def end(doc: Doc) -> bool:
            if not active(doc):
                return False
            doc.update(outcome)
            return True

        reaped = []
        for doc in docs:
            if active(doc) and not self.held(doc):
                changed = await self.take(kind, doc[key], end)
                if changed is not None:
                    reaped.append(changed)
        return reaped

    @contextlib.asynccontextmanager
    async def kept(self, kind: str, id: str, active: Callable[[Doc], bool], *, parent: str | None = None,
                   lost: Callable[[], object] | None = None) -> AsyncIterator[None]:
        """Renew this process's lease on the document while the body runs (replicas only).
        When the document is no longer this process's or no longer `active` (finished, or
        cancelled through another replica), `lost` is called once and renewals stop."""
        if not self.shared:
            yield
            return
        task = asyncio.get_running_loop().create_task(self._renew(kind, id, active, parent, lost))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _renew(self, kind: str, id: str, active: Callable[[Doc], bool], parent: str | None,
                     lost: Callable[[], object] | None) -> None:
        still = True

        def renew(doc: Doc) -> None:
            nonlocal still
            still = self.mine(doc) and active(doc)
            if still:
                doc["lease_until"] = time.time() + self.seconds

        while still:
            await asyncio.sleep(self.seconds / 3)
            try:
                if await self.metadata.update(kind, id, renew, parent=parent) is None:
                    still = False
            except Exception:  # a database blip: the next renewal may work, the lease covers the gap
                log.warning("renewing the lease on %s %s failed", kind, id, exc_info=True)
        if lost is not None:
            lost()

    def every_half_lease(self, look: Callable[[], Awaitable[object]], what: str) -> asyncio.Task[None]:
        """Replicas: run `look` (finding work whose lease expired) every half lease, for good."""
        async def loop() -> None:
            while True:
                await asyncio.sleep(self.seconds / 2)
                try:
                    await look()
                except Exception:  # a database blip: the next round tries again
                    log.warning("looking for %s failed", what, exc_info=True)

        return asyncio.get_running_loop().create_task(loop(), name=f"leases-{what}")
