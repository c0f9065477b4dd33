"""ggstack: Llama Stack and Dell Pro AI Studio APIs on local ggml models and ChromaDB."""

__version__ = "0.1.0"
