"""Which models a remote provider serves, read from its own model list.

The OpenAI list (`GET /v1/models`) names models but not their kind; the servers that say
more are read for it: vLLM's `max_model_len`, llama-server's `meta.n_ctx_train`, a Llama Stack
server's (another ggstack's) native list with `model_type` and metadata, Dell's `capability`.
Ollama is asked through its own API (`/api/tags`, then `/api/show` per model for its
capabilities and sizes). Speech and image models of a remote are not served through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ggstack.core.config import RemoteModelConfig
from ggstack.engines.remote.client import RemoteProvider

SERVED_TYPES = ("llm", "embedding")


async def discover(provider: RemoteProvider) -> list[RemoteModelConfig]:
    """The provider's models; raises UnavailableError/TimedOutError when it cannot be asked."""
    if provider.flavour.ollama_listing:
        return await _ollama_models(provider)
    return listed_models(await provider.get_json("/models"))


def listed_models(payload: Any) -> list[RemoteModelConfig]:
    """Models from an OpenAI-shaped (`data: [{id}]`) or Llama Stack-shaped (`data: [{identifier}]`) list."""
    entries = payload.get("data") if isinstance(payload, Mapping) else payload
    models: list[RemoteModelConfig] = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, Mapping):
            continue
        name = entry.get("id") or entry.get("identifier")
        kind = entry.get("model_type") or ("embedding" if entry.get("capability") == "embedding" else "llm")
        if not isinstance(name, str) or not name or kind not in SERVED_TYPES:
            continue
        given_metadata, given_meta = entry.get("metadata"), entry.get("meta")
        metadata = given_metadata if isinstance(given_metadata, Mapping) else {}
        meta = given_meta if isinstance(given_meta, Mapping) else {}
        context = entry.get("max_model_len") or metadata.get("context_length") or meta.get("n_ctx_train")
        dimension = metadata.get("embedding_dimension") if kind == "embedding" else None
        models.append(RemoteModelConfig(identifier=name, model_type=kind, context_length=_int(context),
                                        embedding_dimension=_int(dimension)))
    return models


async def _ollama_models(provider: RemoteProvider) -> list[RemoteModelConfig]:
    tags = await provider.get_json("/api/tags", root=True)
    models: list[RemoteModelConfig] = []
    for entry in tags.get("models", []) if isinstance(tags, Mapping) else []:
        name = entry.get("name") or entry.get("model") if isinstance(entry, Mapping) else None
        if not isinstance(name, str):
            continue
        shown = await provider.post_json("/api/show", {"model": name}, root=True)
        info = shown.get("model_info") if isinstance(shown.get("model_info"), Mapping) else {}
        embedding = "embedding" in (shown.get("capabilities") or [])
        context = next((v for k, v in info.items() if k.endswith(".context_length")), None)
        dimension = next((v for k, v in info.items() if k.endswith(".embedding_length")), None) if embedding else None
        models.append(RemoteModelConfig(identifier=name, model_type="embedding" if embedding else "llm",
                                        context_length=_int(context), embedding_dimension=_int(dimension)))
    return models


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and value >= 1 else None
