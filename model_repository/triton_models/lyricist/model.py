"""Triton Python backend model ``lyricist`` (decoupled): a theme in, a stream of JSON events out.

Input ``request``: a UTF-8 JSON object (see ``model_repository.llm.requests.parse_lyricist_request``).
Output ``event``: one JSON object per response -- ``{"type": "delta", "stage": "expand"|"plan", ...}`` while
generating, then ``{"type": "plan", "plan": {...}, "usage": {...}}`` with the FINAL flag; errors come back as a
``TritonError`` naming the field or the setting. The library code lives in the installed ``model_repository`` package.
"""

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils

from model_repository.llm.serving import DecoupledServer, build_lyricist, model_parameters


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        if not pb_utils.using_decoupled_model_transaction_policy(config):
            raise pb_utils.TritonModelException(
                "lyricist must be decoupled: model_transaction_policy { decoupled: true }"
            )
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.service = build_lyricist(version_dir, model_parameters(config))
        self.server = DecoupledServer(pb_utils, "lyricist", self.service.run, frozenset({"plan"}))

    def execute(self, requests):
        self.server.submit(requests)
        return None

    def finalize(self):
        self.server.close()
        self.service.close()
