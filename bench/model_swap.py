#!/usr/bin/env python
"""Roll a new model version in and back out under continuous load, and count failed requests (goal: zero).

The procedure is the one in docs/model-swap-runbook.md:

  1. baseline: all traffic on the old version (Triton serves only it);
  2. roll in: reload the model with ``version_policy { specific { versions: [old, new] } }`` through the repository
     API — the old version keeps serving while the new one loads;
  3. shift: a canary fraction of requests, then half, then all, pin the new version;
  4. drain and roll out: once no request pinned to the old version is in flight, reload with ``[new]``;
  5. run on the new version alone; then the same steps backwards (roll back to the old version).

Traffic is ``direct`` (inference requests on the model itself, each pinning ``model_version``; inputs are drawn
from the model's metadata, dynamic dimensions set by ``--dynamic-size``), ``sampler`` (whole songs through the
decoupled ``sampler``, each pinning ``versions: {<model>: v}``; a song makes one model call per step and must not
lose its version mid-song) or ``songs`` (whole songs pinning nothing, as the orchestrator sends them: step 3 then
points the sampler's default version set at the new version and reloads the sampler — all at once, no canary).

Example (the tiny CPU repository; version 2 cloned from 1 as a stand-in for a new DiT)::

    python bench/model_swap.py --repository build/repository --start-triton --clone-new \
        --model dit --old 1 --new 2 --traffic direct --dynamic-size 256 --concurrency 4 --phase-s 10

Prints one JSON report (also to ``--json FILE``): requests sent / ok / failed per phase and in total, latency,
the versions that answered, and the repository actions with how long each took. Exit code 1 if any request
failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import random
import shutil
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("model_swap")

_NP_DTYPES = {"FP32": np.float32, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32, "BOOL": np.bool_}


# ------------------------------------------------------------------------------------------------ bookkeeping
@dataclass
class Phase:
    name: str
    fraction_new: float
    started: float = 0.0
    ended: float = 0.0
    sent: int = 0
    ok: int = 0
    failed: int = 0
    by_version: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {
            "phase": self.name,
            "fraction_new": self.fraction_new,
            "seconds": round(self.ended - self.started, 2),
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "by_version": dict(self.by_version),
            "p50_ms": round(statistics.median(lat), 2) if lat else None,
            "p95_ms": round(lat[max(0, math.ceil(0.95 * len(lat)) - 1)], 2) if lat else None,  # nearest rank
        }


@dataclass
class Router:
    """Picks the version each new request pins, and counts requests in flight per version."""

    old: str
    new: str
    fraction_new: float = 0.0
    in_flight: Counter[str] = field(default_factory=Counter)
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def pick(self) -> str:
        return self.new if self.rng.random() < self.fraction_new else self.old

    async def drained(self, version: str, timeout_s: float) -> float:
        """Wait until no request pinned to ``version`` is in flight; returns the seconds waited."""
        start = time.monotonic()
        while self.in_flight[version] > 0:
            if time.monotonic() - start > timeout_s:
                raise TimeoutError(f"{self.in_flight[version]} request(s) on version {version} still in flight")
            await asyncio.sleep(0.01)
        return time.monotonic() - start


# ------------------------------------------------------------------------------------------------ traffic
class DirectTraffic:
    """Plain inference on the model, pinning ``model_version``."""

    def __init__(self, client: Any, model: str, metadata: dict[str, Any], config: dict[str, Any], size: int) -> None:
        import tritonclient.grpc as grpcclient

        self.client, self.model = client, model
        batched = int(config.get("max_batch_size", 0)) > 0
        rng = np.random.default_rng(0)
        self.inputs = []
        for spec in metadata["inputs"]:
            dims = [int(d) for d in spec["shape"]]
            if batched:
                dims[0] = 1
            shape = [size if d < 0 else d for d in dims]
            dtype = _NP_DTYPES[spec["datatype"]]
            name = spec["name"]
            if np.issubdtype(dtype, np.integer) or dtype is np.bool_:
                value = np.ones(shape, dtype=dtype)  # masks: all valid; ids: a valid token
            elif "timestep" in name:
                value = np.full(shape, 0.5, dtype=dtype)
            else:
                value = (0.5 * rng.standard_normal(shape)).astype(dtype)
            tensor = grpcclient.InferInput(name, shape, spec["datatype"])
            tensor.set_data_from_numpy(value)
            self.inputs.append(tensor)

    async def send(self, version: str) -> None:
        await self.client.infer(self.model, self.inputs, model_version=version, client_timeout=120)


class SamplerTraffic:
    """Whole songs through the decoupled sampler, pinning ``versions: {model: v}`` — or, with ``pin=False``, not
    pinning anything, as the orchestrator does: then the sampler's default version set decides."""

    def __init__(self, client: Any, model: str, steps: int, duration: float, *, pin: bool = True) -> None:
        self.client, self.model, self.steps, self.duration, self.pin = client, model, steps, duration, pin
        self.count = 0

    async def send(self, version: str) -> None:
        import tritonclient.grpc as grpcclient

        self.count += 1
        payload = {
            "caption": "calm acoustic guitar, sea breeze",
            "lyrics": "[verse]\nla la la",
            "duration": self.duration,
            "inference_steps": self.steps,
            "seeds": [self.count],
        }
        if self.pin:
            payload["versions"] = {self.model: version}
        request = grpcclient.InferInput("request", [1], "BYTES")
        request.set_data_from_numpy(np.array([json.dumps(payload).encode()], dtype=np.object_))

        async def requests():
            yield {"model_name": "sampler", "inputs": [request], "request_id": f"swap-{self.count}"}

        done = False
        async for result, error in self.client.stream_infer(requests(), stream_timeout=300):
            if error is not None:
                raise RuntimeError(str(error))
            event = json.loads(result.as_numpy("event").reshape(-1)[0])
            if event.get("type") == "done":  # the sampler's last response
                done = True
                break
        if not done:
            raise RuntimeError("the sampler stream ended without a 'done' event")


async def _worker(traffic: Any, router: Router, phases: list[Phase], stop: asyncio.Event, errors: list[str]) -> None:
    while not stop.is_set():
        phase = phases[-1]
        version = router.pick()
        router.in_flight[version] += 1
        phase.sent += 1
        start = time.perf_counter()
        try:
            await traffic.send(version)
        except Exception as exc:  # every failure counts; the first few are reported verbatim
            phase.failed += 1
            if len(errors) < 10:
                errors.append(f"{phase.name} v{version}: {exc}")
        else:
            phase.ok += 1
            phase.by_version[version] += 1
            phase.latencies_ms.append((time.perf_counter() - start) * 1000)
        finally:
            router.in_flight[version] -= 1


# ------------------------------------------------------------------------------------------------ the swap
async def run_swap(args: argparse.Namespace, grpc_url: str) -> dict[str, Any]:
    import tritonclient.grpc as grpcclient
    import tritonclient.grpc.aio as grpcaio

    from orchestrator.cli.models import _index, ready_versions, set_versions

    admin = grpcclient.InferenceServerClient(grpc_url)
    client = grpcaio.InferenceServerClient(grpc_url)
    model, old, new = args.model, str(args.old), str(args.new)
    actions: list[dict[str, Any]] = []

    async def act(name: str, versions: list[int]) -> None:
        start = time.monotonic()
        await asyncio.to_thread(set_versions, admin, model, versions, repository=args.repository)
        ready = ready_versions(_index(admin), model)
        actions.append(
            {"action": name, "versions": versions, "ready": ready, "seconds": round(time.monotonic() - start, 2)}
        )
        logger.info("%s -> %s serves %s (%.2f s)", name, model, ready, actions[-1]["seconds"])
        if sorted(ready) != sorted(versions):
            raise RuntimeError(f"{name}: asked for versions {versions}, Triton serves {ready}")

    try:
        # Start from the old version alone.
        if ready_versions(_index(admin), model) != [int(old)]:
            await act("prepare: old only", [int(old)])
        if args.traffic == "direct":
            metadata = admin.get_model_metadata(model, old, as_json=True)
            config = admin.get_model_config(model, old, as_json=True)["config"]
            traffic: Any = DirectTraffic(client, model, metadata, config, args.dynamic_size)
        else:
            traffic = SamplerTraffic(client, model, args.steps, args.duration, pin=args.traffic == "sampler")
        manifest = (args.repository / "sampler" / "1" / "assets" / "pipeline.json") if args.repository else None
        original_manifest = manifest.read_text() if manifest is not None and manifest.is_file() else None
        if args.traffic == "songs":
            if original_manifest is None:
                raise FileNotFoundError(f"--traffic songs needs --repository with {manifest or 'sampler/1/assets'}")
            await reload_sampler_with(admin, manifest, model, old, actions)  # start from the old version

        router = Router(old, new)
        phases: list[Phase] = []
        errors: list[str] = []
        stop = asyncio.Event()

        def begin(name: str, fraction: float) -> None:
            now = time.monotonic()
            if phases:
                phases[-1].ended = now
            router.fraction_new = fraction
            phases.append(Phase(name, fraction, started=now))

        begin("baseline (old)", 0.0)
        workers = [asyncio.create_task(_worker(traffic, router, phases, stop, errors)) for _ in range(args.concurrency)]
        try:
            await asyncio.sleep(args.phase_s)
            begin("roll in new (old serving)", 0.0)
            await act("roll in", [int(old), int(new)])
            if args.traffic == "songs":
                # The orchestrator's songs pin nothing: the sampler's default version set moves them, all at once.
                begin("shift: sampler reload", 0.0)  # songs sent meanwhile may still start on the old version
                await reload_sampler_with(admin, manifest, model, new, actions)
            else:
                for fraction in (0.1, 0.5):
                    begin(f"canary {fraction:.0%} new", fraction)
                    await asyncio.sleep(args.phase_s)
            begin("all new, draining old", 1.0)
            if args.drain:
                drain = await router.drained(old, timeout_s=600)
                actions.append({"action": "drain old", "seconds": round(drain, 2)})
            await act("roll out old", [int(new)])
            begin("new only", 1.0)
            await asyncio.sleep(args.phase_s)
            # Roll back.
            begin("roll back in old (new serving)", 1.0)
            await act("roll back in", [int(old), int(new)])
            if args.traffic == "songs":
                begin("shift back: sampler reload", 1.0)
                await reload_sampler_with(admin, manifest, model, old, actions)
            begin("all old, draining new", 0.0)
            if args.drain:
                drain = await router.drained(new, timeout_s=600)
                actions.append({"action": "drain new", "seconds": round(drain, 2)})
            await act("roll out new", [int(old)])
            begin("old only (rolled back)", 0.0)
            await asyncio.sleep(args.phase_s)
        finally:
            stop.set()
            await asyncio.gather(*workers, return_exceptions=True)
            if phases:
                phases[-1].ended = time.monotonic()
        totals = {k: sum(getattr(p, k) for p in phases) for k in ("sent", "ok", "failed")}
        return {
            "model": model,
            "old": old,
            "new": new,
            "traffic": args.traffic,
            "concurrency": args.concurrency,
            "drain": args.drain,
            **totals,
            "phases": [p.report() for p in phases],
            "actions": actions,
            "final_versions": ready_versions(_index(admin), model),
            "errors": errors,
        }
    finally:
        if args.traffic == "songs" and manifest is not None and original_manifest is not None:
            if manifest.read_text() != original_manifest:
                manifest.write_text(original_manifest)
                with contextlib.suppress(Exception):
                    admin.load_model("sampler")
        await client.close()
        admin.close()


async def reload_sampler_with(
    admin: Any, manifest: Path | None, model: str, version: str, actions: list[dict[str, Any]]
) -> None:
    """Point the sampler's default version set at ``model`` version ``version`` and reload the sampler: Triton keeps
    the running instance (and its songs) until the new one is ready, then sends new songs to it."""
    assert manifest is not None
    data = json.loads(manifest.read_text())
    default = data["default_version_set"]
    if str(data["version_sets"][default]["versions"].get(model)) == version:
        return
    data["version_sets"][default]["versions"][model] = version
    manifest.write_text(json.dumps(data, indent=2) + "\n")
    start = time.monotonic()
    await asyncio.to_thread(admin.load_model, "sampler")
    actions.append(
        {"action": f"sampler default set -> {model} v{version}", "seconds": round(time.monotonic() - start, 2)}
    )
    logger.info("sampler reloaded: default %s version %s (%.2f s)", model, version, actions[-1]["seconds"])


def _clone_new(repository: Path, model: str, old: int, new: int) -> None:
    """Stand-in for a freshly built artifact: copy ``<model>/<old>`` to ``<model>/<new>`` when it is missing."""
    src, dst = repository / model / str(old), repository / model / str(new)
    if dst.exists():
        return
    if not src.is_dir():
        raise FileNotFoundError(f"{src} does not exist; nothing to clone a new version from")
    shutil.copytree(src, dst)
    logger.info("cloned %s -> %s", src, dst)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default=None, help="tritonserver gRPC address (or --start-triton)")
    parser.add_argument("--repository", type=Path, default=None, help="model repository folder")
    parser.add_argument("--start-triton", action="store_true", help="start tritonserver on --repository for the run")
    parser.add_argument("--clone-new", action="store_true", help="create <model>/<new> as a copy of <model>/<old>")
    parser.add_argument("--model", default="dit")
    parser.add_argument("--old", type=int, default=1)
    parser.add_argument("--new", type=int, default=2)
    parser.add_argument(
        "--traffic",
        choices=["direct", "sampler", "songs"],
        default="direct",
        help="direct: model requests pinning model_version; sampler: songs pinning versions; songs: unpinned songs "
        "(the orchestrator's), moved by the sampler's default version set + a sampler reload (needs --repository)",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (4)")
    parser.add_argument("--phase-s", type=float, default=10.0, help="seconds per traffic phase (10)")
    parser.add_argument("--dynamic-size", type=int, default=256, help="size of dynamic dims for direct traffic (256)")
    parser.add_argument("--steps", type=int, default=2, help="DiT steps per song for sampler traffic (2)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of audio per song for sampler traffic")
    parser.add_argument(
        "--no-drain",
        dest="drain",
        action="store_false",
        help="unload a version while requests pinned to it may still be in flight (shows why step 4 matters)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.server and not args.start_triton:
        parser.error("give --server HOST:PORT or --start-triton with --repository")
    if (args.start_triton or args.clone_new) and args.repository is None:
        parser.error("--start-triton and --clone-new need --repository")
    if args.clone_new:
        _clone_new(args.repository, args.model, args.old, args.new)

    with contextlib.ExitStack() as stack:
        url = args.server
        if args.start_triton:
            from model_repository.launcher.server import TritonServer

            log = args.repository.parent / "model_swap-tritonserver.log"
            server = stack.enter_context(TritonServer(args.repository, log_path=log))
            url = server.grpc_url
        report = asyncio.run(run_swap(args, url))
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(
        f"requests sent {report['sent']}, ok {report['ok']}, failed {report['failed']}; "
        f"{args.model} now serves {report['final_versions']}",
        file=sys.stderr,
    )
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
