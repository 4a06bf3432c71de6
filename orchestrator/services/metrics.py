"""The orchestrator's Prometheus series (``prometheus-client``), served at ``GET /metrics``.

HTTP requests by route and status come from ``prometheus-fastapi-instrumentator`` (``http_requests_total``,
``http_request_duration_seconds``; see :mod:`orchestrator.routers.metrics`). The series here are the service's own:

- ``tritone_jobs{state}``                 — jobs per status in the database (refreshed with the queue positions);
- ``tritone_queue_depth``                 — claimable jobs waiting; ``tritone_queue_waiting_users`` — their owners;
  ``tritone_queue_depth_by_class{user_class}`` — the waiting jobs by their owner's class (admin, or
  ``TRITONE_USER_CLASSES``, else ``default``);
- ``tritone_worker_slots_busy``           — jobs this process is running;
- ``tritone_jobs_finished_total{kind,outcome}`` — terminal writes by this process;
- ``tritone_stage_duration_seconds{stage,outcome}`` — one observation per stage run (ok, failed, interrupted);
- ``tritone_stage_waits_total{stage}``    — a stage waited for a Triton server to come back instead of failing;
- ``tritone_triton_calls_total{model,server,outcome}`` and ``tritone_triton_failovers_total{model}``;
- ``tritone_triton_server_healthy{server}`` and ``tritone_triton_serving`` (1 while any server is healthy);
- ``tritone_database_errors_total{where}`` — database outages noticed (claims, lease renewals, requests);
- ``tritone_webhook_deliveries_total{event,outcome}``.

``tritone_jobs`` and the queue gauges are database-wide: with several orchestrator processes on one database, chart
them with ``max``, not ``sum``. They live in the process-wide default registry (one orchestrator per process in
production; tests that build several apps share them).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")

JOBS = Gauge("tritone_jobs", "Jobs in the database by status", ["state"])
QUEUE_DEPTH = Gauge("tritone_queue_depth", "Jobs waiting to be claimed (queued, or running with a lapsed lease)")
QUEUE_USERS = Gauge("tritone_queue_waiting_users", "Distinct owners with a job waiting")
QUEUE_BY_CLASS = Gauge(
    "tritone_queue_depth_by_class", "Jobs waiting, by the owner's class (TRITONE_USER_CLASSES)", ["user_class"]
)
SLOTS_BUSY = Gauge("tritone_worker_slots_busy", "Jobs this orchestrator process is running")
JOBS_FINISHED = Counter("tritone_jobs_finished_total", "Jobs this process finished", ["kind", "outcome"])
STAGE_SECONDS = Histogram(
    "tritone_stage_duration_seconds",
    "Wall time of one stage run",
    ["stage", "outcome"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800),
)
STAGE_WAITS = Counter("tritone_stage_waits_total", "Stage retries after no Triton server could serve", ["stage"])
TRITON_CALLS = Counter("tritone_triton_calls_total", "Streaming calls to Triton", ["model", "server", "outcome"])
TRITON_FAILOVERS = Counter("tritone_triton_failovers_total", "Calls moved to another server mid-call", ["model"])
TRITON_HEALTHY = Gauge("tritone_triton_server_healthy", "1 when the Triton server answered ready", ["server"])
TRITON_SERVING = Gauge("tritone_triton_serving", "1 while at least one Triton server is healthy")
DATABASE_ERRORS = Counter("tritone_database_errors_total", "Database outages noticed", ["where"])
WEBHOOKS = Counter("tritone_webhook_deliveries_total", "Webhook deliveries by outcome", ["event", "outcome"])


def set_job_counts(counts: dict[str, int]) -> None:
    for state in JOB_STATES:
        JOBS.labels(state=state).set(counts.get(state, 0))


def webhook_outcome(event: str, outcome: str) -> None:
    """One delivery attempt's outcome: ``delivered``, ``retry`` (will be tried again), ``refused`` (a target the
    policy refuses, or a 4xx), ``gave_up`` (the last attempt failed)."""
    WEBHOOKS.labels(event=event, outcome=outcome).inc()


def set_queue_by_class(owners: list[str], classes: dict[str, str], admins: list[str]) -> None:
    """Waiting jobs per owner class: ``classes`` (user -> class) first, then ``admin`` for admins, else ``default``.
    Classes seen before and now empty are set to 0, so a chart drops to zero instead of keeping its last value."""
    counts: dict[str, int] = {}
    for owner in owners:
        name = classes.get(owner) or ("admin" if owner in admins else "default")
        counts[name] = counts.get(name, 0) + 1
    for name in set(_seen_classes) | set(counts):
        QUEUE_BY_CLASS.labels(user_class=name).set(counts.get(name, 0))
    _seen_classes.update(counts)


_seen_classes: set[str] = set()
