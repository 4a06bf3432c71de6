"""TEST DOUBLE — an in-process stage runner with the orchestrator's gateway interface (``StageGateway``).

It is not a Triton server and not a fake one: it stands in for the gateway object so that pipeline-logic tests (queue,
durability, cancel, fairness, webhooks) run in milliseconds without models. It streams events shaped like the real
``lyricist`` / ``lm`` / ``sampler`` models' (deltas, a plan, progress per step, a done event with an ``audio``
tensor). The real models are exercised by the tests marked ``triton``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.services.triton import ModelError, ModelEvent, ServerHealth

SAMPLE_RATE = 48_000
PEAK = 10 ** (-1 / 20)  # the real sampler peak-normalises to -1 dBFS
LATENT_SHAPE = (4, 8)  # [frames, channels], every value the item's seed % 997


class StageRunnerDouble:
    def __init__(
        self,
        *,
        step_delay: float = 0.0,
        steps_cap: int | None = None,
        log_path: Path | None = None,
        fail: Mapping[str, str] | None = None,
        name: str = "double",
    ) -> None:
        self.step_delay = step_delay
        self.steps_cap = steps_cap
        self.log_path = log_path
        self.fail = dict(fail or {})
        self.name = name
        self.calls: list[tuple[str, dict[str, Any]]] = []
        # Tests close a gate to hold a model mid-stream (before its final event) and open it to let it finish.
        self.gates: dict[str, asyncio.Event] = {}
        self.entered: dict[str, asyncio.Event] = {}
        self.started = False

    def gate(self, model: str) -> asyncio.Event:
        self.gates[model] = asyncio.Event()
        self.entered[model] = asyncio.Event()
        return self.gates[model]

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.started = False

    async def health(self) -> list[ServerHealth]:
        return [ServerHealth(self.name, True, 0, None, None)]

    async def models(self) -> list[dict[str, Any]]:
        return [
            {"name": m, "version": "1", "state": "READY", "reason": "", "server": self.name}
            for m in ("lyricist", "lm", "sampler", "separator", "stems")  # stems: the index POST /v1/stems reads
        ]

    def _log(self, model: str, request: Mapping[str, Any]) -> None:
        if self.log_path is not None:
            with open(self.log_path, "a") as handle:
                handle.write(json.dumps({"pid": os.getpid(), "model": model, "request": dict(request)}) + "\n")

    async def _hold(self, model: str) -> None:
        if model in self.entered:
            self.entered[model].set()
        if model in self.gates:
            await self.gates[model].wait()

    async def stream(
        self, model: str, request: Mapping[str, Any], *, tensors: Mapping[str, np.ndarray] | None = None
    ) -> AsyncGenerator[ModelEvent, None]:
        request = dict(request)
        self.calls.append((model, request))
        self._log(model, request)
        if model in self.fail:
            raise ModelError(model, self.fail[model], self.name)
        if model == "lyricist":
            async for event in self._lyricist(request):
                yield event
        elif model == "lm":
            await self._hold("lm")
            yield self._lm(request)
        elif model == "sampler":
            async for event in self._sampler(request, tensors or {}):
                yield event
        else:
            raise ModelError(model, f"unknown model {model!r}", self.name)

    async def _lyricist(self, request: dict[str, Any]) -> AsyncGenerator[ModelEvent, None]:
        theme = request["theme"]
        lines = ["[Verse 1]", f"{theme} line one", f"{theme} line two", "", "[Chorus]", f"{theme} chorus"]
        text = ""
        for line in lines:
            text += line + "\n"
            yield ModelEvent(
                {"type": "delta", "stage": "plan", "text": line + "\n", "lyrics_so_far": text}, {}, self.name
            )
            await asyncio.sleep(self.step_delay)
        await self._hold("lyricist")
        plan = {
            "title": f"Song of {theme[:20]}",
            "lyrics": text.strip(),
            "caption": f"pop song about {theme}, {request.get('vocal_gender', 'male')} vocals",
            "bpm": 100,
            "key_scale": "C major",
            "time_signature": "4",
            "duration": request.get("duration_hint", 30),
            "language": request.get("language", "zh"),
        }
        yield ModelEvent(
            {"type": "plan", "plan": plan, "usage": {"prompt_tokens": 1, "completion_tokens": 1}}, {}, self.name
        )

    def _lm(self, request: dict[str, Any]) -> ModelEvent:
        meta = {
            "bpm": request.get("bpm") or 90,
            "key_scale": request.get("key_scale") or "A minor",
            "time_signature": request.get("time_signature") or "3",
            "duration": request.get("duration") or 12.0,
        }
        data: dict[str, Any] = {"type": "result", "mode": request["mode"], "metadata": meta}
        if request["mode"] == "thinking":
            data["audio_codes"] = "".join(f"<|audio_code_{i}|>" for i in range(5))
        if request["mode"] == "inspire":
            data["caption"] = f"inspired by {request.get('description')}"
            data["lyrics"] = "[Verse]\ninspired words"
        return ModelEvent(data, {}, self.name)

    async def _sampler(
        self, request: dict[str, Any], tensors: Mapping[str, np.ndarray]
    ) -> AsyncGenerator[ModelEvent, None]:
        steps = int(request["inference_steps"])
        if self.steps_cap is not None:
            steps = min(steps, self.steps_cap)
        for step in range(1, steps + 1):
            await asyncio.sleep(self.step_delay)
            yield ModelEvent({"type": "progress", "stage": "diffusion", "step": step, "total": steps}, {}, self.name)
            if step == max(1, steps // 2):
                await self._hold("sampler")
        seeds = list(request["seeds"])
        samples = int(round(float(request["duration"]) * SAMPLE_RATE))
        t = np.arange(samples, dtype=np.float32) / SAMPLE_RATE
        items = []
        for seed in seeds:
            freq = 110.0 + (seed % 400)
            wave = np.sin(2 * np.pi * freq * t).astype(np.float32) * PEAK
            items.append(np.stack([wave, np.roll(wave, 7)]))
        audio = np.stack(items).astype(np.float32)
        done = {
            "type": "done",
            "seeds": seeds,
            "sample_rate": SAMPLE_RATE,
            "num_samples": samples,
            "versions": {"dit": "1"},
            "tensors_in": sorted(tensors),
        }
        if request.get("align_lyrics"):  # the sampler's lyric timing: every line at 1 s per item index
            lines = [ln for ln in str(request.get("lyrics", "")).splitlines() if ln.strip()]
            done["alignment"] = [
                {
                    "lrc": "\n".join(ln if ln.startswith("[") else f"[00:0{i}.00]{ln}" for ln in lines),
                    "aligned_lyrics": [{"word": "w", "start_s": float(i), "end_s": i + 0.5, "success": True,
                                        "p_align": 0.5}],
                    "alignment_score": 0.25,
                }
                for i in range(len(seeds))
            ]
        # the final latents as the real sampler sends them: flat per item, their shape in the done event
        latents = np.stack([np.full(LATENT_SHAPE, seed % 997, np.float32) for seed in seeds])
        done["latent_shape"] = list(LATENT_SHAPE)
        yield ModelEvent(done, {"audio": audio, "latents": latents.reshape(len(seeds), -1)}, self.name)
