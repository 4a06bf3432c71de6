"""Submission: a request becomes a queued job (params with the seeds chosen, the model resolved, the uploads decoded
and kept beside the job), within the queue's bound; and cancellation.

Admission comes first (:meth:`Submitter.admit`: the user's submission rate, their queued + running cap, their
storage quota, the global queue), so a request that will be answered 429 costs no decode; then an upload's header
is checked (rate, channels, frames, duration) before it is decoded or resampled."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import re
import secrets
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from orchestrator import clip_store, store
from orchestrator.db import Clip, Job
from orchestrator.errors import ApiError
from orchestrator.families import DRAWN_SEED_RANGE, MAX_DURATION_S, MAX_SEED, ModelChoice, parse_model
from orchestrator.media.audio import SAMPLE_RATE
from orchestrator.schemas.acestep import TASKS_NEEDING_SOURCE, MusicGenerateCreate
from orchestrator.schemas.song import SongCreate
from orchestrator.services import clips
from orchestrator.services.clips import decode_source  # stems.py takes it from here too
from orchestrator.services.jobs.engine import JobDeps, job_dir
from orchestrator.services.jobs.requests import for_family
from orchestrator.services.limits import RateLimits
from orchestrator.services.model_catalog import (
    ResolvedModel,
    describe_models,
    ensure_task_variant,
    resolve_lm,
    resolve_model,
)
from orchestrator.services.storage import SRC_LATENTS, DiskFullError, StorageQuota, save_npy_atomic, save_upload

# Item i's seed wraps within the seeds every backend takes.
_SEED_MODULUS = MAX_SEED + 1
_RESULT_KEY = re.compile(r"^([0-9a-f-]{36})/([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$")


def result_file_key(value: str) -> tuple[str, str] | None:
    """``(job id, file name)`` when ``value`` names a result file as the APIs hand them out: ``<job id>/<file>``,
    ``/v1/audio?path=<job id>%2F<file>&…`` or ``/v1/files/<job id>/<file>?…`` (absolute URLs too); else None."""
    parsed = urlsplit(value.strip())
    text = parsed.path
    if parsed.path.endswith("/v1/audio"):
        text = (parse_qs(parsed.query).get("path") or [""])[0]
    elif "/v1/files/" in parsed.path:
        text = parsed.path.split("/v1/files/", 1)[1]
    match = _RESULT_KEY.match(text.strip("/"))
    if match is None or ".." in match.group(2):
        return None
    return match.group(1), match.group(2)


# Params every job submitted in this context gets besides its own (see :func:`tagged`).
_TAGS: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar("tritone_job_tags", default=None)


@contextlib.contextmanager
def tagged(tags: Mapping[str, Any]) -> Iterator[None]:
    """Every job submitted inside the block (whichever submission function makes it: song, music, edits, stems)
    gets ``tags`` in its params — how an API over those functions records its own request fields and its
    ``callback_format`` (the Producer API)."""
    token = _TAGS.set({**(_TAGS.get() or {}), **tags})
    try:
        yield
    finally:
        _TAGS.reset(token)


def pick_seeds(batch_size: int, seed: int | None) -> list[int]:
    """Item i gets ``seed + i``; without a seed, independent random seeds (recorded, so a resumed job is identical)."""
    if seed is None or seed < 0:
        return [secrets.randbelow(DRAWN_SEED_RANGE) for _ in range(batch_size)]
    return [(seed + i) % _SEED_MODULUS for i in range(batch_size)]


class Submitter:
    def __init__(self, deps: JobDeps) -> None:
        self._settings = deps.settings
        self._sessions = deps.sessions
        self._bus = deps.bus
        self._webhooks = deps.webhooks
        self._queue_info = deps.queue_info
        self._gateway = deps.gateway
        self._submit_lock = asyncio.Lock()
        self.on_submitted: Callable[[], None] = lambda: None
        self.deps = deps
        self.limits = RateLimits(deps.settings)
        self.quota = StorageQuota(deps.settings, deps.sessions)

    async def admit(self, owner: str) -> None:
        """429 + Retry-After before any work: rate, per-user cap, storage quota, then the global bound."""
        self.limits.check_submit(owner)
        await self.quota.check(owner)
        retry = await self._queue_info.retry_after()
        async with self._sessions() as session:
            await self.limits.check_user_queue(session, owner, retry)
            active = await store.count_active(session=session)
        if active >= self._settings.queue_max:
            raise ApiError(
                429, str(store.QueueFullError(active, self._settings.queue_max)), headers={"Retry-After": str(retry)}
            )

    async def _insert(
        self, *, kind: str, owner: str, params: dict[str, Any], callback_url: str | None, public_id: str | None = None
    ) -> Job:
        params = {**params, **(_TAGS.get() or {})}
        try:
            async with self._submit_lock, self._sessions() as session:
                job = await store.create_job(
                    session=session,
                    kind=kind,
                    owner=owner,
                    params=params,
                    callback_url=callback_url,
                    queue_max=self._settings.queue_max,
                    public_id=public_id,
                )
        except store.QueueFullError as exc:
            retry = await self._queue_info.retry_after()
            raise ApiError(429, str(exc), headers={"Retry-After": str(retry)}) from None
        self._queue_info.invalidate()
        self.on_submitted()
        if callback_url and not self._webhooks.quiet(params):
            self._webhooks.send(job_id=job.public_id, url=callback_url, event="status", payload={"status": "queued"})
        return job

    async def insert(
        self, *, kind: str, owner: str, params: dict[str, Any], callback_url: str | None, public_id: str | None = None
    ) -> Job:
        """A queued job of ``kind`` (for the submission functions of pipelines in their own modules, ``stems.py``)."""
        return await self._insert(
            kind=kind, owner=owner, params=params, callback_url=callback_url, public_id=public_id
        )

    async def submit_song(self, *, owner: str, body: SongCreate) -> Job:
        if body.vocal_mode != "instrumental_quick" and not self._settings.enable_lyricist:
            raise ApiError(
                503,
                "the lyricist service is not enabled on this server (set TRITONE_ENABLE_LYRICIST=true), "
                "or ask for vocal_mode 'instrumental_quick'",
                field="vocal_mode",
            )
        await self.admit(owner)
        callback_url = await self._webhooks.validate(body.callback_url)
        params = body.model_dump(mode="json")
        params["seeds"] = pick_seeds(body.batch_size, body.seed)
        requested = body.model or self._settings.default_model
        resolved = await self._resolve_model(parse_model(requested), requested)
        params["family"], params["version_set"] = resolved.family, resolved.version_set
        params["model_requested"], params["model_fallback"] = requested, resolved.fallback
        for_family(resolved.family).defaults(params, body.model_fields_set)
        params["cover_size"] = body.cover_size or self._settings.cover_default_aspect
        return await self._insert(kind="song", owner=owner, params=params, callback_url=callback_url)

    async def submit_music(
        self,
        *,
        owner: str,
        body: MusicGenerateCreate,
        uploads: Mapping[str, bytes] | None = None,
        extra_params: Mapping[str, Any] | None = None,
    ) -> Job:
        """``extra_params``: set by the edit actions (``edits.py``: the ``edit`` plan and sampler fields the API has
        no name for), stored in the job's params beside the body's. With ``parent_clip_id`` in them the uploads are
        the edit's working audio (no upload clips); ``src_latents_clip`` names a clip whose latents that audio is
        (the sampler then starts from them)."""
        await self.admit(owner)
        callback_url = await self._webhooks.validate(body.callback_url)
        requested = body.model or self._settings.default_model
        choice = parse_model(requested)
        if body.version_set:
            choice = ModelChoice(choice.family, body.version_set, pinned=True)
        resolved = await self._resolve_model(choice, requested)
        family = for_family(choice.family)
        family.check_music(body, choice)
        await ensure_task_variant(self._gateway, self._settings.sampler_model, body.task_type, resolved)
        lm = None
        if body.lm_model_path or body.lm_backend:
            lm = resolve_lm(
                self._settings,
                await self._gateway.models(),
                lm_model_path=body.lm_model_path,
                lm_backend=body.lm_backend,
            )
        # An edit (extra_params names its parent clip) sends its working audio as an upload: not a new item received.
        edit_parent = (extra_params or {}).get("parent_clip_id")
        sources, received, parent = await self._music_sources(
            owner, body, uploads, register_uploads=edit_parent is None
        )
        if body.task_type in TASKS_NEEDING_SOURCE and "src_audio" not in sources:
            raise ApiError(
                422,
                f"task_type '{body.task_type}' needs source audio: upload src_audio, or set src_audio_id (a clip) "
                "or src_audio_path",
                field="src_audio",
            )
        decoded = dict(received)  # uploads registered as clips were decoded then
        for name, data in sources.items():
            if name not in decoded:
                decoded[name] = await decode_source(name, data, max_seconds=MAX_DURATION_S)
        # A track batch (track_names) holds one item per class.
        batch = len(body.track_names or []) or body.batch_size or self._settings.default_batch_size
        params = body.model_dump(mode="json")
        params["batch_size"] = batch
        params["seeds"] = pick_seeds(batch, None if body.use_random_seed else body.seed)
        params["family"], params["version_set"] = resolved.family, resolved.version_set
        params["model_requested"], params["model_fallback"] = requested, resolved.fallback
        params["lm"] = lm
        family.check_music_sources(body, choice, sources)
        family.defaults(params, body.model_fields_set)
        params["uploads"] = sorted(decoded)
        params["src_audio_seconds"] = (
            round(decoded["src_audio"].shape[-1] / SAMPLE_RATE, 3) if "src_audio" in decoded else None
        )
        params.pop("src_audio_path", None)
        params.pop("reference_audio_path", None)
        params.update(extra_params or {})
        if parent is not None:  # lineage of the clips this job makes (services/clips.py); an edit's own params win
            params["parent_clip_id"] = parent.public_id
        # The clip whose latents src_audio was decoded from: the source clip, or the one an edit names as such.
        latents_clip = parent if edit_parent is None else None
        if (extra_params or {}).get("src_latents_clip"):
            latents_clip = await clips.get_clip(
                self._sessions, owner=owner, clip_id=str((extra_params or {})["src_latents_clip"]), field="clip_id"
            )
        src_latents = None
        if latents_clip is not None and "src_audio" in decoded:
            src_latents = await asyncio.to_thread(clips.source_latents, self._settings, latents_clip, resolved.family)
            if src_latents is not None:  # the sampler starts from the clip's own latents (no re-encode)
                params["src_latents_clip"] = latents_clip.public_id
        public_id = str(uuid.uuid4())
        directory = job_dir(self._settings, public_id)
        if decoded:
            try:
                await asyncio.to_thread(self._save_uploads, directory, decoded, src_latents)
            except DiskFullError:
                shutil.rmtree(directory, ignore_errors=True)
                raise ApiError(
                    507, "the server's data disk is full; the upload was not kept — try again later", field="src_audio"
                ) from None
        try:
            return await self._insert(
                kind="music", owner=owner, params=params, callback_url=callback_url, public_id=public_id
            )
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise

    async def _resolve_model(self, choice: ModelChoice, requested: str) -> ResolvedModel:
        """A named version set is checked against what the sampler serves (a family's default needs no look-up)."""
        if choice.version_set is None:
            return ResolvedModel(choice.family, None, requested)
        described, _ = await describe_models(self._gateway, self._settings.sampler_model)
        return resolve_model(choice, requested, described)

    async def _music_sources(
        self, owner: str, body: MusicGenerateCreate, uploads: Mapping[str, bytes] | None, *, register_uploads: bool
    ) -> tuple[dict[str, bytes], dict[str, np.ndarray], Clip | None]:
        """The source and reference audio as bytes — an upload, else a clip id of the caller's (``*_audio_id``),
        else a ``*_path`` — the uploads decoded as they became clips, and the clip the source audio came from (the
        new clips' parent)."""
        sources: dict[str, bytes] = {}
        received: dict[str, np.ndarray] = {}
        parent: Clip | None = None
        for name in ("src_audio", "reference_audio"):
            id_field, path_field = f"{name}_id", f"{name}_path"
            clip_id, path = getattr(body, id_field), getattr(body, path_field)
            if clip_id and path:
                raise ApiError(422, f"{id_field}: set {id_field} (a clip) or {path_field}, not both", field=id_field)
            clip = None
            if uploads and uploads.get(name):
                sources[name] = uploads[name]  # an upload wins over the *_path / *_id fields, as upstream does
                if register_uploads:  # every audio item received is a clip (its header probed first)
                    clip, received[name] = await clips.store_upload(
                        self._settings, self._sessions, owner=owner, data=uploads[name], field=name, quota=self.quota
                    )
            elif clip_id:
                clip = await clips.get_clip(self._sessions, owner=owner, clip_id=clip_id, field=id_field)
                sources[name] = await asyncio.to_thread(clips.read_source_bytes, self._settings, clip, id_field)
            elif path:
                sources[name] = await self._read_source(owner, path_field, path)
                clip = await self._result_clip(owner, path)
            if name == "src_audio" and clip is not None:
                parent = clip
        return sources, received, parent

    async def _result_clip(self, owner: str, value: str) -> Clip | None:
        """The clip of one of the caller's results named by a ``*_path`` (None for a server path)."""
        own = result_file_key(value)
        if own is None:
            return None
        async with self._sessions() as session:
            made = await clip_store.job_clips(session=session, job_id=own[0])
        return next((c for c in made if c.owner == owner and c.extra.get("job_file") == own[1]), None)

    async def _read_source(self, owner: str, field_name: str, value: str) -> bytes:
        """A ``*_path`` value: one of the caller's own results (the ``file`` a result returned, or its
        ``<job id>/<file>`` path — a chained edit), else a server path under ``TRITONE_AUDIO_PATH_ROOT``."""
        own = result_file_key(value)
        if own is not None:
            job_id, name = own
            async with self._sessions() as session:
                job = await store.get_job(session=session, public_id=job_id, owner=owner)
            files = {item.get("file") for item in ((job.result or {}) if job is not None else {}).get("items", [])}
            if job is None or name not in files:
                raise ApiError(
                    422, f"{field_name}: {value!r} is not one of your results (no such job or file)", field=field_name
                )
            path = job_dir(self._settings, job_id) / name
            if not path.is_file():
                raise ApiError(422, f"{field_name}: the result file {job_id}/{name} is gone", field=field_name)
            return await asyncio.to_thread(path.read_bytes)
        return await asyncio.to_thread(self._read_server_path, field_name, value)

    def _read_server_path(self, field_name: str, value: str) -> bytes:
        root = self._settings.audio_path_root
        if root is None:
            raise ApiError(
                422,
                f"{field_name}: {value!r} is neither one of your results (the 'file' a result returned) nor "
                "allowed as a server path (no TRITONE_AUDIO_PATH_ROOT); upload the file instead",
                field=field_name,
            )
        root = root.resolve()
        candidate = Path(value)
        resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
        if not resolved.is_relative_to(root):
            raise ApiError(422, f"{field_name}: the path must lie inside {root}", field=field_name)
        if not resolved.is_file():
            raise ApiError(422, f"{field_name}: no such file under {root}: {value}", field=field_name)
        if resolved.stat().st_size > self._settings.upload_max_bytes:
            raise ApiError(
                413, f"{field_name}: the file is larger than {self._settings.upload_max_bytes} bytes", field=field_name
            )
        return resolved.read_bytes()

    @staticmethod
    def _save_uploads(
        directory: Path, decoded: Mapping[str, np.ndarray], src_latents: np.ndarray | None = None
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name, wave in decoded.items():
            save_upload(directory, name, wave)
        if src_latents is not None:
            save_npy_atomic(directory / SRC_LATENTS, src_latents)

    async def cancel(self, *, owner: str, public_id: str) -> Job | None:
        async with self._sessions() as session:
            job = await store.cancel_job(session=session, public_id=public_id, owner=owner)
        if job is not None:
            self._queue_info.invalidate()
            self._bus.notify(job.id)
            if job.status == "cancelled" and job.callback_url:
                self._webhooks.send_final(
                    job_id=job.public_id, url=job.callback_url, event="status", payload={"status": "cancelled"}
                )
        return job
