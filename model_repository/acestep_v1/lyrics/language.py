"""Per-line language detection for the v1 lyric tokenizer, reproducing the original pipeline's choice.

The original ACE-Step v1 pipeline picks a lyric line's language with a vendored "LangSegment" segmenter over the
``py3langid`` identifier (all of its 97 languages enabled, probabilities normalised), then takes the language with the
most characters (Chinese characters count double), skipping ``en`` when another language is present. The model was
trained on the ids that this produces, quirks included, so this module re-implements the same procedure:

1. The line is cut into runs by script, in this order: ``<xx>...</xx>`` tags, Hangul (-> ko), Thai (-> th),
   Cyrillic (-> ru), number groups (-> the language of the first segment so far, else zh), Latin letters incl.
   French/Vietnamese accents (each sentence classified by langid), quoted spans. Each run is replaced by a
   placeholder ``⑥<tag><index:06d>⑥``; later patterns see (and can swallow parts of) earlier placeholders.
2. The placeholders and the remaining text are processed left to right; remaining text is split at punctuation and
   classified by langid with the Chinese/Japanese rules for short CJK snippets (ambiguous ones wait as ``zh|ja``
   or ``ja|zh`` until the next segment settles them; a snippet that is still waiting at the end is not counted).
3. Each saved segment adds its length to its language's count (``zh`` counts double); adjacent segments of one
   language merge; digits-only / punctuation-only segments join their predecessor.

Any internal inconsistency (e.g. a placeholder that was broken by a later pattern) makes the original fall back to
``en``; :func:`detect_language` does the same.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

logger = logging.getLogger(__name__)

# Short CJK snippets below this langid probability fall back to the filter order (ja before zh alphabetically).
_CJK_PRIORITY_THRESHOLD = 0.89
_PLACEHOLDER = re.compile(r"(⑥\$*\d+[\d]{6,}⑥)")
_NUMBER_PLACEHOLDER = re.compile(r"(⑥\d{6,}⑥)")
_PUNCT_RUN = re.compile(r"([^\w\s]+)")
_SENTENCE = re.compile(r"(.*?[。.?？!！]+[\n]{,1})")
_ENDING = re.compile(r'([「」“”‘’"\':：。.！!?．？])')
_FRENCH = "àáâãäåæçèéêëìíîïðñòóôõöùúûüýþÿ"
_VIETNAMESE = "đơưăáàảãạắằẳẵặấầẩẫậéèẻẽẹếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựôâêơưỷỹ"


def _script_run(chars: str) -> re.Pattern[str]:
    """A run of ``chars`` words with optional leading quotes/brackets and trailing non-word characters."""
    return re.compile(rf'(([【《（(“‘"\']*[{chars}]+[\W\s]*)+)')


class _DetectionError(RuntimeError):
    """The original implementation raises here and its caller falls back to "en"."""


@dataclass
class _Segment:
    lang: str
    text: str
    score: float
    symbol: Any = None


def _strip_number_text(text: str) -> tuple[str, bool]:
    """(text without punctuation/newlines, whether what is left is only digits, or nothing)."""
    if text == "\n":
        return text, False
    clear = _PUNCT_RUN.sub("", re.sub(r"\n+", "", text)).strip()
    return clear, len(re.sub(r"\d+", "", clear)) == 0


def _squash(text: str) -> str:
    """Non-word runs -> one space, repeated characters -> one (the text fed to langid)."""
    text = re.sub(r"(.*?)([^\w]+)", r"\1 ", text)
    return re.sub(r"(.)\1+", r"\1", text).strip()


def _space_uppercase(text: str) -> str:
    """Insert a space before inner capitals ("iPhone" -> "i Phone") and end with a space (English segments)."""
    return re.sub(r"(?<!\b)([A-Z])", r" \1", text).strip("-") + " "


def _has_han(text: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in text)


def _has_kana(text: str) -> bool:
    return re.search(r"[\u3040-\u309F\u30A0-\u30FF]", text) is not None


class _LineState:
    """Everything one detection call accumulates."""

    def __init__(self, classify: Callable[[str], tuple[str, float]], filters: str, filter_list: frozenset[str]):
        self.classify = classify
        self.filters = filters
        self.filter_list = filter_list
        self.counts: dict[str, int] = {}
        self.pending: list[_Segment] = []
        self.placeholders: dict[str, tuple[Callable[[list[_Segment], Any], None], Any]] = {}
        self.at_end = False

    # -- bookkeeping -----------------------------------------------------------------------------------------------
    def count(self, lang: str, text: str) -> None:
        if "|" not in lang:
            self.counts[lang] = self.counts.get(lang, 0) + (len(text) * 2 if lang == "zh" else len(text))

    def save(self, out: list[_Segment], lang: str, text: str, score: float, symbol: Any = None) -> _Segment:
        clear, is_number = _strip_number_text(text)
        prev = out[-1] if out else None
        if symbol is None and prev is not None and prev.symbol is None:
            if not clear or is_number:
                lang = prev.lang
            if prev.lang == lang:
                self.count(prev.lang, text)
                prev.text += text
                return prev
            if _strip_number_text(prev.text)[1]:
                text = prev.text + text
                out.pop()
        seg = _Segment(lang, text, score, symbol)
        # The filter test of the original: list membership, or a substring of the first filter ("af").
        if "?" in lang or lang in self.filter_list or lang in self.filters[:2]:
            out.append(seg)
            self.count(seg.lang, seg.text)
        return seg

    def add(self, out: list[_Segment], lang: str | None, text: str, score: float, symbol: Any = None) -> None:
        if text != "\n" and (text is None or not text.strip()):
            return
        lang = (lang or "").lower()
        if lang == "en":
            text = _space_uppercase(text)
        had_pending = bool(self.pending)
        prev: _Segment | None = self.pending.pop() if had_pending else None
        if prev is None:
            prev = out[-1] if out else None
        if prev is not None and "|" in prev.lang:
            if lang in prev.lang:
                prev.lang = lang = lang.split("|")[0]
            else:
                prev.lang = prev.lang.split("|")[0]
            if had_pending:
                prev = self.save(out, prev.lang, prev.text, prev.score, prev.symbol)
        prev_lang = prev.lang if prev is not None else None
        if "|" in lang and prev_lang and prev_lang not in lang and "…" not in lang:
            lang = lang.split("|")[0]
        if "|" in lang:
            self.pending.append(_Segment(lang, text, score, symbol))
        else:
            self.save(out, lang, text, score, symbol)

    # -- placeholders ----------------------------------------------------------------------------------------------
    def mark(self, tag: str, pattern: re.Pattern[str], handler: Callable[[list[_Segment], Any], None],
             text: str) -> str:
        matches = pattern.findall(text)
        if len(matches) == 1 and "".join(matches[0]) == text:
            return text
        for i, match in enumerate(matches):
            key = f"⑥{tag}{i:06d}⑥"
            text = pattern.sub(key, text, count=1)
            self.placeholders[key] = (handler, match)
        return text

    def walk(self, out: list[_Segment], text: str, root: bool) -> None:
        parts = _PLACEHOLDER.split(text)
        last = len(parts) - 1
        for index, part in enumerate(parts):
            if root:
                self.at_end = index >= last
            if _PLACEHOLDER.match(part):
                if part not in self.placeholders:
                    raise _DetectionError(f"broken placeholder {part!r}")
                handler, payload = self.placeholders[part]
                handler(out, payload)
            else:
                self.plain(out, part)

    def restore_numbers(self, text: str) -> str:
        def _back(m: re.Match[str]) -> str:
            entry = self.placeholders.get(m.group(0))
            return entry[1] if entry is not None else m.group(0)

        return _NUMBER_PLACEHOLDER.sub(_back, text)

    # -- handlers ---------------------------------------------------------------------------------------------------
    def on_tag(self, out: list[_Segment], match: tuple[str, str, str]) -> None:
        name, body = match[1], match[2]
        if name in self.filters:
            self.add(out, name, body, 1.0, True)
        else:  # SSML-like tags (<number>, <date> ...) read as Chinese in the original
            self.add(out, "zh" if name in ("telephone", "number", "currency", "date") else name, body, 1.0, name)

    def fixed(self, lang: str) -> Callable[[list[_Segment], Any], None]:
        def handler(out: list[_Segment], match: tuple[str, str]) -> None:
            self.add(out, lang, match[0], 1.0)

        return handler

    def on_number(self, out: list[_Segment], match: str) -> None:
        self.add(out, out[0].lang if out else "zh", match, 0.0)

    def on_latin(self, out: list[_Segment], match: tuple[str, str]) -> None:
        for piece in _SENTENCE.split(match[0]):
            if not piece.strip():
                continue
            squashed = _squash(piece)
            lang: str | None
            lang, score = self.classify(squashed)
            if lang not in self.filters:
                lang, score = self.word_vote(squashed)
            if lang is None or score <= 0.0:
                continue
            if lang not in self.filters:
                if score >= 0.95:
                    continue
                lang = "en"
            self.add(out, lang, piece, score)

    def word_vote(self, text: str) -> tuple[str | None, float]:
        words = [w for w in re.sub(r"(?<!^)(?=[A-Z])", " ", text).split(" ") if len(w.strip()) > 3]
        if not words:
            return None, 0.0
        return Counter(self.classify(w)[0] for w in words).most_common(1)[0][0], 1.0

    def on_quote(self, out: list[_Segment], match: tuple[str, ...]) -> None:
        text = "".join(match)
        if _PLACEHOLDER.findall(text):
            self.walk(out, text, False)
            return
        squashed = _squash(match[1])
        if len(squashed) <= 5:
            self.plain(out, text)
        else:
            lang, score = self.classify(squashed)
            self.add(out, lang, text, score)

    def plain(self, out: list[_Segment], segment: str) -> None:
        """Text between placeholders: split at punctuation, classify, apply the zh/ja rules for short snippets."""
        lines = _PUNCT_RUN.split(segment)
        n = len(lines)
        at_end_of_line = self.at_end
        for index in range(n):
            text = lines[index]
            if not text:
                continue
            last = index >= n - 1
            following = lines[index + 1] if not last else ""

            def only_punct(s: str) -> bool:
                return not _PUNCT_RUN.sub("", re.sub(r"\n+", "", s)).strip()

            if not last and (only_punct(text) or only_punct(following)):
                lines[index + 1] = text + following
                continue
            cleaned = _squash(re.sub(r"\d+", "", _NUMBER_PLACEHOLDER.sub("", text)))
            if not last and len(cleaned) <= 2:
                lines[index + 1] = text + following
                continue
            lang, score = self.classify(cleaned)
            prev_lang = out[-1].lang if out else None
            if lang != "zh" and all("\u4e00" <= c <= "\u9fff" for c in re.sub(r"\s", "", cleaned)):
                lang, score = "zh", 1
            if len(cleaned) <= 5 and _has_han(cleaned):
                lang = self._short_cjk(out, text, cleaned, lang, score, prev_lang, last and at_end_of_line)
            self.add(out, lang, self.restore_numbers(text), score)

    def _short_cjk(self, out: list[_Segment], text: str, cleaned: str, lang: str, score: float,
                   prev_lang: str | None, line_end: bool) -> str:
        if score < _CJK_PRIORITY_THRESHOLD and self.filters:
            ja, zh = self.filters.find("ja"), self.filters.find("zh")
            if ja != -1 and ja < zh:
                lang = "ja"
            elif zh != -1 and zh < ja:
                lang = "zh"
        if _has_kana(cleaned):
            return "ja"
        if len(cleaned) > 2 and score > 0.90:
            return lang
        if line_end:
            return "zh" if len(cleaned) <= 1 else lang
        unknown = "zh|ja" if lang == "zh" or (len(cleaned) <= 2 and prev_lang == "zh") else "ja|zh"
        stripped = re.sub(r"\s+", "", text)
        if not stripped:
            raise _DetectionError("no final character to judge a short CJK snippet")
        related = bool(prev_lang) and (prev_lang in unknown or unknown in prev_lang)  # type: ignore[operator]
        if stripped[-1] in "。.":
            return prev_lang if related and out else lang  # type: ignore[return-value]
        return f"{unknown}|…"


class LyricLanguageDetector:
    """``detect(line)`` -> an ISO code as the original pipeline's ``get_lang`` returns it (before its mapping)."""

    @cached_property
    def _identifier(self) -> Any:
        try:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier
        except ImportError as exc:  # pragma: no cover - declared dependency
            raise RuntimeError("py3langid is required for lyric language detection: pip install py3langid") from exc
        return LanguageIdentifier.from_pickled_model(MODEL_FILE, norm_probs=True)

    @cached_property
    def _filters(self) -> tuple[str, frozenset[str]]:
        # The original enables every language the identifier knows, in sorted order.
        langs = sorted(self._identifier.nb_classes)
        return "-".join(langs).lower(), frozenset(langs)

    def _classify(self, text: str) -> tuple[str, float]:
        lang, prob = self._identifier.classify(text)
        return str(lang), round(float(prob), 3)

    def counts(self, text: str) -> list[tuple[str, int]]:
        """Characters per language, most first (ties in first-seen order)."""
        if text is None or not text.strip():
            return []
        filters, filter_list = self._filters
        state = _LineState(self._classify, filters, filter_list)
        latin = _FRENCH + _VIETNAMESE
        passes: list[tuple[str, re.Pattern[str], Callable[[list[_Segment], Any], None]]] = [
            ("$1", re.compile(r"(<([a-zA-Z|-]*)>(.*?)<\/*[a-zA-Z|-]*>)"), state.on_tag),
            ("$6", _script_run("\uac00-\ud7a3"), state.fixed("ko")),
            ("$8", _script_run("\u0e00-\u0e7f"), state.fixed("th")),
            ("$7", _script_run("А-Яа-яЁё"), state.fixed("ru")),
            ("00", re.compile(r"(\W*\d+\W+\d*\W*\d*)"), state.on_number),
            ("$5", _script_run(f"a-zA-Z{latin}"), state.on_latin),
            ("$3", re.compile(r'(["\'])(.*?)(\1)'), state.on_quote),
            ("$4", re.compile(r"([\n]*[【《（(“‘])([^【《（(“‘’”)）》】]{3,})([’”)）》】][\W\s]*[\n]{,1})"),
             state.on_quote),
        ]
        for line in re.findall(r".*\n*", _PLACEHOLDER.sub("", text)):
            if not line.strip():
                continue
            state.at_end = False
            state.placeholders = {}
            for tag, pattern, handler in passes:
                line = state.mark(tag, pattern, handler, line)
            state.walk([], line, True)
        return sorted(state.counts.items(), key=lambda kv: kv[1], reverse=True)

    def detect(self, text: str) -> str:
        """The majority language of ``text``; ``en`` only when nothing else is present; ``en`` on any failure."""
        try:
            counts = self.counts(text) or [("zh", 0)]
        except Exception as exc:  # noqa: BLE001 - as trained: any failure means "en"
            logger.debug("language detection fell back to en for %r: %s", text, exc)
            return "en"
        lang = counts[0][0]
        if len(counts) > 1 and lang == "en":
            lang = counts[1][0]
        return lang
