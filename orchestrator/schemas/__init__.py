"""Pydantic models of the public APIs, one module per entity."""
