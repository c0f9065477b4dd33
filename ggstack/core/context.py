"""What every handler receives as `ctx`: the settings and the long-lived engines and stores."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ggstack.core.config import Settings
from ggstack.http.operations import Operation

if TYPE_CHECKING:
    from ggstack.engines.registry import ModelRegistry
    from ggstack.eval.jobs import EvalJobs
    from ggstack.http.render import RenderedAnswer
    from ggstack.ingest.worker import IngestWorker
    from ggstack.providers.health import ServerHealth
    from ggstack.search.warmup import SearchWarmup
    from ggstack.stores.base import FileStore, MetadataStore, VectorStore
    from ggstack.telemetry.spans import SpanRecorder
    from ggstack.training.jobs import TrainingWorker


@dataclass
class Context:
    """Created once in the app's lifespan (every field but `spans` is set before the first
    request); tests get a fresh one per app."""

    settings: Settings
    operations: tuple[Operation, ...]
    missing: frozenset[str]
    models: ModelRegistry
    metadata: MetadataStore
    files: FileStore
    vectors: VectorStore
    ingest: IngestWorker
    evals: EvalJobs
    training: TrainingWorker
    #: None when telemetry is off.
    spans: SpanRecorder | None = None
    #: Answers kept rendered by name (the model lists, handlers/models.py), this server's own.
    rendered: dict[str, RenderedAnswer] = field(default_factory=dict)
    #: /v1/health's running and last clean check (ggstack.providers.health), made on first use.
    health: ServerHealth | None = None
    #: The start-up warm-up of vector-store search (ggstack.search.warmup); None in a bare Context.
    warmup: SearchWarmup | None = None
