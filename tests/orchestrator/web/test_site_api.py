"""The page's generated data (``GET /v1/site``, ``POST /v1/site/examples``), the library (``GET /v1/song/list``) and
seed 000's consistency points: the generated snippets run against a live server, the AI prompt names only fields,
statuses and paths the OpenAPI schema has, the limits are the schema's, ``ACESTEP_ENABLE_LYRICIST`` is honoured, and
a turbo checkpoint's unused guidance is reported."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncGenerator, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from orchestrator.families import MAX_DURATION, MIN_DURATION
from orchestrator.schemas.song import SongCreate
from orchestrator.services.triton import ModelEvent
from orchestrator.settings import Settings
from tests.orchestrator.doubles import StageRunnerDouble
from tests.orchestrator.support import login, make_settings, running_app, wait_song
from tests.orchestrator.web.live import live_orchestrator

SNIPPET_BODY = {"theme": "weekend ride to the sea", "duration": 10, "inference_steps": 4, "audio_format": "mp3"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with live_orchestrator(tmp_path_factory.mktemp("site-live")) as base:
        yield base


def _examples(base: str, auth: str = "login") -> dict[str, str]:
    response = httpx.post(base + "/v1/site/examples", json={"body": SNIPPET_BODY, "auth": auth}, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


def _env(base: str) -> dict[str, str]:
    return {
        **os.environ,
        "TRITONE_URL": base,
        "TRITONE_USER": "alice",
        "TRITONE_PASSWORD": "alice-pw",
        "TRITONE_API_KEY": "key-carol-123",
        "POLL_SECONDS": "0.3",
    }


def _assert_mp3(path: Path) -> None:
    data = path.read_bytes()
    assert data[:3] == b"ID3" or (data[0] == 0xFF and data[1] & 0xE0 == 0xE0), data[:16]


@pytest.mark.parametrize("auth", ["login", "api_key"])
def test_generated_curl_snippet_makes_and_downloads_a_song(live: str, tmp_path: Path, auth: str) -> None:
    script = tmp_path / "song.sh"
    script.write_text(_examples(live, auth)["curl"])
    done = subprocess.run(
        ["bash", "-euo", "pipefail", str(script)],
        cwd=tmp_path,
        env=_env(live),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "status: succeeded" in done.stdout and "saved song-1.mp3" in done.stdout
    _assert_mp3(tmp_path / "song-1.mp3")


@pytest.mark.parametrize("auth", ["login", "api_key"])
def test_generated_python_snippet_makes_and_downloads_a_song(live: str, tmp_path: Path, auth: str) -> None:
    script = tmp_path / "song.py"
    script.write_text(_examples(live, auth)["python"])
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=_env(live), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "saved song-1.mp3" in done.stdout
    _assert_mp3(tmp_path / "song-1.mp3")


@pytest.mark.skipif(shutil.which("node") is None, reason="no node to run the JavaScript example")
def test_generated_javascript_snippet_makes_a_song(live: str, tmp_path: Path) -> None:
    script = tmp_path / "song.mjs"
    script.write_text(_examples(live)["javascript"])
    command = ["node", str(script)]
    done = subprocess.run(command, cwd=tmp_path, env=_env(live), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert re.search(r"song-1\.mp3 \d+ bytes, seed \d+", done.stdout), done.stdout


def test_the_ai_prompt_names_only_what_the_schema_has(live: str) -> None:
    openapi = httpx.get(live + "/openapi.json", timeout=10).json()
    site = httpx.get(live + "/v1/site", timeout=10).json()["data"]
    text, tokens = site["prompt"]["text"], site["prompt"]["tokens"]
    assert 500 < tokens < 6000 and f"~{tokens}" not in text
    schemas = openapi["components"]["schemas"]
    body_fields = re.findall(r"^- `([a-z_]+)` \(", text.split("## Request body", 1)[1].split("##", 1)[0], re.M)
    assert body_fields == list(schemas["SongCreate"]["properties"])  # every field, in order, none invented
    statuses = set(schemas["SongStatusPublic"]["properties"]["status"]["enum"])
    machine = text.split("## Status machine\n", 1)[1].split("\n", 1)[0]
    named = set(re.findall(r"[a-z]+_[a-z]+|succeeded|failed|cancelled", machine))
    assert named == statuses, (named, statuses)
    paths = set(re.findall(r"`(?:GET|POST) (/[a-z0-9/_]+)", text))
    assert paths and paths <= set(openapi["paths"]), paths - set(openapi["paths"])
    status_line = next(line for line in text.splitlines() if line.startswith("- `GET /v1/song/status"))
    status_fields = set(re.findall(r"[{,] ?([a-z_]+)", status_line.split("data: ", 1)[1]))
    known = set(schemas["SongStatusPublic"]["properties"]) | set(schemas["SongItem"]["properties"])
    known |= set(schemas["SongProgress"]["properties"])
    assert status_fields <= known, status_fields - known
    codes = {int(c) for c in re.findall(r"^- (\d{3}) ", text, re.M)}
    declared = {int(c) for c in openapi["paths"]["/v1/song/create"]["post"]["responses"] if c.isdigit()}
    assert codes and codes <= declared
    for event in site["sse_events"]:
        assert f"`{event}`" in text


def test_site_limits_and_fields_are_the_schemas(live: str) -> None:
    site = httpx.get(live + "/v1/site", timeout=10).json()["data"]
    assert site["limits"]["audio_duration"] == {"min": MIN_DURATION, "max": MAX_DURATION}
    assert site["limits"]["inference_steps"]["recommended"] == SongCreate.model_fields["inference_steps"].default
    rows = {row["name"]: row for row in site["fields"]}
    assert list(rows) == list(SongCreate.model_fields)
    assert rows["duration_hint"]["gt"] == MIN_DURATION and rows["duration_hint"]["max"] == MAX_DURATION
    assert rows["style"]["max_length"] == 300 and rows["rhyme"]["max_length"] == 40
    assert rows["theme"]["required"] and rows["audio_format"]["enum"] == ["flac", "wav", "wav32", "mp3"]
    # A new request field needs its Chinese description in services/site.py FIELD_ZH (the page is bilingual).
    assert all(row["description"] and row["description_zh"] for row in rows.values()), [
        n for n, r in rows.items() if not (r["description"] and r["description_zh"])
    ]
    assert [e["code"] for e in site["errors"]] == [401, 404, 422, 429, 503]
    assert set(site["performance"]["reference"]) >= {"lyrics", "audio", "total"}


def test_acestep_enable_lyricist_is_an_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACESTEP_ENABLE_LYRICIST", "false")
    assert Settings().enable_lyricist is False
    monkeypatch.setenv("TRITONE_ENABLE_LYRICIST", "true")
    assert Settings().enable_lyricist is True  # the service's own name wins


class TurboDouble(StageRunnerDouble):
    """The sampler of a guidance-distilled checkpoint: says guidance was not applied."""

    async def stream(
        self, model: str, request: Mapping[str, Any], *, tensors: Mapping[str, np.ndarray] | None = None
    ) -> AsyncGenerator[ModelEvent, None]:
        async for event in super().stream(model, request, tensors=tensors):
            if model == "sampler" and event.type == "done":
                event = ModelEvent({**event.data, "guidance_applied": False}, event.tensors, event.server)
            yield event


def test_turbo_guidance_is_reported_as_not_applied_and_the_library_lists_own_songs(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_app(make_settings(tmp_path), TurboDouble()) as (_, client):
            alice, bob = await login(client), await login(client, "bob")
            body = {"theme": "sea", "duration": 10, "inference_steps": 4, "guidance_scale": 9, "use_adg": True}
            intent = (await client.post("/v1/song/create", json=body, headers=alice)).json()["data"]["intent_id"]
            data = await wait_song(client, alice, intent, ("succeeded", "failed"))
            assert data["status"] == "succeeded", data
            assert len(data["warnings"]) == 1 and "not applied" in data["warnings"][0]
            listed = (await client.get("/v1/song/list", headers=alice)).json()["data"]
            assert listed["total"] == 1 and listed["songs"][0]["intent_id"] == intent
            song = listed["songs"][0]
            assert song["request"]["theme"] == "sea" and song["request"]["guidance_scale"] == 9
            assert song["items"][0]["audio_url"] and song["metadata"]["seeds"]
            assert (await client.get("/v1/song/list", headers=bob)).json()["data"]["total"] == 0
            assert (await client.get("/v1/song/list")).status_code == 401

    asyncio.run(scenario())


def test_samples_are_the_operators_folder(tmp_path: Path) -> None:
    folder = tmp_path / "samples"
    folder.mkdir()
    (folder / "sea.mp3").write_bytes(b"ID3" + b"\0" * 64)
    (folder / "notes.txt").write_text("not audio")
    (folder / "samples.json").write_text('[{"file": "sea.mp3", "title": "看海 The sea", "caption": "sunny pop"}]')

    async def scenario() -> None:
        async with running_app(make_settings(tmp_path / "data", samples_dir=folder), StageRunnerDouble()) as (_, c):
            samples = (await c.get("/v1/site/samples")).json()["data"]["samples"]
            assert [(s["file"], s["title"], s["caption"]) for s in samples] == [
                ("sea.mp3", "看海 The sea", "sunny pop")
            ]
            assert (await c.get(samples[0]["url"])).content.startswith(b"ID3")
            assert (await c.get("/v1/site/samples/notes.txt")).status_code == 404
            assert (await c.get("/v1/site/samples/..%2Fsamples.json")).status_code == 404
            assert (await c.get("/v1/site")).json()["data"]["samples"] == 1

    asyncio.run(scenario())
