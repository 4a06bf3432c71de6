"""A local Hugging Face causal LM behind the continuous-batching :class:`~model_repository.llm.engine.Engine`:
chat-template encoding, grammar constraints and streamed text deltas."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from model_repository.llm.constraints import GrammarConstraint, llg_tokenizer, stop_token_ids
from model_repository.llm.engine import Engine, Job, Result, Stream

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class IncrementalDecoder:
    """Token ids in, new text out. Decodes a short window (the tokens since the last complete piece of text), so
    the cost per token stays flat, and holds back text that ends in a partial UTF-8 character."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self.tokens: list[int] = []
        self._prefix = 0
        self._read = 0
        self.text = ""

    def push(self, token: int) -> str:
        self.tokens.append(token)
        prefix_text = self._decode(self.tokens[self._prefix : self._read])
        new_text = self._decode(self.tokens[self._prefix :])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            delta = new_text[len(prefix_text) :]
            self._prefix, self._read = self._read, len(self.tokens)
            self.text += delta
            return delta
        return ""

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


class TextStream:
    """Iterate for text deltas; afterwards :attr:`result` holds the engine's report and :attr:`text` the text."""

    def __init__(self, stream: Stream, tokenizer: Any) -> None:
        self._stream = stream
        self._decoder = IncrementalDecoder(tokenizer)
        self.result: Result | None = None

    def __iter__(self) -> Iterator[str]:
        for tokens in self._stream.chunks():
            delta = "".join(self._decoder.push(token) for token in tokens)
            if delta:
                yield delta
        self.result = self._stream.result()

    @property
    def text(self) -> str:
        return self._decoder.text

    @property
    def tokens(self) -> list[int]:
        return self._decoder.tokens

    def cancel(self) -> None:
        self._stream.cancel()


class LocalModel:
    """Tokenizer + model + generation engine for one Hugging Face folder."""

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        max_rows: int = 16,
        name: str = "llm",
        torch_threads: int | None = None,
        batch_prefill: bool = True,
    ) -> None:
        """``torch_threads`` sets torch's intra-op threads for this process (None leaves them). On CPU the serving
        process uses 1: OpenMP workers spin after every op, and on a small machine that spinning starves the
        threads that stream the results (measured: 12 ms instead of 1.3 ms per token for the tiny preset).
        ``batch_prefill`` prefills the prompts waiting to join in one forward pass (False: one pass each)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        if torch_threads:
            torch.set_num_threads(torch_threads)
        if dtype not in _DTYPES:
            raise ValueError(f"dtype={dtype!r}; allowed: {', '.join(_DTYPES)}")
        self.name = name
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError(f"{model_dir}: a fast (tokenizer.json) tokenizer is needed for constrained decoding")
        model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=_DTYPES[dtype])
        self.model = model.to(device).eval()
        self.n_vocab = max(int(self.model.config.vocab_size), len(self.tokenizer))
        self.stop_ids = stop_token_ids(self.tokenizer)
        self.engine = Engine(self.model, max_rows=max_rows, name=name, batch_prefill=batch_prefill)
        self._llg: Any = None
        self._llg_lock = threading.Lock()
        vocab = self.tokenizer.get_vocab()
        self.has_think_tokens = "<think>" in vocab and "</think>" in vocab
        logger.info(
            "%s: loaded %s (%s, %s, vocab %d, %d parameters)",
            name,
            model_dir,
            device,
            dtype,
            self.n_vocab,
            sum(p.numel() for p in self.model.parameters()),
        )

    @property
    def llg(self) -> Any:
        with self._llg_lock:
            if self._llg is None:
                self._llg = llg_tokenizer(self.tokenizer, self.n_vocab)
            return self._llg

    def constraint(self, grammar: str) -> GrammarConstraint:
        return GrammarConstraint(self.llg, grammar, self.n_vocab)

    def render_chat(self, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool, **kwargs: Any) -> str:
        return str(
            self.tokenizer.apply_chat_template(
                list(messages), tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs
            )
        )

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, job: Job) -> TextStream:
        return TextStream(self.engine.submit(job), self.tokenizer)

    def close(self) -> None:
        self.engine.close()
