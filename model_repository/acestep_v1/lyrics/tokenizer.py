"""The ACE-Step v1 lyric tokenizer: per-line language detection, per-language text normalisation, multilingual BPE.

``tokenize_lyrics(text)`` gives the ids the v1 DiT was trained on (the original pipeline's ``tokenize_lyrics``):
``[START]`` (261), then for every line ``encode(line.strip(), lang) + [SPACE]`` (2); an empty line is just ``[2]``.
A line that contains a ``[...]`` structure tag at its start (``[verse]``, ``[chorus]`` ...) is encoded as English;
otherwise its language comes from :class:`~model_repository.acestep_v1.lyrics.language.LyricLanguageDetector`,
mapped onto the 17 languages the tokenizer has a tag for (anything else becomes ``en``). Empty lyrics are
``ids [0], mask [0]``.

``encode(text, lang)`` normalises the text for ``lang`` and BPE-encodes ``[<lang>]text`` with spaces as ``[SPACE]``:

* ar cs de en es fr hu it nl pl pt ru tr ko zh: lower-case; numbers, currencies, decimals and ordinals spelled out
  with ``num2words`` in that language; the language's abbreviations and symbols (``&``, ``@``, ``%`` ...) expanded;
  whitespace collapsed. Chinese then becomes tone-numbered pinyin (``pypinyin`` TONE3, neutral tone 5, run
  together) after its own number reading and punctuation -> ``,``; Korean is romanised (``hangul-romanize``,
  academic).
* ja: romaji via ``cutlet`` (MeCab through ``fugashi`` with ``unidic-lite``), lower-cased.
* hi: lower-case and collapsed whitespace only.

The BPE vocabulary (``lyric_vocab.json``, 6693 ids) is the original's data file.
"""

from __future__ import annotations

import logging
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

VOCAB_FILE = Path(__file__).with_name("lyric_vocab.json")
LYRIC_VOCAB_SIZE = 6693
STOP_ID, UNK_ID, SPACE_ID, START_ID = 0, 1, 2, 261

# Language -> id of its [lang] token: the languages a lyric line can be encoded as.
LANGUAGE_TOKENS: dict[str, int] = {
    "en": 259, "de": 260, "fr": 262, "es": 284, "it": 285, "pt": 286, "pl": 294, "tr": 295, "ru": 267, "cs": 293,
    "nl": 297, "ar": 5022, "zh": 5023, "ja": 5412, "hu": 5753, "ko": 6152, "hi": 6680,
}
STRUCTURE_TAG = re.compile(r"\[.*?\]")
_MULTILINGUAL = frozenset({"ar", "cs", "de", "en", "es", "fr", "hu", "it", "nl", "pl", "pt", "ru", "tr", "zh", "ko"})


# ----------------------------------------------------------------------------------------------------------------------
# Per-language tables (facts of the trained normalisation)

_ABBREVIATIONS: dict[str, list[tuple[str, str]]] = {
    "en": [("mrs", "misess"), ("mr", "mister"), ("dr", "doctor"), ("st", "saint"), ("co", "company"),
           ("jr", "junior"), ("maj", "major"), ("gen", "general"), ("drs", "doctors"), ("rev", "reverend"),
           ("lt", "lieutenant"), ("hon", "honorable"), ("sgt", "sergeant"), ("capt", "captain"),
           ("esq", "esquire"), ("ltd", "limited"), ("col", "colonel"), ("ft", "fort")],
    "es": [("sra", "señora"), ("sr", "señor"), ("dr", "doctor"), ("dra", "doctora"), ("st", "santo"),
           ("co", "compañía"), ("jr", "junior"), ("ltd", "limitada")],
    "fr": [("mme", "madame"), ("mr", "monsieur"), ("dr", "docteur"), ("st", "saint"), ("co", "compagnie"),
           ("jr", "junior"), ("ltd", "limitée")],
    "de": [("fr", "frau"), ("dr", "doktor"), ("st", "sankt"), ("co", "firma"), ("jr", "junior")],
    "pt": [("sra", "senhora"), ("sr", "senhor"), ("dr", "doutor"), ("dra", "doutora"), ("st", "santo"),
           ("co", "companhia"), ("jr", "júnior"), ("ltd", "limitada")],
    "it": [("sig", "signore"), ("dr", "dottore"), ("st", "santo"), ("co", "compagnia"), ("jr", "junior"),
           ("ltd", "limitata")],
    "pl": [("p", "pani"), ("m", "pan"), ("dr", "doktor"), ("sw", "święty"), ("jr", "junior")],
    "cs": [("dr", "doktor"), ("ing", "inženýr"), ("p", "pan")],
    "ru": [("г-жа", "госпожа"), ("г-н", "господин"), ("д-р", "доктор")],
    "nl": [("dhr", "de heer"), ("mevr", "mevrouw"), ("dr", "dokter"), ("jhr", "jonkheer")],
    "tr": [("b", "bay"), ("byk", "büyük"), ("dr", "doktor")],
    "hu": [("dr", "doktor"), ("b", "bácsi"), ("nőv", "nővér")],
}

# Order: & @ % # $ £ °
_SYMBOL_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("and", "at", "percent", "hash", "dollar", "pound", "degree"),
    "es": ("y", "arroba", "por ciento", "numeral", "dolar", "libra", "grados"),
    "fr": ("et", "arobase", "pour cent", "dièse", "dollar", "livre", "degrés"),
    "de": ("und", "at", "prozent", "raute", "dollar", "pfund", "grad"),
    "pt": ("e", "arroba", "por cento", "cardinal", "dólar", "libra", "graus"),
    "it": ("e", "chiocciola", "per cento", "cancelletto", "dollaro", "sterlina", "gradi"),
    "pl": ("i", "małpa", "procent", "krzyżyk", "dolar", "funt", "stopnie"),
    "ar": ("و", "على", "في المئة", "رقم", "دولار", "جنيه", "درجة"),
    "zh": ("和", "在", "百分之", "号", "美元", "英镑", "度"),
    "cs": ("a", "na", "procento", "křížek", "dolar", "libra", "stupně"),
    "ru": ("и", "собака", "процентов", "номер", "доллар", "фунт", "градус"),
    "nl": ("en", "bij", "procent", "hekje", "dollar", "pond", "graden"),
    "tr": ("ve", "at", "yüzde", "diyez", "dolar", "sterlin", "derece"),
    "hu": ("és", "kukac", "százalék", "kettőskereszt", "dollár", "font", "fok"),
    "ko": ("그리고", "에", "퍼센트", "번호", "달러", "파운드", "도"),
}
_SYMBOLS = ("&", "@", "%", "#", "$", "£", "°")

_ORDINALS: dict[str, str] = {
    "en": r"([0-9]+)(st|nd|rd|th)",
    "es": r"([0-9]+)(º|ª|er|o|a|os|as)",
    "fr": r"([0-9]+)(º|ª|er|re|e|ème)",
    "de": r"([0-9]+)(st|nd|rd|th|º|ª|\.(?=\s|$))",
    "pt": r"([0-9]+)(º|ª|o|a|os|as)",
    "it": r"([0-9]+)(º|°|ª|o|a|i|e)",
    "pl": r"([0-9]+)(º|ª|st|nd|rd|th)",
    "ar": r"([0-9]+)(ون|ين|ث|ر|ى)",
    "cs": r"([0-9]+)\.(?=\s|$)",
    "ru": r"([0-9]+)(-й|-я|-е|-ое|-ье|-го)",
    "nl": r"([0-9]+)(de|ste|e)",
    "tr": r"([0-9]+)(\.|inci|nci|uncu|üncü|\.)",
    "hu": r"([0-9]+)(\.|adik|edik|odik|edik|ödik|ödike|ik)",
    "ko": r"([0-9]+)(번째|번|차|째)",
}
# The word num2words puts between units and cents; dropped (with the cents) for whole amounts.
_CURRENCY_AND = {"en": ", ", "es": " con ", "fr": " et ", "de": " und ", "pt": " e ", "it": " e ", "pl": ", ",
                 "cs": ", ", "ru": ", ", "nl": ", ", "ar": ", ", "tr": ", ", "hu": ", ", "ko": ", "}
_CURRENCIES = (
    ("GBP", re.compile(r"((£[0-9\.\,]*[0-9]+)|([0-9\.\,]*[0-9]+£))")),
    ("USD", re.compile(r"((\$[0-9\.\,]*[0-9]+)|([0-9\.\,]*[0-9]+\$))")),
    ("EUR", re.compile(r"(([0-9\.\,]*[0-9]+€)|((€[0-9\.\,]*[0-9]+)))")),
)
_COMMA_GROUPED = re.compile(r"\b\d{1,3}(,\d{3})*(\.\d+)?\b")
_DOT_GROUPED = re.compile(r"\b\d{1,3}(.\d{3})*(\,\d+)?\b")  # "." matches any character here, as trained
_DECIMAL = re.compile(r"([0-9]+[.,][0-9]+)")
_NUMBER = re.compile(r"[0-9]+")


def _n2w(value: float | int, lang: str, **kwargs: Any) -> str:
    from num2words import num2words

    return str(num2words(value, lang="cz" if lang == "cs" else lang, **kwargs))


def _spell_numbers(text: str, lang: str) -> str:
    if lang == "zh":
        return chinese_numbers(text)
    if lang in ("en", "ru"):
        text = _COMMA_GROUPED.sub(lambda m: m.group(0).replace(",", ""), text)
    else:
        text = _DOT_GROUPED.sub(lambda m: m.group(0).replace(".", ""), text)

    def currency(m: re.Match[str], code: str) -> str:
        amount = float(re.sub(r"[^\d.]", "", m.group(0).replace(",", ".")))
        words = _n2w(amount, lang, to="currency", currency=code)
        if amount.is_integer():
            cut = words.rfind(_CURRENCY_AND[lang])
            if cut != -1:
                words = words[:cut]
        return words

    try:
        for code, pattern in _CURRENCIES:
            text = pattern.sub(lambda m, c=code: currency(m, c), text)  # type: ignore[misc]
    except Exception:  # noqa: BLE001 - the trained normalisation leaves amounts it cannot read untouched
        pass
    if lang != "tr":
        text = _DECIMAL.sub(lambda m: _n2w(float(m.group(1).replace(",", ".")), lang), text)
    text = re.sub(_ORDINALS[lang], lambda m: _n2w(int(m.group(1)), lang, ordinal=True), text)
    return _NUMBER.sub(lambda m: _n2w(int(m.group(0)), lang), text)


def _expand_abbreviations(text: str, lang: str) -> str:
    end = r"\b" if lang == "ru" else r"\."
    for short, full in _ABBREVIATIONS.get(lang, []):
        text = re.sub(rf"\b{short}{end}", full, text, flags=re.IGNORECASE)
    return text


def _expand_symbols(text: str, lang: str) -> str:
    for symbol, word in zip(_SYMBOLS, _SYMBOL_WORDS[lang], strict=True):
        text = text.replace(symbol, f" {word} ").replace("  ", " ")
    return text.strip()


def multilingual_clean(text: str, lang: str) -> str:
    """Lower-case, spell numbers, expand abbreviations and symbols, collapse whitespace (each step best-effort)."""
    text = text.replace('"', "")
    if lang == "tr":
        text = text.replace("İ", "i").replace("Ö", "ö").replace("Ü", "ü")
    text = text.lower()
    for step in (_spell_numbers, _expand_abbreviations, _expand_symbols):
        try:
            text = step(text, lang)
        except Exception:  # noqa: BLE001 - as trained: a failing step leaves the text as it was
            logger.debug("lyric normalisation step %s failed for %r (%s)", step.__name__, text, lang)
    return re.sub(r"\s+", " ", text)


# ----------------------------------------------------------------------------------------------------------------------
# Chinese: numbers read in Chinese, punctuation -> ","

_ZH_DIGITS = "零一二三四五六七八九"
_ZH_SMALL_UNITS = ("", "十", "百", "千")
_ZH_BIG_UNITS = ("", "万", "亿", "万亿")
# Chinese (full-width) punctuation; with ASCII punctuation, every one becomes "," before romanisation.
_ZH_PUNCTUATION = (
    "！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃《》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟"
    "〰〾〿–—‘’‛“”„‟…‧﹏·〈〉-"
)
_ZH_PUNCT_TABLE = str.maketrans({c: "," for c in _ZH_PUNCTUATION + string.punctuation})
_ZH_QUANTIFIERS = "个只条张本首年月日天岁次位名件块元分秒米克斤层页家部句"


def _zh_group(n: int) -> str:
    """0 < n < 10000 in Chinese, with inner zeros as 零."""
    out, zero = "", False
    for pos in range(3, -1, -1):
        d = (n // 10**pos) % 10
        if d == 0:
            zero = bool(out)
            continue
        if zero:
            out += "零"
            zero = False
        out += _ZH_DIGITS[d] + _ZH_SMALL_UNITS[pos]
    return out


def chinese_integer(n: int) -> str:
    if n == 0:
        return "零"
    groups: list[int] = []
    while n:
        groups.append(n % 10000)
        n //= 10000
    if len(groups) > len(_ZH_BIG_UNITS):
        return "".join(_ZH_DIGITS[int(d)] for d in str(n))
    out, need_zero = "", False
    for idx in range(len(groups) - 1, -1, -1):
        g = groups[idx]
        if g == 0:
            need_zero = bool(out)
            continue
        if out and (need_zero or g < 1000):
            out += "零"
        out += _zh_group(g) + _ZH_BIG_UNITS[idx]
        need_zero = False
    return out[1:] if out.startswith("一十") else out


def chinese_cardinal(number: str) -> str:
    whole, _, frac = number.partition(".")
    significant = whole.lstrip("0")
    if whole == "0":
        text = "零"
    elif not significant:  # "00" reads as nothing, "00.5" as 零点五 (as trained)
        text = "零" if frac else ""
    else:  # leading zeros read as one 零 ("007" -> 零七)
        text = ("零" if significant != whole else "") + chinese_integer(int(significant))
    if frac:
        text += "点" + "".join(_ZH_DIGITS[int(d)] for d in frac)
    return text


def chinese_numbers(text: str) -> str:
    """Digits read in Chinese (fractions, percentages, dates' years digit by digit, long codes digit by digit),
    then every punctuation mark becomes ","."""
    digitwise = lambda s: "".join(_ZH_DIGITS[int(d)] for d in s)  # noqa: E731
    text = re.sub(r"(\d+)/(\d+)", lambda m: chinese_integer(int(m.group(2))) + "分之" + chinese_integer(
        int(m.group(1))), text)
    text = text.replace("％", "%")
    text = re.sub(r"(\d+(?:\.\d+)?)%", lambda m: "百分之" + chinese_cardinal(m.group(1)), text)
    text = re.sub(r"((?:19|20)\d{2}|[089]\d)年", lambda m: digitwise(m.group(1)) + "年", text)
    text = re.sub(rf"(\d+(?:\.\d+)?)(?=[{_ZH_QUANTIFIERS}])", lambda m: chinese_cardinal(m.group(1)), text)
    text = re.sub(r"\d{4,32}", lambda m: digitwise(m.group(0)), text)
    text = re.sub(r"\d+(?:\.\d+)?", lambda m: chinese_cardinal(m.group(0)), text)
    return text.translate(_ZH_PUNCT_TABLE)


def chinese_pinyin(text: str) -> str:
    import pypinyin

    syllables = pypinyin.pinyin(text, style=pypinyin.Style.TONE3, heteronym=False, neutral_tone_with_five=True)
    return "".join(s[0] for s in syllables)


def korean_romanize(text: str) -> str:
    from hangul_romanize import Transliter
    from hangul_romanize.rule import academic

    return str(Transliter(academic).translit(text))


# ----------------------------------------------------------------------------------------------------------------------
# The tokenizer


@dataclass(frozen=True)
class LyricTokens:
    ids: list[int]
    mask: list[int]


class LyricTokenizer:
    """Lyrics -> the v1 lyric encoder's token ids (see the module docstring)."""

    def __init__(self, vocab_file: str | Path = VOCAB_FILE) -> None:
        self.vocab_file = Path(vocab_file)
        if not self.vocab_file.is_file():
            raise FileNotFoundError(f"lyric vocabulary {self.vocab_file} is missing")

    @cached_property
    def bpe(self) -> Any:
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(self.vocab_file))

    @cached_property
    def _romaji(self) -> Callable[[str], str]:
        import cutlet

        return cutlet.Cutlet().romaji  # type: ignore[no-any-return]

    @cached_property
    def detector(self) -> Any:
        from model_repository.acestep_v1.lyrics.language import LyricLanguageDetector

        return LyricLanguageDetector()

    def preprocess(self, text: str, lang: str) -> str:
        if lang in _MULTILINGUAL:
            text = multilingual_clean(text, lang)
            if lang == "zh":
                text = chinese_pinyin(text)
            elif lang == "ko":
                text = korean_romanize(text)
            return text
        if lang == "ja":
            return self._romaji(text).lower()
        if lang == "hi":
            return re.sub(r"\s+", " ", text.lower())
        raise ValueError(f"lyric language {lang!r} is not supported; use one of {', '.join(sorted(LANGUAGE_TOKENS))}")

    def encode(self, text: str, lang: str) -> list[int]:
        """One line in ``lang`` -> ``[<lang>] + BPE(normalised text)`` (spaces as ``[SPACE]``)."""
        lang = lang.split("-")[0]
        body = self.preprocess(text, lang)
        tag = "zh-cn" if lang == "zh" else lang
        return list(self.bpe.encode(f"[{tag}]{body}".replace(" ", "[SPACE]")).ids)

    def pieces(self, ids: list[int]) -> list[str]:
        return [self.bpe.id_to_token(i) for i in ids]

    def line_language(self, line: str) -> str:
        """The language a (stripped, non-empty) lyric line is encoded in."""
        if STRUCTURE_TAG.match(line):
            return "en"
        lang = self.detector.detect(line)
        if lang not in LANGUAGE_TOKENS:
            lang = "en"
        return lang

    def tokenize_lyrics(self, lyrics: str) -> LyricTokens:
        """All lines of ``lyrics`` -> ids and mask (``[0]``/``[0]`` for empty lyrics)."""
        if not lyrics:
            return LyricTokens([STOP_ID], [0])
        ids = [START_ID]
        for raw in lyrics.split("\n"):
            line = raw.strip()
            if not line:
                ids.append(SPACE_ID)
                continue
            lang = self.line_language(line)
            try:
                ids += self.encode(line, lang) + [SPACE_ID]
            except Exception:  # noqa: BLE001 - as trained: a line that cannot be encoded is left out
                logger.warning("lyric line %r (language %s) could not be tokenized; skipped", line, lang)
        return LyricTokens(ids, [1] * len(ids))
