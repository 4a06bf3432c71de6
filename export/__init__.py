"""Tritone: export."""
