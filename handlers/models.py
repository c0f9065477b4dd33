"""Models: the registry as three API families see it (native Llama Stack, OpenAI, Dell).

A model registered here is persisted in the metadata store (kind "model", as `ggstack.core.lifespan`
reads it back at start), so it survives a restart. Models from the bundled defaults or the
run-config can be unregistered too, but only for the running server: they are re-read from
their source at the next start, which is where they are meant to be removed.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Collection
from pathlib import Path
from time import monotonic
from typing import Any

import anyio.to_thread
from pydantic import ValidationError
from starlette.responses import Response

from generated.models.dell_pro_ai_studio import ListModelsResponse as DellListModelsResponse
from generated.models.dell_pro_ai_studio import Model as DellModel
from generated.models.llama_stack_deprecated import OpenAIListModelsResponse, OpenAIModel
from generated.models.llama_stack_stable import ListModelsResponse, Model, RegisterModelRequest
from ggstack.core.context import Context
from ggstack.core.errors import InvalidValueError
from ggstack.core.lifespan import MODEL_KIND
from ggstack.engines.admission import ModelDirs
from ggstack.engines.registry import ModelSpec
from ggstack.http.errors import Fields, InvalidRequest, from_domain
from ggstack.http.render import RenderedAnswer
from ggstack.providers.catalog import ctransformers_available

#: `owned_by` in the OpenAI list, as Llama Stack reports its own models.
OWNER = "llama_stack"
PROVIDERS = ("llama-cpp", "ctransformers", "whisper-cpp", "ncnn")
#: Metadata keys that set how the model runs rather than describe it; taken out into the spec.
SPEC_KEYS = ("context_length", "embedding_dimension", "engine", "options")
#: The registry calls the model file `path`; this request names it `provider_model_id`.
REGISTER_FIELDS: Fields = {"path": "provider_model_id"}


def native_model(spec: ModelSpec, ctx: Context, dirs: tuple[Path, ...] | None = None) -> Model:
    """`provider_resource_id` is the file relative to its model directory: absolute paths tell a
    client about the server's disk, and the relative name is what registration takes back.
    A list passes `dirs` (the model directories) worked out once for all its models."""
    facts: dict[str, Any] = dict(spec.metadata)
    if spec.context_length is not None:
        facts["context_length"] = spec.context_length
    if spec.embedding_dimension is not None:
        facts["embedding_dimension"] = spec.embedding_dimension
    if spec.path is None:  # a remote model: the name its provider knows it by
        return Model(identifier=spec.identifier, provider_resource_id=spec.remote_model,
                     provider_id=str(spec.provider_id), type="model", metadata=facts, model_type=spec.model_type)
    resource = resource_name(dirs or tuple(ctx.settings.model_directories), spec.path)
    return Model(identifier=spec.identifier, provider_resource_id=resource, provider_id=spec.engine,
                 type="model", metadata=facts, model_type=spec.model_type)


@functools.lru_cache(maxsize=1024)
def resource_name(dirs: tuple[Path, ...], path: Path) -> str:
    """A model's path as clients see it, worked out once per (directories, file).

    Resolving walks every component with a system call; on every model list that cost about
    5 ms per model and cut `GET /v1/models` to a tenth of `GET /v1/health` under load.
    """
    return ModelDirs(dirs).display(path)


def created_times(specs: list[ModelSpec]) -> list[int]:
    """The GGUF file's modification time stands in for OpenAI's `created` (0 if the file has gone).

    Called on the event loop: a stat of a local file takes microseconds, a hop to the thread
    pool and back costs more than that and queues behind other blocking work under load.
    """
    return [file_mtime(spec.path) if spec.path is not None else 0 for spec in specs]  # remote: none


#: path -> (when read, mtime). A list of five models made five stat calls per request, under
#: load 15-70 us each; a model file's mtime changes when the file is replaced, rarely.
_mtimes: dict[Path, tuple[float, int]] = {}
#: Seconds a model file's time read for `created` is trusted, and between the OpenAI list's
#: looks at them: a replaced file shows its new time within two of these.
MTIME_TTL_S = 1.0


def file_mtime(path: Path) -> int:
    now = monotonic()
    known = _mtimes.get(path)
    if known is not None and now - known[0] < MTIME_TTL_S:
        return known[1]
    try:
        mtime = int(os.stat(path).st_mtime)
    except OSError:
        mtime = 0
    _mtimes[path] = (now, mtime)
    return mtime


def rendered_list(ctx: Context, name: str) -> RenderedAnswer:
    """This server's kept rendering of one model list (on the Context, so apps never share one)."""
    return ctx.rendered.setdefault(name, RenderedAnswer())


async def list_models(ctx: Context) -> Response:
    """Rendered again only when a model is registered or unregistered (the registry's version);
    the model directories are fixed for the server's life."""
    def build() -> ListModelsResponse:
        dirs = tuple(ctx.settings.model_directories)
        return ListModelsResponse(data=[native_model(spec, ctx, dirs) for spec in ctx.models.list()])

    return rendered_list(ctx, "native").response(ctx.models.version, build)


async def get_model(model_id: str, ctx: Context) -> Model:
    return native_model(await ctx.models.find(model_id), ctx)


def spec_from_request(body: RegisterModelRequest, dirs: ModelDirs, remote: Collection[str] = ()) -> ModelSpec:
    """Map the Llama Stack registration onto a ModelSpec; every bad field is refused naming it.

    `remote` are the configured remote providers' ids: a model registered with one of them is
    served by that provider under `provider_model_id` (default: the model id).
    """
    metadata = dict(body.metadata or {})
    engine = metadata.pop("engine", None)
    if body.provider_id is not None and body.provider_id in remote:
        return _spec(body.model_id, engine="remote", provider_id=body.provider_id,
                     provider_model_id=body.provider_model_id or body.model_id,
                     model_type=body.model_type or "llm", metadata=metadata)
    if body.provider_id is not None:
        if body.provider_id not in PROVIDERS:
            known = ", ".join([*PROVIDERS, *sorted(remote)])
            raise InvalidValueError(f"provider_id '{body.provider_id}' is not one of {known}",
                                    field="provider_id")
        if engine is not None and engine != body.provider_id:
            raise InvalidValueError(f"metadata.engine {engine!r} contradicts provider_id {body.provider_id!r}",
                                    field="provider_id")
        engine = body.provider_id
    model_type = body.model_type or "llm"
    if engine == "ctransformers" and model_type != "llm":
        raise InvalidValueError("the ctransformers provider only runs LLMs", field="model_type")
    if engine == "ctransformers" and not ctransformers_available():
        raise InvalidValueError("the ctransformers provider is not installed", field="provider_id")
    path = dirs.find(body.provider_model_id or body.model_id)
    # no engine named: the one for the model type (ModelSpec knows which)
    return _spec(body.model_id, path=path, model_type=model_type, engine=engine, metadata=metadata)


def _spec(identifier: str, *, metadata: dict[str, Any], **given: Any) -> ModelSpec:
    """The ModelSpec, with the metadata keys that set how it runs taken out into the spec."""
    fields: dict[str, Any] = {key: metadata.pop(key) for key in SPEC_KEYS if key in metadata}
    try:
        return ModelSpec(identifier=identifier, metadata=metadata, **given, **fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "metadata"
        raise InvalidValueError(f"{field}: {error['msg']}", field=field) from None


async def register_model(body: RegisterModelRequest, ctx: Context) -> Model:
    """A well-formed body that names a missing file, an unknown provider or a size the file
    contradicts is refused as "Invalid value: ...", the house rule's 400 for valid data that
    refers to something that is not there."""
    try:
        spec = spec_from_request(body, ModelDirs(ctx.settings.model_directories), ctx.models.providers)
        # register() reads the GGUF header to check the file, so it runs off the event loop.
        spec = await anyio.to_thread.run_sync(ctx.models.register, spec)
    except InvalidValueError as exc:
        error = from_domain(exc, REGISTER_FIELDS)
        raise InvalidRequest(f"Invalid value: {error.message}", param=error.param, code=error.code) from None
    try:
        await ctx.metadata.put(MODEL_KIND, spec.identifier,
                               {"id": spec.identifier, "spec": spec.model_dump(mode="json")})
    except BaseException:
        await ctx.models.unregister(spec.identifier)
        raise
    ctx.models.persisted(spec.identifier)
    return native_model(spec, ctx)


async def unregister_model(model_id: str, ctx: Context) -> None:
    await ctx.models.find(model_id)  # registered on another replica a moment ago: found all the same
    await ctx.models.unregister(model_id)
    await ctx.metadata.delete(MODEL_KIND, model_id)


async def openai_list_models(ctx: Context) -> Response:
    """Rendered again when the registry changes (its version: at once) or a model file's time
    does (`created`: noticed within 2 x MTIME_TTL_S, as the files' times are looked at no more
    than once per MTIME_TTL_S). Between those looks a request costs a version comparison."""
    def file_times() -> tuple[int, ...]:
        return tuple(created_times(ctx.models.list()))

    def build() -> OpenAIListModelsResponse:
        specs = ctx.models.list()
        return OpenAIListModelsResponse(data=[
            OpenAIModel(id=spec.identifier, object="model", created=when, owned_by=OWNER)
            for spec, when in zip(specs, created_times(specs), strict=True)])

    return rendered_list(ctx, "openai").response(ctx.models.version, build, also=file_times,
                                                 also_every=MTIME_TTL_S)


def dell_model(spec: ModelSpec, created: int) -> DellModel:
    return DellModel(id=spec.identifier, created=created, object="model", owned_by=OWNER,
                     capability=spec.model_type)


async def dell_list_models(ctx: Context) -> DellListModelsResponse:
    specs = ctx.models.list()
    return DellListModelsResponse(object="list", data=[
        dell_model(spec, when) for spec, when in zip(specs, created_times(specs), strict=True)])


async def dell_retrieve_model(model: str, ctx: Context) -> DellModel:
    """Dell's own server answers 501 here; ggstack answers, as the list does for one model."""
    spec = ctx.models.get(model)
    (created,) = created_times([spec])
    return dell_model(spec, created)
