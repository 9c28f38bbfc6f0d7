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

import ipaddress
import re
import unicodedata
from functools import lru_cache
from typing import Callable, Iterable, Sequence

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from anonymizers.checkdigits import licence_valid, luhn_valid, my_number_valid
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


def _digits(text: str) -> str:
    return re.sub(r"[^0-9]", "", text)


# ---------------------------------------------------------------- context words

_CLAUSE_END = re.compile(r"[。!?\n]")


def _before(match: re.Match, window: int, clause: bool = True) -> str:
    """Up to ``window`` characters before the match; with ``clause``, only those after the last
    sentence end (a context word in an earlier sentence says nothing about this number)."""
    text = match.string[max(0, match.start() - window):match.start()]
    if clause:
        ends = list(_CLAUSE_END.finditer(text))
        if ends:
            text = text[ends[-1].end():]
    return text


def _context(words: re.Pattern, window: int = 30, clause: bool = True, near: int | None = None,
             unless: re.Pattern | None = None) -> Callable[[re.Match], bool]:
    """Does a context word precede the match (``near``: ending at most that many characters before;
    ``unless``: and no other label, such as 注文 or 電話, stands between the word and the match)?"""
    def has(match: re.Match) -> bool:
        before = _before(match, window, clause)
        found = list(words.finditer(before))
        if not found:
            return False
        last = found[-1].end()
        if unless is not None and unless.search(before, last):
            return False
        return near is None or len(before) - last <= near

    return has


def _words(pattern: str) -> re.Pattern:
    """Context words, matched in the detection text: there 'ー' is '-' (バージョン is バ-ジョン), and
    '\\b' would not separate 'MAC' from 'アドレス' (both are word characters), hence the lookarounds."""
    return re.compile(pattern, re.IGNORECASE)


_LICENCE_CONTEXT = _words(r"免許|licen[cs]e|driv")
_JUMINHYO_WORDS = _words(r"住民票|住基|juminhyo|resident(?:s'?)?\s*(?:record|registry|registration)")
_PENSION_WORDS = _words(r"年金|pension")
_HEALTH_WORDS = _words(r"保険証|被保険者|保険者|健康保険|国保|社保|後期高齢|資格確認書|insurance|insurer")
_BANK_WORDS = _words(r"普通|当座|貯蓄|口座|支店|銀行|信用金庫|信金|信用組合|労働金庫|農協|振込|振り込|振替|預金"
                     r"|bank|account|acct|a/c")
_YUCHO_WORDS = _words(r"ゆうちょ|郵便貯金|japan\s*post\s*bank")
_POSTAL_WORDS = _words(r"〒|郵便番号|zip|postal|post\s*code|postcode")
_MAC_WORDS = _words(r"(?<![a-z])mac(?![a-z])|物理アドレス|physical\s*address|bssid|wi-?fi\s*address")
_VERSION_WORDS = _words(r"(?:(?<![a-z])v|(?<![a-z])ver\.?|version|バ-ジョン|firmware|ファ-ムウェア|ファ-ム)\s*$")
# Words that make a bare 1234-567890 an order or reference number, not a pension number.
_REFERENCE_WORDS = _words(r"注文|受付|伝票|品番|型番|会員|問い?合わせ|管理番号|お客様番号|(?<![a-z])order|(?<![a-z])ref(?![a-z])"
                          r"|invoice|tracking|(?<![a-z])ticket|(?<![a-z])item|(?<![a-z])sku")
# Labels that name some other number: after one of them, an earlier context word no longer applies.
_OTHER_LABELS = _words(_REFERENCE_WORDS.pattern + r"|電話|携帯|(?<![a-z])tel(?![a-z])|phone|fax|郵便|〒|zip|postal|金額|amount")
# Units after a number that make it an amount or a count ('千' of 千葉県 is not one).
_AMOUNT_AFTER = re.compile(r"\s*(?:[万千億]?(?:円|ドル|件|個|回|人|台)|[万千億](?![\u4E00-\u9FFF])|%|yen\b|jpy\b|usd\b"
                           r"|dollars?\b)", re.IGNORECASE)
_PREFECTURE_AFTER = re.compile(r"\s*(?:東京都|北海道|京都府|大阪府|[\u4E00-\u9FFF]{2,3}県)")


def _not_amount(match: re.Match) -> bool:
    start = match.start()
    if start and match.string[start - 1] in "¥$€£":
        return False
    return not _AMOUNT_AFTER.match(match.string, match.end())


def _all(*checks: Callable[[re.Match], bool]) -> Callable[[re.Match], bool]:
    return lambda match: all(check(match) for check in checks)


# ---------------------------------------------------------------- validators

def _phone_ok(match: re.Match) -> bool:
    digits = _digits(match.group())
    if match.group().startswith("+"):
        national = digits[2:].removeprefix("0")       # +81 (0)90 ... : the trunk 0 is optional
        return len(national) in (9, 10) and national[0] != "0"
    if len(digits) == 10:
        return digits[1] != "0"                       # 00x are carrier-selection prefixes
    return len(digits) == 11 and (digits[:3] in ("020", "050", "060", "070", "080", "090")
                                  or digits[:4] == "0800")


def _e164_ok(match: re.Match) -> bool:
    return 8 <= len(_digits(match.group())) <= 15       # country code + national number (E.164)


def _twelve_digit(entity: str) -> Callable[[re.Match], bool]:
    def valid(match: re.Match) -> bool:
        digits = _digits(match.group())
        is_my_number, is_licence = my_number_valid(digits), licence_valid(digits)
        if is_my_number and is_licence:
            # Both check digits hold (about 1 in 110 numbers): the words before the number decide.
            before = match.string[max(0, match.start() - 20):match.start()]
            return (entity == "LICENCE") == bool(_LICENCE_CONTEXT.search(before))
        return is_my_number if entity == "MYNUMBER" else is_licence

    return valid


def _labelled(words: re.Pattern, phone_length: bool = False) -> Callable[[re.Match], bool]:
    """A number the words name: a context word before it in the sentence, no other label in between,
    not an amount. With ``phone_length`` (10 or 11 digits, a phone's length), a number that starts
    with 0 only right after the words."""
    context, right_after = _context(words, unless=_OTHER_LABELS), _context(words, near=8, unless=_OTHER_LABELS)

    def valid(match: re.Match) -> bool:
        if not _not_amount(match) or not context(match):
            return False
        return not phone_length or match.group()[0] != "0" or right_after(match)

    return valid


# 住民票コード: no published check-digit rule is relied on (the words decide).
_juminhyo_ok = _labelled(_JUMINHYO_WORDS, phone_length=True)
_pension_ok = _labelled(_PENSION_WORDS, phone_length=True)
_reference_before = _context(_REFERENCE_WORDS, window=16)
_postal_words_before = _context(_POSTAL_WORDS, window=16)
_mac_words_before = _context(_MAC_WORDS)


def _pension_grouped_ok(match: re.Match) -> bool:
    if not _not_amount(match):
        return False
    if _pension_ok(match):
        return True
    # 1234-567890 without the word: the form alone, unless it is an order number or a phone (0...).
    return match.group("ps") == "-" and match.group()[0] != "0" and not _reference_before(match)


def _not_date(match: re.Match) -> bool:
    digits = _digits(match.group())
    if len(digits) != 8 or digits[:2] not in ("19", "20"):
        return True
    month, day = int(digits[4:6]), int(digits[6:])
    return not (1 <= month <= 12 and 1 <= day <= 31)


def _after_postal_mark(match: re.Match) -> bool:
    return match.string[max(0, match.start() - 3):match.start()].rstrip().endswith("〒")


def _postal_ok(match: re.Match) -> bool:
    if not _not_amount(match):
        return False
    return (_after_postal_mark(match) or _postal_words_before(match)
            or bool(_PREFECTURE_AFTER.match(match.string, match.end())))


_bank_labelled = _labelled(_BANK_WORDS)


def _bank_ok(match: re.Match) -> bool:
    return not _after_postal_mark(match) and _bank_labelled(match)


# 記号・番号 pairs: of a 保険証, unless ゆうちょ was named after the insurance words (a bank book's
# 記号 and 番号). The pair is specific enough to look further back, across sentences.
_health_symbol_ok = _context(_HEALTH_WORDS, window=40, clause=False, unless=_YUCHO_WORDS)


def _has_digit(match: re.Match) -> bool:
    return any(c.isdigit() for c in match.group())


def _mac_ok(match: re.Match) -> bool:
    # A MAC without any digit (aa:bb:cc:dd:ee:ff) is a documentation example, and text without
    # digits is never touched; a dotted all-digit group (0012.3456.7890) needs the word MAC.
    if not _has_digit(match):
        return False
    return any(c.isalpha() for c in match.group()) or "." not in match.group() or _mac_words_before(match)


def _ipv4_ok(match: re.Match) -> bool:
    return not _VERSION_WORDS.search(match.string[max(0, match.start() - 12):match.start()])


def _ipv6_span(match: re.Match) -> tuple[int, int] | None:
    start, end = match.span()
    text = match.string
    if text[start] == ":" and text[start:start + 2] != "::":
        start += 1
    if end - start > 2 and text[end - 1] == ":" and text[end - 2:end] != "::":
        end -= 1
    candidate = text[start:end]
    if not any(c.isdigit() for c in candidate):
        return None
    groups = [g for g in re.split(r"[:%]", candidate.split("%")[0]) if g]
    if len(groups) < 2:                                   # '::1', '::' and the like identify nobody
        return None
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return None
    return start, end


# Patterns run on the detection text (ASCII digits and letters). Digits right after '+' are an
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
