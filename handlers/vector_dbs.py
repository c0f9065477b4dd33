"""Vector DBs: the native Llama Stack name for a vector store.

As in the reference server, a vector DB *is* a vector store: registering one creates the
store under the same id (same Chroma collection, same record), so it is listed, searched
and deleted through /v1/vector_stores as well, and every vector store is a vector DB here.
`provider_vector_db_id` is kept as the vector DB's `provider_resource_id`, as the reference
server keeps it (the Chroma collection is named by the vector DB id either way).
"""

from __future__ import annotations

from typing import Any

from generated.models.llama_stack_stable import ListVectorDBsResponse, RegisterVectorDbRequest, VectorDB
from ggstack.core.context import Context
from ggstack.http.errors import InvalidRequest
from ggstack.ingest import records
from ggstack.ingest.records import VECTOR_STORE
from handlers.vector_stores.stores import PROVIDER_ID, create_store, delete_store, embedding_model


def vector_db(doc: dict[str, Any]) -> VectorDB:
    return VectorDB(identifier=doc["id"], provider_resource_id=doc.get("provider_resource_id", doc["id"]), type="vector_db",
                    provider_id=doc.get("provider_id", PROVIDER_ID), embedding_model=doc["embedding_model"],
                    embedding_dimension=doc["embedding_dimension"], vector_db_name=doc.get("name"))


async def register_vector_db(body: RegisterVectorDbRequest, ctx: Context) -> VectorDB:
    if body.provider_id and body.provider_id != PROVIDER_ID:
        raise InvalidRequest(f"Invalid value: provider_id '{body.provider_id}' is not a vector_io provider here; "
                             f"this server has '{PROVIDER_ID}'", param="provider_id")
    model, dimension = embedding_model(ctx, body.embedding_model, body.embedding_dimension)
    resource = body.provider_vector_db_id or body.vector_db_id
    existing = await ctx.metadata.get(VECTOR_STORE, body.vector_db_id)
    if existing is not None:
        # Registering again with the same settings is a no-op, as clients re-register at start.
        if (existing["embedding_model"], existing["embedding_dimension"]) != (model, dimension):
            raise InvalidRequest(f"Invalid value: vector DB '{body.vector_db_id}' already exists with embedding "
                                 f"model '{existing['embedding_model']}'", param="vector_db_id")
        if existing.get("provider_resource_id", existing["id"]) != resource:
            raise InvalidRequest(f"Invalid value: vector DB '{body.vector_db_id}' already exists with provider_vector_db_id "
                                 f"'{existing.get('provider_resource_id', existing['id'])}'", param="provider_vector_db_id")
        return vector_db(existing)
    doc = await create_store(ctx, body.vector_db_id, name=body.vector_db_name, model=model, dimension=dimension,
                             provider_resource_id=resource)
    return vector_db(doc)


async def list_vector_dbs(ctx: Context) -> ListVectorDBsResponse:
    """Every store, oldest first: the API has no paging (stores are few; each is a Chroma collection)."""
    page = await ctx.metadata.list(VECTOR_STORE, limit=None, order="asc")
    return ListVectorDBsResponse(data=[vector_db(doc) for doc in page.items])


async def get_vector_db(vector_db_id: str, ctx: Context) -> VectorDB:
    return vector_db(await records.get_vector_store(ctx.metadata, vector_db_id))


async def unregister_vector_db(vector_db_id: str, ctx: Context) -> None:
    await records.get_vector_store(ctx.metadata, vector_db_id)
    await delete_store(ctx, vector_db_id)
