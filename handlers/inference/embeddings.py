"""Embeddings for the OpenAI-compatible and Dell routes: one engine call per request, however many inputs.

The engine packs all inputs into as few llama.cpp batches as fit, so a client that sends a
list gets the throughput of batching; splitting a request into one call per input would not.
Vectors leave here as little-endian float32, the precision the model computes in, so the
`float` and `base64` encodings of one input carry exactly the same numbers.

`dimensions` follows OpenAI's text-embedding-3 behaviour: keep the first `dimensions`
components and L2-normalise again. That is only meaningful for Matryoshka-trained models,
but it is well defined for any model, and asking for more than the model has is a 400.

The legacy `POST /v1/inference/embeddings` (llama-stack-client's `inference.embeddings`) is the
same computation with the reference's field names; its `text_truncation` cuts a text that is
too long down to the model's context, keeping the special tokens the model adds around it.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from pydantic import RootModel

from generated.models.dell_pro_ai_studio import (
    CreateEmbeddingRequest,
    CreateEmbeddingResponse,
    Embedding,
    EmbeddingUsage,
)
from generated.models.llama_stack_deprecated import (
    OpenAIEmbeddingData,
    OpenaiEmbeddingsRequest,
    OpenAIEmbeddingsResponse,
    OpenAIEmbeddingUsage,
)
from generated.models.llama_stack_inference import (
    EmbeddingsRequest,
    EmbeddingsResponse,
    TextContentItem,
)
from ggstack.core.context import Context
from ggstack.core.errors import ContextOverflowError
from ggstack.engines.base import EmbeddingEngine
from ggstack.http.errors import Fields, InvalidRequest, naming

#: OpenAI's (and Dell's) limit on inputs per request.
MAX_INPUTS = 2048
ENCODINGS = ("float", "base64")
#: An input longer than the model reads is about `input`.
EMBED_FIELDS: Fields = {ContextOverflowError: "input"}
#: ... and about `contents` in the legacy request.
LEGACY_FIELDS: Fields = {ContextOverflowError: "contents"}
SHAPES = "input must be a string, a list of strings, a token array or a list of token arrays"


def embedding_inputs(value: Any) -> list[str] | list[list[int]]:
    """A string, list of strings, token array or list of token arrays, as a list of inputs."""
    if isinstance(value, RootModel):
        value = value.model_dump(mode="json")  # nested token lists are RootModels all the way down
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise InvalidRequest(SHAPES, param="input")
    items = list(value)
    if not items:
        raise InvalidRequest("input must not be empty", param="input")
    if len(items) > MAX_INPUTS:
        raise InvalidRequest(f"input has {len(items)} items; at most {MAX_INPUTS} are allowed per request",
                             param="input")
    if all(isinstance(item, str) for item in items):
        empty = next((i for i, item in enumerate(items) if not item), None)
        if empty is not None:  # it would embed as just [CLS][SEP]; OpenAI refuses it too
            raise InvalidRequest(f"input {empty} is an empty string", param="input")
        return items
    if all(is_token(item) for item in items):
        return [items]
    if all(isinstance(item, list) and all(is_token(t) for t in item) for item in items):
        return items
    raise InvalidRequest(SHAPES, param="input")


def is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_encoding(encoding_format: str | None) -> str:
    encoding = encoding_format or "float"
    if encoding not in ENCODINGS:
        raise InvalidRequest(f"encoding_format must be float or base64 (got {encoding_format})",
                             param="encoding_format")
    return encoding


def check_dimensions(dimensions: int | None, model_dimension: int, model: str) -> None:
    if dimensions is None:
        return
    if dimensions < 1:
        raise InvalidRequest(f"dimensions must be at least 1 (got {dimensions})", param="dimensions")
    if dimensions > model_dimension:
        raise InvalidRequest(f"dimensions {dimensions} is more than model '{model}' has ({model_dimension})",
                             param="dimensions")


def shaped(vectors: list[list[float]], dimensions: int | None) -> np.ndarray:
    """Float32 rows, truncated to `dimensions` and renormalised (a zero row stays zero)."""
    matrix = np.asarray(vectors, dtype=np.float64)
    if dimensions is not None and dimensions < matrix.shape[1]:
        matrix = matrix[:, :dimensions]
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = matrix / np.where(norms > 0, norms, 1.0)
    return matrix.astype("<f4")


def encoded(matrix: np.ndarray, encoding: str) -> list[list[float]] | list[str]:
    """Each row as floats, or as base64 of its little-endian float32 bytes (what the openai SDK decodes)."""
    if encoding == "base64":
        return [base64.b64encode(row.tobytes()).decode("ascii") for row in matrix]
    return matrix.tolist()


async def embed(ctx: Context, model: str, inputs: list[str] | list[list[int]],
                dimensions: int | None) -> tuple[np.ndarray, int]:
    engine = await ctx.models.embedder(model)
    check_dimensions(dimensions, engine.dimension, model)
    with naming(EMBED_FIELDS):
        vectors, tokens = await engine.embed(inputs)
    return shaped(vectors, dimensions), tokens


async def openai_embeddings(body: OpenaiEmbeddingsRequest, ctx: Context) -> OpenAIEmbeddingsResponse:
    ctx.models.get(body.model)  # an unknown model is a 404, whatever else the request gets wrong
    encoding = check_encoding(body.encoding_format)
    inputs = embedding_inputs(body.input)
    matrix, tokens = await embed(ctx, body.model, inputs, body.dimensions)
    usage = OpenAIEmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
    return OpenAIEmbeddingsResponse(object="list", model=body.model, usage=usage, data=[
        OpenAIEmbeddingData(object="embedding", embedding=row, index=i)
        for i, row in enumerate(encoded(matrix, encoding))])


async def dell_create_embedding(body: CreateEmbeddingRequest, ctx: Context) -> CreateEmbeddingResponse:
    ctx.models.get(body.model)
    if body.images:
        raise InvalidRequest("image embeddings are not supported; the models here embed text", param="images")
    encoding = check_encoding(body.encoding_format)
    inputs = embedding_inputs(body.input)
    matrix, tokens = await embed(ctx, body.model, inputs, body.dimensions)
    usage = EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
    return CreateEmbeddingResponse(object="list", model=body.model, usage=usage, data=[
        Embedding(object="embedding", embedding=row, index=i) for i, row in enumerate(encoded(matrix, encoding))])


async def legacy_embeddings(body: EmbeddingsRequest, ctx: Context) -> EmbeddingsResponse:
    """`task_type` is accepted and has no effect: the embedding models here are symmetric."""
    ctx.models.get(body.model_id)
    texts = [content_text(item, i) for i, item in enumerate(body.contents.root)]
    engine = await ctx.models.embedder(body.model_id)
    check_dimensions(body.output_dimension, engine.dimension, body.model_id)
    side = body.text_truncation or "none"
    inputs: list[str] | list[list[int]] = texts
    if side != "none":
        inputs = [await truncated(engine, text, side) for text in texts]
    with naming(LEGACY_FIELDS):
        vectors, _tokens = await engine.embed(inputs)
    return EmbeddingsResponse(embeddings=shaped(vectors, body.output_dimension).tolist())


def content_text(item: Any, index: int) -> str:
    """A string or a text content item; an image item is a 400 (the models here embed text)."""
    text = item if isinstance(item, str) else item.text if isinstance(item, TextContentItem) else None
    if text is None:
        raise InvalidRequest(f"contents[{index}] is an image; the embedding models here read text only",
                             param="contents")
    if not text:
        raise InvalidRequest(f"contents[{index}] is an empty string", param="contents")
    return text


async def truncated(engine: EmbeddingEngine, text: str, side: str) -> list[int]:
    """`text`'s tokens with the model's special tokens, cut from `side` to fit the context."""
    full = await engine.tokenize(text, add_bos=True, special=False)
    if len(full) <= engine.context_length:
        return full
    body = await engine.tokenize(text, add_bos=False, special=False)
    # the special tokens the model adds (BERT: [CLS] before, [SEP] after) stay where they are
    start = next((i for i in range(len(full) - len(body) + 1) if full[i:i + len(body)] == body), None)
    if start is None:  # a tokenizer whose special tokens merge into the text: cut the whole sequence
        start, body = 0, full
    prefix, suffix = full[:start], full[start + len(body):]
    keep = max(0, engine.context_length - len(prefix) - len(suffix))
    body = body[:keep] if side == "end" else body[len(body) - keep:]
    return prefix + body + suffix
