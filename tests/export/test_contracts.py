from __future__ import annotations

import numpy as np
import pytest

from export.contracts import Axis, CpuServing, NetworkContract, TensorSpec


def _contract(**kw) -> NetworkContract:
    return NetworkContract(
        name="toy",
        inputs=(
            TensorSpec("x", "float32", ("batch", "frames", 4)),
            TensorSpec("mask", "int64", ("batch", "frames"), fill="mask"),
            TensorSpec("t", "float32", ("batch", 1), fill="timestep"),
        ),
        outputs=(TensorSpec("y", "float32", ("batch", "frames", 4)),),
        axes=(Axis("frames", 10, 50, 100, (20, 50, 100)),),
        **kw,
    )


def test_axis_buckets_and_ranges():
    axis = Axis("frames", 10, 50, 100, (20, 50, 100))
    assert [axis.bucket_for(n) for n in (1, 20, 21, 100)] == [20, 20, 50, 100]
    with pytest.raises(ValueError, match="frames=101 exceeds the maximum 100"):
        axis.bucket_for(101)
    with pytest.raises(ValueError, match="min <= opt <= max"):
        Axis("frames", 10, 5, 100)
    with pytest.raises(ValueError, match="outside"):
        Axis("frames", 10, 50, 100, (5, 50))


def test_contract_rejects_undeclared_axes_and_batchless_tensors():
    with pytest.raises(ValueError, match="axis 'length' is not declared"):
        NetworkContract("bad", (TensorSpec("x", "float32", ("batch", "length")),), (), axes=())
    with pytest.raises(ValueError, match="first dimension must be 'batch'"):
        NetworkContract("bad", (TensorSpec("x", "float32", (3, 4)),), (), axes=())


def test_sample_inputs_are_deterministic_and_shaped():
    c = _contract()
    a, b = c.sample_inputs({"batch": 3, "frames": 20}, seed=4), c.sample_inputs({"batch": 3, "frames": 20}, seed=4)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a["x"].shape == (3, 20, 4) and a["x"].dtype == np.float32
    assert a["mask"].dtype == np.int64 and set(np.unique(a["mask"])) <= {0, 1}
    assert (a["mask"][:, 0] == 1).all()  # a valid prefix in every row
    other = c.sample_inputs({"batch": 3, "frames": 20}, seed=5)
    assert not np.array_equal(a["x"], other["x"])


def test_validate_names_the_input_and_the_allowed_values():
    c = _contract()
    good = c.sample_inputs({"batch": 2, "frames": 20})
    c.validate(good)
    with pytest.raises(ValueError, match="input 'x' has dtype float64, expected float32"):
        c.validate(good | {"x": good["x"].astype(np.float64)})
    with pytest.raises(ValueError, match="input 'x' dim 2 is 5, expected 4"):
        c.validate(good | {"x": np.zeros((2, 20, 5), np.float32)})
    with pytest.raises(ValueError, match="axis 'frames' is 200, allowed 10..100"):
        c.validate(good | {"x": np.zeros((2, 200, 4), np.float32)})
    with pytest.raises(ValueError, match="missing input 'mask'"):
        c.validate({"x": good["x"], "t": good["t"]})


def test_triton_config_is_generated_from_the_contract():
    c = _contract(max_batch_size=16, preferred_batch_sizes=(), max_queue_delay_us=1234)
    cpu = c.triton_config(platform="cpu", version_policy="{ all { } }")
    assert 'backend: "python"' in cpu and "max_batch_size: 16" in cpu
    assert 'name: "x"' in cpu and "data_type: TYPE_FP32" in cpu and "dims: [ -1, 4 ]" in cpu
    assert 'name: "mask"' in cpu and "data_type: TYPE_INT64" in cpu and "dims: [ -1 ]" in cpu
    assert "max_queue_delay_microseconds: 1234" in cpu and "preferred_batch_size" not in cpu
    assert "version_policy: { all { } }" in cpu and "onnx_file" in cpu
    gpu = c.triton_config(platform="gpu")
    assert 'platform: "tensorrt_plan"' in gpu and "KIND_GPU" in gpu and "onnx_file" not in gpu
    assert "count: 1 kind: KIND_CPU" in cpu and 'key: "intra_op_num_threads" value: { string_value: "1" }' in cpu


def test_cpu_serving_sets_instances_and_threads_on_cpu_only():
    c = _contract(cpu=CpuServing(instances=2, threads=0))
    cpu = c.triton_config(platform="cpu")
    assert "instance_group [ { count: 2 kind: KIND_CPU } ]" in cpu
    assert "dynamic_batching" not in cpu  # it would merge the scheduler's per-instance calls onto one instance
    assert 'parameters: { key: "intra_op_num_threads" value: { string_value: "0" } }' in cpu
    gpu = c.triton_config(platform="gpu")
    assert "instance_group [ { count: 1 kind: KIND_GPU } ]" in gpu and "intra_op_num_threads" not in gpu
    assert "dynamic_batching" in gpu and "dynamic_batching" in _contract(cpu=CpuServing(threads=2)).triton_config(
        platform="cpu")
    assert "count: 3 kind: KIND_CPU" in c.triton_config(platform="cpu", instance_count=3)
    with pytest.raises(ValueError, match="instances=0 threads=1; need instances >= 1"):
        CpuServing(instances=0)
    with pytest.raises(ValueError, match="threads >= 0"):
        CpuServing(threads=-1)


def test_trt_profile_covers_min_opt_max():
    prof = _contract().trt_profile()
    assert prof["x"] == ((1, 10, 4), (4, 50, 4), (8, 100, 4))
    assert prof["t"] == ((1, 1), (4, 1), (8, 1))
