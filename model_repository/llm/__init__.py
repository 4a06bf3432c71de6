"""The LLM stage served by Triton's Python backend: the ``lyricist`` (theme → song plan) and the ACE-Step 1.5
"5 Hz LM" ``lm`` (metadata completion, thinking = metadata + audio codes, inspire = description → song).

Modules: :mod:`.music` (value ranges shared by both), :mod:`.requests` (request parsing and validation),
:mod:`.prompts` (file-based prompt templates), :mod:`.constraints` (grammars for llguidance and the code-vocabulary
mask), :mod:`.sampling` (logits processing), :mod:`.engine` (continuous-batching generation loop),
:mod:`.openai_endpoint` (an OpenAI-compatible lyricist backend), :mod:`.lyricist` and :mod:`.lm` (the pipelines).
"""
