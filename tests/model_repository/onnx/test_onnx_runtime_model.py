"""The generic ONNX Runtime Python-backend model: batching, validation and serving through a real tritonserver.

A tiny torch network (a linear layer, then a mean over the valid frames of a bool mask; dynamic batch and frame axes)
is exported with the dynamo exporter, declared as a ``NetworkContract`` and written into a Triton repository exactly
as the export step does: ``contract.triton_config(platform="cpu")`` + a copy of ``onnx_runtime/model.py``.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from export.contracts import Axis, NetworkContract, TensorSpec
from model_repository.launcher.server import TritonServer
from model_repository.onnx.session import OnnxBatchRunner, OnnxModelConfig, RequestError, open_session
from model_repository.triton_models import model_source
from tests.markers import needs_triton, triton_missing

MODEL = "masked_mean"
FEATURES = 4  # x's last dim (fixed)
OUT = 3  # y's last dim (fixed)
MAX_BATCH = 8

CONTRACT = NetworkContract(
    name=MODEL,
    inputs=(
        TensorSpec("x", "float32", ("batch", "frames", FEATURES)),
        TensorSpec("mask", "bool", ("batch", "frames"), fill="mask"),
    ),
    outputs=(TensorSpec("y", "float32", ("batch", OUT)),),
    axes=(Axis("frames", 1, 8, 32),),
    max_batch_size=MAX_BATCH,
    preferred_batch_sizes=(MAX_BATCH,),
    # Long enough that concurrent requests from the test always meet in the queue, even on a busy 2-core machine.
    max_queue_delay_us=300_000,
)




def _reference_module() -> Any:
    import torch

    class MaskedMean(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.proj = torch.nn.Linear(FEATURES, OUT)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            h = self.proj(x)
            m = mask.unsqueeze(-1).to(h.dtype)
            return (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)

    return MaskedMean().eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The ONNX file, a Triton repository holding it, and a numpy reference of the torch module."""
    import torch

    module = _reference_module()
    root = tmp_path_factory.mktemp("onnx_model")
    repo = root / "repo"
    version = repo / MODEL / "1"
    version.mkdir(parents=True)
    sample = CONTRACT.sample_inputs(CONTRACT.sizes("opt", batch=2), seed=0)
    dims = {
        name: torch.export.Dim(name, min=CONTRACT.axis(name).min, max=CONTRACT.axis(name).max)
        for name in ("batch", "frames")
    }
    torch.onnx.export(
        module,
        tuple(torch.from_numpy(sample[n]) for n in CONTRACT.input_names),
        str(version / "model.onnx"),
        input_names=CONTRACT.input_names,
        output_names=CONTRACT.output_names,
        dynamo=True,
        dynamic_shapes={s.name: {i: dims[a] for i, a in s.dynamic_axes.items()} for s in CONTRACT.inputs},
    )
    config = CONTRACT.triton_config(platform="cpu")  # writes intra_op_num_threads from the contract (1)
    (repo / MODEL / "config.pbtxt").write_text(config)
    shutil.copy(model_source("onnx_runtime"), version / "model.py")

    def reference(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x), torch.from_numpy(mask)).numpy()

    return {"repo": repo, "onnx": version / "model.onnx", "config": config, "reference": reference}


def _inputs(batch: int, frames: int, seed: int) -> dict[str, np.ndarray]:
    return CONTRACT.sample_inputs({"batch": batch, "frames": frames}, seed=seed)


def _triton_json_config() -> dict[str, Any]:
    """The JSON form Triton hands ``initialize`` (the subset the runner reads)."""

    def tensor(s: TensorSpec) -> dict[str, Any]:
        types = {"float32": "TYPE_FP32", "bool": "TYPE_BOOL"}
        return {"name": s.name, "data_type": types[s.dtype], "dims": s.triton_dims(), "optional": False}

    return {
        "name": MODEL,
        "max_batch_size": MAX_BATCH,
        "input": [tensor(s) for s in CONTRACT.inputs],
        "output": [tensor(s) for s in CONTRACT.outputs],
        "parameters": {"onnx_file": {"string_value": "model.onnx"}, "intra_op_num_threads": {"string_value": "1"}},
    }


# --------------------------------------------------------------------------------------------------------------------
# The runner, without a server (real ONNX Runtime session)
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runner_factory(exported: dict[str, Any]) -> Any:
    return lambda: OnnxBatchRunner.from_triton(_triton_json_config(), exported["onnx"].parent)


def test_runner_merges_requests_of_equal_shapes_into_one_run(exported: dict[str, Any], runner_factory: Any) -> None:
    runner = runner_factory()
    requests = [_inputs(1, 6, 1), _inputs(2, 9, 2), _inputs(2, 6, 3), _inputs(1, 9, 4), _inputs(1, 6, 5)]
    results = runner.run(requests)
    # Two shape groups (frames 6 and 9) -> two session runs for five requests.
    assert runner.session_runs == 2
    for request, result in zip(requests, results, strict=True):
        assert isinstance(result, dict), result
        assert result["y"].dtype == np.float32
        np.testing.assert_allclose(result["y"], exported["reference"](request["x"], request["mask"]), atol=1e-5)


def test_runner_chunks_groups_to_max_batch_size(runner_factory: Any) -> None:
    runner = runner_factory()
    results = runner.run([_inputs(4, 5, s) for s in range(3)])  # 12 rows > max_batch_size 8
    assert runner.session_runs == 2
    assert [r["y"].shape for r in results if isinstance(r, dict)] == [(4, OUT)] * 3


def test_runner_answers_bad_requests_alone(exported: dict[str, Any], runner_factory: Any) -> None:
    runner = runner_factory()
    good = [_inputs(1, 7, s) for s in range(3)]
    wrong_dtype = dict(good[0], x=good[0]["x"].astype(np.int64))
    wrong_rank = dict(good[0], x=good[0]["x"][0])
    wrong_dim = dict(good[0], x=np.zeros((1, 7, FEATURES + 1), np.float32))
    missing = {"x": good[0]["x"]}
    batch_mismatch = dict(good[0], mask=np.ones((2, 7), np.bool_))
    requests = [good[0], wrong_dtype, good[1], wrong_rank, wrong_dim, missing, batch_mismatch, good[2]]
    results = runner.run(requests)
    assert runner.session_runs == 1  # the three good requests still ran together
    for i in (0, 2, 7):
        np.testing.assert_allclose(
            results[i]["y"], exported["reference"](requests[i]["x"], requests[i]["mask"]), atol=1e-5
        )
    messages = [str(results[i]) for i in (1, 3, 4, 5, 6)]
    assert all(isinstance(results[i], RequestError) for i in (1, 3, 4, 5, 6))
    assert messages[0] == f"{MODEL}: input 'x' has dtype int64, expected float32"
    assert "input 'x' has 2 dims" in messages[1] and "expected 3" in messages[1]
    assert "input 'x' dim 2 is 5, expected 4" in messages[2]
    assert "missing input 'mask'" in messages[3]
    assert "input 'mask' has batch size 2" in messages[4]


def test_runner_refuses_a_config_that_does_not_match_the_graph(exported: dict[str, Any]) -> None:
    config = _triton_json_config()
    config["input"][1]["name"] = "padding_mask"
    with pytest.raises(ValueError, match="'padding_mask' is not an input of the ONNX graph.*graph input 'mask'"):
        OnnxBatchRunner.from_triton(config, exported["onnx"].parent)


def test_config_parameters_are_checked() -> None:
    config = _triton_json_config()
    config["parameters"]["intra_op_num_threads"] = {"string_value": "two"}
    with pytest.raises(ValueError, match="intra_op_num_threads='two'"):
        OnnxModelConfig.from_triton(config)
    config["parameters"] = {}
    parsed = OnnxModelConfig.from_triton(config)
    assert (parsed.onnx_file, parsed.intra_op_threads) == ("model.onnx", 1)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        open_session(Path("/nonexistent/missing.onnx"))


# --------------------------------------------------------------------------------------------------------------------
# Served by a real tritonserver
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(exported: dict[str, Any]) -> Any:
    reason = triton_missing()
    if reason:
        pytest.skip(f"no tritonserver: {reason}")
    with TritonServer(exported["repo"], load_models=[MODEL]) as srv:
        yield srv


def _grpc_inputs(grpcclient: Any, tensors: dict[str, np.ndarray], dtypes: dict[str, str] | None = None) -> list[Any]:
    dtypes = dtypes or {"x": "FP32", "mask": "BOOL"}
    out = []
    for name, arr in tensors.items():
        inp = grpcclient.InferInput(name, list(arr.shape), dtypes[name])
        inp.set_data_from_numpy(arr)
        out.append(inp)
    return out


@needs_triton
@pytest.mark.triton
async def test_served_model_batches_concurrent_requests(exported: dict[str, Any], server: TritonServer) -> None:
    import tritonclient.grpc.aio as grpcclient

    before = server.model_statistics(MODEL)["model_stats"][0]
    requests = [_inputs(1, 12, seed) for seed in range(8)] + [_inputs(2, 5, 100 + seed) for seed in range(4)]
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        results = await asyncio.gather(*(client.infer(MODEL, _grpc_inputs(grpcclient, r)) for r in requests))
    finally:
        await client.close()
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_allclose(
            result.as_numpy("y"), exported["reference"](request["x"], request["mask"]), atol=1e-5
        )
    after = server.model_statistics(MODEL)["model_stats"][0]
    inferences = int(after["inference_count"]) - int(before.get("inference_count", 0))
    executions = int(after["execution_count"]) - int(before.get("execution_count", 0))
    assert inferences == 8 * 1 + 4 * 2  # rows
    assert executions < len(requests), f"no request was merged: {executions} executions for {len(requests)} requests"


@needs_triton
@pytest.mark.triton
def test_served_model_rejects_bad_requests_and_keeps_serving(exported: dict[str, Any], server: TritonServer) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    good = _inputs(1, 6, 7)
    with grpcclient.InferenceServerClient(server.grpc_url) as client:

        def infer_ok() -> None:
            y = client.infer(MODEL, _grpc_inputs(grpcclient, good)).as_numpy("y")
            np.testing.assert_allclose(y, exported["reference"](good["x"], good["mask"]), atol=1e-5)

        # Triton checks dtype, shape and presence against config.pbtxt before the model sees a request; the model's
        # own validation (covered above) is the second line. Either way the answer names the input.
        bad_requests = [
            (
                dict(good, x=good["x"].astype(np.int64)),
                {"x": "INT64", "mask": "BOOL"},
                "input 'x' data-type is 'INT64'",
            ),
            (dict(good, x=np.zeros((1, 6, FEATURES + 1), np.float32)), None, "unexpected shape for input 'x'"),
            (dict(good, x=good["x"][0]), None, "input 'x' batch size does not match"),
            ({"x": good["x"]}, None, "missing required input(s) ['mask']"),
        ]
        infer_ok()
        for tensors, dtypes, message in bad_requests:
            with pytest.raises(InferenceServerException) as err:
                client.infer(MODEL, _grpc_inputs(grpcclient, tensors, dtypes))
            assert message in str(err.value)
            infer_ok()
    assert server.is_ready()
