"""The lyricist pipeline: prompts (with a scripted fake model), expansion rule, the local backend's streamed plan,
the OpenAI-compatible endpoint (a real HTTP server on a free port: streaming, retries, timeouts) and the
unconfigured case."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from model_repository.launcher.server import free_port
from model_repository.llm.constraints import validate_plan
from model_repository.llm.local import LocalModel
from model_repository.llm.lyricist import (
    EXPAND_MAX_CHARS,
    ChatCall,
    EndpointChatBackend,
    LocalChatBackend,
    LyricistService,
    LyricistSettings,
    NotConfiguredError,
)
from model_repository.llm.openai_endpoint import EndpointConfig, EndpointError, OpenAIEndpoint
from model_repository.llm.requests import Sampling
from model_repository.llm.serving import build_lyricist
from tests.model_repository.llm.fake_openai import BRIEF, PLAN, FakeOpenAI

# --------------------------------------------------------------------------------------------------------------------
# A scripted fake model: fixed output, records what it was asked
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class _Run:
    pieces: list[str]
    usage: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[str]:
        yield from self.pieces
        self.usage = {"prompt_tokens": 10, "completion_tokens": len(self.pieces)}


class ScriptedModel:
    """Returns a fixed sequence of text pieces per stage and records every call (messages, sampling, limits)."""

    kind = "scripted"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def chat(self, messages: Sequence[dict[str, str]], call: ChatCall) -> _Run:
        self.calls.append({"messages": list(messages), **vars(call)})
        text = BRIEF if call.stage == "expand" else json.dumps(PLAN)
        return _Run([text[i : i + 5] for i in range(0, len(text), 5)])

    def prompt(self, stage: str) -> str:
        call = next(c for c in self.calls if c["stage"] == stage)
        return "\n".join(m["content"] for m in call["messages"])


def run_service(service: LyricistService, payload: dict[str, Any]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    service.run(json.dumps(payload), events.append)
    return events


def test_every_input_reaches_the_prompt() -> None:
    model = ScriptedModel()
    request = {
        "theme": "a red bicycle by the sea",
        "language": "en",
        "rhyme": "-ang",
        "style": "lo-fi chillhop",
        "vocal_gender": "female",
        "duration_hint": 100,
        "additional_instructions": "mention the lighthouse twice",
        "track_classes": ["strings", "backing_vocals"],
        "bpm": 88,
        "temperature": 0.42,
        "top_p": 0.77,
        "seed": 1234,
    }
    events = run_service(LyricistService(model), request)  # type: ignore[arg-type]
    plan_prompt = model.prompt("plan")
    for text in (
        "a red bicycle by the sea",
        "English",
        "(language code en)",
        "-ang",
        "lo-fi chillhop",
        "a female lead vocal",
        "about 100 seconds",
        "mention the lighthouse twice",
        "strings, backing_vocals",
        "bpm=88",
        "a sung song",
        BRIEF,  # the expansion's output feeds the plan
    ):
        assert text in plan_prompt, f"{text!r} missing from the plan prompt:\n{plan_prompt}"
    expand_prompt = model.prompt("expand")
    assert "a red bicycle by the sea" in expand_prompt and "lo-fi chillhop" in expand_prompt
    for call in model.calls:
        assert call["sampling"] == Sampling(temperature=0.42, top_p=0.77, seed=1234)
    plan = events[-1]["plan"]
    assert plan["caption"] == "lo-fi chillhop, warm strings, backing vocals, female vocal"  # hints appended once
    assert plan["language"] == "en" and plan["bpm"] == 88


def test_vocal_mode_and_chinese_templates() -> None:
    model = ScriptedModel()
    run_service(LyricistService(model), {"theme": "周末骑单车去看海", "vocal_mode": "instrumental_from_lyrics"})  # type: ignore[arg-type]
    prompt = model.prompt("plan")
    assert "主题:周末骑单车去看海" in prompt and "用中文写歌词" in prompt
    assert "歌词只用来确定结构" in prompt  # the vocal mode's wording
    model = ScriptedModel()
    run_service(LyricistService(model), {"theme": "sea", "language": "en", "vocal_mode": "instrumental_quick"})  # type: ignore[arg-type]
    assert "structure tags only" in model.prompt("plan")
    assert "Lyric lines" not in model.prompt("plan")


@pytest.mark.parametrize(
    ("length", "switch", "expanded"),
    [(EXPAND_MAX_CHARS, None, True), (EXPAND_MAX_CHARS + 1, None, False), (10, False, False), (10, True, True)],
)
def test_expansion_unless_theme_over_60_or_switched_off(length: int, switch: bool | None, expanded: bool) -> None:
    model = ScriptedModel()
    request: dict[str, object] = {"theme": "海" * length}
    if switch is not None:
        request["expand_theme"] = switch
    events = run_service(LyricistService(model), request)  # type: ignore[arg-type]
    assert [c["stage"] for c in model.calls] == (["expand", "plan"] if expanded else ["plan"])
    assert events[-1]["usage"]["expanded"] is expanded
    assert any(e.get("stage") == "expand" for e in events) is expanded


def test_not_configured_names_the_settings(tmp_path: Path) -> None:
    service = build_lyricist(tmp_path, {}, env={})
    with pytest.raises(NotConfiguredError) as info:
        service.run(json.dumps({"theme": "sea"}), lambda e: None)
    message = str(info.value)
    assert message.startswith("lyricist: not configured:")
    for setting in ("lyricist_dir", "lyricist_endpoint", "TRITONE_LYRICIST_ENDPOINT"):
        assert setting in message
    # Bad input is still reported as bad input, before the configuration problem.
    with pytest.raises(ValueError, match="field 'theme'"):
        service.run(json.dumps({"theme": ""}), lambda e: None)


# --------------------------------------------------------------------------------------------------------------------
# The local backend on the tiny preset
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("theme", "language", "seed"),
    [("周末骑单车去看海 风把白衬衫吹起来", "zh", 0), ("Weekend cycling to the sea", "en", 1), ("夜雨", "zh", 2)],
)
def test_local_plan_streams_and_is_valid(lyricist_model: LocalModel, theme: str, language: str, seed: int) -> None:
    service = LyricistService(
        LocalChatBackend(lyricist_model), LyricistSettings(max_new_tokens=260, expand_max_new_tokens=16)
    )
    events = run_service(service, {"theme": theme, "language": language, "seed": seed, "duration_hint": 120})
    deltas, final = events[:-1], events[-1]
    assert final["type"] == "plan" and all(e["type"] == "delta" for e in deltas)
    assert [e["stage"] for e in deltas if e["stage"] == "plan"], "no plan text was streamed"
    plan = final["plan"]
    assert validate_plan({k: plan[k] for k in plan if k not in ("language", "vocal_mode")}, duration_hint=120) == []
    streamed = "".join(e["text"] for e in deltas if e["stage"] == "plan")
    assert json.loads(streamed)["title"].strip() == plan["title"]
    lyrics_so_far = [e["lyrics_so_far"] for e in deltas if e["stage"] == "plan"]
    first_lyric = next(i for i, s in enumerate(lyrics_so_far) if s)
    assert first_lyric < len(lyrics_so_far) - 1  # lyrics became visible before the plan was complete
    assert lyrics_so_far[-1].strip() == plan["lyrics"]
    assert final["usage"]["completion_tokens"] <= 260 + 16


# --------------------------------------------------------------------------------------------------------------------
# An OpenAI-compatible endpoint: a real HTTP server on a free port
# --------------------------------------------------------------------------------------------------------------------


def test_endpoint_streams_a_plan_and_retries_a_failed_attempt() -> None:
    with FakeOpenAI(fail_first=True) as server:
        endpoint = OpenAIEndpoint(EndpointConfig(base_url=server.base_url, model="qwen", retries=2, backoff_s=0.05))
        service = LyricistService(EndpointChatBackend(endpoint))
        events = run_service(service, {"theme": "sea", "language": "en", "seed": 9, "duration_hint": 100})
        endpoint.close()
    assert len(server.requests) == 3  # expand: failed once, then answered; plan: answered
    assert {r["path"] for r in server.requests} == {"/v1/chat/completions"}
    expand_body, plan_body = server.requests[1]["body"], server.requests[2]["body"]
    assert expand_body["stream"] is True and expand_body["seed"] == 9 and expand_body["model"] == "qwen"
    assert plan_body["response_format"]["json_schema"]["schema"]["required"][0] == "title"
    final = events[-1]
    assert final["usage"]["stages"]["expand"]["attempts"] == 2
    assert final["brief"] == BRIEF
    assert final["plan"]["title"] == "Red Bicycle" and final["plan"]["bpm"] == 88
    assert [e["lyrics_so_far"] for e in events if e.get("stage") == "plan"][-1] == PLAN["lyrics"]


def test_endpoint_timeout_is_retried_then_reported() -> None:
    with FakeOpenAI(delay_s=2.0) as server:
        endpoint = OpenAIEndpoint(EndpointConfig(base_url=server.base_url, timeout_s=0.3, retries=1, backoff_s=0.05))
        started = time.monotonic()
        with pytest.raises(EndpointError) as info:
            list(endpoint.stream_chat([{"role": "user", "content": "hi"}], sampling=Sampling(), max_new_tokens=8))
        elapsed = time.monotonic() - started
        endpoint.close()
    assert len(server.requests) == 2
    assert elapsed < 1.9  # gave up on the timeout, not after the server's delay
    assert "timed out after 0.3 s" in str(info.value) and server.base_url in str(info.value)
    assert "failed after 2 attempts" in str(info.value)


def test_endpoint_unreachable_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    endpoint = OpenAIEndpoint(EndpointConfig(base_url=url, retries=0, timeout_s=1))
    with pytest.raises(EndpointError, match="connection failed"):
        list(endpoint.stream_chat([{"role": "user", "content": "hi"}], sampling=Sampling(), max_new_tokens=8))
    endpoint.close()
