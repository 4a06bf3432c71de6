"""Upstream ACE-Step's other routes, as its clients call them:

- ``GET /v1/models`` and ``GET /v1/model_inventory`` — the served version sets under the checkpoint names clients
  know (``acestep-v15-turbo``, …) with ``is_loaded`` and ``supported_task_types``, the LM models, the default;
- ``POST /v1/init`` / ``POST /v1/reinitialize`` — what is loaded; loads a served version set's networks through
  Triton's model control when the request names one whose versions are not all READY;
- ``POST /format_input``, ``POST /create_random_sample`` — the 5 Hz LM directly (``ai_token`` accepted);
- ``POST /v1/music/random`` — a job in sample mode (seed 003's older name for "a random song");
- ``POST /v1/audio/music/generate`` — seed 001's call: waits for the song and answers with its ``audio_url``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request

from orchestrator.errors import ApiError, validated
from orchestrator.families import ModelChoice, parse_model
from orchestrator.routers.deps import Ctx, MaybeUser, User, body_user, fields_body
from orchestrator.schemas.acestep import MODEL_FAMILIES, JobCreated, MusicGenerateCreate
from orchestrator.schemas.chat import MusicGenerate001
from orchestrator.services import lm_tools, views
from orchestrator.services.chat import wait_job
from orchestrator.services.model_catalog import (
    ResolvedModel,
    checkpoint_entries,
    describe_models,
    forget_catalog,
    lm_entries,
    model_listing,
    resolve_lm,
    resolve_model,
)
from orchestrator.services.model_control import load_versions, missing_versions

logger = logging.getLogger(__name__)
router = APIRouter(tags=["ace-step"])


async def _inventory(ctx: Ctx) -> dict[str, Any]:
    triton_models = await ctx.gateway.models()
    described, error = await describe_models(ctx.gateway, ctx.settings.sampler_model)
    choice = parse_model(ctx.settings.default_model)
    default = ResolvedModel(choice.family, choice.version_set, ctx.settings.default_model)
    if described is not None:
        try:
            default = resolve_model(choice, ctx.settings.default_model, described)
        except ApiError as exc:  # the configured default is not served: listed as configured, the reason logged
            logger.warning("default model %s: %s", ctx.settings.default_model, exc.message)
    sampler_ready = any(
        m.get("name") == ctx.settings.sampler_model and str(m.get("state", "")).upper() == "READY"
        for m in triton_models
    )
    models = checkpoint_entries(described, default, sampler_ready)
    for entry in models:
        if entry["versions"]:
            entry["is_loaded"] = sampler_ready and not missing_versions(entry["versions"], triton_models)
    lms = lm_entries(ctx.settings, triton_models)
    loaded_lm = next((m["name"] for m in lms if m["is_loaded"] and "alias_of" not in m), None)
    return {
        "models": models,
        "default_model": default.name,
        "lm_models": lms,
        "loaded_model": default.name if sampler_ready else None,
        "loaded_lm_model": loaded_lm,
        "llm_initialized": loaded_lm is not None,
        "families": model_listing(described, choice),
        "aliases": sorted(MODEL_FAMILIES),
        "catalog_error": error,
        "triton_models": triton_models,
    }


@router.get("/v1/models")
async def models(ctx: Ctx, user: User) -> dict[str, Any]:
    """The served models under the names clients know; ``families`` describes each family from its facts."""
    return views.wrapped(await _inventory(ctx))


@router.get("/v1/model_inventory")
async def model_inventory(ctx: Ctx, user: User) -> dict[str, Any]:
    return views.wrapped(await _inventory(ctx))


async def _init(request: Request, ctx: Ctx, user: str | None) -> dict[str, Any]:
    body = await fields_body(request, max_fields=64)
    body_user(ctx, user, body)
    name = body.get("model")
    message = "models are served by Triton; nothing to load"
    if isinstance(name, str) and name.strip():
        try:
            choice = parse_model(name)
        except ValueError as exc:
            raise ApiError(422, f"model: {exc}", field="model") from None
        described, error = await describe_models(ctx.gateway, ctx.settings.sampler_model)
        if described is None:
            raise ApiError(503, f"model: the sampler cannot list its version sets ({error})", field="model")
        pinned = ModelChoice(choice.family, choice.version_set, pinned=True)
        resolved = resolve_model(pinned, name, described)
        sets = (described["families"][resolved.family].get("version_sets") or {})
        versions = {str(k): str(v) for k, v in ((sets.get(resolved.version_set) or {}).get("versions") or {}).items()}
        missing = missing_versions(versions, await ctx.gateway.models())
        if missing:
            await load_versions(ctx.settings, missing)
            forget_catalog(ctx.gateway)
            message = f"loaded {resolved.name}: {', '.join(f'{k} v{v}' for k, v in sorted(missing.items()))}"
        else:
            message = f"{resolved.name} is loaded"
    lm_path = body.get("lm_model_path")
    if isinstance(lm_path, str) and lm_path.strip():
        resolve_lm(ctx.settings, await ctx.gateway.models(), lm_model_path=lm_path, lm_backend=None)
    inventory = await _inventory(ctx)
    return {"message": message, **{k: inventory[k] for k in (
        "loaded_model", "loaded_lm_model", "models", "lm_models", "llm_initialized", "default_model")}}


@router.post("/v1/init")
async def init(request: Request, ctx: Ctx, user: MaybeUser) -> dict[str, Any]:
    """``{"model"?, "init_llm"?, "lm_model_path"?}``: reports what is loaded; loads the named version set's networks
    when they are not all READY (Triton model control)."""
    return views.wrapped(await _init(request, ctx, user))


@router.post("/v1/reinitialize")
async def reinitialize(request: Request, ctx: Ctx, user: MaybeUser) -> dict[str, Any]:
    return views.wrapped(await _init(request, ctx, user))


def _number(value: Any, kind: type[int] | type[float]) -> Any:
    if value in (None, ""):
        return None
    try:
        return kind(float(value)) if kind is int else float(value)
    except (TypeError, ValueError):
        return None


@router.post("/format_input")
async def format_input(request: Request, ctx: Ctx, user: MaybeUser) -> dict[str, Any]:
    """Upstream's body: ``prompt``, ``lyrics``, ``temperature``, ``param_obj`` (a JSON string or object with
    duration, bpm, key/key_scale, time_signature, language)."""
    body = await fields_body(request, max_fields=64)
    body_user(ctx, user, body)
    param_obj = body.get("param_obj") or {}
    if isinstance(param_obj, str):
        try:
            param_obj = json.loads(param_obj) if param_obj.strip() else {}
        except ValueError:
            raise ApiError(422, "param_obj: must be a JSON object (or its JSON string)", field="param_obj") from None
    if not isinstance(param_obj, dict):
        raise ApiError(422, "param_obj: must be a JSON object", field="param_obj")
    data = await lm_tools.format_input(
        ctx.gateway,
        ctx.settings,
        prompt=str(body.get("prompt") or "")[:2000],
        lyrics=str(body.get("lyrics") or "")[:10000],
        bpm=_number(param_obj.get("bpm"), int),
        key_scale=str(param_obj.get("key") or param_obj.get("key_scale") or ""),
        time_signature=str(param_obj.get("time_signature") or body.get("time_signature") or ""),
        duration=_number(param_obj.get("duration"), float),
        language=str(param_obj.get("language") or ""),
        temperature=min(2.0, max(0.0, _number(body.get("temperature"), float) or 0.85)),
    )
    return views.wrapped(data)


@router.post("/create_random_sample")
async def create_random_sample(request: Request, ctx: Ctx, user: MaybeUser) -> dict[str, Any]:
    """A random song idea written by the LM (``sample_type`` simple_mode / custom_mode: the same fields)."""
    body = await fields_body(request, max_fields=64)
    body_user(ctx, user, body)
    return views.wrapped(await lm_tools.random_sample(ctx.gateway, ctx.settings))


@router.post("/v1/music/random", response_model=JobCreated)
async def music_random(request: Request, ctx: Ctx, user: MaybeUser) -> JobCreated:
    """A random song: the LM's sample mode writes caption, lyrics and metadata (other fields as in generate)."""
    raw = await fields_body(request, max_fields=64)
    owner = body_user(ctx, user, raw)
    body = validated(MusicGenerateCreate, {**raw, "sample_mode": True})
    job = await ctx.jobs.submit_music(owner=owner, body=body)
    return JobCreated(job_id=job.public_id, queue_position=await ctx.queue_info.position(job.public_id))


@router.post("/v1/audio/music/generate")
async def music_generate_001(request: Request, ctx: Ctx, user: MaybeUser) -> dict[str, Any]:
    """Seed 001: ``{prompt, lyrics, duration, output_format}`` → ``{task_id, status, audio_url, duration_sec,
    created_at}``, answered when the song is done (``wait_seconds``, default 600; then status as it stands, poll
    ``GET /v1/jobs/{task_id}``)."""
    raw = await fields_body(request, max_fields=64)
    owner = body_user(ctx, user, raw)
    spec = validated(MusicGenerate001, raw)
    fields = {"caption": spec.prompt, "lyrics": spec.lyrics, "audio_duration": spec.duration,
              "audio_format": spec.output_format, "model": spec.model}
    body = validated(MusicGenerateCreate, {k: v for k, v in fields.items() if v is not None})
    job = await ctx.jobs.submit_music(owner=owner, body=body)
    job = await wait_job(ctx.sessions, ctx.bus, job, timeout=spec.wait_seconds)
    status = {"succeeded": "completed"}.get(job.status, job.status)
    items = (job.result or {}).get("items") or []
    return {
        "task_id": job.public_id,
        "status": status,
        "audio_url": views.audio_url(ctx.auth, job, items[0]["file"]) if items else None,
        "duration_sec": items[0]["duration"] if items else spec.duration,
        "format": items[0]["format"] if items else spec.output_format,
        "created_at": datetime.fromtimestamp(job.created_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "error": job.error,
    }
