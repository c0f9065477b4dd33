"""Open and close the long-lived parts (stores, model registry) around the app's lifetime.

Models come from three places, registered in this order: the bundled defaults, the
run-config, and those registered through `POST /v1/models` (persisted in the metadata
store as kind "model", so they survive a restart). Only the last are persisted: the first
two are re-read from their source at each start.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import anyio.to_thread

from ggstack.core.config import Settings
from ggstack.core.context import Context
from ggstack.core.errors import DomainError
from ggstack.engines.admission import ModelDirs
from ggstack.engines.registry import ModelRegistry, ModelSpec, default_model_specs
from ggstack.engines.remote.client import RemoteProvider, open_providers
from ggstack.engines.remote.discovery import discover
from ggstack.eval.jobs import EvalJobs
from ggstack.http.operations import Operation
from ggstack.ingest.worker import IngestWorker
from ggstack.search.warmup import SearchWarmup
from ggstack.stores.base import MetadataStore
from ggstack.stores.factory import open_stores
from ggstack.stores.leases import Leases
from ggstack.training.jobs import TrainingSetup, TrainingWorker

log = logging.getLogger("ggstack.core.lifespan")

MODEL_KIND = "model"


@asynccontextmanager
async def open_context(settings: Settings, operations: tuple[Operation, ...],
                       missing: frozenset[str]) -> AsyncIterator[Context]:
    async with open_stores(settings) as stores, open_providers(settings.inference_providers) as providers:
        # PostgreSQL may be shared by replicas: work is claimed with leases and the model
        # registry follows the database; a SQLite file belongs to this process alone.
        shared = stores.metadata.shared
        registry = ModelRegistry(max_queue=settings.max_queue, context_factor=settings.max_context_factor,
                                 providers=providers)
        await register_models(registry, settings, stores.metadata, live=shared)
        # one run id for this process's claims on files, eval jobs and training jobs
        leases = Leases(stores.metadata, shared=shared, seconds=settings.lease_seconds)
        ingest = IngestWorker(metadata=stores.metadata, files=stores.files, vectors=stores.vectors,
                              models=registry, leases=leases)
        evals = EvalJobs(stores.metadata, leases)
        training = TrainingWorker(metadata=stores.metadata, models=registry, leases=leases, setup=TrainingSetup(
            window=settings.training_window, threads=os.cpu_count() or 1, work_dir=settings.data_dir / "training",
            checkpoint_type=settings.training_checkpoint_type))
        ctx = Context(settings=settings, operations=operations, missing=missing, models=registry,
                      metadata=stores.metadata, files=stores.files, vectors=stores.vectors, ingest=ingest,
                      evals=evals, training=training)
        ctx.warmup = SearchWarmup(stores.metadata, stores.vectors, registry, settings.search_warmup_stores,
                                  settings.search_warmup_postings_mb * 1024 * 1024)
        loop = asyncio.get_running_loop()
        follower = loop.create_task(follow_models(registry, settings.model_refresh_seconds)) if shared else None
        warming: asyncio.Task[None] | None = None
        try:
            # In the background, and first, so its loads start as early as they can: readiness
            # does not wait for it (ggstack.search.warmup).
            warming = loop.create_task(ctx.warmup.run())
            # Resumes vector-store files left in_progress by a previous run (replicas: nobody
            # holds); eval and fine-tuning jobs cannot resume (their state died with the process)
            # and are marked failed; replicas keep looking for those a dead replica leaves.
            await ingest.start()
            await evals.open()
            await training.start()
            yield ctx
        finally:
            await stopped(warming)
            await training.close()
            await evals.close()
            await stopped(follower)
            await ingest.close()
            await registry.close()
            log.info("ggstack stopped")


async def stopped(task: asyncio.Task[None] | None) -> None:
    """Cancel a background task and wait for it (a worker thread it waits on finishes first)."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def register_models(registry: ModelRegistry, settings: Settings, metadata: MetadataStore, *,
                          live: bool = False) -> None:
    specs: list[ModelSpec] = []
    if settings.default_models:
        specs += await anyio.to_thread.run_sync(default_model_specs, settings.data_dir)
    specs += [ModelSpec(**model.model_dump()) for model in settings.models]
    specs += await remote_model_specs(registry.providers)
    for spec in specs:
        registry.register(spec, replace=True)
    registry.follow(functools.partial(stored_model_specs, metadata, ModelDirs(settings.model_directories)),
                    live=live)
    await registry.refresh()
    log.info("models: %s", ", ".join(spec.identifier for spec in registry.list()) or "none")


async def stored_model_specs(metadata: MetadataStore, dirs: ModelDirs) -> list[ModelSpec]:
    """The models registered through `POST /v1/models`, as the database holds them now."""
    page = await metadata.list(MODEL_KIND, limit=None, order="asc")
    specs = []
    for stored in page.items:
        try:
            spec = ModelSpec.model_validate(stored["spec"])
        except ValueError as exc:
            log.warning("registered model %s cannot be read and is skipped: %s", stored.get("id"), exc)
            continue
        if spec.path is not None and dirs.inside(spec.path) is None:
            # Registered when model_dirs said otherwise: the fence holds for old entries too.
            log.warning("registered model %s is outside model_dirs and skipped", stored.get("id"))
            continue
        specs.append(spec)
    return specs


async def follow_models(registry: ModelRegistry, every: float) -> None:
    """Replicas: re-read the registrations other replicas make or remove, every `every` seconds."""
    while True:
        await asyncio.sleep(every)
        try:
            await registry.refresh()
        except Exception:  # a database blip: the next round tries again
            log.warning("re-reading the model registrations failed", exc_info=True)


async def remote_model_specs(providers: Mapping[str, RemoteProvider]) -> list[ModelSpec]:
    """Each remote provider's configured models, or those its model list names.

    A provider that cannot be asked at start contributes no discovered models (logged); its
    configured ones are registered all the same and work once it answers.
    """
    specs: list[ModelSpec] = []
    for provider_id, provider in sorted(providers.items()):
        models = provider.config.models
        if models is None:
            try:
                models = await discover(provider)
            except DomainError as exc:
                log.warning("inference provider %s: models not discovered: %s", provider_id, exc.message)
                continue
        specs += [ModelSpec(identifier=m.identifier, engine="remote", provider_id=provider_id,
                            provider_model_id=m.provider_model_id or m.identifier, model_type=m.model_type,
                            context_length=m.context_length, embedding_dimension=m.embedding_dimension,
                            metadata=m.metadata) for m in models]
    return specs
