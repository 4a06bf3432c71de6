"""Request validation: every client mistake names the field and what is allowed."""

from __future__ import annotations

import json

import pytest

from model_repository.llm import music
from model_repository.llm.requests import RequestError, parse_lm_request, parse_lyricist_request


@pytest.mark.parametrize(
    ("payload", "field", "allowed"),
    [
        ({"theme": ""}, "theme", "non-empty string of at most 2000"),
        ({"theme": "   "}, "theme", "non-empty"),
        ({}, "theme", "required"),
        ({"theme": "x" * 2001}, "theme", "at most 2000 characters (got 2001)"),
        ({"theme": "sea", "temperature": 5}, "temperature", "[0, 2] (got 5)"),
        ({"theme": "sea", "top_p": 0}, "top_p", "(0, 1]"),
        ({"theme": "sea", "vocal_gender": "robot"}, "vocal_gender", "male, female, any (got 'robot')"),
        ({"theme": "sea", "duration_hint": 5}, "duration_hint", "[10, 600]"),
        ({"theme": "sea", "vocal_mode": "rap"}, "vocal_mode", "sing, instrumental_from_lyrics, instrumental_quick"),
        ({"theme": "sea", "track_classes": ["drums", "kazoo"]}, "track_classes", "(got 'kazoo')"),
        ({"theme": "sea", "track_classes": "drums"}, "track_classes", "list of track names"),
        ({"theme": "sea", "language": "Chinese!"}, "language", "ISO 639"),
        ({"theme": "sea", "seed": 1.5}, "seed", "integer"),
        ({"theme": "sea", "bpm": 400}, "bpm", "[30, 300]"),
        ({"theme": "sea", "key_scale": "H major"}, "key_scale", "C major"),
        ({"theme": "sea", "time_signature": "5/4"}, "time_signature", "2, 3, 4, 6"),
        ({"theme": "sea", "max_new_tokens": 0}, "max_new_tokens", "[1, 8192]"),
        ({"theme": "sea", "colour": "red"}, "colour", "not a known field"),
    ],
)
def test_lyricist_errors_name_the_field(payload: dict, field: str, allowed: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_lyricist_request(json.dumps(payload))
    message = str(info.value)
    assert message.startswith(f"lyricist: field {field!r}"), message
    assert allowed in message, message
    assert info.value.field == field


def test_lyricist_defaults_and_normalisation() -> None:
    req = parse_lyricist_request(
        {
            "theme": "  周末骑单车去看海 ",
            "key_scale": "b♭ Minor",
            "time_signature": "6/8",
            "track_classes": ["bass", "bass"],
        }
    )
    assert req.theme == "周末骑单车去看海"
    assert (req.language, req.vocal_gender, req.vocal_mode, req.duration_hint) == ("zh", "male", "sing", 220.0)
    assert req.sampling.temperature == 0.85 and req.sampling.seed is None
    assert req.fixed.key_scale == "Bb minor" and req.fixed.time_signature == 6
    assert req.track_classes == ("bass",)
    assert parse_lyricist_request({"theme": "x", "seed": -1}).sampling.seed is None


def test_not_json() -> None:
    with pytest.raises(RequestError, match="lyricist: field 'request' must be a UTF-8 JSON object"):
        parse_lyricist_request(b"{not json")
    with pytest.raises(RequestError, match="must be a JSON object"):
        parse_lyricist_request("[1, 2]")


@pytest.mark.parametrize(
    ("payload", "field", "allowed"),
    [
        ({}, "mode", "metadata, thinking, inspire"),
        ({"mode": "dream"}, "mode", "(got 'dream')"),
        ({"mode": "inspire"}, "description", "required in mode 'inspire'"),
        ({"mode": "metadata", "bpm": 10}, "bpm", "[30, 300] (got 10)"),
        ({"mode": "metadata", "duration": 601}, "duration", "[10, 600]"),
        ({"mode": "thinking", "cfg_scale": 0.5}, "cfg_scale", "[1, 20]"),
        ({"mode": "thinking", "top_k": -1}, "top_k", "[0, 100000]"),
        ({"mode": "thinking", "repetition_penalty": 0}, "repetition_penalty", "(0, 5]"),
        ({"mode": "thinking", "vocal_language": "xx"}, "vocal_language", "zh"),
        ({"mode": "thinking", "caption": 3}, "caption", "must be a string"),
    ],
)
def test_lm_errors_name_the_field(payload: dict, field: str, allowed: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_lm_request(payload)
    assert str(info.value).startswith(f"lm: field {field!r}"), str(info.value)
    assert allowed in str(info.value)


def test_lm_defaults_follow_acestep() -> None:
    req = parse_lm_request({"mode": "thinking"})
    assert (req.sampling.temperature, req.cfg_scale, req.negative_prompt, req.sampling.top_p) == (
        0.85,
        2.0,
        "NO USER INPUT",
        0.9,
    )
    assert (req.sampling.top_k, req.sampling.repetition_penalty) == (0, 1.0)


def test_music_normalisation() -> None:
    assert music.normalize_key_scale("c# minor") == "C# minor"
    assert music.normalize_key_scale("Am") == "A minor"
    assert music.normalize_key_scale("F♯ major") == "F# major"
    assert music.normalize_key_scale("E# major") is None
    assert music.normalize_time_signature("4/4") == 4
    assert music.normalize_time_signature(5) is None
    assert music.codes_for_duration(10) == 50
    assert len(music.KEY_SCALES) == 34
    lines, sections, example = music.song_shape(220)
    assert (lines, sections) == (40, 9) and example[0] == "Intro" and example[-1] == "Outro"
