"""Free-text scrubbing: identifiers inside text columns become placeholders ('[EMAIL]', '[PHONE]', ...).

Detection runs on a copy of the text in which every character with a one-character NFKC form is
replaced by it ('０９０－１２３４' -> '090-1234'), plus the dash look-alikes people type in numbers
('ー', '−', '‐'). The mapping is one character to one character, so match offsets in the copy are
offsets in the original and everything that is not an identifier is returned untouched.

Numbers are replaced only when their check digit holds (Luhn for cards, mod-11 for My Number and
licences), so order numbers and other digit runs survive. The check digits need Python, so the work
is one Arrow (pandas) UDF per column: batches of rows per call, never a Python call per row.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Callable, Sequence

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from anonymizers.checkdigits import licence_valid, luhn_valid, my_number_valid
from anonymizers.registry import OperatorError, column_list, register, string_column

# Detection priority: an earlier entity wins where matches overlap (an email's digits are not a phone).
ENTITIES = ("EMAIL", "CARD", "MYNUMBER", "LICENCE", "PASSPORT", "PHONE")
PLACEHOLDERS = {entity: f"[{entity}]" for entity in ENTITIES}

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


_LICENCE_CONTEXT = re.compile(r"免許|licen[cs]e|driv", re.IGNORECASE)


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


# Patterns run on the detection text (ASCII digits and letters). Digits right after '+' are an
# international phone number, never a card or a 12-digit identifier (+819012345678). Grouped 12-digit
# forms must not be the start or the middle of a longer group (1234-5678-9012-3456).
_TWELVE = (r"(?<![0-9+])(?<![0-9][ -])(?:[0-9]{4}(?P<s>[ -])[0-9]{4}(?P=s)[0-9]{4}(?!(?P=s)[0-9])"
           r"|[0-9]{12})(?![0-9])")
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


def scrub_text(text: str, entities: Sequence[str] | None = None) -> str:
    """Replace identifiers in one text by placeholders (the Python core of ``scrub``)."""
    detect = detection_text(text)
    spans: list[tuple[int, int, str]] = []
    for entity in _entity_list(entities):
        for pattern, valid in DETECTORS[entity]:
            for match in pattern.finditer(detect):
                start, end = match.span()
                if any(start < e and s < end for s, e, _ in spans) or (valid and not valid(match)):
                    continue
                spans.append((start, end, entity))
    if not spans:
        return text
    pieces, position = [], 0
    for start, end, entity in sorted(spans):
        pieces += [text[position:start], PLACEHOLDERS[entity]]
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
