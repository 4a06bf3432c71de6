"""``POST /v1/chat/completions``: upstream's OpenAI-chat-style music route (its OpenRouter document).

Messages become an ACE-Step job (``services/chat.py``); the answer is a ``chat.completion`` whose assistant message
holds the metadata and lyrics as text and each song as a base64 ``data:`` URL in ``message.audio`` — or, with
``"stream": true``, server-sent ``chat.completion.chunk`` events: the role, a ``"."`` heartbeat every 2 s while the
song is made, the text, the audio, the finish reason, ``data: [DONE]``. A failed song finishes with
``finish_reason: "error"`` and the reason as the content.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from orchestrator.db import Job
from orchestrator.errors import validated
from orchestrator.routers.deps import Ctx, MaybeUser, body_user, json_object
from orchestrator.schemas.chat import ChatCompletionRequest
from orchestrator.services.chat import chat_to_music, completion_message, wait_job

logger = logging.getLogger(__name__)
router = APIRouter(tags=["chat"])
_WAIT_S = 1800.0


def _envelope(cid: str, model: str, choice: dict[str, Any], *, chunk: bool) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk" if chunk else "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
    }


def _sse(data: dict[str, Any] | str) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _failure(job: Job) -> str:
    if job.status in ("failed", "cancelled"):
        return f"Generation {job.status}: {job.error or job.status}"
    return f"Generation did not finish within {_WAIT_S:g} s (task {job.public_id}; poll GET /v1/jobs/{job.public_id})"


@router.post("/v1/chat/completions")
async def chat_completions(request: Request, ctx: Ctx, user: MaybeUser) -> Any:
    raw = await json_object(request, holding="messages")
    owner = body_user(ctx, user, raw)
    chat = validated(ChatCompletionRequest, raw)
    body, uploads = chat_to_music(chat, upload_limit=ctx.settings.upload_max_bytes)
    job = await ctx.jobs.submit_music(owner=owner, body=body, uploads=uploads)
    cid = f"chatcmpl-{uuid.uuid4().hex[:16]}"
    model = chat.model or "acestep/" + (body.model or ctx.settings.default_model)
    logger.info("chat completion %s: job %s for %s (stream=%s)", cid, job.public_id, owner, chat.stream)
    if not chat.stream:
        done = await wait_job(ctx.sessions, ctx.bus, job, timeout=_WAIT_S)
        if done.status != "succeeded":
            message: dict[str, Any] = {"role": "assistant", "content": _failure(done)}
            return _envelope(cid, model, {"index": 0, "message": message, "finish_reason": "error"}, chunk=False)
        message = {"role": "assistant", **await completion_message(done, ctx.settings)}
        answer = _envelope(cid, model, {"index": 0, "message": message, "finish_reason": "stop"}, chunk=False)
        answer["usage"] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        answer["task_id"] = job.public_id
        return answer

    async def events() -> AsyncIterator[bytes]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return _sse(_envelope(cid, model, {"index": 0, "delta": delta, "finish_reason": finish}, chunk=True))

        yield chunk({"role": "assistant", "content": ""})
        done = job
        while True:
            done = await wait_job(ctx.sessions, ctx.bus, done, timeout=2.0)
            if done.status in ("succeeded", "failed", "cancelled") or time.time() - job.created_at > _WAIT_S:
                break
            yield chunk({"content": "."})  # the heartbeat, every 2 s while the song is made
        if done.status != "succeeded":
            yield chunk({"content": _failure(done)}, "error")
            yield _sse("[DONE]")
            return
        message = await completion_message(done, ctx.settings)
        yield chunk({"content": "\n\n" + message["content"]})
        yield chunk({"audio": message["audio"]})
        yield chunk({}, "stop")
        yield _sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
