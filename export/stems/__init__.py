"""HT-Demucs source separation (``demucs_infer`` classes): checkpoints, the tiny preset, the export wrapper and its
contract, and the ``stems``/``separator`` models of a repository."""
