"""The one error type routes and services raise for a client's mistake, rendered as the song API's envelope:
``{"code": 422, "data": null, "error": {"message": "...", "field": "duration_hint"}, "detail": "..."}``.
(``detail`` repeats the message for clients of the ACE-Step API, whose errors carry it there.)"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, *, field: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = dict(headers or {})


def error_body(status: int, message: str, field: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message}
    if field is not None:
        error["field"] = field
    return {"code": status, "data": None, "error": error, "detail": message}


_SKIP_LOC = {"body", "query", "path", "header", "cookie", "form"}


def validation_error(errors: Sequence[Mapping[str, Any]], model: type | None = None) -> ApiError:
    """A 422 naming the first invalid field, what was wrong and the allowed values (from the model's schema)."""
    from orchestrator.schemas.common import describe_field

    if not errors:
        return ApiError(422, "the request is invalid")
    first = errors[0]
    loc = [part for part in first.get("loc", ()) if not (isinstance(part, str) and part in _SKIP_LOC)]
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    field = next((str(p) for p in loc if isinstance(p, str)), None)
    if field is None and ":" in message:
        # model-level checks say "<field>: <problem>"
        head, _, rest = message.partition(":")
        if head.isidentifier():
            field, message = head, rest.strip()
    if first.get("type") == "missing":
        message = "field required"
    elif first.get("type") == "extra_forbidden":
        message = "unknown field"
    where = ".".join(str(p) for p in loc) if loc else (field or "body")
    text = f"{where}: {message}"
    if field is not None and model is not None and first.get("type") != "extra_forbidden":
        allowed = describe_field(model, field)  # type: ignore[arg-type]
        if allowed:
            text = f"{text} ({allowed})"
    return ApiError(422, text, field=field or "body")


def validated(model: type[ModelT], data: Any) -> ModelT:
    """``model.model_validate(data)``; invalid data is the 422 of :func:`validation_error` (naming the field)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc.errors(), model) from None
