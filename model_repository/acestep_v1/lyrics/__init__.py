"""The ACE-Step v1 lyric tokenizer at serving time: per-line language detection (:mod:`.language`), per-language
normalisation and the multilingual BPE (:mod:`.tokenizer`, vocabulary ``lyric_vocab.json``). The sampler tokenizes v1
lyrics with it; ``export.acestep_v1.lyric_tokenizer`` re-exports it for the export side and its tests."""

from model_repository.acestep_v1.lyrics.tokenizer import LYRIC_VOCAB_SIZE, LyricTokenizer, LyricTokens

__all__ = ["LYRIC_VOCAB_SIZE", "LyricTokenizer", "LyricTokens"]
