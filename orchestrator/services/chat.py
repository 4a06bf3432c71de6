"""The chat-style music route (upstream's OpenRouter document) and other routes that answer with the finished song.

- :func:`chat_to_music` — a chat request becomes an ACE-Step API request: the last user message's text is the
  prompt (``<prompt>…</prompt><lyrics>…</lyrics>`` tags, lyrics-like text, or a description for the LM's sample
  mode), its ``input_audio`` parts the source / reference uploads (routed by task type as upstream does);
- :func:`wait_job` — a submitted job, waited for until it ends (or a deadline);
- :func:`completion_message` — the finished job as the assistant message: the metadata and lyrics as Markdown text,
  each audio file as a ``data:`` URL.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import async_sessionmaker

from orchestrator import store
from orchestrator.db import Job
from orchestrator.errors import ApiError, validation_error
from orchestrator.schemas.acestep import MusicGenerateCreate
from orchestrator.schemas.chat import ChatCompletionRequest
from orchestrator.services.events import EventBus
from orchestrator.services.jobs import job_dir
from orchestrator.settings import Settings

TERMINAL = ("succeeded", "failed", "cancelled")
MIME = {"mp3": "audio/mpeg", "wav": "audio/wav", "wav32": "audio/wav", "flac": "audio/flac"}
_TAG = re.compile(r"<(prompt|lyrics)>(.*?)</\1>", re.S | re.I)
_SECTION = re.compile(r"^\s*\[(verse|chorus|bridge|intro|outro|pre-chorus|hook|drop|instrumental)[^\]]*\]", re.I | re.M)


def _last_user(request: ChatCompletionRequest) -> tuple[str, list[tuple[str, str]]]:
    """The text and the ``(base64, format)`` audio parts of the last user message."""
    for message in reversed(request.messages):
        if message.role != "user":
            continue
        if isinstance(message.content, str):
            return message.content, []
        texts = [p.text or "" for p in message.content if p.type == "text"]
        audios = [(p.input_audio.data, p.input_audio.format) for p in message.content if p.input_audio is not None]
        return "\n".join(texts), audios
    raise ApiError(422, "messages: needs a message with role 'user' (the song to make)", field="messages")


def _decode(data: str, index: int, limit: int) -> bytes:
    payload = data.split(",", 1)[1] if data.startswith("data:") else data
    try:
        raw = base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        raise ApiError(422, f"messages: input_audio #{index + 1} is not valid base64", field="messages") from None
    if len(raw) > limit:
        raise ApiError(413, f"messages: input_audio #{index + 1} is larger than {limit} bytes", field="messages")
    return raw


def chat_to_music(request: ChatCompletionRequest, *, upload_limit: int) -> tuple[MusicGenerateCreate, dict[str, bytes]]:
    """The ACE-Step request (and uploads) a chat request stands for; a bad combination is a 422 naming the field."""
    text, audios = _last_user(request)
    config = request.audio_config
    fields: dict[str, Any] = {
        "thinking": request.thinking,
        "lm_temperature": request.temperature,
        "lm_top_p": request.top_p,
        "guidance_scale": request.guidance_scale,
        "batch_size": request.batch_size,
        "task_type": request.task_type,
        "repainting_start": request.repainting_start,
        "repainting_end": request.repainting_end,
        "audio_cover_strength": request.audio_cover_strength,
    }
    if request.inference_steps is not None:
        fields["inference_steps"] = request.inference_steps
    if request.seed is not None:
        fields["seed"], fields["use_random_seed"] = request.seed, False
    if request.model:
        fields["model"] = request.model.rsplit("/", 1)[-1]  # "acestep/acestep-v15-turbo" -> the model's name
    if config is not None:
        fields.update(
            {
                "audio_duration": config.duration,
                "bpm": config.bpm,
                "vocal_language": config.vocal_language,
                "audio_format": config.format,
                "key_scale": config.key_scale,
                "time_signature": config.time_signature,
            }
        )
    tags = {name.lower(): body.strip() for name, body in _TAG.findall(text)}
    if request.lyrics:
        fields["caption"], fields["lyrics"] = text.strip(), request.lyrics
    elif request.sample_mode:
        fields["sample_mode"], fields["sample_query"] = True, text.strip() or "a song"
    elif tags:
        fields["caption"], fields["lyrics"] = tags.get("prompt", ""), tags.get("lyrics", "")
    elif _SECTION.search(text):
        fields["lyrics"] = text.strip()
    else:
        fields["sample_mode"], fields["sample_query"] = True, text.strip() or "a song"
    if config is not None and config.instrumental:
        fields["instrumental"] = True
    order = ("reference_audio",) if request.task_type == "text2music" else ("src_audio", "reference_audio")
    if len(audios) > len(order):
        raise ApiError(
            422,
            f"messages: task_type {request.task_type} takes at most {len(order)} input_audio part(s): "
            f"{', '.join(order)}",
            field="messages",
        )
    uploads = {order[i]: _decode(data, i, upload_limit) for i, (data, _) in enumerate(audios)}
    try:
        body = MusicGenerateCreate.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise validation_error(exc.errors(), MusicGenerateCreate) from None
    return body, uploads


async def wait_job(
    sessions: async_sessionmaker,
    bus: EventBus,
    job: Job,
    *,
    timeout: float,
    tick: Callable[[Job], Awaitable[None]] | None = None,
    tick_s: float = 2.0,
) -> Job:
    """``job`` reloaded until it ends or ``timeout`` passes (then as it stands); ``tick`` is called every
    ``tick_s`` seconds while it runs (a stream's heartbeat)."""
    deadline = time.monotonic() + timeout
    current = job
    while True:
        async with sessions() as session:
            fresh = await store.get_job(session=session, public_id=job.public_id)
        current = fresh or current
        if current.status in TERMINAL or time.monotonic() >= deadline:
            return current
        if tick is not None:
            await tick(current)
        await bus.wait(job.id, min(tick_s, max(0.05, deadline - time.monotonic())))


def _audio_files(job: Job, settings: Settings) -> list[tuple[str, bytes]]:
    result = job.result or {}
    out = []
    for item in result.get("items", []):
        path = job_dir(settings, job.public_id) / item["file"]
        out.append((str(item.get("format") or "mp3"), path.read_bytes()))
    return out


def song_text(job: Job) -> str:
    """The finished song as upstream's assistant text: a Metadata section and the lyrics."""
    result = job.result or {}
    meta = result.get("metadata") or {}
    lines = ["## Metadata"]
    for label, value in (
        ("Caption", result.get("caption")),
        ("BPM", meta.get("bpm")),
        ("Duration", f"{meta['duration']:g}s" if meta.get("duration") else None),
        ("Key", meta.get("key_scale")),
        ("Time Signature", meta.get("time_signature")),
        ("Model", (result.get("model") or {}).get("name")),
    ):
        if value not in (None, ""):
            lines.append(f"**{label}:** {value}")
    lyrics = result.get("lyrics") or ""
    if lyrics:
        lines += ["", "## Lyrics", lyrics]
    return "\n".join(lines)


async def completion_message(job: Job, settings: Settings) -> dict[str, Any]:
    """``{"content", "audio": [{"type": "audio_url", "audio_url": {"url": "data:…;base64,…"}}]}``."""
    files = await asyncio.to_thread(_audio_files, job, settings)
    audio = [
        {
            "type": "audio_url",
            "audio_url": {"url": f"data:{MIME.get(fmt, 'application/octet-stream')};base64,"
                          + base64.b64encode(data).decode()},
        }
        for fmt, data in files
    ]
    return {"content": song_text(job), "audio": audio}
