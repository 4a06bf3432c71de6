"""The orchestrator's configuration: one ``Settings`` object, read from ``TRITONE_*`` environment variables.

This is the only module that reads the environment. Everything else receives a ``Settings`` instance (the app factory
keeps it on ``app.state.settings``), so tests build their own without touching ``os.environ``.

Lists and mappings are given as JSON in the environment, e.g.
``TRITONE_TRITON_URLS='["10.0.0.5:8001","10.0.0.6:8001"]'`` or
``TRITONE_USERS='{"alice":"pbkdf2_sha256$..."}'`` (make a hash with ``python -m orchestrator.services.auth hash``).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.families import MAX_BATCH, parse_model

COVER_ASPECT_CHOICES = ("1:1", "3:4", "4:3", "9:16", "16:9")
# The Producer API's model names (seed 002) -> the model each runs on by default (TRITONE_PRODUCER_MODELS replaces it).
# Upstream names, not pinned sets: a set this deployment does not serve runs on the family's default set, and the
# answer's model report says so.
PRODUCER_MODELS = {
    "FUZZ-2.0 Pro": "acestep-v15-sft",
    "FUZZ-2.0": "acestep-v15-turbo",
    "FUZZ-2.0 Raw": "acestep-v15-base",
    "FUZZ-1.1 Pro": "ACE-Step-v1-3.5B",
    "FUZZ-1.1": "ACE-Step-v1-3.5B",
    "FUZZ-1.0 Pro": "ACE-Step-v1-3.5B",
    "FUZZ-1.0": "ACE-Step-v1-3.5B",
    "FUZZ-0.8": "ACE-Step-v1-3.5B",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRITONE_", extra="ignore")

    # --- storage -----------------------------------------------------------------------------------------------------
    data_dir: Path = Field(default=Path("data"), description="audio, covers, uploads and the default SQLite file")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; None = sqlite+aiosqlite:///<data_dir>/tritone.db. "
        "PostgreSQL: postgresql+asyncpg://user@host:5432/db",
    )
    database_pool_size: int = Field(default=10, ge=1, le=200)

    # --- Triton ------------------------------------------------------------------------------------------------------
    triton_urls: list[str] = Field(default_factory=lambda: ["127.0.0.1:8001"], description="gRPC host:port list")
    triton_concurrency: int = Field(default=2, ge=0, le=64, description="jobs this process runs at once (0 = API only)")
    triton_health_interval_s: float = Field(default=2.0, gt=0)
    triton_max_attempts: int = Field(default=3, ge=1, le=10, description="servers tried per stage before failing")
    lyricist_model: str = "lyricist"
    lm_model: str = "lm"
    lm_aliases: dict[str, str] = Field(
        default_factory=dict,
        description="names clients send as lm_model_path / lm_backend -> a served LM ('lm' or 'lm:<version>'), "
        'e.g. {"acestep-5Hz-lm-1.7B": "lm:2"}; upstream\'s own LM names and backends (pt, vllm, mlx) run on the '
        "served LM otherwise (reported as a fallback); other names are refused (422)",
    )
    sampler_model: str = "sampler"
    separator_model: str = "separator"

    # --- stages ------------------------------------------------------------------------------------------------------
    lyrics_timeout_s: float = Field(default=600.0, gt=0)
    metadata_timeout_s: float = Field(default=600.0, gt=0)
    audio_timeout_s: float = Field(default=1800.0, gt=0)
    post_timeout_s: float = Field(default=300.0, gt=0)
    separate_timeout_s: float = Field(default=1800.0, gt=0, description="the stems job's separation stage")
    enable_lyricist: bool = Field(
        default=True,
        # Seed 000's deployment switch is honoured as an alias; TRITONE_ENABLE_LYRICIST wins when both are set.
        validation_alias=AliasChoices("enable_lyricist", "TRITONE_ENABLE_LYRICIST", "ACESTEP_ENABLE_LYRICIST"),
        description="False: the song API answers 503 for sung songs (also ACESTEP_ENABLE_LYRICIST)",
    )
    default_model: str = Field(
        default="acestep15",
        description="the song model when a request names none: acestep15 | acestep_v1 | <family>:<version set> "
        "(e.g. acestep15:sft) | an upstream name (acestep-v15-turbo, ACE-Step-v1-3.5B)",
    )

    # --- queue -------------------------------------------------------------------------------------------------------
    queue_max: int = Field(default=200, ge=1, description="queued + running jobs before POST answers 429")
    job_lease_s: float = Field(default=30.0, gt=1, description="a running job whose lease lapses is re-queued")
    job_max_attempts: int = Field(default=3, ge=1, description="interrupted runs before a job is failed")
    claim_poll_s: float = Field(default=0.5, gt=0, description="how often idle workers look for queued jobs")
    default_job_seconds: float = Field(default=180.0, gt=0, description="eta estimate before any job was measured")

    # --- auth --------------------------------------------------------------------------------------------------------
    users: dict[str, str] = Field(default_factory=dict, description="username -> pbkdf2_sha256 password hash")
    api_keys: dict[str, str] = Field(default_factory=dict, description="API key -> username")
    jwt_secret: str | None = Field(default=None, description="None = a random secret kept in <data_dir>/secret")
    token_ttl_s: int = Field(default=3600, ge=1)
    signed_url_ttl_s: int = Field(default=3600, ge=1)
    auth: Literal["required", "none"] = Field(
        default="required",
        description="none: no credentials, every request runs as auth_open_user — single-user machines only; the "
        "app refuses to start unless listen_host is loopback or auth_open_allow_public is set",
    )
    auth_open_user: str = Field(default="local", min_length=1, max_length=64)
    auth_open_allow_public: bool = Field(default=False, description="allow auth=none on a non-loopback listen_host")
    listen_host: str = Field(default="127.0.0.1", description="the address the server binds (tritone serve sets it)")

    # --- webhooks ----------------------------------------------------------------------------------------------------
    allow_private_callbacks: bool = Field(default=False, description="allow callback_url on loopback/private hosts")
    webhook_secret: str | None = Field(default=None, description="HMAC key for callbacks; None = derived from jwt")
    webhook_max_attempts: int = Field(default=5, ge=1, le=20)
    webhook_backoff_s: float = Field(default=0.5, gt=0, description="first retry delay; doubles per attempt")
    webhook_timeout_s: float = Field(default=10.0, gt=0)

    # --- inputs ------------------------------------------------------------------------------------------------------
    audio_path_root: Path | None = Field(default=None, description="the only directory *_path fields may point into")
    upload_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1)

    # --- hardening (issue 14): bodies, rates, per-user caps, storage lifecycle ----------------------------------------
    json_body_max_bytes: int = Field(default=256 * 1024, ge=1024, description="JSON/form bodies, counted as streamed")
    json_max_depth: int = Field(default=32, ge=2, le=1000, description="deepest nesting a JSON body may have")
    login_rate: str = Field(default="10/minute", description="login attempts per username and per client address")
    submit_rate: str = Field(default="30/minute", description="job submissions per user (limits syntax)")
    request_rate: str = Field(default="3000/minute", description="authenticated API requests per user (limits syntax)")
    rate_limit_storage: str = Field(
        default="memory://",
        description="where the rate-limit windows live: memory:// (per process) or redis://host:6379 (shared by "
        "every orchestrator process, so N processes still allow the configured rate once)",
    )
    user_queue_max: int = Field(default=20, ge=1, description="queued + running jobs one user may have")
    admin_users: list[str] = Field(default_factory=list, description="users who see global /v1/stats and /health")
    user_classes: dict[str, str] = Field(
        default_factory=dict,
        description='user -> class name for the per-class queue metrics (e.g. {"alice": "pro"}); others are '
        "'admin' (admin_users) or 'default'",
    )
    webhook_secrets: dict[str, str] = Field(
        default_factory=dict, description="user -> callback signing secret; others get one derived per user"
    )
    stream_token_ttl_s: int = Field(default=300, ge=10, le=86400, description="life of a ?access_token= URL token")
    retention_s: float = Field(default=7 * 86400.0, ge=0, description="job files kept after a job ends; 0 = forever")
    sweep_interval_s: float = Field(default=600.0, gt=0, description="how often the retention sweeper runs")
    user_storage_max_bytes: int = Field(
        default=5 * 1024**3, ge=0, description="per-user job and clip files; 0 = no quota"
    )
    clip_retention_days: float = Field(
        default=30.0, ge=0, description="clips (rows + files) kept this many days after they were made; 0 = forever"
    )
    outbox_poll_s: float = Field(default=1.0, gt=0, description="how often the webhook outbox looks for due events")

    # --- cover art ---------------------------------------------------------------------------------------------------
    cover_api_url: str | None = Field(default=None, description="external image API; None = built-in renderer")
    cover_default_aspect: Literal["1:1", "3:4", "4:3", "9:16", "16:9"] = "1:1"
    cover_timeout_s: float = Field(default=60.0, gt=0)
    # Tags in every delivered audio file (orchestrator/media/tags.py)
    tag_artist: str = Field(default="Tritone", max_length=200, description="the ARTIST / TPE1 tag of every file")
    tag_album: str = Field(default="Tritone", max_length=200, description="the ALBUM / TALB tag of every file")

    # --- API ---------------------------------------------------------------------------------------------------------
    poll_interval_sec: int = Field(default=5, ge=1, description="the song API's advised polling interval")
    default_batch_size: int = Field(default=1, ge=1, le=MAX_BATCH)
    samples_dir: Path | None = Field(
        default=None, description="the page's samples: audio files (+ optional samples.json with titles); None = none"
    )

    public_url: str | None = Field(
        default=None,
        description="this service's public base URL (https://music.example.com): absolute file links in callbacks "
        "and Producer answers; None = the request's own base URL (callbacks: relative links)",
    )

    # --- the Producer API (seed 002, docs/producer.md) ----------------------------------------------------------------
    producer_models: dict[str, str] = Field(
        default_factory=lambda: dict(PRODUCER_MODELS),
        description="the Producer API's model names -> a served model (family, upstream name or "
        "<family>:<version set>), as JSON; the default maps the FUZZ-2.0 names onto ACE-Step 1.5 (Pro: sft, "
        "plain: turbo, Raw: base) and the older names onto ACE-Step v1",
    )
    producer_default_model: str = Field(default="FUZZ-2.0", description="the Producer model when a request names none")
    producer_wait_s: float = Field(
        default=300.0,
        ge=0,
        le=3600,
        description="how long POST /producer/audios without callback_url waits for the result; past it the answer "
        "shows the items still running (poll POST /producer/tasks)",
    )
    producer_duration_s: float | None = Field(
        default=None,
        ge=10,
        le=600,
        description="length of a Producer generate's songs in seconds (the seed has no such field); None = the "
        "lyricist's / LM's choice",
    )
    producer_inference_steps: int | None = Field(
        default=None, ge=1, le=200, description="DiT steps of a Producer generate; None = the model's default"
    )
    producer_audio_format: Literal["flac", "wav", "wav32", "mp3"] = Field(
        default="mp3", description="the audio_url files of the Producer API"
    )
    producer_fetch_max_bytes: int = Field(
        default=50 * 1024 * 1024, ge=1, description="the largest audio_url POST /producer/upload fetches"
    )
    producer_fetch_timeout_s: float = Field(default=30.0, gt=0, description="time to fetch an upload's audio_url")

    # --- operations (issue 14): outages, shutdown, metrics, the locked-down Triton -----------------------------------
    outage_backoff_max_s: float = Field(default=5.0, gt=0, description="longest wait between retries in an outage")
    shutdown_grace_s: float = Field(default=10.0, gt=0, description="seconds a graceful shutdown may take in all")
    metrics_token: str | None = Field(default=None, description="bearer token /metrics requires; None = open")
    triton_restricted_key: str | None = Field(
        default=None, description="NAME=VALUE header for Triton's restricted model-repository API (see compose.yaml)"
    )

    @field_validator("default_model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        return parse_model(value).id

    @field_validator("producer_models")
    @classmethod
    def _producer_models(cls, value: dict[str, str]) -> dict[str, str]:
        for name, model in value.items():
            try:
                parse_model(model)
            except ValueError as exc:
                raise ValueError(f"TRITONE_PRODUCER_MODELS[{name!r}]: {exc}") from None
        return value

    @model_validator(mode="after")
    def _producer_default(self) -> Settings:
        if self.producer_default_model not in self.producer_models:
            raise ValueError(
                f"TRITONE_PRODUCER_DEFAULT_MODEL={self.producer_default_model!r} is not one of "
                f"TRITONE_PRODUCER_MODELS ({', '.join(self.producer_models)})"
            )
        return self

    @property
    def default_model_family(self) -> str:
        return parse_model(self.default_model).family

    @field_validator("triton_urls")
    @classmethod
    def _strip_schemes(cls, urls: list[str]) -> list[str]:
        cleaned = [u.removeprefix("grpc://").removeprefix("http://").strip().rstrip("/") for u in urls]
        cleaned = [u for u in cleaned if u]
        return cleaned

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'tritone.db').resolve()}"

    def resolved_jwt_secret(self) -> str:
        """The token-signing key: configured, or made once per data directory (so restarts keep tokens valid)."""
        if self.jwt_secret:
            return self.jwt_secret
        path = self.data_dir / "secret"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        candidate = secrets.token_urlsafe(48)
        tmp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        tmp.write_text(candidate)
        tmp.chmod(0o600)
        try:
            # Two processes starting together must agree on one secret: the first link wins.
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        return path.read_text().strip()
