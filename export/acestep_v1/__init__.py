"""ACE-Step v1 (3.5B, the DCAE family): the DiT with its lyric encoder, the lyric tokenizer, the music DCAE and
vocoder, checkpoint loading, the ``tiny`` preset and the export networks. UMT5 and ``AutoencoderDC`` are the stock
library classes.

Modules:

* ``transformer`` — ``ACEStepV1Transformer`` (DiT + Conformer lyric encoder), ``TransformerConfig``.
* ``vocoder`` / ``dcae`` — ``MusicVocoder``, ``MusicDCAE`` (latent <-> log-mel <-> 44.1 kHz, resampling to 48 kHz,
  overlapped decoding past 240 s).
* ``lyric_tokenizer`` / ``lyric_language`` — lyrics -> ids exactly as the original pipeline (per-line language);
  the code lives in ``model_repository.acestep_v1.lyrics`` (the sampler tokenizes lyrics at serving time).
* ``checkpoint`` / ``presets`` — the ``ACE-Step-v1-3.5B`` folder layout (strict loading) and ``build_tiny_v1``.
* ``networks`` — contracts + export wrappers of ``v1_text_encoder``, ``v1_condition_encoder``, ``v1_dit``,
  ``v1_dcae_decoder``, ``v1_vocoder``, ``v1_dcae_encoder``.
* ``repository`` — the v1 networks and the sampler's v1 assets in a model repository (``tritone export``).
* ``model_repository.acestep_v1.runner`` — the served recipe (``V1SongRunner``, sampler ``"family": "acestep_v1"``);
  ``docs/acestep-v1.md``.
* ``model_repository.acestep_v1.sampling`` — the sampler math (schedule, omega Euler, APG/CFG, noise).

The original text2music recipe over these networks (pipeline defaults: 60 steps, shift 3, guidance 15 with APG in
the middle half of the steps, omega 10, all three ERG switches on):

1. caption -> UMT5 tokens (max 256) -> ``v1_text_encoder`` twice: ``erg=0`` (condition) and ``erg=1`` (the "null"
   text). Lyrics -> ``LyricTokenizer.tokenize_lyrics``.
2. ``v1_condition_encoder``: condition = (text, speaker, lyrics, ``erg=0``); unconditional = (null text, zero speaker,
   the same lyrics, ``erg=1``). Both use the condition's masks. The released checkpoint takes zero speaker embeddings
   (512) for the condition too; empty lyrics are ids ``[0]`` with mask ``[0]``.
3. ``flow_match_schedule(60)``, ``seeded_noise((B, 8, 16, frames), seeds)`` with ``frames = int(seconds * 44100 /
   4096)``; per step ``v1_dit`` on the condition, and inside ``guidance_interval`` also on the unconditional memory
   with ``erg=1``; ``guide(...)`` combines; ``euler_step(..., omega=10)``.
4. ``v1_dcae_decoder`` -> ``v1_vocoder`` per stereo channel -> ``dcae.resample`` 44.1 -> 48 kHz.
"""
