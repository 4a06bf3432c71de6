"""What a job's final callback carries: its result as the job's own API shows it (item URLs, lyrics, metadata), so a
callback user never has to poll.

- ``song`` jobs: ``result`` is the song API's status object (``GET /v1/song/status``'s ``data``);
- ``music`` jobs: the ACE-Step API's result (``GET /v1/jobs/{id}``'s ``result``) plus ``title``, ``metadata`` and
  ``items`` (one per audio file: ``audio_url``, ``file``, ``format``, ``duration``, ``seed``, lyric timing);
- ``stems`` jobs: the stems result (``GET /v1/jobs/{id}``'s ``result``: each stem's ``name`` and ``url``, ``zip_url``);
- other kinds: ``title``, ``metadata``, ``lyrics``, ``caption``, ``cover_url`` and ``items`` from the job's result.

A job whose params name a ``callback_format`` that an API registered (:meth:`CallbackPayloads.register`; the Producer
API's) gets that format's body instead, and only its final event (``quiet``): clients of such an API expect one
POST with the result, not Tritone's stage events. Links are signed (``TRITONE_SIGNED_URL_TTL_S``) and absolute when
``TRITONE_PUBLIC_URL`` is set.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from orchestrator.db import Job
from orchestrator.services import acestep_views, views
from orchestrator.services.auth import AuthService
from orchestrator.services.stems_views import stems_result
from orchestrator.settings import Settings

# (the finished job) -> its final callback's payload (merged into the webhook body)
Formatter = Callable[[Job], Awaitable[dict[str, Any]]]


def absolute(settings: Settings, link: str | None) -> str | None:
    """``link`` under ``TRITONE_PUBLIC_URL`` when it is relative and a public URL is configured."""
    if link is None or not settings.public_url or not link.startswith("/"):
        return link
    return settings.public_url.rstrip("/") + link


def result_items(job: Job, auth: AuthService, settings: Settings) -> list[dict[str, Any]]:
    """One entry per audio file of a finished job, with its signed link and lyric timing."""
    items = []
    for item in (job.result or {}).get("items", []):
        entry = {k: item.get(k) for k in ("index", "file", "format", "duration", "seed") if k in item}
        if "clip_id" in item:
            entry["clip_id"] = item["clip_id"]
        entry["audio_url"] = absolute(settings, views.file_url(auth, job, item["file"]))
        timing = views.item_timing(auth, job, item).model_dump()
        timing["lrc_url"] = absolute(settings, timing["lrc_url"])
        items.append(entry | timing)
    return items


class CallbackPayloads:
    def __init__(self, auth: AuthService, settings: Settings) -> None:
        self._auth = auth
        self._settings = settings
        self._formats: dict[str, Formatter] = {}

    def register(self, name: str, formatter: Formatter) -> None:
        """Jobs whose params say ``callback_format: name`` get ``formatter``'s body as their only callback."""
        self._formats[name] = formatter

    def quiet(self, params: Mapping[str, Any] | None) -> bool:
        """True for jobs whose callback format sends the final event only."""
        return (params or {}).get("callback_format") in self._formats

    async def terminal(self, job: Job) -> tuple[str, dict[str, Any]]:
        """The final event of a finished ``job``: ``(event, payload)`` — ``done`` / ``failed`` / ``status``."""
        event = {"succeeded": "done", "failed": "failed"}.get(job.status, "status")
        formatter = self._formats.get((job.params or {}).get("callback_format") or "")
        if formatter is not None:
            return event, {"status": job.status} | await formatter(job)
        if job.status == "succeeded":
            return event, {"status": "succeeded", "result": await self.result(job)}
        if job.status == "failed":
            return event, {"status": "failed", "error": job.error}
        return event, {"status": job.status}

    async def result(self, job: Job) -> dict[str, Any]:
        auth, settings = self._auth, self._settings
        if job.kind == "song":
            status = (await views.song_status(job, queue_info=None, auth=auth)).model_dump()
            for item in status["items"]:
                item["audio_url"] = absolute(settings, item["audio_url"])
                item["lrc_url"] = absolute(settings, item["lrc_url"])
            status["cover_url"] = absolute(settings, status["cover_url"])
            return status
        stems = stems_result(job, auth) if job.kind == "stems" else None
        if stems is not None:  # each stem's name and link, and the zip's
            shown = stems.model_dump()
            shown["zip_url"] = absolute(settings, shown["zip_url"])
            for stem in shown["items"]:
                stem["url"] = absolute(settings, stem["url"])
            return shown
        result = job.result or {}
        cover = result.get("cover")
        summary = {
            "title": result.get("title"),
            "metadata": result.get("metadata"),
            "lyrics": result.get("lyrics"),
            "caption": result.get("caption"),
            "cover_url": absolute(settings, views.file_url(auth, job, cover)) if cover else None,
            "items": result_items(job, auth, settings),
        }
        if job.kind == "music":
            public = acestep_views.job_result(job, auth)
            if public is not None:
                shown = public.model_dump()
                shown["audio_paths"] = [absolute(settings, p) for p in shown["audio_paths"]]
                shown["first_audio_path"] = absolute(settings, shown["first_audio_path"])
                shown["second_audio_path"] = absolute(settings, shown["second_audio_path"])
                return shown | summary
        return summary
