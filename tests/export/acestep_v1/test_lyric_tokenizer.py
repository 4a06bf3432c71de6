"""The v1 lyric tokenizer reproduces the original pipeline's ids for every reference case, exactly."""

from __future__ import annotations

import json

import pytest

from export.acestep_v1.lyric_tokenizer import (
    LANGUAGE_TOKENS,
    LYRIC_VOCAB_SIZE,
    SPACE_ID,
    START_ID,
    LyricTokenizer,
    chinese_numbers,
)
from export.acestep_v1.reference import reference_dir

REF = reference_dir()
CASES = json.loads((REF / "lyric_tokenizer_cases.json").read_text()) if REF is not None else []


@pytest.fixture(scope="module")
def tok() -> LyricTokenizer:
    return LyricTokenizer()


def test_vocab_is_the_reference_file(tok, ref):
    assert tok.vocab_file.read_bytes() == (ref / "lyric_vocab.json").read_bytes()
    assert tok.bpe.get_vocab_size() == LYRIC_VOCAB_SIZE
    assert tok.bpe.token_to_id("[START]") == START_ID and tok.bpe.token_to_id("[SPACE]") == SPACE_ID
    assert all(tok.bpe.token_to_id(f"[{'zh-cn' if k == 'zh' else k}]") == v for k, v in LANGUAGE_TOKENS.items())


@pytest.mark.skipif(REF is None, reason="shared/reference/acestep-v1 is not present")
@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_reference_case(tok, case):
    out = tok.tokenize_lyrics(case["text"])
    for line in case["lines"]:
        if "ids" not in line:
            continue
        text = line["line"].strip()
        assert tok.line_language(text) == line["encode_lang"], text
        assert tok.preprocess(text, line["encode_lang"]) == line["preprocessed"], text
        assert tok.encode(text, line["encode_lang"]) == line["ids"], text
        assert tok.pieces(line["ids"])[0] == line["pieces"][0]
    assert out.ids == case["ids"]
    assert out.mask == case["lyric_mask"]


def test_case_count():
    if REF is None:
        pytest.skip("shared/reference/acestep-v1 is not present")
    assert len(CASES) == 15


def test_detector_quirks_kept(tok):
    # The trained detector's own verdicts (see the reference README): these are not "fixed" here.
    assert tok.detector.detect("Oh oh oh, we're alive tonight!") == "de"
    assert tok.detector.detect("[verse]") == "zh"  # structure tags are still encoded as en
    assert tok.line_language("[verse]") == "en"


def test_unsupported_language_is_a_clear_error(tok):
    with pytest.raises(ValueError, match="not supported.*en"):
        tok.encode("hello", "xx")


def test_chinese_number_reading():
    assert chinese_numbers("我有3个苹果，100%的爱") == "我有三个苹果,百分之一百的爱"
    assert chinese_numbers("2024年8月24日") == "二零二四年八月二十四日"
    assert chinese_numbers("编号12345") == "编号一二三四五"
    assert chinese_numbers("3.14和105") == "三点一四和一百零五"
