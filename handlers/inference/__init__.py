"""Inference operations (tag Inference), split by sub-resource; every handler is re-exported here.

Each submodule adds its own import line below, naming its functions explicitly.
"""
from handlers.inference.chat import (  # noqa: F401
    delete_chat_completion,
    get_chat_completion,
    list_chat_completions,
    openai_chat_completion,
)
from handlers.inference.completions import openai_completion  # noqa: F401
from handlers.inference.dell import dell_create_chat_completion, dell_llamastack_chat_completion  # noqa: F401
from handlers.inference.embeddings import dell_create_embedding, legacy_embeddings, openai_embeddings  # noqa: F401
from handlers.inference.legacy import chat_completion, completion  # noqa: F401
from handlers.inference.rerank import rerank  # noqa: F401
