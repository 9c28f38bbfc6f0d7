"""Free-text scrubbing: identifiers inside text columns become placeholders ('[EMAIL]', '[PHONE]', ...).

``scrub``: detectors for identifiers anybody could have (emails, phones, cards, My Number, licence,
passport, 住民票コード, 基礎年金番号, health-insurance numbers, bank accounts, postal codes, IP and
MAC addresses). The subject's own values (``scrub_own_values``) are in anonymizers/scrub_own.py.

Detection runs on a copy of the text in which every character with a one-character NFKC form is
replaced by it ('０９０－１２３４' -> '090-1234'), plus the dash look-alikes people type in numbers
('ー', '−', '‐'). The mapping is one character to one character, so match offsets in the copy are
offsets in the original and everything that is not an identifier is returned untouched.

Numbers are replaced only when their check digit holds (Luhn for cards, mod-11 for My Number and
licences) or when words around them say what they are (住民票, 年金, 保険証, 口座, 〒, ...), so order
numbers, dates and amounts survive. The work needs Python (check digits, context), so it is one Arrow
(pandas) UDF per column: batches of rows per call, never a Python call per row.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Callable, Iterable, Sequence

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from anonymizers.checkdigits import luhn_valid
from anonymizers.scrub_context import (
    _YUCHO_WORDS, _HEALTH_WORDS, _all, _bank_ok, _context, _digits, _e164_ok, _has_digit, _health_symbol_ok,
    _ipv4_ok, _ipv6_span, _juminhyo_ok, _labelled, _mac_ok, _mac_words_before, _not_date, _pension_grouped_ok,
    _pension_ok, _phone_ok, _postal_ok, _twelve_digit,
)
from anonymizers.registry import OperatorError, column_list, register, string_column

# Detection priority: an earlier entity wins where matches overlap (an email's digits are not a phone;
# a number the words call a 住民票コード or a pension number is not a phone; a phone's digits are
# not a postal code).
ENTITIES = ("EMAIL", "CARD", "MYNUMBER", "LICENCE", "PASSPORT", "JUMINHYO", "PENSION", "HEALTH_INSURANCE",
            "BANK_ACCOUNT", "MAC", "IP", "PHONE", "POSTAL")
PLACEHOLDERS = {entity: f"[{entity}]" for entity in ENTITIES}
OWN_PLACEHOLDER = "[OWN]"

_DASHES = "‐‑‒–—―−ーｰ"  # hyphen, dashes, minus, katakana prolonged sound marks (typed in phone numbers)


@lru_cache(maxsize=1)
def _detection_table() -> dict[int, str]:
    table = {}
    # BMP (full-width forms, ideographic space) and the mathematical alphanumerics (𝟎𝟗𝟎).
    for cp in [*range(0xD800), *range(0xE000, 0x10000), *range(0x1D400, 0x1D800)]:
        char = chr(cp)
        normal = unicodedata.normalize("NFKC", char)
        if len(normal) == 1 and normal != char:
            table[cp] = normal
    for dash in _DASHES:
        table[ord(dash)] = "-"
    return table


def detection_text(text: str) -> str:
    """NFKC, character by character, keeping the length (see module docstring)."""
    return text.translate(_detection_table())


# international phone number, never a card or a 12-digit identifier (+819012345678). Grouped 12-digit
# forms must not be the start or the middle of a longer group (1234-5678-9012-3456).
_TWELVE = (r"(?<![0-9+])(?<![0-9][ -])(?:[0-9]{4}(?P<s>[ -])[0-9]{4}(?P=s)[0-9]{4}(?!(?P=s)[0-9])"
           r"|[0-9]{12})(?![0-9])")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_HEX = "[0-9A-Fa-f]"
_LABEL = r"\s*(?:[:は]\s*)?"                  # 'word: value', 'word value', 'wordはvalue'
_SYMBOL_VALUE = r"[\u4E00-\u9FFF]{0,3}[0-9A-Za-z\u30A1-\u30FA-]*?[0-9][0-9A-Za-z\u30A1-\u30FA-]*?"

# entity -> [(pattern, validator)]. A pattern with groups named id, id2, id3 replaces those groups
# (the words between them stay: '記号 [HEALTH_INSURANCE] 番号 [HEALTH_INSURANCE]'); otherwise the match.
DETECTORS: dict[str, list[tuple[re.Pattern, Callable[[re.Match], bool] | None]]] = {
    "EMAIL": [(re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
                          r"\.[A-Za-z]{2,}", re.ASCII), None)],
    "CARD": [(re.compile(r"(?<![0-9+])(?:[0-9]{13,19}|[0-9]{4}(?P<s>[ -])(?:[0-9]{4}(?P=s)[0-9]{4}"
                         r"(?P=s)[0-9]{4}(?:(?P=s)[0-9]{1,3})?|[0-9]{6}(?P=s)[0-9]{4,5}))(?![0-9])",
                         re.ASCII), lambda m: luhn_valid(_digits(m.group())))],
    "MYNUMBER": [(re.compile(_TWELVE, re.ASCII), _twelve_digit("MYNUMBER"))],
    "LICENCE": [(re.compile(_TWELVE, re.ASCII), _twelve_digit("LICENCE"))],
    # Japanese passport: two letters and seven digits (TK1234567).
    "PASSPORT": [(re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{7}(?![A-Za-z0-9])", re.ASCII), None)],
    # 住民票コード: 11 digits (or 4-4-3) after the words 住民票 / 住基 / resident record code.
    "JUMINHYO": [(re.compile(r"(?<![0-9])(?<![0-9][ -])(?:[0-9]{11}|[0-9]{4}(?P<js>[ -])[0-9]{4}(?P=js)[0-9]{3}"
                             r"(?!(?P=js)[0-9]))(?![0-9])", re.ASCII), _juminhyo_ok)],
    # 基礎年金番号: 4 + 6 digits. 1234-567890 on its own; 1234 567890 and 1234567890 after 年金/pension.
    "PENSION": [
        (re.compile(r"(?<![0-9-])(?<![0-9][ .])[0-9]{4}(?P<ps>[ -])[0-9]{6}(?![0-9]|(?P=ps)[0-9])", re.ASCII),
         _pension_grouped_ok),
        (re.compile(r"(?<![0-9])(?<![0-9][ -])[0-9]{10}(?![0-9])", re.ASCII), _pension_ok),
    ],
    # Health insurance (保険証): 記号・番号 (and 枝番) pairs, and 6/8-digit 保険者番号 / 被保険者番号,
    # after the words 保険証 / 被保険者 / 保険者 / 健康保険 / insurance.
    "HEALTH_INSURANCE": [
        (re.compile(r"記号\s*[・/]?\s*番号" + _LABEL + r"(?P<id>[0-9A-Za-z\u30A1-\u30FA]{1,10})\s*[・/ -]\s*"
                    r"(?P<id2>[0-9]{1,10})(?![0-9])(?:\s*[・/ -]\s*(?P<id3>[0-9]{2})(?![0-9]))?"), _health_symbol_ok),
        (re.compile(r"記号" + _LABEL + r"(?P<id>" + _SYMBOL_VALUE + r")\s*(?:[、,/・]\s*)?番号" + _LABEL
                    + r"(?P<id2>[0-9]{1,10})(?![0-9])(?:\s*(?:[、,/・(]\s*)?枝番" + _LABEL
                    + r"(?P<id3>[0-9]{1,3})(?![0-9]))?"), _health_symbol_ok),
        (re.compile(r"(?<![0-9-])(?<![0-9][ .])(?:[0-9]{8}|[0-9]{6})(?![0-9]|-[0-9])", re.ASCII),
         _all(_labelled(_HEALTH_WORDS), _not_date)),
    ],
    # Bank accounts: 7 digits, optionally after a 3-digit branch (123-1234567), after 普通 / 当座 /
    # 口座 / 銀行 / 振込 / account; ゆうちょ 記号 (1xxx0) and 番号 (up to 8 digits) after ゆうちょ.
    "BANK_ACCOUNT": [
        (re.compile(r"記号" + _LABEL + r"(?P<id>1[0-9]{3}0)\s*(?:[、,/・]\s*)?番号" + _LABEL
                    + r"(?P<id2>[0-9]{1,8})(?![0-9])"),
         _context(_YUCHO_WORDS, window=40, clause=False, unless=_HEALTH_WORDS)),
        (re.compile(r"(?<![0-9-])1[0-9]{3}0[ -][0-9]{1,8}(?![0-9]|-[0-9])", re.ASCII), _context(_YUCHO_WORDS)),
        (re.compile(r"(?<![0-9-])(?<![0-9][ .])(?:[0-9]{3}[ -])?[0-9]{7}(?![0-9]|-[0-9])", re.ASCII), _bank_ok),
    ],
    # MAC: aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff (Cisco), and 12 hex digits after 'MAC'.
    "MAC": [
        (re.compile(rf"(?<![0-9A-Za-z])(?<!\b{_HEX}{{2}}[:-]){_HEX}{{2}}(?P<m>[:-]){_HEX}{{2}}(?:(?P=m){_HEX}{{2}}){{4}}"
                    rf"(?![0-9A-Za-z]|(?P=m){_HEX})", re.ASCII), _mac_ok),
        (re.compile(rf"(?<![0-9A-Za-z.]){_HEX}{{4}}\.{_HEX}{{4}}\.{_HEX}{{4}}(?![0-9A-Za-z]|\.{_HEX})", re.ASCII),
         _mac_ok),
        (re.compile(rf"(?<![0-9A-Za-z]){_HEX}{{12}}(?![0-9A-Za-z])", re.ASCII), _all(_has_digit, _mac_words_before)),
    ],
    # IP: IPv4 with valid octets (not a version number: v1.2.3.4), IPv6 as ipaddress accepts it.
    "IP": [
        (re.compile(rf"(?<![0-9A-Za-z])(?:{_HEX}{{0,4}}:){{2,7}}(?:{_OCTET}(?:\.{_OCTET}){{3}}|{_HEX}{{1,4}})?"
                    r"(?:%[0-9A-Za-z]+)?(?![0-9A-Za-z])", re.ASCII), _ipv6_span),
        (re.compile(rf"(?<![0-9.])(?:{_OCTET}\.){{3}}{_OCTET}(?![0-9]|\.[0-9])", re.ASCII), _ipv4_ok),
    ],
    "PHONE": [
        # Domestic: 090-1234-5678, 03-1234-5678, (03)1234-5678, 0120-123-456, 09012345678.
        (re.compile(r"(?<![0-9+])(?:\(0[0-9]{1,4}\)|0[0-9]{1,4})[ -]?(?:\([0-9]{1,4}\)|[0-9]{1,4})"
                    r"[ -]?[0-9]{3,4}(?![0-9])", re.ASCII), _phone_ok),
        # International: +81 90-1234-5678, +81-3-1234-5678, +81(0)3 1234 5678, +819012345678.
        (re.compile(r"(?<![0-9+])\+81[ -]?(?:\(0\)[ -]?)?\(?[0-9]{1,4}\)?[ -]?[0-9]{1,4}[ -]?[0-9]{3,4}"
                    r"(?![0-9])", re.ASCII), _phone_ok),
        # Other countries (E.164): +1-555-123-4567, +44 20 7946 0958, +49 (30) 123456.
        (re.compile(r"(?<![0-9+])\+(?!81)[1-9][0-9]{0,2}(?:[ -]?\(?[0-9]{1,5}\)?){2,5}(?![0-9])", re.ASCII), _e164_ok),
    ],
    # Postal codes: 123-4567 / 1234567 after 〒 or 郵便番号 / zip / postal code, or before a prefecture.
    "POSTAL": [(re.compile(r"(?<![0-9-])(?<![0-9][ .])[0-9]{3}-?[0-9]{4}(?![0-9]|-[0-9])", re.ASCII), _postal_ok)],
}


def _entity_list(entities: Sequence[str] | None) -> tuple[str, ...]:
    if entities is None:
        return ENTITIES
    if isinstance(entities, str) or not isinstance(entities, Sequence) or not entities:
        raise OperatorError("entities must be a non-empty list of entity names or None for all")
    unknown = [e for e in entities if e not in ENTITIES]
    if unknown:
        raise OperatorError(f"entities: unknown entity {unknown[0]!r}; known: {', '.join(ENTITIES)}")
    return tuple(e for e in ENTITIES if e in entities)   # priority order, whatever the caller's order


def _match_spans(match: re.Match, verdict: object) -> list[tuple[int, int]]:
    if isinstance(verdict, tuple):                       # a validator that narrowed the span
        return [verdict]
    groups = match.re.groupindex
    if "id" in groups:
        return [match.span(g) for g in ("id", "id2", "id3") if g in groups and match.group(g) is not None]
    return [match.span()]


def _candidates(pattern: re.Pattern, text: str, valid: Callable | None) -> Iterable[list[tuple[int, int]]]:
    """Accepted matches of one pattern. After a rejected match the search resumes one character
    later, not after it: a wrong candidate must not hide a right one that overlaps it."""
    position = 0
    while position <= len(text):
        match = pattern.search(text, position)
        if match is None:
            return
        verdict = valid(match) if valid else True
        if verdict:
            yield _match_spans(match, verdict)
            position = max(match.end(), match.start() + 1)
        else:
            position = match.start() + 1


def scrub_text(text: str, entities: Sequence[str] | None = None) -> str:
    """Replace identifiers in one text by placeholders (the Python core of ``scrub``)."""
    detect = detection_text(text)
    spans: list[tuple[int, int, str]] = []
    for entity in _entity_list(entities):
        for pattern, valid in DETECTORS[entity]:
            for found in _candidates(pattern, detect, valid):
                if any(start < e and s < end for start, end in found for s, e, _ in spans):
                    continue
                spans.extend((start, end, entity) for start, end in found)
    return _replace(text, [(start, end, PLACEHOLDERS[entity]) for start, end, entity in spans])


def _replace(text: str, spans: list[tuple[int, int, str]]) -> str:
    if not spans:
        return text
    pieces, position = [], 0
    for start, end, placeholder in sorted(spans):
        pieces += [text[position:start], placeholder]
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


@register("scrub")
def scrub(df: DataFrame, columns: str | Sequence[str], entities: Sequence[str] | None = None) -> DataFrame:
    """Scrub identifiers from string ``columns``; ``entities`` limits which kinds (default: all)."""
    names = column_list(df, columns)
    for name in names:
        string_column(df, name, "columns")
    chosen = _entity_list(entities)

    @pandas_udf("string")
    def scrub_batch(texts: pd.Series) -> pd.Series:
        return texts.map(lambda text: scrub_text(text, chosen), na_action="ignore")

    return df.withColumns({name: scrub_batch(F.col(name)) for name in names})
