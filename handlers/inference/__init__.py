"""Inference operations (tag Inference), split by sub-resource; every handler is re-exported here.

Each submodule adds its own import line below, naming its functions explicitly.
"""
