"""Helpers for the client replay tests: a stage-runner double that describes its catalog like the real sampler, an
app in open mode (what the browser clients, which send no credentials, need), and the poll loops the clients run."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import soundfile as sf

from orchestrator.services.triton import ModelEvent
from tests.orchestrator.doubles import StageRunnerDouble
from tests.orchestrator.support import wait_for

# What the tiny repository's sampler describes (three 1.5 sets, v1's base), with network versions.
CATALOG = {
    "type": "done",
    "default_family": "acestep15",
    "families": {
        "acestep15": {
            "default_version_set": "turbo",
            "version_sets": {
                "turbo": {"variant": "turbo", "versions": {"dit": "1", "vae_decoder": "1"}},
                "sft": {"variant": "sft", "versions": {"dit": "2", "vae_decoder": "1"}},
                "base": {"variant": "base", "versions": {"dit": "3", "vae_decoder": "1"}},
            },
        },
        "acestep_v1": {"default_version_set": "base", "version_sets": {"base": {"versions": {"v1_dit": "1"}}}},
    },
}


class DescribingDouble(StageRunnerDouble):
    """The double, plus the sampler's ``describe`` answer and the ``version_set`` / ``versions`` a run used."""

    async def stream(
        self, model: str, request: Mapping[str, Any], *, tensors: Mapping[str, np.ndarray] | None = None
    ) -> AsyncGenerator[ModelEvent, None]:
        if model == "sampler" and request.get("describe"):
            yield ModelEvent(dict(CATALOG), {}, self.name)
            return
        async for event in super().stream(model, request, tensors=tensors):
            if event.type == "done" and model == "sampler":
                family = request.get("family") or "acestep15"
                info = CATALOG["families"][family]  # type: ignore[index]
                vs = request.get("version_set") or info["default_version_set"]
                versions = {**info["version_sets"][vs]["versions"], **(request.get("versions") or {})}
                event = ModelEvent({**event.data, "version_set": vs, "versions": versions}, event.tensors, event.server)
            yield event

    async def models(self) -> list[dict[str, Any]]:
        rows = await super().models()
        rows += [
            {"name": name, "version": version, "state": "READY", "reason": "", "server": self.name}
            for name, version in (("dit", "1"), ("dit", "2"), ("dit", "3"), ("vae_decoder", "1"), ("v1_dit", "1"))
        ]
        return rows


def wav_bytes(seconds: float = 11.0, rate: int = 44100) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    sf.write(buffer, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@dataclass
class Polled:
    entry: dict[str, Any]  # the final data[0]
    items: list[dict[str, Any]]  # its parsed ``result``
    seen: list[dict[str, Any]] = field(default_factory=list)  # the in-progress items a UI would have shown


async def poll_query_result(
    client: httpx.AsyncClient, task_id: str, *, headers: Mapping[str, str] | None = None, timeout: float = 30
) -> Polled:
    """Upstream's clients' loop: POST /query_result {"task_id_list": [id]} (JSON) until data[0].status is 1 or 2."""
    seen: list[dict[str, Any]] = []

    async def probe() -> Polled | None:
        r = await client.post(
            "/query_result",
            content=json.dumps({"task_id_list": [task_id]}),
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        assert r.status_code == 200, r.text
        entry = r.json()["data"][0]
        items = json.loads(entry["result"])
        if entry["status"] in (1, 2):
            return Polled(entry, items, seen)
        seen.extend(items)
        return None

    polled: Polled = await wait_for(probe, timeout=timeout, interval=0.02, what=f"task {task_id}")
    return polled
