"""``tritone models`` rolling versions of a real model on the real tritonserver."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from orchestrator.cli import main
from tests.markers import needs_triton


@pytest.mark.triton
@needs_triton
def test_models_roll_a_version_in_and_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import tritonclient.grpc as grpcclient

    from model_repository.launcher.server import TritonServer
    from tests.orchestrator.toy_models import ECHO, write_echo_repository

    repo = write_echo_repository(tmp_path / "repo")

    def served(client: grpcclient.InferenceServerClient, version: str) -> float:
        x = grpcclient.InferInput("x", [1], "FP32")
        x.set_data_from_numpy(np.array([0.5], np.float32))
        return float(client.infer(ECHO, [x], model_version=version).as_numpy("y")[0])

    def models(*argv: str) -> tuple[int, str, str]:
        code = main(["models", "--server", srv.grpc_url, *argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    with TritonServer(repo, log_path=tmp_path / "triton.log", load_models=[ECHO]) as srv:
        client = grpcclient.InferenceServerClient(srv.grpc_url)
        code, out, _ = models("list", "--json")
        assert code == 0
        assert {(r["version"], r["state"]) for r in json.loads(out) if r["name"] == ECHO} == {("1", "READY")}

        # Roll version 2 in beside 1: both answer.
        code, out, _ = models("load", ECHO, "--version", "2")
        assert code == 0 and "READY" in out
        assert (served(client, "1"), served(client, "2")) == (1.5, 2.5)

        # Roll version 1 out: 2 keeps serving, 1 is gone.
        code, out, _ = models("unload", ECHO, "--version", "1")
        assert code == 0
        assert served(client, "2") == 2.5
        assert not client.is_model_ready(ECHO, "1")

        # Mistakes are one readable line each.
        code, _, err = models("unload", ECHO, "--version", "2")
        assert code == 2 and "no versions left for 'echo'" in err
        code, _, err = models("unload", ECHO, "--version", "7")
        assert code == 2 and "does not serve version(s) [7]; it serves [2]" in err
        code, _, err = models("load", "nope")
        assert code == 2 and "no model 'nope' in the repository; models: echo" in err
        code, _, err = models("load", ECHO, "--version", "9")
        assert code == 2 and "echo version(s) [9] did not become ready" in err and "echo serves [2]" in err, err
        assert served(client, "2") == 2.5  # a failed load leaves the serving version alone

        # Whole-model unload; then load a specific version of an unloaded model from its config.pbtxt.
        assert models("unload", ECHO)[0] == 0
        assert not client.is_model_ready(ECHO)
        code, _, err = models("load", ECHO, "--version", "2")
        assert code == 2 and "--repository" in err
        assert models("--repository", str(repo), "load", ECHO, "--version", "2", "--exclusive")[0] == 0
        assert served(client, "2") == 2.5 and not client.is_model_ready(ECHO, "1")
        code, out, _ = models("list")
        assert "echo" in out and "READY" in out
        client.close()
