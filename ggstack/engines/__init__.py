"""Inference engines: the Protocols handlers use (`base`), the llama.cpp worker engines and the model registry.

Handlers import from `ggstack.engines.base` only; `registry.ModelRegistry` hands out engines.
"""
