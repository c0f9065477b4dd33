"""Which provider serves each API area, as /v1/providers and /v1/inspect/routes report it.

Llama Stack names providers `inline::<x>` (in-process) or `remote::<x>` (over the network);
clients use these names to tell what a server can do.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from ggstack.core.config import Settings


@dataclass(frozen=True)
class Provider:
    api: str
    provider_id: str
    provider_type: str
    config: dict[str, Any]


# Handler module (an operation's tag in snake_case) -> the Llama Stack API it belongs to.
MODULE_API = {
    "inference": "inference",
    "models": "models",
    "files": "files",
    "vector_stores": "vector_io",
    "responses": "agents",
    "agents": "agents",
    "safety": "safety",
    "datasets": "datasets",
    "dataset_io": "datasetio",
    "eval": "eval",
    "benchmarks": "benchmarks",
    "post_training": "post_training",
    "telemetry": "telemetry",
    "audio": "inference",
    "images": "inference",
    "performance": "inference",
    "inspect": "inspect",
    "providers": "providers",
}


def ctransformers_available() -> bool:
    return importlib.util.find_spec("ctransformers") is not None


def configured_providers(settings: Settings) -> list[Provider]:
    providers = [
        Provider("inference", "llama-cpp", "inline::llama-cpp", {"data_dir": str(settings.data_dir)}),
    ]
    if ctransformers_available():
        providers.append(Provider("inference", "ctransformers", "inline::ctransformers", {}))
    for remote in settings.inference_providers:
        # the key is never shown; only whether one is set
        config = {"base_url": remote.base_url, "api_key_set": remote.api_key is not None,
                  "timeout_seconds": remote.timeout_seconds, "max_concurrency": remote.max_concurrency,
                  "models": [m.identifier for m in remote.models] if remote.models is not None else "discovered"}
        providers.append(Provider("inference", remote.provider_id, remote.provider_type, config))
    if settings.chroma_url:
        providers.append(Provider("vector_io", "chromadb", "remote::chromadb", {"url": settings.chroma_url}))
    else:
        providers.append(Provider("vector_io", "chromadb", "inline::chromadb",
                                  {"db_path": str(settings.data_dir / "chroma")}))
    providers.append(Provider("files", "localfs", "inline::localfs",
                              {"storage_dir": str(settings.files_dir or settings.data_dir / "files")}))
    providers.append(Provider("datasetio", "localfs", "inline::localfs", {"kvstore": "metadata store"}))
    if settings.telemetry:
        providers.append(Provider("telemetry", "spans", "inline::sql-spans", {"store": "metadata store"}))
    return providers


def provider_types_for(api: str, providers: list[Provider]) -> list[str]:
    return sorted({p.provider_type for p in providers if p.api == api})
