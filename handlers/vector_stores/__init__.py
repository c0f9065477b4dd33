"""The OpenAI-compatible vector store API, one module per sub-resource.

The routing layer looks handlers up as `handlers.vector_stores.<operation_id>`, so every
operation is re-exported here.
"""

from handlers.vector_stores.batches import (
    openai_cancel_vector_store_file_batch,
    openai_create_vector_store_file_batch,
    openai_list_files_in_vector_store_file_batch,
    openai_retrieve_vector_store_file_batch,
)
from handlers.vector_stores.files import (
    openai_attach_file_to_vector_store,
    openai_delete_vector_store_file,
    openai_list_files_in_vector_store,
    openai_retrieve_vector_store_file,
    openai_retrieve_vector_store_file_contents,
    openai_update_vector_store_file,
)
from handlers.vector_stores.search import openai_search_vector_store
from handlers.vector_stores.stores import (
    openai_create_vector_store,
    openai_delete_vector_store,
    openai_list_vector_stores,
    openai_retrieve_vector_store,
    openai_update_vector_store,
)

__all__ = [
    "openai_attach_file_to_vector_store",
    "openai_cancel_vector_store_file_batch",
    "openai_create_vector_store",
    "openai_create_vector_store_file_batch",
    "openai_delete_vector_store",
    "openai_delete_vector_store_file",
    "openai_list_files_in_vector_store",
    "openai_list_files_in_vector_store_file_batch",
    "openai_list_vector_stores",
    "openai_retrieve_vector_store",
    "openai_retrieve_vector_store_file",
    "openai_retrieve_vector_store_file_batch",
    "openai_retrieve_vector_store_file_contents",
    "openai_search_vector_store",
    "openai_update_vector_store",
    "openai_update_vector_store_file",
]
