"""What makes a match an identifier in free text (anonymizers/scrub.py): the words around it
(context: 住民票, 年金, 保険証, 口座, 〒, ...) and the validators that accept or reject a candidate
(check digits, lengths, not an amount, not a date, not a version)."""
from __future__ import annotations

import ipaddress
import re
from typing import Callable

from anonymizers.checkdigits import licence_valid, my_number_valid


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
