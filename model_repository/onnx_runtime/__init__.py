"""Source of the generic ONNX Runtime Python-backend model; the export step copies :data:`MODEL_PY` into each
model's version folder (``<repo>/<model>/<version>/model.py``)."""

from pathlib import Path

MODEL_PY = Path(__file__).with_name("model.py")
