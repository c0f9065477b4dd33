"""What every handler receives as `ctx`: the settings and the long-lived engines and stores."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ggstack.core.config import Settings
from ggstack.http.operations import Operation

if TYPE_CHECKING:
    from ggstack.engines.registry import ModelRegistry
    from ggstack.ingest.worker import IngestWorker
    from ggstack.stores.base import FileStore, MetadataStore, VectorStore
    from ggstack.telemetry.spans import SpanRecorder


@dataclass
class Context:
    """Created once in the app's lifespan; tests get a fresh one per app."""

    settings: Settings
    operations: tuple[Operation, ...]
    missing: frozenset[str]
    models: ModelRegistry | None = None
    metadata: MetadataStore | None = None
    files: FileStore | None = None
    vectors: VectorStore | None = None
    ingest: IngestWorker | None = None
    spans: SpanRecorder | None = None
    extras: dict[str, Any] = field(default_factory=dict)
