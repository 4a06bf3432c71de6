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
