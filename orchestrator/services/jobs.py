"""Jobs: submission, and the pipeline that runs them stage by stage on Triton.

Stages (``jobs.stage``), each checkpointed in ``jobs.state`` so a re-run after a restart skips what is done:

1. ``lyrics``   — song API: the ``lyricist`` streams lyrics into the job, then a plan (title, caption, metadata).
                  ACE-Step API with ``sample_mode``/``sample_query``: the ``lm`` in "inspire" mode writes them.
2. ``metadata`` — bpm / key / time signature / duration: the user's values win, the plan's come next, the ``lm``
                  fills what is still missing ("metadata" mode) or, with ``thinking``, also writes audio codes.
3. ``audio``    — the ``sampler`` (progress per DiT step); its waveform is kept as ``audio.npy``.
4. ``post``     — each item encoded (flac/wav/wav32/mp3) and the cover art written; then the job succeeds.

The cover is made alongside the audio: an external image API (``cover_api_url``) is called while the sampler runs;
the built-in renderer, which also draws from the audio, runs in parallel with the encoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import async_sessionmaker

from orchestrator import store
from orchestrator.db import Job
from orchestrator.errors import ApiError
from orchestrator.media.audio import SAMPLE_RATE, AudioDecodeError, decode_audio, encode_audio
from orchestrator.media.cover import fetch_cover, render_cover
from orchestrator.schemas.acestep import TASKS_NEEDING_SOURCE, TASKS_WITHOUT_LM_CODES, MusicGenerateCreate
from orchestrator.schemas.song import SongCreate
from orchestrator.services.events import EventBus
from orchestrator.services.model_catalog import (
    V1_DEFAULT_GUIDANCE,
    V1_DEFAULT_STEPS,
    V1_MAX_DURATION_S,
    V1_TASK_TYPES,
    ModelChoice,
    parse_model,
)
from orchestrator.services.queue import QueueInfo
from orchestrator.services.triton import ModelError, ModelEvent, StageGateway, TritonUnavailableError
from orchestrator.services.webhooks import WebhookSender
from orchestrator.settings import Settings

logger = logging.getLogger(__name__)

SEED_RANGE = 2**31  # seeds are drawn from [0, 2^31): fits every backend's int32/int64 generator seed
_LYRICS_FLUSH_S = 0.25  # streamed lyrics reach the database (and the SSE stream) at most this often
_PROGRESS_FLUSH_S = 0.2  # likewise for DiT step progress; the last step is always written
_UPLOAD_NAMES = {"src_audio": "src_audio.npy", "reference_audio": "reference_audio.npy"}
_AUDIO_EXT = {"flac": ".flac", "wav": ".wav", "wav32": ".wav", "mp3": ".mp3"}


class _Throttle:
    """Coalesces a stream of values into at most one write per ``interval``, trailing edge included: the newest value
    always gets written, at the latest ``interval`` seconds after it arrived (a model that pauses mid-stream still
    shows its latest text)."""

    def __init__(self, interval: float, write: Callable[[Any], Awaitable[None]]) -> None:
        self._interval = interval
        self._write = write
        self._pending: Any = None
        self._has_pending = False
        self._written_at = 0.0
        self._timer: asyncio.Task[None] | None = None

    async def push(self, value: Any) -> None:
        self._pending, self._has_pending = value, True
        if time.monotonic() - self._written_at >= self._interval:
            await self.flush()
        elif self._timer is None or self._timer.done():
            self._timer = asyncio.create_task(self._later())

    async def _later(self) -> None:
        await asyncio.sleep(max(0.0, self._interval - (time.monotonic() - self._written_at)))
        await self.flush()

    async def flush(self) -> None:
        if not self._has_pending:
            return
        value, self._has_pending = self._pending, False
        self._written_at = time.monotonic()
        await self._write(value)

    async def close(self) -> None:
        """Stop the timer without writing (the caller writes the final value itself)."""
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError, JobLostError):
                await self._timer


class JobLostError(Exception):
    """The job stopped being this worker's (cancelled, or re-claimed after a lapsed lease)."""


class StageFailedError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class _Run:
    """One worker's view of a running job."""

    job: Job
    worker_id: str
    params: dict[str, Any]
    state: dict[str, Any]
    stage: str | None = None
    server: str | None = None
    cover_task: asyncio.Task[Path | None] | None = None
    flushed_at: dict[str, float] = field(default_factory=dict)

    @property
    def done(self) -> list[str]:
        return self.state.setdefault("done", [])


def job_dir(settings: Settings, public_id: str) -> Path:
    if not re.fullmatch(r"[0-9a-f-]{36}", public_id):
        raise ValueError(f"not a job id: {public_id!r}")
    return settings.data_dir / "jobs" / public_id


def pick_seeds(batch_size: int, seed: int | None) -> list[int]:
    """Item i gets ``seed + i``; without a seed, independent random seeds (recorded, so a resumed job is identical)."""
    if seed is None or seed < 0:
        return [secrets.randbelow(SEED_RANGE) for _ in range(batch_size)]
    return [(seed + i) % (2**32) for i in range(batch_size)]


def caption_with_tracks(caption: str, track_classes: list[str] | None) -> str:
    """Append the featured instruments as hints (skipping any the caption already names)."""
    if not track_classes:
        return caption
    lower = caption.lower()
    names = [t.replace("_", " ") for t in track_classes if t.replace("_", " ") not in lower]
    if not names:
        return caption
    hint = "featuring " + ", ".join(names)
    return f"{caption.rstrip(' ,.')}, {hint}" if caption.strip() else hint


def structure_only(lyrics: str) -> str:
    """Section tags without the words: shapes an instrumental after the written song (vocal_mode
    instrumental_from_lyrics)."""
    tags = [line.strip() for line in lyrics.splitlines() if re.fullmatch(r"\[[^\]]+\]", line.strip())]
    return "\n\n".join(tags) if tags else "[Instrumental]"


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _normal_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """One spelling for the metadata whichever model wrote it: bpm int, key_scale str, time_signature str ("4"),
    duration float (the sampler's request types)."""
    out: dict[str, Any] = {}
    bpm = meta.get("bpm")
    out["bpm"] = None if bpm in (None, "") else int(round(float(bpm)))
    key = meta.get("key_scale")
    out["key_scale"] = None if key in (None, "") else str(key)
    ts = meta.get("time_signature")
    out["time_signature"] = None if ts in (None, "") else str(ts).split("/")[0].strip()
    duration = meta.get("duration")
    out["duration"] = None if duration in (None, "") else float(duration)
    return out


# Fields of the ACE-Step API that only the 1.5 family reads, and their defaults: with model acestep_v1 any other value
# is a 422 naming the field (it would be silently lost otherwise).
_V15_ONLY_MUSIC_FIELDS: dict[str, Any] = {
    "thinking": False,
    "use_adg": False,
    "cfg_interval_start": 0.0,
    "cfg_interval_end": 1.0,
    "timesteps": None,
    "instruction": None,
    "audio_cover_strength": 1.0,
    "track_name": None,
    "complete_track_classes": None,
}


def _check_v1_music(body: MusicGenerateCreate, choice: ModelChoice, sources: Mapping[str, bytes]) -> None:
    for name, default in _V15_ONLY_MUSIC_FIELDS.items():
        if getattr(body, name) not in (default, [], ""):
            raise ApiError(
                422, f"{name}: applies to the acestep15 models only, not to {choice.id}; remove it", field=name
            )
    codes = body.audio_code_string
    if any(c.strip() for c in ([codes] if isinstance(codes, str) else codes)):
        raise ApiError(422, f"audio_code_string: 5 Hz audio codes drive acestep15 only, not {choice.id}",
                       field="audio_code_string")
    if "reference_audio" in sources:
        raise ApiError(422, f"reference_audio: applies to the acestep15 models only, not to {choice.id}",
                       field="reference_audio")
    if "src_audio" in sources and body.task_type != "repaint":
        raise ApiError(422, f"src_audio: {choice.id} reads source audio for task_type 'repaint' only",
                       field="src_audio")
    if body.audio_duration is not None and body.audio_duration > V1_MAX_DURATION_S:
        raise ApiError(
            422, f"audio_duration: {choice.id} generates at most {V1_MAX_DURATION_S:g} s", field="audio_duration"
        )


def _v1_defaults(params: dict[str, Any], given: set[str]) -> None:
    """Steps and guidance the client did not set take the v1 pipeline's defaults, not the 1.5 API's."""
    if "inference_steps" not in given:
        params["inference_steps"] = V1_DEFAULT_STEPS
    if "guidance_scale" not in given:
        params["guidance_scale"] = V1_DEFAULT_GUIDANCE


def _v1_sampler_request(
    kind: str, p: Mapping[str, Any], meta: Mapping[str, Any], state: Mapping[str, Any]
) -> dict[str, Any]:
    """The sampler request for the ACE-Step v1 family: its fields only (bpm/key/time signature are 1.5 prompt
    metadata; v1 reads the caption as tags), duration within its 240 s."""
    request: dict[str, Any] = {
        "family": "acestep_v1",
        "version_set": p.get("version_set"),
        "caption": state["caption"],
        "lyrics": state["sampler_lyrics"],
        "duration": min(float(meta["duration"]), V1_MAX_DURATION_S),
        "inference_steps": p["inference_steps"],
        "guidance_scale": p["guidance_scale"],
        "seeds": p["seeds"],
        "batch_size": len(p["seeds"]),
        "task_type": "text2music",
    }
    if kind == "music":
        request["shift"] = p["shift"]
        if p["task_type"] == "repaint":
            end = p.get("repainting_end")
            request.update(
                task_type="repaint",
                duration=None,  # the source's length
                repaint_start=p["repainting_start"],
                repaint_end=p.get("src_audio_seconds") if end in (None, -1) else end,
            )
    return request


def _clamp_duration(value: Any) -> float:
    # The sampler accepts 10..600 s (the page's range); an LM suggestion outside it is pulled back in.
    return float(min(600.0, max(10.0, float(value))))


class JobService:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker,
        gateway: StageGateway,
        bus: EventBus,
        webhooks: WebhookSender,
        queue_info: QueueInfo,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._gateway = gateway
        self._bus = bus
        self._webhooks = webhooks
        self._queue_info = queue_info
        self._submit_lock = asyncio.Lock()
        self.on_submitted: Callable[[], None] = lambda: None

    # --- submission ------------------------------------------------------------------------------------------------
    async def _insert(
        self, *, kind: str, owner: str, params: dict[str, Any], callback_url: str | None, public_id: str | None = None
    ) -> Job:
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
        if callback_url:
            self._webhooks.send(job_id=job.public_id, url=callback_url, event="status", payload={"status": "queued"})
        return job

    async def submit_song(self, *, owner: str, body: SongCreate) -> Job:
        if body.vocal_mode != "instrumental_quick" and not self._settings.enable_lyricist:
            raise ApiError(
                503,
                "the lyricist service is not enabled on this server (set TRITONE_ENABLE_LYRICIST=true), "
                "or ask for vocal_mode 'instrumental_quick'",
                field="vocal_mode",
            )
        callback_url = await self._webhooks.validate(body.callback_url)
        params = body.model_dump(mode="json")
        params["seeds"] = pick_seeds(body.batch_size, body.seed)
        choice = parse_model(body.model or self._settings.default_model)
        params["family"], params["version_set"] = choice.family, choice.version_set
        if choice.family == "acestep_v1":
            _v1_defaults(params, body.model_fields_set)
        params["cover_size"] = body.cover_size or self._settings.cover_default_aspect
        return await self._insert(kind="song", owner=owner, params=params, callback_url=callback_url)

    async def submit_music(
        self, *, owner: str, body: MusicGenerateCreate, uploads: Mapping[str, bytes] | None = None
    ) -> Job:
        callback_url = await self._webhooks.validate(body.callback_url)
        choice = parse_model(body.model or self._settings.default_model)
        if choice.family == "acestep_v1" and body.task_type not in V1_TASK_TYPES:
            raise ApiError(
                422,
                f"task_type: model {choice.id} does text2music and repaint; '{body.task_type}' needs an acestep15 "
                "model",
                field="task_type",
            )
        sources: dict[str, bytes] = {}
        for name, path_field in (("src_audio", "src_audio_path"), ("reference_audio", "reference_audio_path")):
            if uploads and uploads.get(name):
                sources[name] = uploads[name]  # an upload wins over the *_path field, as upstream does
            elif getattr(body, path_field):
                sources[name] = await asyncio.to_thread(self._read_server_path, path_field, getattr(body, path_field))
        if body.task_type in TASKS_NEEDING_SOURCE and "src_audio" not in sources:
            raise ApiError(
                422,
                f"task_type '{body.task_type}' needs source audio: upload src_audio or set src_audio_path",
                field="src_audio",
            )
        decoded: dict[str, np.ndarray] = {}
        for name, data in sources.items():
            try:
                decoded[name] = await asyncio.to_thread(decode_audio, data, target_rate=SAMPLE_RATE)
            except AudioDecodeError as exc:
                raise ApiError(422, f"{name}: could not decode the audio: {exc}", field=name) from None
            seconds = decoded[name].shape[-1] / SAMPLE_RATE
            if seconds > 600:
                raise ApiError(422, f"{name}: audio is {seconds:.0f} s long; at most 600 s is accepted", field=name)
        batch = body.batch_size or self._settings.default_batch_size
        params = body.model_dump(mode="json")
        params["batch_size"] = batch
        params["seeds"] = pick_seeds(batch, None if body.use_random_seed else body.seed)
        params["family"], params["version_set"] = choice.family, choice.version_set
        if choice.family == "acestep_v1":
            _check_v1_music(body, choice, sources)
            _v1_defaults(params, body.model_fields_set)
        params["uploads"] = sorted(decoded)
        params["src_audio_seconds"] = (
            round(decoded["src_audio"].shape[-1] / SAMPLE_RATE, 3) if "src_audio" in decoded else None
        )
        params.pop("src_audio_path", None)
        params.pop("reference_audio_path", None)
        public_id = str(uuid.uuid4())
        directory = job_dir(self._settings, public_id)
        if decoded:
            await asyncio.to_thread(self._save_uploads, directory, decoded)
        try:
            return await self._insert(
                kind="music", owner=owner, params=params, callback_url=callback_url, public_id=public_id
            )
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise

    def _read_server_path(self, field_name: str, value: str) -> bytes:
        root = self._settings.audio_path_root
        if root is None:
            raise ApiError(
                422,
                f"{field_name}: server paths are disabled (no TRITONE_AUDIO_PATH_ROOT); upload the file instead",
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
    def _save_uploads(directory: Path, decoded: Mapping[str, np.ndarray]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name, wave in decoded.items():
            _save_npy(directory / _UPLOAD_NAMES[name], wave.astype(np.float32, copy=False))

    async def cancel(self, *, owner: str, public_id: str) -> Job | None:
        async with self._sessions() as session:
            job = await store.cancel_job(session=session, public_id=public_id, owner=owner)
        if job is not None:
            self._queue_info.invalidate()
            self._bus.notify(job.id)
            if job.status == "cancelled" and job.callback_url:
                self._webhooks.send(
                    job_id=job.public_id, url=job.callback_url, event="status", payload={"status": "cancelled"}
                )
        return job

    # --- running ---------------------------------------------------------------------------------------------------
    async def run(self, job: Job, worker_id: str) -> None:
        """Run (or resume) ``job`` to a terminal state. Cancellation propagates (the pool decides what it means)."""
        run = _Run(job=job, worker_id=worker_id, params=dict(job.params), state=dict(job.state or {}))
        run.state.setdefault("done", [])
        try:
            if job.kind == "song":
                await self._run_song(run)
            else:
                await self._run_music(run)
        except JobLostError:
            logger.info("job %s: no longer ours; stopped", job.public_id)
        except (ModelError, TritonUnavailableError, StageFailedError) as exc:
            await self._fail(run, f"{run.stage or 'job'}: {_text(exc)}")
        except TimeoutError:
            limit = self._stage_timeout(run.stage)
            setting = f"TRITONE_{(run.stage or 'stage').upper()}_TIMEOUT_S"
            await self._fail(run, f"{run.stage}: timed out after {limit:g} s (raise {setting} if this is expected)")
        except Exception as exc:
            logger.exception("job %s: stage %s crashed", job.public_id, run.stage)
            await self._fail(run, f"{run.stage or 'job'}: internal error: {type(exc).__name__}: {exc}")
        finally:
            if run.cover_task is not None and not run.cover_task.done():
                run.cover_task.cancel()
                with contextlib.suppress(BaseException):
                    await run.cover_task

    def _stage_timeout(self, stage: str | None) -> float:
        return {
            "lyrics": self._settings.lyrics_timeout_s,
            "metadata": self._settings.metadata_timeout_s,
            "audio": self._settings.audio_timeout_s,
            "post": self._settings.post_timeout_s,
        }.get(stage or "", 600.0)

    async def _fail(self, run: _Run, message: str) -> None:
        logger.warning("job %s failed: %s", run.job.public_id, message)
        async with self._sessions() as session:
            finished = await store.finish_job(
                session=session, job_id=run.job.id, worker_id=run.worker_id, status="failed", error=message
            )
        if finished:
            self._after_terminal(run, "failed", {"status": "failed", "error": message})

    def _after_terminal(self, run: _Run, event: str, payload: dict[str, Any]) -> None:
        self._bus.notify(run.job.id)
        self._queue_info.invalidate()
        if run.job.callback_url:
            self._webhooks.send(job_id=run.job.public_id, url=run.job.callback_url, event=event, payload=payload)

    # --- helpers for stages ----------------------------------------------------------------------------------------
    async def _update(self, run: _Run, **values: Any) -> None:
        async with self._sessions() as session:
            if not await store.update_job(session=session, job_id=run.job.id, worker_id=run.worker_id, **values):
                raise JobLostError(run.job.public_id)

    async def _event(self, run: _Run, kind: str, data: dict[str, Any]) -> None:
        async with self._sessions() as session:
            await store.add_event(session=session, job_id=run.job.id, kind=kind, data=data)
        self._bus.notify(run.job.id)

    async def _checkpoint(self, run: _Run, **values: Any) -> None:
        await self._update(run, state=dict(run.state), **values)

    async def _stage(self, run: _Run, name: str, body: Callable[[_Run], Any]) -> None:
        if name in run.done:
            return
        run.stage = name
        run.state["stage_started_at"] = time.time()
        await self._update(run, stage=name, state=dict(run.state), progress={"stage": name, "step": 0, "total": 0})
        await self._event(run, "status", {"status": "running", "stage": name})
        if run.job.callback_url:
            self._webhooks.send(
                job_id=run.job.public_id,
                url=run.job.callback_url,
                event="stage",
                payload={"status": "running", "stage": name},
            )
        async with self._sessions() as session:
            run_id = await store.start_stage_run(
                session=session, job_id=run.job.id, stage=name, worker_id=run.worker_id
            )
        ok = False
        try:
            async with asyncio.timeout(self._stage_timeout(name)):
                await body(run)
            ok = True
        finally:
            with contextlib.suppress(Exception):
                async with self._sessions() as session:
                    await store.finish_stage_run(session=session, run_id=run_id, ok=ok, server=run.server)
        run.done.append(name)
        await self._checkpoint(run)

    async def _call(
        self, run: _Run, model: str, request: Mapping[str, Any], *, tensors: Mapping[str, np.ndarray] | None = None
    ) -> AsyncGenerator[ModelEvent, None]:
        async with contextlib.aclosing(self._gateway.stream(model, _drop_none(request), tensors=tensors)) as events:
            async for event in events:
                if event.server:
                    run.server = event.server
                if event.type == "retry":
                    logger.warning(
                        "job %s: %s moved to %s (%s)",
                        run.job.public_id,
                        model,
                        event.data.get("server"),
                        event.data.get("reason"),
                    )
                    await self._event(run, "status", {"status": "running", "stage": run.stage, "retry": event.data})
                    continue
                yield event

    # --- song pipeline ---------------------------------------------------------------------------------------------
    async def _run_song(self, run: _Run) -> None:
        p = run.params
        await self._stage(run, "lyrics", self._song_lyrics)
        await self._stage(run, "metadata", self._song_metadata)
        if p.get("generate_cover") and self._settings.cover_api_url and "post" not in run.done:
            run.cover_task = asyncio.create_task(self._external_cover(run))
        await self._stage(run, "audio", self._audio)
        await self._stage(run, "post", self._post)
        await self._succeed(run)

    async def _song_lyrics(self, run: _Run) -> None:
        p = run.params
        if p["vocal_mode"] == "instrumental_quick":
            caption = ", ".join(x for x in (p.get("style"), p["theme"]) if x) + ", instrumental"
            run.state["plan"] = {"title": p["theme"][:60], "caption": caption, "lyrics": "[Instrumental]"}
            await self._checkpoint(run, title=run.state["plan"]["title"], lyrics="")
            return
        request = {
            "theme": p["theme"],
            "language": p["language"],
            "rhyme": p.get("rhyme"),
            "style": p.get("style"),
            "vocal_gender": p["vocal_gender"],
            "duration_hint": p.get("duration") or p["duration_hint"],
            "additional_instructions": p.get("additional_instructions"),
            "temperature": p["temperature"],
            "seed": p["seeds"][0],
            "vocal_mode": p["vocal_mode"],
            "track_classes": p.get("track_classes"),
            # The user's own values bind the plan too (they win over anything the lyricist would pick).
            "bpm": p.get("bpm"),
            "key_scale": p.get("key_scale"),
            "duration": p.get("duration"),
        }
        async def write(text: str) -> None:
            await self._update(run, lyrics=text)
            await self._event(run, "lyrics", {"text": text})

        throttle = _Throttle(_LYRICS_FLUSH_S, write)
        plan: dict[str, Any] | None = None
        try:
            async for event in self._call(run, self._settings.lyricist_model, request):
                if event.type == "delta" and event.data.get("lyrics_so_far"):
                    await throttle.push(str(event.data["lyrics_so_far"]))
                elif event.type == "plan":
                    plan = dict(event.data.get("plan") or {})
        finally:
            await throttle.close()
        if not plan or not str(plan.get("lyrics", "")).strip():
            raise StageFailedError("the lyricist finished without a plan (no lyrics came back)")
        run.state["plan"] = plan
        await self._checkpoint(run, lyrics=plan["lyrics"], title=plan.get("title"))
        await self._event(run, "lyrics", {"text": plan["lyrics"], "final": True, "title": plan.get("title")})

    async def _song_metadata(self, run: _Run) -> None:
        p, plan = run.params, run.state["plan"]
        meta = {
            "bpm": p.get("bpm") or plan.get("bpm"),
            "key_scale": p.get("key_scale") or plan.get("key_scale"),
            "time_signature": plan.get("time_signature"),
            "duration": p.get("duration") or plan.get("duration") or p["duration_hint"],
        }
        caption = caption_with_tracks(str(plan.get("caption") or p["theme"]), p.get("track_classes"))
        if p["vocal_mode"] != "sing" and "instrumental" not in caption.lower():
            caption += ", instrumental"
        if any(meta[k] is None for k in ("bpm", "key_scale", "time_signature")):
            filled = await self._lm_metadata(
                run,
                caption=caption,
                lyrics=str(plan.get("lyrics", "")),
                known=meta,
                language=p["language"],
                temperature=p["temperature"],
            )
            meta = {k: meta[k] if meta[k] is not None else filled.get(k) for k in meta}
        meta = _normal_meta(meta)
        meta["duration"] = _clamp_duration(meta["duration"])
        lyrics = str(plan.get("lyrics", ""))
        sung = {"sing": lyrics, "instrumental_from_lyrics": structure_only(lyrics)}.get(
            p["vocal_mode"], "[Instrumental]"
        )
        run.state["meta"] = meta
        run.state["caption"] = caption
        run.state["sampler_lyrics"] = sung
        run.state["title"] = plan.get("title") or p["theme"][:60]

    async def _lm_metadata(
        self,
        run: _Run,
        *,
        caption: str,
        lyrics: str,
        known: Mapping[str, Any],
        language: str,
        temperature: float,
        mode: str = "metadata",
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        request = {
            "mode": mode,
            "caption": caption[:2000],  # the lm's limits (a long plan caption is cut, not refused)
            "lyrics": lyrics[:10000],
            "bpm": known.get("bpm"),
            "key_scale": known.get("key_scale"),
            "time_signature": known.get("time_signature"),
            "duration": known.get("duration"),
            "vocal_language": language,
            "temperature": temperature,
            "seed": run.params["seeds"][0],
            **(extra or {}),
        }
        result: dict[str, Any] | None = None
        async for event in self._call(run, self._settings.lm_model, request):
            if event.type == "result":
                result = event.data
        if result is None:
            raise StageFailedError("the lm finished without a result")
        merged = dict(result.get("metadata") or {})
        for key in ("audio_codes", "caption", "lyrics"):
            if result.get(key) is not None:
                merged[key] = result[key]
        return merged

    # --- ACE-Step pipeline -----------------------------------------------------------------------------------------
    async def _run_music(self, run: _Run) -> None:
        p = run.params
        if p.get("sample_mode") or p.get("sample_query"):
            await self._stage(run, "lyrics", self._music_inspire)
        await self._stage(run, "metadata", self._music_metadata)
        await self._stage(run, "audio", self._audio)
        await self._stage(run, "post", self._post)
        await self._succeed(run)

    def _lm_sampling(self, p: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "temperature": p["lm_temperature"],
            "cfg_scale": p["lm_cfg_scale"],
            "negative_prompt": p["lm_negative_prompt"],
            "top_k": p.get("lm_top_k") or None,
            "top_p": p["lm_top_p"],
            "repetition_penalty": p["lm_repetition_penalty"],
        }

    async def _music_inspire(self, run: _Run) -> None:
        p = run.params
        description = p.get("sample_query") or p.get("caption") or "a song"
        filled = await self._lm_metadata(
            run,
            caption=p.get("caption", ""),
            lyrics=p.get("lyrics", ""),
            known=_user_meta(p),
            language=p["vocal_language"],
            temperature=p["lm_temperature"],
            mode="inspire",
            extra={**self._lm_sampling(p), "description": description},
        )
        run.state["plan"] = filled
        await self._checkpoint(run, lyrics=filled.get("lyrics"), title=None)
        if filled.get("lyrics"):
            await self._event(run, "lyrics", {"text": filled["lyrics"], "final": True})

    async def _music_metadata(self, run: _Run) -> None:
        p = run.params
        plan = run.state.get("plan") or {}
        caption = str(plan.get("caption") or p.get("caption") or "")
        lyrics = str(plan.get("lyrics") or p.get("lyrics") or "")
        meta = _user_meta(p)
        for key in ("bpm", "key_scale", "time_signature", "duration"):
            if meta.get(key) is None and plan.get(key) is not None:
                meta[key] = plan[key]
        if meta.get("duration") is None and p.get("src_audio_seconds"):
            meta["duration"] = p["src_audio_seconds"]
        user_codes = [
            c
            for c in ([p["audio_code_string"]] if isinstance(p["audio_code_string"], str) else p["audio_code_string"])
            if c.strip()
        ]
        codes: str | list[str] | None = None
        want_codes = bool(p["thinking"]) and p["task_type"] not in TASKS_WITHOUT_LM_CODES
        if want_codes and user_codes:
            codes = user_codes[0] if len(user_codes) == 1 else user_codes  # the user's codes win over the LM's
        missing = any(meta.get(k) is None for k in ("bpm", "key_scale", "time_signature", "duration"))
        if (want_codes and codes is None) or missing:
            mode = "thinking" if want_codes and codes is None else "metadata"
            filled = await self._lm_metadata(
                run,
                caption=caption,
                lyrics=lyrics,
                known=meta,
                language=p["vocal_language"],
                temperature=p["lm_temperature"],
                mode=mode,
                extra=self._lm_sampling(p),
            )
            for key in ("bpm", "key_scale", "time_signature", "duration"):
                if meta.get(key) is None:
                    meta[key] = filled.get(key)
            if mode == "thinking":
                codes = filled.get("audio_codes") or None
            run.state["lm_metas"] = {k: v for k, v in filled.items() if k != "audio_codes"}
        meta = _normal_meta(meta)
        meta["duration"] = _clamp_duration(meta.get("duration") or 30.0)
        run.state["meta"] = meta
        run.state["caption"] = caption
        run.state["sampler_lyrics"] = lyrics
        run.state["codes"] = codes

    # --- shared stages ---------------------------------------------------------------------------------------------
    def _sampler_request(self, run: _Run) -> dict[str, Any]:
        p, meta = run.params, run.state["meta"]
        if p.get("family") == "acestep_v1":
            return _v1_sampler_request(run.job.kind, p, meta, run.state)
        request: dict[str, Any] = {
            "family": p.get("family") or self._settings.default_model_family,
            "version_set": p.get("version_set"),
            "caption": run.state["caption"],
            "lyrics": run.state["sampler_lyrics"],
            "vocal_language": p.get("vocal_language") or p.get("language"),
            "bpm": meta.get("bpm"),
            "key_scale": meta.get("key_scale"),
            "time_signature": meta.get("time_signature"),
            "duration": meta["duration"],
            "inference_steps": p["inference_steps"],
            "guidance_scale": p["guidance_scale"],
            "use_adg": p["use_adg"],
            "seeds": p["seeds"],
            "batch_size": len(p["seeds"]),
        }
        if run.job.kind == "music":
            request.update(
                task_type=p["task_type"],
                shift=p["shift"],
                # Upstream lists end at 0 ("…,0.085,0"); the sampler takes the points above 0 and ends there itself.
                timesteps=[t for t in p["timesteps"] if t > 0] if p.get("timesteps") else None,
                cfg_interval_start=p["cfg_interval_start"],
                cfg_interval_end=p["cfg_interval_end"],
                instruction=p.get("instruction"),
                track_name=p.get("track_name"),
                complete_track_classes=p.get("complete_track_classes"),
                audio_cover_strength=p["audio_cover_strength"],
                audio_codes=run.state.get("codes"),
            )
            if p["task_type"] == "repaint":
                end = p.get("repainting_end")
                request.update(
                    repainting_start=p["repainting_start"],
                    repainting_end=None if end in (None, -1) else end,
                )
        else:
            request["task_type"] = "text2music"
        return request

    async def _audio(self, run: _Run) -> None:
        directory = job_dir(self._settings, run.job.public_id)
        tensors: dict[str, np.ndarray] = {}
        for name in run.params.get("uploads") or []:
            tensors[name] = await asyncio.to_thread(np.load, directory / _UPLOAD_NAMES[name])
        audio: np.ndarray | None = None
        done: dict[str, Any] = {}

        async def write(progress: dict[str, Any]) -> None:
            await self._update(run, progress=progress)
            await self._event(run, "progress", progress)

        throttle = _Throttle(_PROGRESS_FLUSH_S, write)
        try:
            request = self._sampler_request(run)
            async for event in self._call(run, self._settings.sampler_model, request, tensors=tensors):
                if event.type == "progress":
                    step, total = int(event.data.get("step", 0)), int(event.data.get("total", 0))
                    progress = {"stage": str(event.data.get("stage", "diffusion")), "step": step, "total": total}
                    await throttle.push(progress)
                    if step >= total:
                        await throttle.flush()
                elif event.type == "done":
                    done = event.data
                    audio = event.tensors.get("audio")
            await throttle.flush()
        finally:
            await throttle.close()
        if audio is None:
            raise StageFailedError("the sampler finished without an audio tensor")
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim == 2:
            audio = audio[None]
        if audio.ndim != 3 or audio.shape[1] != 2:
            raise StageFailedError(f"the sampler returned audio of shape {audio.shape}; expected [batch, 2, samples]")
        await asyncio.to_thread(_save_npy, directory / "audio.npy", audio)
        seeds = [int(s) for s in done.get("seeds") or run.params["seeds"]]
        run.state["audio"] = {
            "seeds": seeds,
            "sample_rate": int(done.get("sample_rate") or SAMPLE_RATE),
            "num_samples": int(audio.shape[-1]),
            "versions": done.get("versions") or {},
        }

    async def _external_cover(self, run: _Run) -> Path | None:
        plan = run.state.get("plan") or {}
        title = str(run.state.get("title") or plan.get("title") or run.params.get("theme", ""))
        prompt = f"Album cover art for the song '{title}'. {run.state.get('caption', '')}".strip()
        path = job_dir(self._settings, run.job.public_id) / "cover.png"
        assert self._settings.cover_api_url is not None
        try:
            return await fetch_cover(
                url=self._settings.cover_api_url,
                prompt=prompt,
                aspect=run.params["cover_size"],
                path=path,
                timeout_s=self._settings.cover_timeout_s,
            )
        except Exception as exc:  # the built-in renderer takes over
            logger.warning("job %s: cover API failed (%s); using the built-in renderer", run.job.public_id, exc)
            return None

    async def _post(self, run: _Run) -> None:
        p, info = run.params, run.state["audio"]
        directory = job_dir(self._settings, run.job.public_id)
        audio = await asyncio.to_thread(np.load, directory / "audio.npy")
        fmt = p["audio_format"]
        total = int(audio.shape[0])
        await self._update(run, progress={"stage": "encode", "step": 0, "total": total})

        def encode(index: int) -> dict[str, Any]:
            target = directory / f"item_{index}{_AUDIO_EXT[fmt]}"
            written = encode_audio(audio[index], sample_rate=info["sample_rate"], fmt=fmt, path=target)
            return {
                "index": index,
                "file": written.name,
                "format": fmt,
                "duration": round(info["num_samples"] / info["sample_rate"], 3),
                "seed": info["seeds"][index] if index < len(info["seeds"]) else None,
            }

        jobs: list[Any] = [asyncio.to_thread(encode, i) for i in range(total)]
        want_cover = run.job.kind == "song" and p.get("generate_cover")
        if want_cover:
            jobs.append(self._cover(run, audio[0], info["sample_rate"]))
        results = await asyncio.gather(*jobs)
        await self._update(run, progress={"stage": "encode", "step": total, "total": total})
        run.state["items"] = results[:total]
        run.state["cover"] = results[total].name if want_cover and results[total] is not None else None

    async def _cover(self, run: _Run, audio: np.ndarray, sample_rate: int) -> Path | None:
        if run.cover_task is not None:
            external = await run.cover_task
            if external is not None:
                return external
        title = str(run.state.get("title") or run.params.get("theme", ""))
        path = job_dir(self._settings, run.job.public_id) / "cover.png"
        return await asyncio.to_thread(
            render_cover,
            title=title,
            caption=str(run.state.get("caption", "")),
            audio=audio,
            sample_rate=sample_rate,
            aspect=run.params["cover_size"],
            path=path,
            seed=int(run.params["seeds"][0]),
        )

    async def _succeed(self, run: _Run) -> None:
        p, meta, info = run.params, run.state["meta"], run.state["audio"]
        result = {
            "title": run.state.get("title"),
            "caption": run.state.get("caption"),
            "lyrics": (run.state.get("plan") or {}).get("lyrics") or run.state.get("sampler_lyrics"),
            "metadata": {**meta, "seeds": info["seeds"]},
            "items": run.state["items"],
            "cover": run.state.get("cover"),
            "versions": info.get("versions") or {},
            "lm_metas": run.state.get("lm_metas"),
            "generation_info": (
                f"Steps: {p['inference_steps']}, Scale: {p['guidance_scale']}, "
                + (f"Shift: {p['shift']}, " if "shift" in p else "")
                + f"ADG: {p['use_adg']}, Seeds: {','.join(map(str, info['seeds']))}, Family: {p.get('family')}"
            ),
        }
        async with self._sessions() as session:
            finished = await store.finish_job(
                session=session, job_id=run.job.id, worker_id=run.worker_id, status="succeeded", result=result
            )
        if not finished:
            raise JobLostError(run.job.public_id)
        logger.info("job %s succeeded (%d item(s))", run.job.public_id, len(result["items"]))
        self._after_terminal(run, "done", {"status": "succeeded", "result": _webhook_result(result)})


def _user_meta(p: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "bpm": p.get("bpm"),
        "key_scale": p.get("key_scale"),
        "time_signature": p.get("time_signature"),
        "duration": p.get("audio_duration"),
    }


def _webhook_result(result: Mapping[str, Any]) -> dict[str, Any]:
    return {"title": result.get("title"), "metadata": result.get("metadata"), "items": len(result.get("items", []))}


def _save_npy(path: Path, array: np.ndarray) -> None:
    """Write atomically: a crash mid-write must not leave a truncated checkpoint behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, array)
    os.replace(tmp, path)


def _text(exc: BaseException) -> str:
    return str(getattr(exc, "message", None) or exc)
