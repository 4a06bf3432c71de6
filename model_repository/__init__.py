"""Tritone: model_repository."""
