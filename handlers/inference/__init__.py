"""Inference operations (tag Inference), split by sub-resource; every handler is re-exported here.

Each submodule adds its own import line below, naming its functions explicitly.
"""
from handlers.inference.embeddings import dell_create_embedding, openai_embeddings  # noqa: F401
