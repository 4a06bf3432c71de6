"""Stems: HT-Demucs source separation served through the ``stems`` network(s) and the decoupled ``separator``."""
