"""How a clip row is shown (:class:`~orchestrator.schemas.clips.ClipPublic`), with signed links to its files under
``/v1/clips/{id}/files/{name}`` (signed over ``clips/<id>/<name>``, so a job's link never opens a clip's file)."""

from __future__ import annotations

from orchestrator.db import Clip
from orchestrator.schemas.clips import ClipPublic
from orchestrator.services.auth import AuthService


def clip_file_key(clip_id: str, name: str) -> str:
    """What a clip file's signed link signs."""
    return f"clips/{clip_id}/{name}"


def clip_file_url(auth: AuthService, clip: Clip, name: str) -> str:
    return f"/v1/clips/{clip.public_id}/files/{name}?{auth.signed_query(clip_file_key(clip.public_id, name))}"


def served_files(clip: Clip) -> set[str]:
    """The clip's files its routes serve (its latents stay internal: edits read them on the server)."""
    return {name for name in (clip.audio_file, clip.source_file, clip.cover_file, clip.lrc_file) if name}


def clip_public(auth: AuthService, clip: Clip) -> ClipPublic:
    extra = clip.extra or {}
    return ClipPublic(
        id=clip.public_id,
        origin=clip.origin,  # type: ignore[arg-type]
        action=clip.action,
        parent_id=clip.parent_id,
        job_id=clip.job_id,
        item_index=clip.item_index,
        title=clip.title,
        lyrics=clip.lyrics,
        caption=clip.caption,
        model=clip.model,
        seed=clip.seed,
        duration=clip.duration,
        bpm=clip.bpm,
        key_scale=clip.key_scale,
        time_signature=extra.get("time_signature"),
        audio_format=clip.audio_format,
        audio_url=clip_file_url(auth, clip, clip.audio_file),
        source_url=clip_file_url(auth, clip, clip.source_file),
        cover_url=clip_file_url(auth, clip, clip.cover_file) if clip.cover_file else None,
        lrc_url=clip_file_url(auth, clip, clip.lrc_file) if clip.lrc_file else None,
        has_latents=clip.latents_file is not None,
        latent_shape=extra.get("latent_shape"),
        family=extra.get("family"),
        version_set=extra.get("version_set"),
        size_bytes=clip.size_bytes,
        created_at=clip.created_at,
    )
