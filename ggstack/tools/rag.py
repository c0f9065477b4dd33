"""The built-in RAG tool group: `knowledge_search` over vector stores (vector DBs are vector stores).

The search is the vector-store search operation itself (passed in as `Search`), so modes
(vector, keyword, hybrid), ranking and errors are those of `POST /vector_stores/{id}/search`.
Results come back in Llama Stack's RAG result shape: a header item, one item per chunk made
from `chunk_template`, an end marker and a reminder of the query, with the chunks' document
ids, texts and scores in `metadata`, which is what clients and agent traces read.

Limits: `max_chunks` results overall (1..50, default 5); chunks stop being added once their
estimated size passes `max_tokens_in_context` (default 4096). The estimate is 4 tokens per 3
words: the stores' chunks were cut by the embedding model's tokenizer, not the chat model's,
so an exact count here would be of the wrong tokenizer anyway.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from generated.models.llama_stack_deprecated import (
    OpenaiSearchVectorStoreRequest,
    VectorStoreSearchResponsePage,
)
from ggstack.core.errors import InvalidValueError
from ggstack.tools.definitions import ToolDefinition

GROUP_ID = "builtin::rag"
PROVIDER_ID = "rag-runtime"
KNOWLEDGE_SEARCH = "knowledge_search"

DEFAULT_TEMPLATE = "Result {index}\nContent: {chunk.content}\nMetadata: {metadata}\n"
DEFAULT_MAX_CHUNKS = 5
MAX_CHUNKS = 50
DEFAULT_MAX_TOKENS = 4096
MODES = ("vector", "keyword", "hybrid")
GENERATORS = ("default", "llm")
#: Tokens the `llm` query generator may write.
QUERY_TOKENS = 64
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
TEMPLATE_FIELDS = ("index", "chunk.content", "metadata", "chunk.metadata")

#: (vector_store_id, request) -> the page the vector-store search operation answers.
Search = Callable[[str, OpenaiSearchVectorStoreRequest], Awaitable[VectorStoreSearchResponsePage]]
#: (model, prompt) -> the model's answer, at most QUERY_TOKENS long (the `llm` query generator).
WriteQuery = Callable[[str, str], Awaitable[str]]

KNOWLEDGE_SEARCH_TOOL = ToolDefinition(
    name=KNOWLEDGE_SEARCH,
    description="Search for information in a database.",
    schema={"type": "object",
            "properties": {"query": {"type": "string", "description": (
                "The query to search for. Can be a natural language sentence or keywords.")}},
            "required": ["query"]},
    toolgroup_id=GROUP_ID,
)


@dataclass(frozen=True)
class QueryConfig:
    """`RAGQueryConfig`, checked."""

    max_chunks: int = DEFAULT_MAX_CHUNKS
    max_tokens_in_context: int = DEFAULT_MAX_TOKENS
    chunk_template: str = DEFAULT_TEMPLATE
    mode: str = "vector"
    ranker: Mapping[str, Any] | None = None
    generator: Mapping[str, Any] = field(default_factory=lambda: {"type": "default"})

    @classmethod
    def from_request(cls, config: Mapping[str, Any] | None, param: str = "query_config") -> QueryConfig:
        config = dict(config or {})
        generator = dict(config.get("query_generator_config") or {"type": "default"})
        kind = generator.get("type", "default")
        if kind not in GENERATORS:
            raise InvalidValueError(f"{param}.query_generator_config type must be default or llm, not {kind!r}",
                                    field=f"{param}.query_generator_config")
        if kind == "llm" and not (isinstance(generator.get("model"), str) and isinstance(generator.get("template"), str)):
            raise InvalidValueError(f"{param}.query_generator_config of type llm needs a model and a template",
                                    field=f"{param}.query_generator_config")
        result = cls(max_chunks=_int(config, "max_chunks", DEFAULT_MAX_CHUNKS, param),
                     max_tokens_in_context=_int(config, "max_tokens_in_context", DEFAULT_MAX_TOKENS, param),
                     chunk_template=config.get("chunk_template") or DEFAULT_TEMPLATE,
                     mode=config.get("mode") or "vector", ranker=config.get("ranker"), generator=generator)
        if not 1 <= result.max_chunks <= MAX_CHUNKS:
            raise InvalidValueError(f"{param}.max_chunks must be between 1 and {MAX_CHUNKS}", field=f"{param}.max_chunks")
        if result.max_tokens_in_context < 1:
            raise InvalidValueError(f"{param}.max_tokens_in_context must be at least 1",
                                    field=f"{param}.max_tokens_in_context")
        if result.mode not in MODES:
            raise InvalidValueError(f"{param}.mode must be one of {', '.join(MODES)}, not {result.mode!r}",
                                    field=f"{param}.mode")
        check_template(result.chunk_template, f"{param}.chunk_template")
        return result

    def search_request(self, query: str) -> OpenaiSearchVectorStoreRequest:
        ranking = None
        if self.ranker and self.ranker.get("type") == "weighted":
            ranking = {"ranker": "weighted"}
        return OpenaiSearchVectorStoreRequest(query=query, max_num_results=self.max_chunks, search_mode=self.mode,
                                              ranking_options=ranking)


def _int(config: Mapping[str, Any], key: str, default: int, param: str) -> int:
    value = config.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValueError(f"{param}.{key} must be an integer", field=f"{param}.{key}")
    return value


def check_template(template: str, param: str) -> None:
    """Only the documented placeholders: a template is data, never a way into server objects."""
    for name in PLACEHOLDER.findall(template.replace("{{", "").replace("}}", "")):
        if name not in TEMPLATE_FIELDS:
            raise InvalidValueError(f"{param} may use only {{index}}, {{chunk.content}} and {{metadata}}, "
                                    f"not {{{name}}}", field=param)


def render(template: str, values: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        return values[match.group(1)]
    parts = template.split("{{")
    return "{".join("}".join(PLACEHOLDER.sub(one, piece) for piece in part.split("}}")) for part in parts)


def estimated_tokens(text: str) -> int:
    return (len(text.split()) * 4 + 2) // 3


def vector_db_ids_of(args: Mapping[str, Any], param: str = "vector_db_ids") -> list[str]:
    ids = args.get("vector_db_ids", args.get("vector_store_ids"))
    if isinstance(ids, str):
        ids = [ids]
    if not ids or not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        raise InvalidValueError(f"{KNOWLEDGE_SEARCH} needs {param}: a list of vector DB / vector store ids", field=param)
    return ids


async def search_query(content: str, config: QueryConfig, write: WriteQuery | None) -> str:
    """The text searched for: `content` itself, or (generator `llm`) what the model makes of the
    template, whose `{messages}` is replaced by the content."""
    if config.generator.get("type") != "llm":
        return content
    if write is None:
        raise InvalidValueError("the llm query generator is not available here", field="query_generator_config")
    prompt = config.generator["template"].replace("{messages}", content)
    return (await write(config.generator["model"], prompt)).strip() or content


async def query(content: str, vector_db_ids: Sequence[str], config: QueryConfig, search: Search,
                write: WriteQuery | None = None) -> dict[str, Any]:
    """A `RAGQueryResult`: {content: [TextContentItem...], metadata: {document_ids, chunks, scores, ...}}."""
    content = await search_query(content, config, write)
    request = config.search_request(content)
    hits: list[tuple[float, str, str, dict[str, Any]]] = []
    for store_id in vector_db_ids:
        page = await search(store_id, request)
        for hit in page.data:
            attributes = dict(hit.attributes or {})
            document_id = str(attributes.get("document_id") or hit.file_id)
            metadata = {"document_id": document_id, **attributes}
            if hit.filename:
                metadata.setdefault("source", hit.filename)
            text = "\n".join(part.text for part in hit.content)
            hits.append((hit.score, text, document_id, {**metadata, "vector_db_id": store_id}))
    hits.sort(key=lambda hit: hit[0], reverse=True)
    hits = hits[:config.max_chunks]
    items = [{"type": "text", "text": f"{KNOWLEDGE_SEARCH} tool found {len(hits)} chunks:\n"
                                      f"BEGIN of {KNOWLEDGE_SEARCH} tool results.\n"}]
    picked: list[tuple[float, str, str, dict[str, Any]]] = []
    tokens = 0
    for score, text, document_id, metadata in hits:
        tokens += estimated_tokens(text)
        if tokens > config.max_tokens_in_context:
            break
        shown = {k: v for k, v in metadata.items() if k != "vector_db_id"}
        values = {"index": str(len(picked) + 1), "chunk.content": text, "metadata": str(shown),
                  "chunk.metadata": str(shown)}
        items.append({"type": "text", "text": render(config.chunk_template, values)})
        picked.append((score, text, document_id, metadata))
    items.append({"type": "text", "text": f"END of {KNOWLEDGE_SEARCH} tool results.\n"})
    items.append({"type": "text", "text": f'The above results were retrieved to help answer the user\'s query: '
                                          f'"{content}". Use them as supporting information only in answering '
                                          "this query.\n"})
    return {"content": items,
            "metadata": {"document_ids": [p[2] for p in picked], "chunks": [p[1] for p in picked],
                         "scores": [p[0] for p in picked], "vector_db_ids": [p[3]["vector_db_id"] for p in picked]}}
