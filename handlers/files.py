"""Files: uploads kept on disk under generated names, their records in the metadata store.

Expired files are gone from every operation at once; their bytes are removed on sight
and by the ingestion worker's periodic sweep.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import AsyncIterator
from typing import Any

from starlette.datastructures import UploadFile

from generated.models.llama_stack_deprecated import (
    ListOpenAIFileResponse,
    OpenAIFileDeleteResponse,
    OpenAIFileObject,
    OpenaiUploadFileRequest,
)
from ggstack.core import ids
from ggstack.core.context import Context
from ggstack.http.errors import InvalidRequest
from ggstack.http.render import Blob
from ggstack.ingest import records
from ggstack.ingest.records import FILE
from ggstack.stores.base import Order

UPLOAD_READ_BYTES = 1024 * 1024
MAX_LIST_LIMIT = 10000
PUBLIC_FIELDS = ("id", "object", "bytes", "created_at", "expires_at", "filename", "purpose")
GENERIC_TYPES = ("", "application/octet-stream")


def file_object(doc: dict[str, Any]) -> OpenAIFileObject:
    return OpenAIFileObject(**{key: doc[key] for key in PUBLIC_FIELDS})


async def upload_chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(UPLOAD_READ_BYTES):
        yield chunk


def content_type_of(upload: UploadFile, filename: str) -> str:
    """The part's own type, unless it is the generic one clients send when they do not know."""
    declared = (upload.content_type or "").split(";", 1)[0].strip().lower()
    if declared not in GENERIC_TYPES:
        return declared
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def header_safe(filename: str) -> str:
    """For Content-Disposition: printable ASCII without quotes or backslashes."""
    return re.sub(r'[^\x20-\x7e]|["\\]', "_", filename) or "file"


async def openai_upload_file(body: OpenaiUploadFileRequest, uploads: dict[str, UploadFile],
                             ctx: Context) -> OpenAIFileObject:
    upload = uploads.get("file")
    if upload is None:
        raise InvalidRequest("The request has no file: send it as the multipart part 'file'", param="file")
    created_at = ids.now()
    expires_at = records.file_expiry(body.expires_after, created_at)
    filename = (upload.filename or "").replace("\\", "/").rsplit("/", 1)[-1] or "upload"
    blob = await ctx.files.save(upload_chunks(upload), max_bytes=ctx.settings.max_upload_bytes)
    doc: dict[str, Any] = {"id": ids.new_id("file-"), "object": "file", "bytes": blob.size,
                           "created_at": created_at,
           "expires_at": expires_at, "filename": filename, "purpose": body.purpose,
           "content_type": content_type_of(upload, filename), "key": blob.key, "sha256": blob.sha256}
    await ctx.metadata.put(FILE, doc["id"], doc)
    return file_object(doc)


async def openai_list_files(ctx: Context, after: str | None = None, limit: int = MAX_LIST_LIMIT,
                            order: Order = "desc", purpose: str | None = None) -> ListOpenAIFileResponse:
    where = {"purpose": purpose} if purpose else None
    while True:
        # An empty `after=` (the key sent with no value) means no cursor.
        page = await ctx.metadata.list(FILE, after=after or None, limit=limit, order=order, where=where)
        expired = [doc for doc in page.items if records.file_expired(doc)]
        if not expired:
            break
        # Purge and look again: each pass removes what it found, so this ends.
        for doc in expired:
            await records.purge_file(ctx.metadata, ctx.files, doc)
    # The spec requires both ids even for an empty list.
    return ListOpenAIFileResponse(data=[file_object(doc) for doc in page.items], has_more=page.has_more,
                                  first_id=page.first_id or "", last_id=page.last_id or "", object="list")


async def openai_retrieve_file(file_id: str, ctx: Context) -> OpenAIFileObject:
    return file_object(await records.get_file(ctx.metadata, ctx.files, file_id))


async def openai_delete_file(file_id: str, ctx: Context) -> OpenAIFileDeleteResponse:
    doc = await records.get_file(ctx.metadata, ctx.files, file_id)
    await records.purge_file(ctx.metadata, ctx.files, doc)
    return OpenAIFileDeleteResponse(id=file_id, object="file", deleted=True)


async def openai_retrieve_file_content(file_id: str, ctx: Context) -> Blob:
    doc = await records.get_file(ctx.metadata, ctx.files, file_id)
    # The spec declares only application/octet-stream here; the uploaded type is kept in
    # the record (extraction uses it) but cannot be echoed without breaking the contract.
    return Blob(ctx.files.stream(doc["key"]), media_type="application/octet-stream",
                filename=header_safe(doc["filename"]), size=doc["bytes"])
