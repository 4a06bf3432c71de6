"""Tritone: orchestrator."""
