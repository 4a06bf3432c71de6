"""Run an ONNX graph for a Triton Python-backend model: the CPU stand-in for a ``tensorrt_plan`` model.

:class:`OnnxBatchRunner` is the library half of ``model_repository/triton_models/onnx_runtime/model.py`` and
knows nothing about Triton's Python API: it takes the parsed model config and plain numpy arrays, so it is tested
without a server.

For each ``execute`` call (the dynamic batcher hands over several requests at once) it validates every request
against the config, groups the valid requests whose non-batch input shapes are identical, concatenates each group
along dim 0 and runs ONE ``session.run`` per group (chunked to ``max_batch_size``), then splits the outputs back.
A request that fails validation gets its own error; the others still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger(__name__)

# Triton config data types -> numpy dtypes (TYPE_STRING is not a tensor ONNX Runtime models here take).
TRITON_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "TYPE_BOOL": np.dtype(np.bool_),
    "TYPE_UINT8": np.dtype(np.uint8),
    "TYPE_UINT16": np.dtype(np.uint16),
    "TYPE_UINT32": np.dtype(np.uint32),
    "TYPE_UINT64": np.dtype(np.uint64),
    "TYPE_INT8": np.dtype(np.int8),
    "TYPE_INT16": np.dtype(np.int16),
    "TYPE_INT32": np.dtype(np.int32),
    "TYPE_INT64": np.dtype(np.int64),
    "TYPE_FP16": np.dtype(np.float16),
    "TYPE_FP32": np.dtype(np.float32),
    "TYPE_FP64": np.dtype(np.float64),
}

# ONNX Runtime's type strings -> numpy dtypes, to feed each graph input the dtype it declares.
ORT_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "tensor(bool)": np.dtype(np.bool_),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
}

# Model-config parameters this runner reads (``parameters { key: ... value { string_value: ... } }``).
PARAM_ONNX_FILE = "onnx_file"  # path of the graph, relative to the version folder (default "model.onnx")
PARAM_INTRA_OP_THREADS = "intra_op_num_threads"  # ONNX Runtime intra-op threads per instance (default 1)


class RequestError(ValueError):
    """A client's request does not match the model config; the message names the input and what is allowed."""


class Session(Protocol):
    """The part of ``onnxruntime.InferenceSession`` the runner uses."""

    def run(self, output_names: list[str] | None, input_feed: dict[str, np.ndarray]) -> list[np.ndarray]: ...

    def get_inputs(self) -> list[Any]: ...

    def get_outputs(self) -> list[Any]: ...


@dataclass(frozen=True)
class TensorConfig:
    """One input or output from the model config. ``dims`` exclude the batch dim; -1 is dynamic."""

    name: str
    dtype: np.dtype[Any]
    dims: tuple[int, ...]
    optional: bool = False

    def describe(self, batched: bool) -> str:
        dims = (["batch"] if batched else []) + ["*" if d < 0 else str(d) for d in self.dims]
        return f"[{', '.join(dims)}]"


@dataclass(frozen=True)
class OnnxModelConfig:
    """What the runner needs from a Triton model config (the JSON ``args["model_config"]``)."""

    name: str
    max_batch_size: int
    inputs: tuple[TensorConfig, ...]
    outputs: tuple[TensorConfig, ...]
    onnx_file: str = "model.onnx"
    intra_op_threads: int = 1

    @property
    def batched(self) -> bool:
        return self.max_batch_size > 0

    @classmethod
    def from_triton(cls, config: Mapping[str, Any]) -> OnnxModelConfig:
        name = str(config.get("name", "model"))

        def tensors(kind: str) -> tuple[TensorConfig, ...]:
            out = []
            for entry in config.get(kind, []):
                dtype_name = entry.get("data_type", "")
                if dtype_name not in TRITON_TO_NUMPY:
                    raise ValueError(
                        f"{name}: {kind} {entry.get('name')!r} has data_type {dtype_name!r}; "
                        f"this ONNX Runtime model supports {sorted(TRITON_TO_NUMPY)}"
                    )
                dims = tuple(int(d) for d in entry.get("reshape", {}).get("shape", entry.get("dims", [])))
                out.append(TensorConfig(entry["name"], TRITON_TO_NUMPY[dtype_name], dims, bool(entry.get("optional"))))
            if not out:
                raise ValueError(f"{name}: the model config declares no {kind}s")
            return tuple(out)

        params = {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
        threads_text = params.get(PARAM_INTRA_OP_THREADS, "1") or "1"
        try:
            threads = int(threads_text)
            if threads < 0:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"{name}: parameter {PARAM_INTRA_OP_THREADS}={threads_text!r}; expected an integer >= 0 (0 = all cores)"
            ) from None
        return cls(
            name=name,
            max_batch_size=int(config.get("max_batch_size", 0)),
            inputs=tensors("input"),
            outputs=tensors("output"),
            onnx_file=params.get(PARAM_ONNX_FILE) or "model.onnx",
            intra_op_threads=threads,
        )


def open_session(path: Path, intra_op_threads: int = 1) -> Any:
    """An ONNX Runtime CPU session with ``intra_op_threads`` intra-op threads and one inter-op thread."""
    import onnxruntime as ort

    if not path.is_file():
        raise FileNotFoundError(f"ONNX file {path} does not exist; check the model's '{PARAM_ONNX_FILE}' parameter")
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


Result = dict[str, np.ndarray] | Exception


class OnnxBatchRunner:
    """Validates, groups, batches and runs requests through one ONNX Runtime session."""

    def __init__(self, config: OnnxModelConfig, session: Session) -> None:
        self.config = config
        self.session = session
        graph_inputs = {i.name: i for i in session.get_inputs()}
        graph_outputs = {o.name for o in session.get_outputs()}
        declared = {t.name for t in config.inputs}
        problems = []
        for t in config.inputs:
            if t.name not in graph_inputs:
                problems.append(
                    f"input {t.name!r} is not an input of the ONNX graph (graph inputs: {sorted(graph_inputs)})"
                )
        for gname in graph_inputs:
            if gname not in declared:
                problems.append(f"ONNX graph input {gname!r} is not declared in the model config")
        for t in config.outputs:
            if t.name not in graph_outputs:
                problems.append(
                    f"output {t.name!r} is not an output of the ONNX graph (graph outputs: {sorted(graph_outputs)})"
                )
        if problems:
            raise ValueError(f"{config.name}: config.pbtxt does not match {config.onnx_file}: " + "; ".join(problems))
        # Feed each graph input the dtype the graph declares (e.g. a TYPE_BOOL mask into a graph that wants float).
        self._feed_dtypes = {name: ORT_TO_NUMPY.get(getattr(i, "type", ""), None) for name, i in graph_inputs.items()}
        self._output_names = [t.name for t in config.outputs]
        self.session_runs = 0  # session.run calls so far (each serves one group of requests)

    @classmethod
    def from_triton(
        cls,
        model_config: Mapping[str, Any],
        version_dir: Path,
        session_factory: Callable[[Path, int], Session] = open_session,
    ) -> OnnxBatchRunner:
        config = OnnxModelConfig.from_triton(model_config)
        return cls(config, session_factory(version_dir / config.onnx_file, config.intra_op_threads))

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.config.inputs]

    # ---------------------------------------------------------------- validation
    def validate(self, tensors: Mapping[str, np.ndarray | None]) -> dict[str, np.ndarray]:
        """The request's inputs, checked against the config; ``RequestError`` names the first problem."""
        cfg = self.config
        out: dict[str, np.ndarray] = {}
        batch: int | None = None
        for spec in cfg.inputs:
            arr = tensors.get(spec.name)
            if arr is None:
                if spec.optional:
                    continue
                raise RequestError(f"{cfg.name}: missing input {spec.name!r}; expected inputs {self.input_names}")
            arr = np.asarray(arr)
            if arr.dtype != spec.dtype:
                raise RequestError(
                    f"{cfg.name}: input {spec.name!r} has dtype {arr.dtype}, expected {_dtype_name(spec.dtype)}"
                )
            want_rank = len(spec.dims) + (1 if cfg.batched else 0)
            if arr.ndim != want_rank:
                raise RequestError(
                    f"{cfg.name}: input {spec.name!r} has {arr.ndim} dims {list(arr.shape)}, "
                    f"expected {want_rank} {spec.describe(cfg.batched)}"
                )
            offset = 1 if cfg.batched else 0
            for i, d in enumerate(spec.dims):
                if d >= 0 and arr.shape[i + offset] != d:
                    raise RequestError(
                        f"{cfg.name}: input {spec.name!r} dim {i + offset} is {arr.shape[i + offset]}, "
                        f"expected {d} in {spec.describe(cfg.batched)}"
                    )
            if cfg.batched:
                if arr.shape[0] < 1 or arr.shape[0] > cfg.max_batch_size:
                    raise RequestError(
                        f"{cfg.name}: input {spec.name!r} has batch size {arr.shape[0]}, "
                        f"allowed 1..{cfg.max_batch_size}"
                    )
                if batch is not None and arr.shape[0] != batch:
                    raise RequestError(
                        f"{cfg.name}: input {spec.name!r} has batch size {arr.shape[0]} but other inputs have {batch}"
                    )
                batch = arr.shape[0]
            out[spec.name] = arr
        return out

    # ---------------------------------------------------------------- execution
    def run(self, requests: Sequence[Mapping[str, np.ndarray | None]]) -> list[Result]:
        """One result per request, in order: a dict of outputs or the exception to answer that request with."""
        results: list[Result | None] = [None] * len(requests)
        groups: dict[tuple[Any, ...], list[tuple[int, dict[str, np.ndarray]]]] = {}
        for idx, tensors in enumerate(requests):
            try:
                valid = self.validate(tensors)
            except RequestError as exc:
                logger.debug("%s: request %s rejected: %s", self.config.name, idx, exc)
                results[idx] = exc
                continue
            if not self.config.batched:
                groups[("single", idx)] = [(idx, valid)]
                continue
            key = tuple((name, arr.shape[1:]) for name, arr in sorted(valid.items()))
            groups.setdefault(key, []).append((idx, valid))
        for members in groups.values():
            for chunk in self._chunks(members):
                for idx, result in zip((i for i, _ in chunk), self._run_group([t for _, t in chunk]), strict=True):
                    results[idx] = result
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    def _chunks(
        self, members: list[tuple[int, dict[str, np.ndarray]]]
    ) -> list[list[tuple[int, dict[str, np.ndarray]]]]:
        """Split a group so each ``session.run`` stays within ``max_batch_size`` rows."""
        if not self.config.batched:
            return [members]
        chunks: list[list[tuple[int, dict[str, np.ndarray]]]] = [[]]
        rows = 0
        for member in members:
            size = _batch_size(member[1])
            if chunks[-1] and rows + size > self.config.max_batch_size:
                chunks.append([])
                rows = 0
            chunks[-1].append(member)
            rows += size
        return chunks

    def _run_group(self, group: list[dict[str, np.ndarray]]) -> list[Result]:
        try:
            return self._run_merged(group)
        except Exception as exc:  # noqa: BLE001 - the graph's error becomes the requests' error
            if len(group) == 1:
                logger.debug("%s: session.run failed: %s", self.config.name, exc)
                return [RuntimeError(f"{self.config.name}: inference failed: {exc}")]
            # One request's sizes may break the merged run (e.g. an axis past what the graph supports): retry alone
            # so only the culprit fails.
            logger.debug(
                "%s: merged run of %s requests failed (%s); running them one by one", self.config.name, len(group), exc
            )
            return [r for one in group for r in self._run_group([one])]

    def _run_merged(self, group: list[dict[str, np.ndarray]]) -> list[Result]:
        names = list(group[0])
        if len(group) == 1:
            feed = dict(group[0])
        else:
            feed = {name: np.concatenate([t[name] for t in group], axis=0) for name in names}
        for name, arr in feed.items():
            want = self._feed_dtypes.get(name)
            if want is not None and arr.dtype != want:
                feed[name] = arr.astype(want)
        outputs = self.session.run(self._output_names, feed)
        self.session_runs += 1
        sizes = [_batch_size(t) for t in group] if self.config.batched else [1]
        logger.debug("%s: one session.run for %s requests (%s rows)", self.config.name, len(group), sum(sizes))
        total = sum(sizes)
        per_request: list[dict[str, np.ndarray]] = [{} for _ in group]
        for spec, value in zip(self.config.outputs, outputs, strict=True):
            value = np.asarray(value)
            if value.dtype != spec.dtype:
                value = value.astype(spec.dtype)
            if not self.config.batched:
                per_request[0][spec.name] = value
                continue
            if value.ndim == 0 or value.shape[0] != total:
                raise RuntimeError(
                    f"output {spec.name!r} has shape {list(value.shape)}; expected batch dim {total} first"
                )
            for i, part in enumerate(np.split(value, np.cumsum(sizes)[:-1], axis=0)):
                per_request[i][spec.name] = np.ascontiguousarray(part)
        return list(per_request)


def _batch_size(tensors: Mapping[str, np.ndarray]) -> int:
    return int(next(iter(tensors.values())).shape[0])


def _dtype_name(dtype: np.dtype[Any]) -> str:
    return "bool" if dtype == np.bool_ else str(dtype)
