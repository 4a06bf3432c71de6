"""The page's code examples (curl, Python httpx, JavaScript fetch) for one song request, and the AI-integration
prompt, both generated from the live OpenAPI schema and settings (``tests/orchestrator/web`` runs the snippets
against a live server and checks every field and status the prompt names)."""

from __future__ import annotations

import json
import math
import pprint
import re
from typing import Any

from orchestrator.services.site import error_codes, request_fields, song_statuses
from orchestrator.settings import Settings

TERMINAL = ("succeeded", "failed", "cancelled")
SSE_EVENTS = ("status", "lyrics", "progress", "warning", "done", "failed")
_EXT = {"flac": "flac", "wav": "wav", "wav32": "wav", "mp3": "mp3"}


_TOKEN, _INTENT, _STATUS = '["access_token"]', '["data"]["intent_id"]', '["data"]["status"]'


def _pick(path: str) -> str:
    """A shell filter printing one JSON value (python3 -c, so the example needs no jq)."""
    return f"python3 -c 'import json,sys; print(json.load(sys.stdin){path})'"


def _python_literal(body: dict[str, Any]) -> str:
    return pprint.pformat(body, indent=4, width=100, sort_dicts=False)


def curl_example(base: str, body: dict[str, Any], *, auth: str = "login") -> str:
    """A bash script: log in (or use the key), create, poll, download every item."""
    header = '-H "X-API-Key: $TRITONE_API_KEY"' if auth == "api_key" else '-H "Authorization: Bearer $TOKEN"'
    login = (
        "# an API key (TRITONE_API_KEYS on the server) needs no login\n"
        if auth == "api_key"
        else "# 1. log in: a bearer token for the next calls\n"
        'TOKEN=$(curl -sf -X POST "$BASE/auth/login" -H "Content-Type: application/json" \\\n'
        '  -d "{\\"username\\": \\"$TRITONE_USER\\", \\"password\\": \\"$TRITONE_PASSWORD\\"}" \\\n'
        f"  | {_pick(_TOKEN)})\n"
    )
    ext = _EXT.get(str(body.get("audio_format", "flac")), "flac")
    return (
        f'BASE="${{TRITONE_URL:-{base}}}"\n'
        f"{login}\n"
        "# 2. create the song: the answer comes at once with an intent_id\n"
        f'INTENT=$(curl -sf -X POST "$BASE/v1/song/create" {header} -H "Content-Type: application/json" \\\n'
        f"  --data-binary @- <<'JSON' | {_pick(_INTENT)}\n"
        f"{json.dumps(body, ensure_ascii=False, indent=2)}\n"
        "JSON\n"
        ")\n"
        'echo "intent_id: $INTENT"\n\n'
        "# 3. follow it: poll the status (live lyrics and progress also stream from\n"
        f'#    curl -N "$BASE/v1/song/events?intent_id=$INTENT" {header})\n'
        "while :; do\n"
        f'  STATUS_JSON=$(curl -sf "$BASE/v1/song/status?intent_id=$INTENT" {header})\n'
        f"  STATUS=$(printf '%s' \"$STATUS_JSON\" | {_pick(_STATUS)})\n"
        '  echo "status: $STATUS"\n'
        '  case "$STATUS" in succeeded) break ;; failed|cancelled) echo "$STATUS_JSON"; exit 1 ;; esac\n'
        "  sleep ${POLL_SECONDS:-5}\n"
        "done\n\n"
        "# 4. download every item (the audio URLs are signed: no header needed)\n"
        'printf \'%s\' "$STATUS_JSON" | python3 -c \'import json,sys; [print(i["index"] + 1, i["audio_url"]) '
        'for i in json.load(sys.stdin)["data"]["items"]]\' |\n'
        "while read -r N URL; do\n"
        f'  curl -sf -o "song-$N.{ext}" "$BASE$URL" && echo "saved song-$N.{ext}"\n'
        "done\n"
    )


def python_example(base: str, body: dict[str, Any], *, auth: str = "login") -> str:
    """A Python (httpx) script: log in (or use the key), create, poll, download."""
    login = (
        '    client.headers["X-API-Key"] = os.environ["TRITONE_API_KEY"]\n'
        if auth == "api_key"
        else "    # 1. log in: a bearer token for the next calls\n"
        '    login = {"username": os.environ["TRITONE_USER"], "password": os.environ["TRITONE_PASSWORD"]}\n'
        '    token = client.post("/auth/login", json=login).raise_for_status().json()["access_token"]\n'
        '    client.headers["Authorization"] = f"Bearer {token}"\n'
    )
    body_text = _python_literal(body).replace("\n", "\n    ")
    return (
        "import os\n"
        "import time\n"
        "from pathlib import Path\n\n"
        "import httpx\n\n"
        f'BASE = os.environ.get("TRITONE_URL", "{base}")\n\n'
        "with httpx.Client(base_url=BASE, timeout=60) as client:\n"
        f"{login}\n"
        "    # 2. create the song: the answer comes at once with an intent_id\n"
        f"    body = {body_text}\n"
        '    created = client.post("/v1/song/create", json=body).raise_for_status().json()["data"]\n'
        '    intent_id, every = created["intent_id"], created["next_step"]["poll_interval_sec"]\n'
        '    every = float(os.environ.get("POLL_SECONDS", every))\n\n'
        "    # 3. follow it (live lyrics and progress also stream as server-sent events:\n"
        '    #    client.stream("GET", "/v1/song/events", params={"intent_id": intent_id}))\n'
        "    while True:\n"
        '        status = client.get("/v1/song/status", params={"intent_id": intent_id})\n'
        '        data = status.raise_for_status().json()["data"]\n'
        '        print(data["status"], data["progress"])\n'
        f'        if data["status"] in {TERMINAL!r}:\n'
        "            break\n"
        "        time.sleep(every)\n"
        '    if data["status"] != "succeeded":\n'
        "        raise SystemExit(f\"song {data['status']}: {data['error']}\")\n\n"
        "    # 4. download every item (signed URLs)\n"
        '    print("lyrics:", data["lyrics"])\n'
        '    for item in data["items"]:\n'
        "        name = f\"song-{item['index'] + 1}." + _EXT.get(str(body.get("audio_format", "flac")), "flac") + '"\n'
        '        Path(name).write_bytes(client.get(item["audio_url"]).raise_for_status().content)\n'
        '        print("saved", name, "seed", item["seed"])\n'
    )


def javascript_example(base: str, body: dict[str, Any], *, auth: str = "login") -> str:
    """JavaScript (fetch; a browser or Node 18+): log in (or use the key), create, poll, download."""
    login = (
        'const headers = { "Content-Type": "application/json", "X-API-Key": process.env.TRITONE_API_KEY };\n'
        if auth == "api_key"
        else "// 1. log in: a bearer token for the next calls\n"
        'const login = await fetch(`${BASE}/auth/login`, {\n  method: "POST",\n'
        '  headers: { "Content-Type": "application/json" },\n'
        "  body: JSON.stringify({ username: process.env.TRITONE_USER, password: process.env.TRITONE_PASSWORD }),\n"
        "});\n"
        "if (!login.ok) throw new Error(`login: ${login.status} ${await login.text()}`);\n"
        "const { access_token } = await login.json();\n"
        'const headers = { "Content-Type": "application/json", Authorization: `Bearer ${access_token}` };\n'
    )
    ext = _EXT.get(str(body.get("audio_format", "flac")), "flac")
    return (
        f'const BASE = process.env.TRITONE_URL ?? "{base}";\n'
        f"{login}\n"
        "// 2. create the song: the answer comes at once with an intent_id\n"
        f"const body = {json.dumps(body, ensure_ascii=False, indent=2)};\n"
        "const created = await fetch(`${BASE}/v1/song/create`,\n"
        '  { method: "POST", headers, body: JSON.stringify(body) });\n'
        "if (!created.ok) throw new Error(`create: ${created.status} ${await created.text()}`);\n"
        "const { data: { intent_id, next_step } } = await created.json();\n\n"
        "// 3. follow it (live lyrics and progress also stream from /v1/song/events?intent_id=…, server-sent events)\n"
        "let data;\n"
        "for (;;) {\n"
        "  const r = await fetch(`${BASE}/v1/song/status?intent_id=${encodeURIComponent(intent_id)}`, { headers });\n"
        "  data = (await r.json()).data;\n"
        "  console.log(data.status, data.progress);\n"
        f"  if ({json.dumps(list(TERMINAL))}.includes(data.status)) break;\n"
        "  await new Promise((ok) => setTimeout(ok, next_step.poll_interval_sec * 1000));\n"
        "}\n"
        'if (data.status !== "succeeded") throw new Error(`song ${data.status}: ${data.error}`);\n\n'
        "// 4. download every item (signed URLs; in a browser an <a href download> does the same)\n"
        "for (const item of data.items) {\n"
        "  const audio = new Uint8Array(await (await fetch(`${BASE}${item.audio_url}`)).arrayBuffer());\n"
        f'  console.log(`song-${{item.index + 1}}.{ext}`, audio.length, "bytes, seed", item.seed);\n'
        "}\n"
    )


def code_examples(base: str, body: dict[str, Any], *, auth: str = "login") -> dict[str, str]:
    return {
        "curl": curl_example(base, body, auth=auth),
        "python": python_example(base, body, auth=auth),
        "javascript": javascript_example(base, body, auth=auth),
    }


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate: one token per CJK character, about four characters per token otherwise."""
    cjk = len(re.findall(r"[\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]", text))
    return cjk + math.ceil((len(text) - cjk) / 4)


def _field_line(row: dict[str, Any]) -> str:
    parts = [f"- `{row['name']}` ({row['type']}"]
    parts.append(", required" if row["required"] else f", default {json.dumps(row['default'], ensure_ascii=False)}")
    if row["range"]:
        parts.append(f", range {row['range']}")
    if row["enum"]:
        parts.append(f", one of {' | '.join(str(v) for v in row['enum'])}")
    line = "".join(parts) + ")"
    return f"{line}: {row['description']}" if row["description"] else line


def ai_prompt(openapi: dict[str, Any], settings: Settings, base: str) -> dict[str, Any]:
    """One text that tells a coding assistant everything to integrate, and its (estimated) token count."""
    fields = request_fields(openapi)
    statuses = song_statuses(openapi)
    errors = error_codes(openapi, settings)
    sample_request = {"theme": "周末骑单车去看海 风把白衬衫吹起来", "style": "sunny pop", "audio_format": "mp3"}
    sample_created = {
        "code": 200,
        "data": {
            "intent_id": "6f1c…-uuid",
            "status": statuses[0] if statuses else "lyrics_pending",
            "next_step": {
                "method": "GET",
                "url": "/v1/song/status?intent_id=6f1c…",
                "poll_interval_sec": settings.poll_interval_sec,
            },
        },
        "error": None,
    }
    sample_done = {
        "code": 200,
        "data": {
            "intent_id": "6f1c…-uuid",
            "status": "succeeded",
            "lyrics": "[Verse 1]\n…",
            "title": "…",
            "progress": {"stage": "post", "step": 1, "total": 1},
            "items": [
                {
                    "index": 0,
                    "audio_url": "/v1/files/…?expires=…&sig=…",
                    "format": "mp3",
                    "duration": 210.0,
                    "seed": 1234,
                }
            ],  # fmt: skip
            "cover_url": "/v1/files/…/cover.png?expires=…&sig=…",
            "warnings": [],
            "error": None,
        },
        "error": None,
    }
    lines = [
        "You are integrating the Tritone song-generation HTTP API into my application. Write production-quality code "
        "in my stack that does the following, with the exact endpoints and fields below.",
        "",
        f"## Service\nBase URL: {base} (JSON over HTTP(S); every answer is an envelope {{code, data, error}}).",
        "",
        "## Auth",
        '- `POST /auth/login` with `{"username": "…", "password": "…"}` → `{access_token, token_type, '
        "expires_in}`; send `Authorization: Bearer <access_token>` on every other call.",
        "- Or an API key: header `X-API-Key: <key>` (no login).",
        f"- A token lives {settings.token_ttl_s} s; on 401 log in again.",
        "",
        "## Endpoints",
        "- `POST /v1/song/create` (body below) → `data: {intent_id, status, next_step: {method, url, "
        "poll_interval_sec}}`; answers in < 1 s, the song is made in the background.",
        "- `GET /v1/song/status?intent_id=…` → `data: {intent_id, status, lyrics, title, "
        "progress: {stage, step, total}, items: [{index, audio_url, format, duration, seed}], cover_url, metadata, "
        "queue_position, eta_seconds, "
        "warnings, error}`.",
        "- `GET /v1/song/events?intent_id=…` → server-sent events (send the same auth header): "
        + ", ".join(f"`{e}`" for e in SSE_EVENTS)
        + "; the stream ends after `done` or `failed`.",
        '- `POST /v1/song/cancel` with `{"intent_id": "…"}` → the status.',
        "- `GET /v1/song/list` → the caller's songs (newest first); `GET /v1/models` → the models for `model`.",
        "- `audio_url` and `cover_url` are signed relative URLs: prefix the base URL and GET them without a header; "
        "they expire, so fetch the status again for fresh ones.",
        "",
        "## Request body of POST /v1/song/create",
        *(_field_line(row) for row in fields),
        "",
        "## Status machine",
        " → ".join(s for s in statuses if s not in TERMINAL)
        + " → one of "
        + " | ".join(s for s in statuses if s in TERMINAL)
        + ". Lyrics appear in `lyrics` while status is "
        f"`{statuses[0] if statuses else 'lyrics_pending'}`; items appear at `succeeded`.",
        f"Poll `GET /v1/song/status` every `next_step.poll_interval_sec` seconds (now {settings.poll_interval_sec}) "
        "until a terminal status, or follow the event stream and poll once at the end. A song takes about 2-4 min.",
        "",
        "## Errors (error: {message, field})",
        *(f"- {e['code']} {e['title_en']}: {e['todo_en']}" for e in errors),
        "",
        "## Sample",
        "Request: `POST /v1/song/create`",
        "```json",
        json.dumps(sample_request, ensure_ascii=False, indent=2),
        "```",
        "Response:",
        "```json",
        json.dumps(sample_created, ensure_ascii=False, indent=2),
        "```",
        "Final status (`GET /v1/song/status`):",
        "```json",
        json.dumps(sample_done, ensure_ascii=False, indent=2),
        "```",
        "",
        "Handle: retries with Retry-After on 429, re-login on 401, showing `error.message` (it names the field), "
        "downloading every item, and cancelling.",
    ]
    text = "\n".join(lines)
    return {"text": text, "tokens": estimate_tokens(text)}
