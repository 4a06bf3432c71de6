"""Replay of upstream's OpenRouter-document client for ``POST /v1/chat/completions``: its streaming reader (``data:``
lines, ``delta.content`` / ``delta.audio``, ``finish_reason``, ``data: [DONE]``) and audio in as ``input_audio``
base64 parts (routed to the source for a cover), audio out as ``data:`` URLs."""

from __future__ import annotations

import base64
import io
import json

import soundfile as sf

from tests.orchestrator.clients.support import DescribingDouble, wav_bytes
from tests.orchestrator.support import API_KEYS, make_settings, running_app

BEARER = {"Authorization": f"Bearer {next(iter(API_KEYS))}"}


async def _stream(client, payload: dict) -> tuple[str, str | None, list[str | None], list[dict]]:
    """The document's httpx client: content parts, the audio URL, finish reasons, every chunk."""
    content, audio_url, finishes, chunks = [], None, [], []
    async with client.stream("POST", "/v1/chat/completions", json=payload, headers=BEARER) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if not line or not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                break
            chunk = json.loads(line[6:])
            chunks.append(chunk)
            delta = chunk["choices"][0]["delta"]
            if delta.get("content"):
                content.append(delta["content"])
            if delta.get("audio"):
                audio_url = delta["audio"][0]["audio_url"]["url"]
            finishes.append(chunk["choices"][0]["finish_reason"])
    return "".join(content), audio_url, finishes, chunks


async def test_streamed_sample_mode_song(tmp_path) -> None:
    double = DescribingDouble(step_delay=0.3)  # slow enough for a heartbeat
    async with running_app(make_settings(tmp_path), double) as (_, client):
        text, audio_url, finishes, chunks = await _stream(client, {
            "messages": [{"role": "user", "content": "Generate a cheerful guitar piece"}],
            "sample_mode": True,
            "stream": True,
            "inference_steps": 8,
            "audio_config": {"instrumental": True, "duration": 10},
        })
    assert chunks[0]["object"] == "chat.completion.chunk" and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "." in text and "## Metadata" in text and finishes[-1] == "stop"
    assert audio_url is not None and audio_url.startswith("data:audio/mpeg;base64,")
    wave, rate = sf.read(io.BytesIO(base64.b64decode(audio_url.split(",", 1)[1])))
    assert rate == 48000 and abs(len(wave) / rate - 10) < 0.2
    lm = next(req for m, req in double.calls if m == "lm")
    assert lm["mode"] == "inspire" and lm["description"] == "Generate a cheerful guitar piece"
    sampler = next(req for m, req in double.calls if m == "sampler" and "seeds" in req)
    assert sampler["lyrics"] == "[Instrumental]"


async def test_cover_from_base64_audio_and_a_failure(tmp_path) -> None:
    double = DescribingDouble()
    async with running_app(make_settings(tmp_path), double) as (_, client):
        payload = {
            "model": "acestep/acestep-v15-turbo",
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "<prompt>Jazz style cover with saxophone</prompt>"},
                {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav_bytes()).decode(),
                                                        "format": "wav"}},
            ]}],
            "task_type": "cover",
            "audio_cover_strength": 0.8,
            "audio_config": {"format": "flac", "bpm": 90, "key_scale": "C major", "time_signature": "4"},
        }
        r = await client.post("/v1/chat/completions", json=payload, headers=BEARER)
        assert r.status_code == 200, r.text
        message = r.json()["choices"][0]["message"]
        assert message["audio"][0]["audio_url"]["url"].startswith("data:audio/flac;base64,")
        too_many = {**payload, "task_type": "text2music"}
        too_many["messages"][0]["content"].append(too_many["messages"][0]["content"][1])
        r = await client.post("/v1/chat/completions", json=too_many, headers=BEARER)
        assert r.status_code == 422 and r.json()["error"]["field"] == "messages"
    cover = next(req for m, req in double.calls if m == "sampler" and "seeds" in req)
    assert cover["task_type"] == "cover" and cover["audio_cover_strength"] == 0.8
    assert cover["caption"] == "Jazz style cover with saxophone"

    failing = DescribingDouble(fail={"sampler": "sampler: out of memory"})
    async with running_app(make_settings(tmp_path / "b"), failing) as (_, client):
        text, audio_url, finishes, _ = await _stream(client, {
            "messages": [{"role": "user", "content": "<prompt>x</prompt>"}], "stream": True,
            "audio_config": {"duration": 10, "bpm": 90, "key_scale": "C major", "time_signature": "4"},
        })
        assert finishes[-1] == "error" and "out of memory" in text and audio_url is None
