"""Tensor contracts: one declaration per exported network.

A :class:`NetworkContract` names a network's inputs and outputs, their dtypes and dynamic axes, how to make sample
inputs, and the TensorRT optimization profile. ONNX export, the engine build, Triton ``config.pbtxt`` generation and
the tests all read the same object, so nothing about a network's interface is typed twice.

Axis conventions: a dimension is either a fixed ``int`` or the name of a dynamic axis (``"batch"``, ``"frames"``,
``"text"`` ...). The first dimension of every tensor is ``"batch"``: Triton's ``max_batch_size`` covers it and the
dynamic batcher concatenates along it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

DType = Literal["float32", "float16", "int64", "int32", "bool"]
Fill = Literal["normal", "uniform", "ids", "mask", "ones", "timestep", "zeros"]

_TRITON_DTYPES: dict[str, str] = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
    "bool": "TYPE_BOOL",
}


@dataclass(frozen=True)
class Axis:
    """A dynamic axis and its range. ``opt`` is the TensorRT profile's optimum; ``buckets`` are the padded sizes the
    serving layer rounds requests up to so that Triton's batcher sees identical shapes."""

    name: str
    min: int
    opt: int
    max: int
    buckets: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.min <= self.opt <= self.max:
            raise ValueError(f"axis {self.name!r}: need min <= opt <= max, got {self.min}/{self.opt}/{self.max}")
        if self.buckets and (self.buckets[0] < self.min or self.buckets[-1] > self.max):
            raise ValueError(f"axis {self.name!r}: buckets {self.buckets} fall outside [{self.min}, {self.max}]")

    def bucket_for(self, size: int) -> int:
        """The smallest bucket that holds ``size`` (the size itself when the axis has no buckets)."""
        if size > self.max:
            raise ValueError(f"{self.name}={size} exceeds the maximum {self.max}")
        for bucket in self.buckets:
            if bucket >= size:
                return bucket
        return max(size, self.min)


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor. ``fill`` says how sample inputs are drawn; ``high`` bounds ``ids``/``uniform`` samples."""

    name: str
    dtype: DType
    shape: tuple[int | str, ...]
    fill: Fill = "normal"
    high: float = 1.0

    @property
    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    def concrete_shape(self, sizes: Mapping[str, int]) -> tuple[int, ...]:
        try:
            return tuple(d if isinstance(d, int) else int(sizes[d]) for d in self.shape)
        except KeyError as exc:
            raise KeyError(f"tensor {self.name!r} needs a size for axis {exc.args[0]!r}") from None

    def sample(self, sizes: Mapping[str, int], rng: np.random.Generator) -> np.ndarray:
        shape = self.concrete_shape(sizes)
        if self.fill == "normal":
            arr: np.ndarray = rng.standard_normal(shape)
        elif self.fill == "uniform":
            arr = rng.uniform(0.0, self.high, shape)
        elif self.fill == "timestep":
            arr = rng.uniform(0.05, 1.0, shape)
        elif self.fill == "ids":
            arr = rng.integers(0, int(self.high), shape)
        elif self.fill == "ones":
            arr = np.ones(shape)
        elif self.fill == "zeros":
            arr = np.zeros(shape)
        elif self.fill == "mask":
            # Valid prefix per row of random length >= 1, then padding: the layout the serving layer produces.
            arr = np.zeros(shape)
            for row in range(shape[0]):
                arr[row, : int(rng.integers(max(1, shape[1] // 2), shape[1] + 1))] = 1
        else:  # pragma: no cover - Literal keeps this unreachable
            raise ValueError(self.fill)
        return arr.astype(np.bool_ if self.dtype == "bool" else self.dtype)

    def triton_dims(self) -> list[int]:
        """Dims for ``config.pbtxt``: batch excluded (Triton adds it), dynamic axes as -1."""
        return [-1 if isinstance(d, str) else d for d in self.shape[1:]]


@dataclass(frozen=True)
class CpuServing:
    """How the CPU target serves a network: ``instances`` Triton model instances (each a Python-backend process with
    its own ONNX Runtime session; the step scheduler splits a large call across them) and ``threads`` intra-op threads
    per session (0 = one per core of the serving machine). With several instances the CPU config has no dynamic
    batcher: it would merge the scheduler's per-instance calls back into one batch on one instance (each call already
    holds every song that was ready). The GPU target ignores both: one ``tensorrt_plan`` instance, whose kernels use
    the whole GPU."""

    instances: int = 1
    threads: int = 1

    def __post_init__(self) -> None:
        if self.instances < 1 or self.threads < 0:
            raise ValueError(
                f"CpuServing: instances={self.instances} threads={self.threads}; need instances >= 1 and threads >= 0 "
                "(0 = one per core)"
            )


@dataclass(frozen=True)
class NetworkContract:
    """Everything about one exported network's interface."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    axes: tuple[Axis, ...]
    max_batch_size: int = 8
    # TensorRT precision: "bf16"/"fp16" build with that flag (layers TensorRT deems unsafe stay fp32); "fp32" none.
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    # Preferred batch sizes and queue delay for Triton's dynamic batcher.
    preferred_batch_sizes: tuple[int, ...] = (4, 8)
    max_queue_delay_us: int = 2000
    cpu: CpuServing = CpuServing()
    description: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        known = {a.name for a in self.axes} | {"batch"}
        for spec in self.inputs + self.outputs:
            if not spec.shape or spec.shape[0] != "batch":
                raise ValueError(f"{self.name}.{spec.name}: the first dimension must be 'batch'")
            for d in spec.shape:
                if isinstance(d, str) and d not in known:
                    raise ValueError(f"{self.name}.{spec.name}: axis {d!r} is not declared; known: {sorted(known)}")

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    def axis(self, name: str) -> Axis:
        if name == "batch":
            return Axis("batch", 1, max(1, self.max_batch_size // 2), self.max_batch_size)
        for a in self.axes:
            if a.name == name:
                return a
        raise KeyError(f"{self.name}: no axis {name!r}")

    def onnx_dynamic_shapes(self) -> dict[str, dict[int, str]]:
        return {s.name: s.dynamic_axes for s in self.inputs}

    def sample_inputs(self, sizes: Mapping[str, int], seed: int = 0) -> dict[str, np.ndarray]:
        """Random inputs at the given axis sizes, deterministic in ``seed``."""
        rng = np.random.default_rng(seed)
        return {spec.name: spec.sample(sizes, rng) for spec in self.inputs}

    def sizes(self, which: Literal["min", "opt", "max"], batch: int | None = None) -> dict[str, int]:
        out = {a.name: getattr(a, which) for a in self.axes}
        out["batch"] = batch if batch is not None else getattr(self.axis("batch"), which)
        return out

    def trt_profile(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """min/opt/max shapes per input, for ``trtexec --minShapes/--optShapes/--maxShapes``."""
        lo, opt, hi = self.sizes("min"), self.sizes("opt"), self.sizes("max")
        return {s.name: (s.concrete_shape(lo), s.concrete_shape(opt), s.concrete_shape(hi)) for s in self.inputs}

    def validate(self, tensors: Mapping[str, np.ndarray]) -> None:
        """Check a request's tensors against the contract; raise ``ValueError`` naming the field and what is allowed."""
        for spec in self.inputs:
            if spec.name not in tensors:
                raise ValueError(f"{self.name}: missing input {spec.name!r}; expected {self.input_names}")
            arr = tensors[spec.name]
            want = np.bool_ if spec.dtype == "bool" else np.dtype(spec.dtype)
            if arr.dtype != want:
                raise ValueError(f"{self.name}: input {spec.name!r} has dtype {arr.dtype}, expected {spec.dtype}")
            if arr.ndim != len(spec.shape):
                raise ValueError(
                    f"{self.name}: input {spec.name!r} has {arr.ndim} dims {list(arr.shape)}, "
                    f"expected {len(spec.shape)} {list(spec.shape)}"
                )
            for i, d in enumerate(spec.shape):
                if isinstance(d, int) and arr.shape[i] != d:
                    raise ValueError(
                        f"{self.name}: input {spec.name!r} dim {i} is {arr.shape[i]}, expected {d} ({list(spec.shape)})"
                    )
                if isinstance(d, str):
                    ax = self.axis(d)
                    if not ax.min <= arr.shape[i] <= ax.max:
                        raise ValueError(
                            f"{self.name}: input {spec.name!r} axis {d!r} is {arr.shape[i]}, allowed {ax.min}..{ax.max}"
                        )

    def triton_config(
        self,
        *,
        platform: Literal["cpu", "gpu"],
        model_name: str | None = None,
        instance_count: int | None = None,
        dynamic_batching: bool = True,
        version_policy: str | None = None,
    ) -> str:
        """A ``config.pbtxt``: a Python-backend model on CPU (ONNX Runtime inside, instances and threads from
        :attr:`cpu`), ``tensorrt_plan`` on GPU (one instance). ``instance_count`` overrides the instances."""
        lines = [f'name: "{model_name or self.name}"']
        if platform == "gpu":
            lines.append('platform: "tensorrt_plan"')
        else:
            lines.append('backend: "python"')
        lines.append(f"max_batch_size: {self.max_batch_size}")
        if version_policy:
            lines.append(f"version_policy: {version_policy}")
        for kind, specs in (("input", self.inputs), ("output", self.outputs)):
            lines.append(f"{kind} [")
            body = []
            for s in specs:
                body.append(
                    "  {\n"
                    f'    name: "{s.name}"\n'
                    f"    data_type: {_TRITON_DTYPES[s.dtype]}\n"
                    f"    dims: [ {', '.join(str(d) for d in s.triton_dims())} ]\n"
                    "  }"
                )
            lines.append(",\n".join(body))
            lines.append("]")
        count = instance_count if instance_count is not None else (self.cpu.instances if platform == "cpu" else 1)
        if dynamic_batching and not (platform == "cpu" and count > 1):
            prefs = ", ".join(str(b) for b in self.preferred_batch_sizes if b <= self.max_batch_size)
            lines.append("dynamic_batching {")
            if prefs:
                lines.append(f"  preferred_batch_size: [ {prefs} ]")
            lines.append(f"  max_queue_delay_microseconds: {self.max_queue_delay_us}")
            lines.append("}")
        kind_ = "KIND_GPU" if platform == "gpu" else "KIND_CPU"
        lines.append(f"instance_group [ {{ count: {count} kind: {kind_} }} ]")
        if platform == "cpu":
            lines.append('parameters: { key: "onnx_file" value: { string_value: "model.onnx" } }')
            threads = self.cpu.threads
            lines.append(f'parameters: {{ key: "intra_op_num_threads" value: {{ string_value: "{threads}" }} }}')
        return "\n".join(lines) + "\n"
