"""The edit actions end to end through a real tritonserver on the tiny presets (``POST /v1/edits``,
``POST /v1/clips/{id}/edits``): durations, the kept source outside the edited windows, knobs that change the output,
the variant check of the track tasks, and field errors.

The tiny models are random: what is checked is what the service guarantees (lengths, sample-exact splices, that a
parameter reaches the sampler and changes its output), never how anything sounds.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from orchestrator import store
from orchestrator.db import make_engine, make_sessionmaker
from tests.orchestrator.support import login, make_settings, running_app, wait_for
from tests.orchestrator.test_webhooks import Receiver

pytestmark = pytest.mark.triton

RATE = 48_000
# Everything tiny: 10 s songs, 2 DiT steps, float WAV (so "equal" can mean equal).
SOURCE = {
    "caption": "lofi beat", "lyrics": "[Verse]\nhello there", "bpm": 90, "key_scale": "C major",
    "time_signature": "4", "audio_duration": 10, "inference_steps": 2, "audio_format": "wav32", "seed": 7,
    "use_random_seed": False,
}
FAST = {"inference_steps": 2, "audio_format": "wav32", "seed": 11}
# Outside the edited section the result is the source, copied: bit-exact in wav32 (docs/edits.md).
KEPT_TOLERANCE = 1e-6


@pytest.fixture
def triton_server(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    try:
        return request.getfixturevalue("triton")
    except RuntimeError as exc:
        pytest.skip(f"the tiny Triton stack is not available: {str(exc).strip().splitlines()[0][:300]}")


class Edits:
    def __init__(self, client: Any, headers: dict[str, str]) -> None:
        self.client, self.headers = client, headers
        self.last: dict[str, Any] = {}  # the last edit's finished job

    async def finished(self, job_id: str) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            body = (await self.client.get(f"/v1/jobs/{job_id}", headers=self.headers)).json()
            return body if body["status"] in ("succeeded", "failed") else None

        job = await wait_for(probe, timeout=300, interval=0.2, what=f"job {job_id}")
        assert job["status"] == "succeeded", job
        return job

    async def audio(self, job: dict[str, Any]) -> np.ndarray:
        r = await self.client.get(job["result"]["audio_paths"][0], headers=self.headers)
        wave, rate = sf.read(io.BytesIO(r.content), dtype="float32", always_2d=True)
        assert rate == RATE
        return wave.T

    async def source(self) -> tuple[str, np.ndarray]:
        r = await self.client.post("/v1/music/generate", headers=self.headers, json=SOURCE)
        job = await self.finished(r.json()["job_id"])
        return f"{job['job_id']}/item_0.wav", await self.audio(job)

    async def edit(self, source: str, **fields: Any) -> tuple[str, np.ndarray]:
        r = await self.client.post("/v1/edits", headers=self.headers, json={"source": source, **FAST, **fields})
        assert r.status_code == 200, r.text
        job = self.last = await self.finished(r.json()["job_id"])
        return f"{job['job_id']}/item_0.wav", await self.audio(job)

    async def refused(self, body: dict[str, Any], status: int = 422) -> dict[str, Any]:
        r = await self.client.post("/v1/edits", headers=self.headers, json=body)
        assert r.status_code == status, r.text
        return r.json()["error"]


# The tiny random DiT answers small parameter changes with small output changes; a run repeated with the same seed
# is bit-identical (checked below), so any difference above float noise is the parameter's.
CHANGED = 1e-5


def _gap(a: np.ndarray, b: np.ndarray) -> float:
    n = min(a.shape[-1], b.shape[-1])
    return float(np.abs(a[:, :n] - b[:, :n]).max())


@asynccontextmanager
async def settings_sessions(settings: Any) -> AsyncIterator[Any]:
    """A session on the app's database (to read a job's stored params)."""
    engine = make_engine(settings.resolved_database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            yield session
    finally:
        await engine.dispose()


def _differs(a: np.ndarray, b: np.ndarray) -> bool:
    return _gap(a, b) > CHANGED


def _seconds(wave: np.ndarray) -> float:
    return wave.shape[-1] / RATE


async def test_extend_replace_section_and_their_chain(triton_server, tmp_path) -> None:
    settings = make_settings(tmp_path, triton_urls=[triton_server.grpc_url])
    async with running_app(settings) as (_, client):
        edits = Edits(client, await login(client))
        src_path, src = await edits.source()

        _, ext = await edits.edit(src_path, action="extend", continue_at=6, duration=14, lyric="[Chorus]\nmore")
        assert abs(_seconds(ext) - 14) < 0.05
        keep = 6 * RATE
        assert float(np.abs(ext[:, :keep] - src[:, :keep]).max()) <= KEPT_TOLERANCE
        assert _differs(ext[:, keep:], src[:, keep:])  # past continue_at: new audio, not the old tail

        # extending an extension, by its clip id: the first extension's whole song is kept up to its continue_at,
        # and the new clip's lineage names its parent and the action
        ext_clip = edits.last["result"]["clip_ids"][0]
        r = await client.post(f"/v1/clips/{ext_clip}/edits", headers=edits.headers,
                              json={"action": "extend", "continue_at": 14, "duration": 20, **FAST})
        assert r.status_code == 200, r.text
        job2 = await edits.finished(r.json()["job_id"])
        ext2 = await edits.audio(job2)
        assert abs(_seconds(ext2) - 20) < 0.05
        assert float(np.abs(ext2[:, : 14 * RATE] - ext[:, : 14 * RATE]).max()) <= KEPT_TOLERANCE
        clip = (await client.get(f"/v1/clips/{job2['result']['clip_ids'][0]}", headers=edits.headers)).json()
        assert (clip["parent_id"], clip["action"]) == (ext_clip, "extend"), clip

        _, rep = await edits.edit(
            src_path, action="replace_section", replace_section_start=3, replace_section_end=6, lyric="[Bridge]\nnew"
        )
        assert rep.shape == src.shape
        # the source audio went to the sampler unchanged: it started from the source clip's latents (no re-encode)
        async with settings_sessions(settings) as session:
            row = await store.get_job(session=session, public_id=edits.last["job_id"])
        assert row is not None and row.params["src_latents_clip"] == row.params["parent_clip_id"] is not None
        outside = np.r_[0 : 3 * RATE, 6 * RATE : src.shape[-1]]
        assert float(np.abs(rep[:, outside] - src[:, outside]).max()) <= KEPT_TOLERANCE
        assert _differs(rep[:, 3 * RATE : 6 * RATE], src[:, 3 * RATE : 6 * RATE])


async def test_variation_cover_and_every_knob_change_the_output(triton_server, tmp_path) -> None:
    settings = make_settings(tmp_path, triton_urls=[triton_server.grpc_url])
    async with running_app(settings) as (_, client):
        edits = Edits(client, await login(client))
        src_path, src = await edits.source()

        _, near = await edits.edit(src_path, action="variation", closeness=1.0)
        _, far = await edits.edit(src_path, action="variation", closeness=0.2)
        assert near.shape == src.shape and _differs(near, src) and _differs(near, far)

        _, weak = await edits.edit(src_path, action="cover", cover_strength=0.2, prompt="jazz")
        _, strong = await edits.edit(src_path, action="cover", cover_strength=1.0, prompt="jazz")
        assert weak.shape == src.shape and _differs(weak, strong)

        section = {"action": "replace_section", "replace_section_start": 2, "replace_section_end": 8}
        inside = slice(3 * RATE, 7 * RATE)
        _, base = await edits.edit(src_path, **section)
        _, again = await edits.edit(src_path, **section)
        assert _gap(base, again) == 0.0  # same seed, same edit: the same audio
        for knob in ({"weirdness": 0.9}, {"lyrics_strength": 1.0}, {"lyrics_strength": 0.0}):
            _, turned = await edits.edit(src_path, **section, **knob)
            assert _differs(turned[:, inside], base[:, inside]), knob
        # sound_strength is guidance: the turbo DiT does not apply it (a 422), the sft set does
        error = await edits.refused({"source": src_path, **section, "sound_strength": 1.0})
        assert error["field"] == "sound_strength" and "turbo" in error["message"]
        _, sft = await edits.edit(src_path, **section, model="acestep15:sft")
        _, sft_loud = await edits.edit(src_path, **section, model="acestep15:sft", sound_strength=1.0)
        assert _differs(sft_loud[:, inside], sft[:, inside])


async def test_bad_fields_and_variant_errors_name_them(triton_server, tmp_path) -> None:
    settings = make_settings(tmp_path, triton_urls=[triton_server.grpc_url])
    async with running_app(settings) as (_, client):
        headers = await login(client)
        edits = Edits(client, headers)
        src_path, _ = await edits.source()
        cases: list[tuple[dict[str, Any], str, int]] = [
            ({"action": "remix"}, "action", 422),
            ({"action": "cover", "cover_strength": 0.1}, "cover_strength", 422),
            ({"action": "extend", "continue_at": 30}, "continue_at", 422),
            ({"action": "extend", "continue_at": 5, "duration": 5.5}, "duration", 422),
            ({"action": "replace_section", "replace_section_start": 4, "replace_section_end": 2},
             "replace_section_end", 422),
            ({"action": "replace_section", "replace_section_start": 4, "replace_section_end": 40},
             "replace_section_end", 422),
            ({"action": "variation", "weirdness": 2}, "weirdness", 422),
            ({"action": "cover", "lyrics_strength": -1}, "lyrics_strength", 422),
            ({"action": "cover", "unknown": 1}, "unknown", 422),
            ({"action": "cover", "model": "acestep_v1"}, "action", 422),
        ]
        for body, field, status in cases:
            error = await edits.refused({"source": src_path, **body}, status)
            assert error["field"] == field, (body, error)
        # a 5 s clip: an edit as long as its source is refused naming the source; extending it is the way
        buffer = io.BytesIO()
        noise = np.random.default_rng(0).normal(0, 0.1, (5 * RATE, 2)).astype(np.float32)
        sf.write(buffer, noise, RATE, format="WAV", subtype="FLOAT")
        r = await client.post("/v1/clips", headers=headers, files={"file": ("short.wav", buffer.getvalue())})
        assert r.status_code in (200, 201), r.text
        short = r.json()["id"]
        for body in ({"action": "cover"}, {"action": "variation"}):
            error = await edits.refused({"source": short, **body})
            assert error["field"] == "source" and "extend" in error["message"], error
        r = await client.post(f"/v1/clips/{short}/edits", headers=headers, json={"action": "cover"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "clip_id", r.text
        error = await edits.refused({"source": short, "action": "extend", "continue_at": 5, "duration": 8})
        assert error["field"] == "duration", error
        # the track tasks need a base DiT: the default (turbo) set is refused, naming its variant
        error = await edits.refused({"source": src_path, "action": "swap_vocals", "lyric": "la"})
        assert error["field"] == "action" and "turbo" in error["message"] and "base" in error["message"]
        # another user's result is not found
        bob = Edits(client, await login(client, "bob"))
        error = await bob.refused({"source": src_path, "action": "cover"}, 404)
        assert error["field"] == "source"


async def test_swaps_on_the_base_dit_with_stages_in_the_webhooks(triton_server, tmp_path) -> None:
    settings = make_settings(tmp_path, triton_urls=[triton_server.grpc_url], allow_private_callbacks=True)
    with Receiver() as receiver:
        async with running_app(settings) as (_, client):
            edits = Edits(client, await login(client))
            src_path, src = await edits.source()
            # stems of the source -> lego on the base DiT -> stems of that -> the kept instrumental + the new vocals
            _, vocals = await edits.edit(src_path, action="swap_vocals", model="acestep15:base",
                                         lyric="[Verse]\nnew", gender="female", callback_url=receiver.url)
            _, backing = await edits.edit(src_path, action="swap_instrumentals", model="acestep15:base",
                                          prompt="jazz", tracks=["drums", "bass"])
            for swapped in (vocals, backing):
                assert swapped.shape == src.shape and np.isfinite(swapped).all() and _differs(swapped, src)

            def hooks() -> list[dict[str, Any]]:
                return [json.loads(body) for _, body in receiver.deliveries]

            async def final() -> bool:
                return any(h["event"] == "done" for h in hooks())

            await wait_for(final, what="the swap's final webhook")
            stages = [h.get("stage") for h in hooks() if h["event"] == "stage"]
            assert stages == ["stems", "metadata", "audio", "mix", "post"], hooks()


@pytest.mark.slow
async def test_edits_on_v1(triton_server, tmp_path) -> None:
    settings = make_settings(tmp_path, triton_urls=[triton_server.grpc_url])
    async with running_app(settings) as (_, client):
        edits = Edits(client, await login(client))
        src_path, src = await edits.source()
        # v1 has repaint natively: the same splice guarantee, and lyrics_strength is its double-condition guidance
        section = {"action": "replace_section", "replace_section_start": 3, "replace_section_end": 7,
                   "model": "acestep_v1"}
        _, v1 = await edits.edit(src_path, **section)
        outside = np.r_[0 : 3 * RATE, 7 * RATE : src.shape[-1]]
        assert v1.shape == src.shape
        assert float(np.abs(v1[:, outside] - src[:, outside]).max()) <= KEPT_TOLERANCE
        assert _differs(v1[:, 4 * RATE : 6 * RATE], src[:, 4 * RATE : 6 * RATE])
        _, v1_lyric = await edits.edit(src_path, **section, lyrics_strength=1.0)
        assert _differs(v1_lyric[:, 4 * RATE : 6 * RATE], v1[:, 4 * RATE : 6 * RATE])
        _, v1_ext = await edits.edit(src_path, action="extend", continue_at=8, duration=12, model="acestep_v1")
        assert abs(_seconds(v1_ext) - 12) < 0.05
        assert float(np.abs(v1_ext[:, : 8 * RATE] - src[:, : 8 * RATE]).max()) <= KEPT_TOLERANCE
