"""The stems job's ACE-Step method (``method: "acestep"``, ``services/jobs/stems_tracks.py``): the base DiT extracts
the requested track classes from one song as one sampler batch; each stem is a 48 kHz float WAV named by its class,
in the zip and on its own. Without a served base checkpoint the submission is a 422 naming ``method``; mistakes in
``tracks``/``stems``/``inference_steps`` name that field."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any

import numpy as np
import pytest

from orchestrator.services.triton import ModelEvent
from tests.model_repository.stems.support import song
from tests.orchestrator.clients.support import CATALOG, DescribingDouble
from tests.orchestrator.services.jobs.test_stems import RATE, _finished, _stems, _submit, _wav
from tests.orchestrator.support import login, make_settings, running_app


@pytest.mark.triton
async def test_acestep_tracks_are_one_job_with_a_stem_per_class(triton, tmp_path) -> None:
    settings = make_settings(tmp_path, triton_urls=[triton.grpc_url])
    audio = song(10.0, rate=RATE, seed=4)
    async with running_app(settings) as (_, client):
        headers = await login(client)
        r = await _submit(client, headers, data=_wav(audio), method="acestep", tracks="vocals,drums,bass",
                          inference_steps=2)
        assert r.status_code == 202, r.text
        assert r.json()["stems"] == 3
        job = await _finished(client, headers, r.json()["job_id"])
        result = job["result"]
        assert result["method"] == "acestep" and result["stems"] == 3 and result["checkpoint"] == "acestep15:base"
        stems = await _stems(client, headers, job)  # each file checked against its copy in the zip
        assert list(stems) == ["vocals", "drums", "bass"]
        assert all(wave.shape == audio.shape and np.isfinite(wave).all() for wave in stems.values())
        assert not np.array_equal(stems["vocals"], stems["drums"])

        for fields, field in (
            ({"method": "acestep"}, "tracks"),
            ({"method": "acestep", "tracks": "drums", "stems": 4}, "stems"),
            ({"method": "acestep", "tracks": "drums,cowbell"}, "tracks"),
            ({"method": "acestep", "tracks": "drums,drums"}, "tracks"),
            ({"tracks": "drums"}, "tracks"),
            ({"stems": 2, "inference_steps": 3}, "inference_steps"),
        ):
            r = await _submit(client, headers, data=_wav(audio), **fields)
            assert r.status_code == 422 and r.json()["error"]["field"] == field, (fields, r.text)


class _NoBase(DescribingDouble):
    """The double's catalog without the base set: turbo and SFT only."""

    async def stream(
        self, model: str, request: Mapping[str, Any], *, tensors: Mapping[str, np.ndarray] | None = None
    ) -> AsyncGenerator[ModelEvent, None]:
        if model == "sampler" and request.get("describe"):
            families = dict(CATALOG["families"])  # type: ignore[arg-type]
            sets = {k: v for k, v in families["acestep15"]["version_sets"].items() if k != "base"}
            families["acestep15"] = {**families["acestep15"], "version_sets": sets}
            yield ModelEvent({**CATALOG, "families": families}, {}, self.name)
            return
        async for event in super().stream(model, request, tensors=tensors):
            yield event


async def test_without_a_base_checkpoint_the_method_is_refused_naming_it(tmp_path) -> None:
    async with running_app(make_settings(tmp_path), _NoBase()) as (_, client):
        headers = await login(client)
        r = await _submit(client, headers, data=_wav(song(10.0, rate=RATE, seed=1)), method="acestep", tracks="bass")
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["field"] == "method"
        assert "base ACE-Step 1.5 checkpoint, and none is served here (served: sft (sft), turbo (turbo))" in error[
            "message"]
