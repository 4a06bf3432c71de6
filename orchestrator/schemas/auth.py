"""``POST /auth/login``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.schemas.common import Text


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Text = Field(min_length=1, max_length=128)
    password: Text = Field(min_length=1, max_length=1024)


class TokenPublic(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class UrlTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    job_id: str = Field(min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$", description="the job (intent id)")
    purpose: Literal["events", "files"] = Field(description="events: its SSE stream; files: its result files")


class UrlTokenPublic(BaseModel):
    access_token: str = Field(description="put it in ?access_token= of that job's URLs; nothing else accepts it")
    purpose: Literal["events", "files"]
    expires_in: int


class WebhookSecretPublic(BaseModel):
    secret: str = Field(description="verify X-Tritone-Signature of your callbacks with this key")
