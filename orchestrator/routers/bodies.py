"""Request bodies that may come as JSON, a urlencoded form or multipart with files (``POST /v1/music/generate``,
``POST /v1/stems``): the fields as one dict, the uploads read within ``TRITONE_UPLOAD_MAX_BYTES``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from orchestrator.errors import ApiError
from orchestrator.routers.deps import Ctx, json_object


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str | None


def _form_value(values: list[Any]) -> Any:
    if len(values) > 1:
        return values
    value = values[0]
    if isinstance(value, str) and value.strip().startswith("[") and value.strip().endswith("]"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def body_openapi(
    model: type[BaseModel], files: Mapping[str, str], *, required: bool, urlencoded: bool
) -> dict[str, Any]:
    """The ``openapi_extra`` of a route that reads its body with :func:`read_body`: ``model`` as JSON, as multipart
    with ``files`` (name -> description) as binary fields, and as a urlencoded form where ``urlencoded``."""
    schema = model.model_json_schema(mode="validation")
    multipart = json.loads(json.dumps(schema))
    multipart.setdefault("properties", {}).update(
        {name: {"type": "string", "format": "binary", "description": text} for name, text in files.items()}
    )
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if urlencoded:
        content["application/x-www-form-urlencoded"] = {"schema": json.loads(json.dumps(schema))}
    content["multipart/form-data"] = {"schema": multipart}
    return {"requestBody": {"required": required, "content": content}}


async def _read_upload(ctx: Ctx, name: str, upload: UploadFile) -> bytes:
    limit = ctx.settings.upload_max_bytes
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, f"{name}: the upload is larger than the limit of {limit} bytes", field=name)
    return data


async def read_body(
    request: Request, ctx: Ctx, *, upload_fields: Mapping[str, str], max_files: int = 4
) -> tuple[dict[str, Any], dict[str, Upload]]:
    """``(fields, uploads)``: a file field's name maps through ``upload_fields`` (aliases → the name used); a file
    under any other name, or an upload field sent as text, is a 422 naming it."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    uploads: dict[str, Upload] = {}
    raw: dict[str, Any]
    if content_type in ("", "application/json") or content_type.endswith("+json"):
        raw = await json_object(request)
    elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            form = await request.form(max_files=max_files, max_fields=256)
        except Exception as exc:  # starlette raises on malformed multipart bodies
            raise ApiError(422, f"body: could not parse the form ({exc})", field="body") from None
        raw = {}
        for key in set(form.keys()):
            values = form.getlist(key)
            files = [v for v in values if isinstance(v, UploadFile)]
            if files:
                if key not in upload_fields:
                    names = " or ".join(sorted(set(upload_fields.values())))
                    raise ApiError(422, f"{key}: unexpected file field (use {names})", field=key)
                data = await _read_upload(ctx, key, files[0])
                uploads[upload_fields[key]] = Upload(data, files[0].filename)
                continue
            texts = [v for v in values if isinstance(v, str) and v != ""]
            if texts:
                raw[key] = _form_value(texts)
    else:
        raise ApiError(
            415,
            f"unsupported Content-Type {content_type!r}: send application/json, application/x-www-form-urlencoded "
            "or multipart/form-data",
        )
    for key in list(raw):
        if key in upload_fields and isinstance(raw[key], str):
            raise ApiError(422, f"{key}: must be uploaded as a file (multipart/form-data)", field=key)
    return raw, uploads
