"""The 5 Hz LM service on the tiny preset, in process: metadata completion, thinking (codes), inspire."""

from __future__ import annotations

import re
from typing import Any

import pytest

from model_repository.llm import music
from model_repository.llm.lm import LMService, LMSettings
from model_repository.llm.local import LocalModel
from model_repository.llm.lyricist import GenerationError
from model_repository.llm.requests import RequestError

CODE = re.compile(r"<\|audio_code_(\d+)\|>")


@pytest.fixture(scope="module")
def service(lm_model: LocalModel) -> LMService:
    return LMService(lm_model, LMSettings(max_new_tokens=320))


def run(service: LMService, payload: dict[str, Any]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    service.run(payload, events.append)
    return events


def test_prompt_format_follows_upstream(service: LMService) -> None:
    prompt = service.cot_prompt("calm piano", "[Verse 1]\nhello")
    assert prompt == (
        "<|im_start|>system\n# Instruction\nGenerate audio semantic tokens based on the given conditions:\n\n"
        "<|im_end|>\n<|im_start|>user\n# Caption\ncalm piano\n\n# Lyric\n[Verse 1]\nhello\n<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert "# Caption" not in service.cot_uncond_prompt("la", "NO USER INPUT")
    assert "# Caption\nnoisy\n" in service.cot_uncond_prompt("la", "noisy")
    codes = service.codes_prompt("calm piano", "la", "<think>\nbpm: 90\n</think>")
    assert "<|im_start|>assistant\n<think>\nbpm: 90\n</think>" in codes and codes.endswith("\n")
    assert service.inspire_prompt("a love song", True).count("instrumental: true") == 1


@pytest.mark.parametrize("seed", [0, 1])
def test_metadata_keeps_user_values_and_fills_the_rest(service: LMService, seed: int) -> None:
    events = run(
        service,
        {"mode": "metadata", "caption": "slow ballad", "lyrics": "[Verse 1]\nla", "bpm": 72, "key_scale": "d minor",
         "seed": seed},
    )  # fmt: skip
    final = events[-1]
    assert final["type"] == "result" and final["mode"] == "metadata"
    meta = final["metadata"]
    assert meta["bpm"] == 72 and meta["key_scale"] == "D minor" and meta["caption"] == "slow ballad"
    assert music.DURATION_MIN <= meta["duration"] <= music.DURATION_MAX
    assert meta["time_signature"] in music.TIME_SIGNATURES
    assert all(e["stage"] == "metadata" for e in events[:-1]) and len(events) > 5
    phase = final["usage"]["phases"]["metadata"]
    assert phase["cfg"] is True and phase["batch_rows_max"] == 2  # prompt + negative prompt rows


def test_metadata_complete_needs_no_generation(service: LMService) -> None:
    fixed = {"bpm": 120, "key_scale": "A minor", "time_signature": "3/4", "duration": 30}
    events = run(service, {"mode": "metadata", **fixed})
    assert len(events) == 1
    assert events[0]["metadata"] == {"bpm": 120, "key_scale": "A minor", "time_signature": 3, "duration": 30}
    assert events[0]["usage"]["completion_tokens"] == 0


@pytest.mark.parametrize("duration", [10, 13])
def test_thinking_writes_five_codes_per_second(service: LMService, duration: int) -> None:
    events = run(service, {"mode": "thinking", "caption": "pop", "duration": duration, "seed": 4})
    final = events[-1]
    codes = [int(c) for c in CODE.findall(final["audio_codes"])]
    assert len(codes) == final["codes_count"] == 5 * duration
    assert all(0 <= c < music.AUDIO_CODEBOOK_SIZE for c in codes)
    assert CODE.sub("", final["audio_codes"]) == ""
    assert final["metadata"]["duration"] == duration
    stages = [e["stage"] for e in events[:-1]]
    assert stages.index("codes") > stages.index("thinking")  # metadata first, then codes
    streamed = "".join(e["text"] for e in events[:-1] if e["stage"] == "codes")
    assert streamed == final["audio_codes"]


def test_inspire_writes_caption_lyrics_and_metadata(service: LMService) -> None:
    events = run(service, {"mode": "inspire", "description": "a soft love song", "vocal_language": "bn", "seed": 1})
    final = events[-1]
    assert final["mode"] == "inspire" and final["caption"]
    assert re.match(r"^\[(" + "|".join(map(re.escape, music.STRUCTURE_TAGS)) + r")\]\n", final["lyrics"])
    assert final["metadata"]["language"] == "bn" and music.BPM_MIN <= final["metadata"]["bpm"] <= music.BPM_MAX
    plan = final["plan"]
    assert set(plan) >= {"title", "lyrics", "caption", "bpm", "key_scale", "time_signature", "duration", "language"}
    assert {e["stage"] for e in events[:-1]} == {"thinking", "plan"}


def test_budget_errors_name_max_new_tokens(service: LMService) -> None:
    with pytest.raises(RequestError, match="lm: field 'max_new_tokens'"):
        run(service, {"mode": "metadata", "max_new_tokens": 20})
    with pytest.raises(RequestError, match="lm: field 'max_new_tokens'"):
        run(service, {"mode": "inspire", "description": "x", "max_new_tokens": 40})


def test_thinking_needs_audio_code_tokens(lyricist_model: LocalModel) -> None:
    with pytest.raises(GenerationError, match="no <\\|audio_code_N\\|> tokens"):
        run(LMService(lyricist_model), {"mode": "thinking", "bpm": 90, "key_scale": "C major", "time_signature": 4,
                                        "duration": 10})  # fmt: skip
