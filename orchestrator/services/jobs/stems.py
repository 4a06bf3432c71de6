"""The stems job (kind ``stems``): one song split into stems by the served ``separator``: separate → post.

Submission (:func:`submit_stems`, ``POST /v1/stems``): the source is an upload (which becomes a clip), one of the
caller's clips (``clip_id``) or a finished item of theirs (``job_id`` + ``item``); another user's job or clip is a
404, like one that never existed. The stems become clips (action ``stems``, parent: the source's clip). The stem
set is checked
against what the deployment serves (:func:`offered_stem_sets`: 2 and 4 with any stems network, 6 only with a
6-source one, read from Triton's repository index and cached for a few seconds); the audio's header is read before
it is decoded (not audio, longer than the separator's 600 s → 422 naming the field), and a silent file is refused.
The decoded 48 kHz stereo source is kept beside the job (``src_audio.npz``) so a resumed job needs nothing else.

1. ``separate`` — the ``separator`` streams progress (segments done of all) and one 48 kHz stereo stem at a time;
   each is written as ``<stem>.wav`` (32-bit float, level untouched, so the stems still add up) as it arrives.
2. ``post``     — ``stems.zip`` holds every stem WAV; the result lists each stem's file and the zip.

``method`` is "demucs" (HT-Demucs on the ``separator``) or "acestep": ACE-Step 1.5's base DiT extracts the track
classes named in ``tracks`` as one sampler batch (``stems_tracks.py``), each stem named by its class.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator import store
from orchestrator.db import Job
from orchestrator.errors import ApiError
from orchestrator.families import STEM_SETS, STEM_SETS_FOR_SOURCES, STEMS_MAX_SECONDS, STEMS_NETWORKS
from orchestrator.media.audio import SAMPLE_RATE, encode_audio
from orchestrator.services import clips
from orchestrator.services.jobs.engine import Run, StageFailedError, job_dir
from orchestrator.services.jobs.stages import StagedPipeline
from orchestrator.services.jobs.stems_tracks import METHOD as TRACKS_METHOD
from orchestrator.services.jobs.stems_tracks import extract_tracks, tracks_params
from orchestrator.services.jobs.submit import Submitter, pick_seeds
from orchestrator.services.storage import DiskFullError, disk_guard, load_upload, save_upload
from orchestrator.services.triton import StageGateway

logger = logging.getLogger(__name__)

ZIP_NAME = "stems.zip"
SOURCE = "src_audio"  # the decoded source, kept as the uploads are (services/storage.py)
# Below this peak (-80 dBFS) a file holds no music to separate.
SILENCE_PEAK = 1e-4
_OFFERED_TTL_S = 5.0
_offered: dict[int, tuple[float, tuple[int, ...] | None]] = {}


@dataclass(frozen=True)
class UploadSource:
    data: bytes
    filename: str | None = None
    field: str = "file"


@dataclass(frozen=True)
class ItemSource:
    """Item ``item`` of the caller's finished job ``job_id``."""

    job_id: str
    item: int = 0


@dataclass(frozen=True)
class ClipSource:
    """A clip of the caller's (``services/clips.py``): its 48 kHz source audio is separated."""

    clip_id: str


StemsSource = UploadSource | ItemSource | ClipSource


async def offered_stem_sets(gateway: StageGateway, separator: str) -> tuple[int, ...] | None:
    """The stem sets the served models make (None: Triton's index is unreachable now — the job will say). A 503 when
    the index answers without a ready separator or stems network."""
    cached = _offered.get(id(gateway))
    if cached is not None and time.monotonic() - cached[0] < _OFFERED_TTL_S:
        sets = cached[1]
    else:
        models = await gateway.models()
        ready = {str(m.get("name")) for m in models if str(m.get("state", "")).upper() == "READY"}
        if not models:
            sets = None
        elif separator not in ready:
            sets = ()
        else:
            served = [sources for sources, name in STEMS_NETWORKS.items() if name in ready]
            sets = tuple(sorted({n for sources in served for n in STEM_SETS_FOR_SOURCES[sources]}))
        _offered[id(gateway)] = (time.monotonic(), sets)
    if sets == ():
        raise ApiError(
            503,
            f"stems are not served here: Triton has no ready '{separator}' model with a stems network "
            "(export one with `tritone export --stems-checkpoint PATH`, or --preset tiny)",
            field="stems",
        )
    return sets


def check_stem_set(stems: int, offered: tuple[int, ...] | None) -> None:
    if offered is not None and stems not in offered:
        six = " (6 stems need a 6-source model, htdemucs_6s, which is not served here)" if stems == 6 else ""
        raise ApiError(
            422, f"stems: {stems} is not offered here; allowed: {', '.join(map(str, offered))}{six}", field="stems"
        )


async def _item_bytes(submitter: Submitter, owner: str, source: ItemSource) -> tuple[bytes, dict[str, Any]]:
    async with submitter.deps.sessions() as session:
        job = await store.get_job(session=session, public_id=source.job_id, owner=owner)
    if job is None:
        raise ApiError(404, f"job_id: no such job of yours: {source.job_id!r}", field="job_id")
    if job.status != "succeeded":
        raise ApiError(422, f"job_id: job {job.public_id} is {job.status}; only a finished job's items", field="job_id")
    items = (job.result or {}).get("items") or []
    if not 0 <= source.item < len(items):
        raise ApiError(
            422, f"item: job {job.public_id} has items 0..{len(items) - 1}; got {source.item}", field="item"
        )
    name = str(items[source.item]["file"])
    path = job_dir(submitter.deps.settings, job.public_id) / name
    if not path.is_file():
        raise ApiError(404, f"job_id: the file {job.public_id}/{name} is gone from the data directory", field="job_id")
    record = {"kind": "item", "job_id": job.public_id, "item": source.item, "file": name}
    clip_id = items[source.item].get("clip_id")
    return await asyncio.to_thread(path.read_bytes), record | ({"clip_id": clip_id} if clip_id else {})


async def submit_stems(
    submitter: Submitter,
    *,
    owner: str,
    source: StemsSource,
    stems: int,
    method: str = "demucs",
    callback_url: str | None = None,
    tracks: Sequence[str] | None = None,
    steps: int | None = None,
) -> Job:
    """A queued stems job of ``owner``'s for ``source`` in stem set ``stems``; an :class:`ApiError` naming the field
    otherwise (``stems``, ``file``, ``clip_id``, ``job_id``, ``item``; another user's job or clip is a 404). An
    upload becomes a clip of its own; the stems become clips (action ``stems``) whose parent is the source's clip."""
    if stems not in STEM_SETS:
        raise ApiError(422, f"stems: {stems!r}; allowed: {', '.join(map(str, STEM_SETS))}", field="stems")
    if method not in ("demucs", TRACKS_METHOD):
        raise ApiError(422, f"method: {method!r}; allowed: demucs, {TRACKS_METHOD}", field="method")
    method_params: dict[str, Any] = {}
    if method == TRACKS_METHOD:  # ACE-Step's track classes from its base DiT (stems_tracks.py), not the separator
        deps = submitter.deps
        method_params = await tracks_params(
            deps.gateway, deps.settings.sampler_model, tracks=tracks, seed=pick_seeds(1, None)[0], steps=steps
        )
    else:
        if tracks or steps is not None:
            raise ApiError(422, f"{'tracks' if tracks else 'inference_steps'}: applies to method '{TRACKS_METHOD}'; "
                           "'demucs' makes the stem set 'stems'", field="tracks" if tracks else "inference_steps")
        check_stem_set(stems, await offered_stem_sets(submitter.deps.gateway, submitter.deps.settings.separator_model))
    await submitter.admit(owner)
    callback_url = await submitter.deps.webhooks.validate(callback_url)
    if isinstance(source, UploadSource):
        data, field = source.data, source.field
        record: dict[str, Any] = {"kind": "upload", "filename": source.filename}
    elif isinstance(source, ClipSource):
        clip = await clips.get_clip(submitter.deps.sessions, owner=owner, clip_id=source.clip_id, field="clip_id")
        data = await asyncio.to_thread(clips.read_source_bytes, submitter.deps.settings, clip, "clip_id")
        record, field = {"kind": "clip", "clip_id": clip.public_id}, "clip_id"
    else:
        (data, record), field = await _item_bytes(submitter, owner, source), "job_id"
    header, wave = await clips.read_audio(field, data, max_seconds=STEMS_MAX_SECONDS)
    peak = float(np.abs(wave).max())
    if peak < SILENCE_PEAK:
        db = "-inf" if peak == 0 else f"{20 * np.log10(peak):.0f}"
        raise ApiError(422, f"{field}: the audio is silent (peak {db} dBFS); there is nothing to separate", field=field)
    if isinstance(source, UploadSource):  # every upload becomes a clip (services/clips.py): the stems' parent
        clip, _ = await clips.store_upload(
            submitter.deps.settings, submitter.deps.sessions, owner=owner, data=data, title=source.filename,
            field=field, quota=submitter.quota, decoded=(header, wave),
        )
        record["clip_id"] = clip.public_id
    public_id = str(uuid.uuid4())
    directory = job_dir(submitter.deps.settings, public_id)
    params = {
        "stems": stems,
        "method": method,
        "source": record,
        "duration": round(wave.shape[-1] / SAMPLE_RATE, 3),
        "uploads": [SOURCE],
        "clip_action": "stems",
        "parent_clip_id": record.get("clip_id"),
    } | method_params
    try:
        await asyncio.to_thread(save_upload, directory, SOURCE, wave)
    except DiskFullError:
        await asyncio.to_thread(_remove, directory)
        raise ApiError(
            507, "the server's data disk is full; the source was not kept — try again later", field=field
        ) from None
    try:
        return await submitter.insert(
            kind="stems", owner=owner, params=params, callback_url=callback_url, public_id=public_id
        )
    except BaseException:
        await asyncio.to_thread(_remove, directory)
        raise


def _remove(directory: Path) -> None:
    import shutil

    shutil.rmtree(directory, ignore_errors=True)


class StemsPipeline(StagedPipeline):
    kind = "stems"

    async def run(self, run: Run) -> None:
        await self._engine.stage(run, "separate", self._separate)
        await self._engine.stage(run, "post", self._zip)
        await self._succeed(run)

    async def _separate(self, run: Run) -> None:
        engine, p = self._engine, run.params
        directory = engine.job_dir(run)
        audio = await asyncio.to_thread(load_upload, directory, SOURCE)
        if p.get("method") == TRACKS_METHOD:
            run.state["stems"] = await extract_tracks(engine, run, audio)
            return
        written: list[str] = []
        done: dict[str, Any] | None = None
        progress = engine.progress_writer(run)
        try:
            request = {"stems": int(p["stems"]), "sample_rate": SAMPLE_RATE}
            async for event in engine.call(run, engine.settings.separator_model, request, tensors={"audio": audio}):
                if event.type == "progress":
                    step, total = int(event.data.get("segments_done", 0)), int(event.data.get("segments", 0))
                    await progress.push({"stage": "separate", "step": step, "total": total})
                elif event.type == "stem":
                    written.append(await self._write_stem(run, directory, event.data, event.tensors.get("audio")))
                elif event.type == "done":
                    done = event.data
            await progress.flush()
        finally:
            await progress.close()
        expected = list(STEM_SETS[int(p["stems"])])
        if done is None or written != expected:
            got = f"{written}{'' if done else ' and no done event'}"
            raise StageFailedError(f"the separator sent stems {got}; expected {expected}")
        run.state["stems"] = {
            "names": written,
            "sample_rate": int(done.get("sample_rate") or SAMPLE_RATE),
            "num_samples": int(done.get("num_samples") or audio.shape[-1]),
            "checkpoint": done.get("checkpoint"),
        }

    async def _write_stem(self, run: Run, directory: Path, data: dict[str, Any], wave: np.ndarray | None) -> str:
        name = str(data.get("name") or "")
        if wave is None or name not in STEM_SETS[int(run.params["stems"])]:
            raise StageFailedError(f"the separator sent a stem {name!r} without audio or outside the stem set")
        wave = np.asarray(wave, dtype=np.float32)
        with disk_guard("separate", self._engine.settings.data_dir, StageFailedError):
            await asyncio.to_thread(
                encode_audio, wave, sample_rate=SAMPLE_RATE, fmt="wav32", path=directory / f"{name}.wav", fit=False
            )
        return name

    async def _zip(self, run: Run) -> None:
        directory, names = self._engine.job_dir(run), run.state["stems"]["names"]
        with disk_guard("post", self._engine.settings.data_dir, StageFailedError):
            await asyncio.to_thread(_write_zip, directory, [f"{name}.wav" for name in names])

    async def _succeed(self, run: Run) -> None:
        info, p = run.state["stems"], run.params
        duration = round(info["num_samples"] / info["sample_rate"], 3)
        items = [
            {"index": i, "name": name, "file": f"{name}.wav", "format": "wav32", "duration": duration}
            for i, name in enumerate(info["names"])
        ]
        result = {
            "kind": "stems",
            "title": None,
            "metadata": None,
            "stems": int(p["stems"]),
            "method": p.get("method", "demucs"),
            "items": items,
            "zip": ZIP_NAME,
            "sample_rate": info["sample_rate"],
            "duration": duration,
            "checkpoint": info.get("checkpoint"),
            "source": p["source"],
        }
        await self._engine.succeed(run, result)


def _write_zip(directory: Path, files: list[str]) -> None:
    """``stems.zip`` with ``files`` (stored: float WAV hardly compresses), written beside and renamed into place."""
    tmp = directory / f".{ZIP_NAME}.part"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in files:
            archive.write(directory / name, arcname=name)
    tmp.replace(directory / ZIP_NAME)
