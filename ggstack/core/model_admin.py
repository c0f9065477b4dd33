"""`ggstack models list | register PATH | remove ID`: the models a data directory's server will serve.

These work on the data directory's database without a running server, the way `POST /v1/models`
persists a registration (kind "model"), so the next `ggstack serve` loads what was registered here.
A checkpoint folder is converted to GGUF here, with a progress bar, so the server never has to:
sentence-transformers BERT safetensors (what `ggstack/engines/convert.py` reads) become an
embedding model. A file must lie inside `model_dirs`, as the server's fence requires.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ggstack.core.config import Settings
from ggstack.core.errors import DomainError, InvalidValueError
from ggstack.core.lifespan import MODEL_KIND
from ggstack.engines.admission import ModelDirs
from ggstack.engines.registry import ModelRegistry, ModelSpec, default_model_specs
from ggstack.stores.sql import SqlMetadataStore


class ModelAdminError(ValueError):
    """A registration or removal that cannot be done; the message says why and what to do instead."""


@dataclass(frozen=True)
class Listed:
    spec: ModelSpec
    source: str  # "bundled" | "run config" | "registered"


def open_store(settings: Settings) -> SqlMetadataStore:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqlMetadataStore.open(settings.sqlalchemy_url)


async def stored_specs(store: SqlMetadataStore) -> list[ModelSpec]:
    page = await store.list(MODEL_KIND, limit=None, order="asc")
    return [ModelSpec.model_validate(item["spec"]) for item in page.items]


def list_models(settings: Settings) -> list[Listed]:
    bundled = default_model_specs(settings.data_dir) if settings.default_models else []
    configured = [ModelSpec(**model.model_dump()) for model in settings.models]
    store = open_store(settings)
    try:
        registered = asyncio.run(stored_specs(store))
    finally:
        store.close()
    return ([Listed(s, "bundled") for s in bundled] + [Listed(s, "run config") for s in configured]
            + [Listed(s, "registered") for s in registered])


def register(settings: Settings, path: Path, identifier: str | None, model_type: str | None) -> ModelSpec:
    """Convert `path` if it is a checkpoint folder, check the GGUF, and persist the registration."""
    path = path.expanduser().resolve()
    if path.is_dir():
        path, model_type = convert_folder(settings, path, identifier, model_type)
    elif not path.is_file():
        raise ModelAdminError(f"{path}: no such file or directory")
    dirs = ModelDirs(settings.model_directories)
    if dirs.inside(path) is None:
        raise ModelAdminError(f"{path} is outside the model directories ({', '.join(map(str, dirs.dirs))}); "
                              "move it there or add its folder to model_dirs in the run config")
    spec = ModelSpec(identifier=identifier or path.stem, path=path, model_type=model_type or "llm",
                     metadata={"source": "ggstack models register"})
    try:
        spec = ModelRegistry(context_factor=settings.max_context_factor).register(spec)  # reads the GGUF header: a bad file fails here
    except DomainError as exc:
        raise ModelAdminError(exc.message) from None
    store = open_store(settings)
    try:
        asyncio.run(put_new(store, spec))
    finally:
        store.close()
    return spec


async def put_new(store: SqlMetadataStore, spec: ModelSpec) -> None:
    if await store.get(MODEL_KIND, spec.identifier) is not None:
        raise ModelAdminError(f"model '{spec.identifier}' is already registered; remove it first or pick --id")
    await store.put(MODEL_KIND, spec.identifier, {"id": spec.identifier, "spec": spec.model_dump(mode="json")})


def convert_folder(settings: Settings, folder: Path, identifier: str | None,
                   model_type: str | None) -> tuple[Path, str]:
    """A sentence-transformers BERT folder becomes `<first model dir>/<id>.gguf` (an embedding model)."""
    from ggstack.engines.convert import ConversionError, convert_bert_atomic

    config = read_config(folder)
    if not (folder / "model.safetensors").is_file() or config.get("model_type") != "bert":
        raise ModelAdminError(f"{folder}: only sentence-transformers BERT folders (config.json model_type bert, "
                              "model.safetensors) are converted here; for other models give a GGUF file")
    if model_type not in (None, "embedding"):
        raise ModelAdminError(f"{folder}: a BERT folder converts to an embedding model, not {model_type}")
    name = identifier or folder.name
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise ModelAdminError(f"--id {name!r}: use letters, digits, '.', '_' and '-' (it names the GGUF file)")
    target = settings.model_directories[0] / f"{name}.gguf"
    if target.exists():
        raise ModelAdminError(f"{target} exists already; remove it or pick another --id")
    try:
        convert_bert_atomic(folder, target, name=name)
    except (ConversionError, InvalidValueError) as exc:
        raise ModelAdminError(exc.message) from None
    return target, "embedding"


def read_config(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return config if isinstance(config, dict) else {}


def remove(settings: Settings, identifier: str) -> None:
    """Forget a registration (its file stays). Bundled and run-config models are not stored, so not here."""
    store = open_store(settings)
    try:
        removed = asyncio.run(store.delete(MODEL_KIND, identifier))
    finally:
        store.close()
    if not removed:
        raise ModelAdminError(f"model '{identifier}' is not registered here (bundled models are turned off with "
                              "default_models: false, run-config ones by editing the run config)")
