"""Triton Python backend model ``lm`` (decoupled): the ACE-Step 1.5 5 Hz LM.

Input ``request``: a UTF-8 JSON object (see ``model_repository.llm.requests.parse_lm_request``; ``mode`` is
metadata, thinking or inspire). Output ``event``: ``{"type": "delta", "stage": "metadata"|"thinking"|"codes"|"plan",
"text": ...}`` while generating, then ``{"type": "result", "mode": ..., "metadata": {...}, ...}`` with the FINAL flag;
errors come back as a ``TritonError`` naming the field or the setting.
"""

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils

from model_repository.llm.serving import DecoupledServer, build_lm, model_parameters


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        if not pb_utils.using_decoupled_model_transaction_policy(config):
            raise pb_utils.TritonModelException("lm must be decoupled: model_transaction_policy { decoupled: true }")
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.service = build_lm(version_dir, model_parameters(config))
        self.server = DecoupledServer(pb_utils, "lm", self.service.run, frozenset({"result"}))

    def execute(self, requests):
        self.server.submit(requests)
        return None

    def finalize(self):
        self.server.close()
        if self.service.model is not None:
            self.service.model.close()
