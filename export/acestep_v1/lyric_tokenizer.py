"""The v1 lyric tokenizer lives in :mod:`model_repository.acestep_v1.lyrics.tokenizer` (the sampler needs it at serving
time and the serving deployable does not import ``export``); this module re-exports it for the export side."""

from model_repository.acestep_v1.lyrics.tokenizer import (  # noqa: F401
    LANGUAGE_TOKENS,
    LYRIC_VOCAB_SIZE,
    SPACE_ID,
    START_ID,
    STOP_ID,
    STRUCTURE_TAG,
    UNK_ID,
    VOCAB_FILE,
    LyricTokenizer,
    LyricTokens,
    chinese_cardinal,
    chinese_integer,
    chinese_numbers,
    chinese_pinyin,
    korean_romanize,
    multilingual_clean,
)
