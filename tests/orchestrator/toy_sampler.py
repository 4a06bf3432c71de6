"""A toy ``sampler`` for fault drills: a real decoupled Python-backend model in a real tritonserver that speaks the
sampler's protocol (one ``request`` JSON string in; ``progress`` events, then a ``done`` event with an ``audio``
tensor out) but sleeps instead of diffusing, so that a drill controls exactly how long a job runs.

An ACE-Step job with ``bpm``, ``key_scale``, ``time_signature`` and ``audio_duration`` given calls only the sampler,
so the orchestrator runs it end to end against this one model.
"""

from __future__ import annotations

from pathlib import Path

SAMPLER_CONFIG = """
name: "sampler"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "request" data_type: TYPE_STRING dims: [ 1 ] } ]
output [
  { name: "event" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "audio" data_type: TYPE_FP32 dims: [ -1, 2, -1 ] }
]
instance_group [ { count: %(instances)d kind: KIND_CPU } ]
parameters { key: "step_s" value: { string_value: "%(step_s)s" } }
"""

SAMPLER_MODEL_PY = '''
import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils


def _event(data):
    return pb_utils.Tensor("event", np.array([json.dumps(data).encode()], dtype=np.object_))


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.step_s = float(config["parameters"]["step_s"]["string_value"])

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            raw = pb_utils.get_input_tensor_by_name(request, "request").as_numpy().reshape(-1)[0]
            body = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            steps = int(body.get("inference_steps", 4))
            seeds = [int(s) for s in body.get("seeds") or [1]]
            for step in range(1, steps + 1):
                time.sleep(self.step_s)
                progress = {"type": "progress", "stage": "diffusion", "step": step, "total": steps}
                sender.send(pb_utils.InferenceResponse([_event(progress)]))
            samples = int(float(body.get("duration", 10)) * 48000)
            t = np.arange(samples, dtype=np.float32) / 48000
            audio = np.stack([np.stack([0.5 * np.sin(2 * np.pi * (220 + s % 200) * t)] * 2) for s in seeds])
            done = {"type": "done", "seeds": seeds, "sample_rate": 48000, "num_samples": samples,
                    "versions": {"sampler": "toy"}}
            sender.send(
                pb_utils.InferenceResponse([_event(done), pb_utils.Tensor("audio", audio.astype(np.float32))]),
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
            )
        return None
'''

# An ACE-Step request that needs nothing but the sampler (all metadata given, no thinking).
MUSIC_JOB = {
    "caption": "drill",
    "bpm": 90,
    "key_scale": "D minor",
    "time_signature": "4",
    "audio_duration": 10,
    "inference_steps": 10,
    "audio_format": "wav",
    "thinking": False,
}


def write_toy_sampler(root: Path, *, step_s: float = 0.2, instances: int = 2) -> Path:
    """``root/sampler/{config.pbtxt, 1/model.py}``: each step of a job sleeps ``step_s`` seconds."""
    model = root / "sampler"
    (model / "1").mkdir(parents=True, exist_ok=True)
    (model / "config.pbtxt").write_text(SAMPLER_CONFIG % {"instances": instances, "step_s": step_s})
    (model / "1" / "model.py").write_text(SAMPLER_MODEL_PY)
    return root
