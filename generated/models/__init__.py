"""Pydantic models, one module per spec."""
