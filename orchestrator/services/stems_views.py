"""How a stems job's result is shown (``GET /v1/jobs/{job_id}``, its ``done`` event): each stem's signed link and
the zip's."""

from __future__ import annotations

from orchestrator.db import Job
from orchestrator.schemas.stems import StemFile, StemsResultPublic, StemsSource
from orchestrator.services.auth import AuthService
from orchestrator.services.views import file_url


def stems_result(job: Job, auth: AuthService) -> StemsResultPublic | None:
    if job.status != "succeeded" or not job.result:
        return None
    result = job.result
    rate = int(result["sample_rate"])
    source = dict(result.get("source") or {})
    return StemsResultPublic(
        stems=int(result["stems"]),
        method=str(result.get("method") or "demucs"),
        items=[
            StemFile(
                name=item["name"],
                file=item["file"],
                url=file_url(auth, job, item["file"]),
                sample_rate=rate,
                duration=float(item["duration"]),
                clip_id=item.get("clip_id"),
            )
            for item in result["items"]
        ],
        zip_url=file_url(auth, job, result["zip"]),
        zip_file=result["zip"],
        sample_rate=rate,
        duration=float(result["duration"]),
        checkpoint=result.get("checkpoint"),
        source=StemsSource.model_validate({k: source.get(k) for k in StemsSource.model_fields}),
    )
