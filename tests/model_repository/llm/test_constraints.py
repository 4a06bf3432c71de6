"""Grammars under a random sampler: whatever token a model picks among the allowed ones, the output is valid and
fits the token budget the grammar was sized for."""

from __future__ import annotations

import json

import pytest
import torch

from model_repository.llm import constraints as C
from model_repository.llm import music
from model_repository.llm.local import LocalModel
from model_repository.llm.lyricist import PartialJsonString


def random_walk(model: LocalModel, constraint: C.Constraint, seed: int, limit: int = 5000) -> list[int]:
    """Pick uniformly among allowed tokens until the constraint completes (what a random model would do)."""
    generator = torch.Generator().manual_seed(seed)
    out: list[int] = []
    while not constraint.finished and len(out) < limit:
        allowed = torch.nonzero(constraint.allowed()).flatten()
        token = int(allowed[torch.randint(len(allowed), (1,), generator=generator)])
        if token == model.tokenizer.eos_token_id and constraint.accepting:
            break
        constraint.advance(token)
        out.append(token)
    return out


@pytest.mark.parametrize("budget", [150, 260, 1200])
def test_plan_grammar_always_valid_and_within_budget(lyricist_model: LocalModel, budget: int) -> None:
    layout = C.fit_plan_layout(budget, 11, 8)
    assert layout.worst_case_tokens() <= budget
    grammar = C.plan_grammar(layout, duration_hint=220)
    for seed in range(4):
        tokens = random_walk(lyricist_model, lyricist_model.constraint(grammar), seed)
        assert len(tokens) <= budget
        plan = json.loads(lyricist_model.tokenizer.decode(tokens))
        assert C.validate_plan(plan, duration_hint=220) == [], plan
        assert list(plan) == list(C.PLAN_KEYS)
        assert plan["lyrics"].count("[") <= layout.sections
        assert 176 <= plan["duration"] <= 264


def test_plan_grammar_writes_fixed_values(lyricist_model: LocalModel) -> None:
    fixed = {"bpm": 96, "key_scale": "F# minor", "time_signature": 3, "duration": 30}
    grammar = C.plan_grammar(C.fit_plan_layout(300, 4, 4), duration_hint=220, fixed=fixed)
    plan = json.loads(
        lyricist_model.tokenizer.decode(random_walk(lyricist_model, lyricist_model.constraint(grammar), 7))
    )
    assert {k: plan[k] for k in fixed} == fixed


def test_instrumental_layout_has_tags_only(lyricist_model: LocalModel) -> None:
    layout = C.fit_plan_layout(400, 5, 8, instrumental=True)
    assert layout.lines == 0
    grammar = C.plan_grammar(layout, duration_hint=60)
    plan = json.loads(
        lyricist_model.tokenizer.decode(random_walk(lyricist_model, lyricist_model.constraint(grammar), 1))
    )
    assert all(line.startswith("[") and line.endswith("]") for line in plan["lyrics"].splitlines())


def test_budget_too_small_is_an_error() -> None:
    with pytest.raises(ValueError, match="tokens are needed"):
        C.fit_plan_layout(60, 9, 8)


def test_cot_grammar_keeps_user_values_and_ranges(lm_model: LocalModel) -> None:
    fixed = {"bpm": 72, "keyscale": "D minor", "caption": "slow emotional ballad"}
    grammar = C.cot_grammar(fixed, caption_tokens=12, has_think_tokens=lm_model.has_think_tokens)
    for seed in range(4):
        text = lm_model.tokenizer.decode(random_walk(lm_model, lm_model.constraint(grammar), seed))
        assert text.startswith("<think>\nbpm: 72\ncaption: slow emotional ballad\nduration: ") and text.endswith(
            "</think>"
        )
        values = C.parse_cot(text)
        assert set(values) == set(C.COT_FIELDS)
        assert music.DURATION_MIN <= int(values["duration"]) <= music.DURATION_MAX
        assert values["keyscale"] == "D minor"
        assert values["language"] in music.VOCAL_LANGUAGES
        assert int(values["timesignature"]) in music.TIME_SIGNATURES
        assert "<|audio_code_" not in text


def test_codes_constraint_allows_only_codes(lm_model: LocalModel) -> None:
    codes = C.audio_code_token_ids(lm_model.tokenizer)
    assert len(codes) == music.AUDIO_CODEBOOK_SIZE
    assert sorted(codes.values()) == list(range(music.AUDIO_CODEBOOK_SIZE))
    mask = torch.zeros(lm_model.n_vocab, dtype=torch.bool)
    mask[list(codes)] = True
    constraint = C.CodesConstraint(mask, count=7)
    tokens = random_walk(lm_model, constraint, 0)
    assert len(tokens) == 7 and all(t in codes for t in tokens)
    with pytest.raises(RuntimeError, match="not an audio code"):
        C.CodesConstraint(mask, 3).advance(lm_model.tokenizer.eos_token_id)


def test_text_grammar_is_bounded(lyricist_model: LocalModel) -> None:
    tokens = random_walk(lyricist_model, lyricist_model.constraint(C.text_grammar(10)), 3)
    assert 1 <= len(tokens) <= 10
    assert "<" not in lyricist_model.tokenizer.decode(tokens)


def test_format_and_parse_cot_round_trip() -> None:
    values = {"bpm": 120, "caption": "calm piano", "duration": 60, "keyscale": "G major", "timesignature": 4}
    text = C.format_cot(values)
    assert text == "<think>\nbpm: 120\ncaption: calm piano\nduration: 60\nkeyscale: G major\ntimesignature: 4\n</think>"
    assert C.parse_cot(text) == {k: str(v) for k, v in values.items()}


def test_partial_lyrics_follow_the_stream() -> None:
    doc = json.dumps({"title": "t", "lyrics": '[Verse 1]\n风 "quoted" \\ é\n', "caption": "c"}, ensure_ascii=True)
    tracker = PartialJsonString("lyrics")
    seen = [tracker.feed(doc[i : i + 3]) for i in range(0, len(doc), 3)]
    assert seen[-1] == '[Verse 1]\n风 "quoted" \\ é\n'
    assert all(seen[-1].startswith(s) for s in seen)  # only ever grows, never shows half an escape
    assert seen[0] == ""
