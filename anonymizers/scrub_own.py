"""``scrub_own_values``: the subject's own identifying values (name in kanji and kana, address, phone,
email, ...) removed from that subject's free text, found by a join on the subject key, not by NER.

Values and text are compared on a folded form (case, hiragana/katakana, half/full width, voiced
marks), with separators a person may type between the parts of a phone number or an address
allowed. One Arrow (pandas) UDF per text column after the join: batches, never a Python call per row.
Detectors for identifiers anybody could have are in anonymizers/scrub.py.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Mapping, Sequence

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from anonymizers.registry import OperatorError, column_list, register, require_column, string_column
from anonymizers.scrub import OWN_PLACEHOLDER, _detection_table, _digits, _replace

# Detection priority: an earlier entity wins where matches overlap (an email's digits are not a phone;
# a number the words call a 住民票コード or a pension number is not a phone; a phone's digits are
# not a postal code).


def _fold_char(char: str) -> str:
    if "A" <= char <= "Z":
        return char.lower()
    if "\u3041" <= char <= "\u3096":                      # hiragana -> katakana (やまだ = ヤマダ)
        return chr(ord(char) + 0x60)
    return char


@lru_cache(maxsize=1)
def _own_table() -> dict[int, str]:
    """The detection mapping, then ASCII lower case and hiragana as katakana; one char to one char."""
    table = {cp: _fold_char(char) for cp, char in _detection_table().items()}
    for cp in [*range(ord("A"), ord("Z") + 1), *range(0x3041, 0x3097)]:
        table.setdefault(cp, _fold_char(chr(cp)))
    return table


_VOICED_MARKS = "\u3099\u309a"   # combining (half-width ﾞ ﾟ become these in the mapping above)


def own_text(text: str) -> tuple[str, list[int] | None]:
    """The form own values are matched in, and where each of its characters starts in ``text``
    (None: the same offsets). Like the detection text plus case and kana folding, and a kana with
    its separate voiced mark ('ｶﾞ', 'か゛') becomes the one voiced kana ('ガ'), so that one offset
    map is needed."""
    folded = text.translate(_own_table())
    if not any(mark in folded for mark in _VOICED_MARKS):
        return folded, None
    chars, starts, i = [], [], 0
    while i < len(folded):
        if i + 1 < len(folded) and folded[i + 1] in _VOICED_MARKS:
            composed = unicodedata.normalize("NFC", folded[i:i + 2])
            if len(composed) == 1:
                chars.append(_fold_char(composed))
                starts.append(i)
                i += 2
                continue
        chars.append(folded[i])
        starts.append(i)
        i += 1
    return "".join(chars), starts


_PHONE_VALUE = re.compile(r"\+?[0-9][0-9 ().-]*")
_PHONE_GAP = r"[\s().-]*"
_ADDRESS_SEPARATORS = ("丁目", "番地の", "番地", "番", "号", "の", "-")
_ADDRESS_GAP = r"\s*(?:丁目|番地の?|番|号|の|-)\s*"
_KANA_ONLY = re.compile(r"[\u30A1-\u30FA-]+")


def _phone_pattern(value: str) -> str:
    digits = _digits(value)
    alternatives = [r"\+?" + _PHONE_GAP.join(digits)]
    national = None
    if value.startswith("+81"):
        national = "0" + digits[2:].removeprefix("0")
    elif value.startswith("+1"):
        national = digits[1:]
    elif digits.startswith("0") and not digits.startswith("00"):
        alternatives.append(r"\+81" + _PHONE_GAP + r"(?:0" + _PHONE_GAP + r")?" + _PHONE_GAP.join(digits[1:]))
    if national:
        alternatives.append(_PHONE_GAP.join(national))
    # An area code in brackets takes its opening bracket along: (03)1234-5678, (555) 123-4567.
    return r"(?<![0-9])(?:\((?=[0-9]{2,5}\)))?(?:" + "|".join(alternatives) + r")(?![0-9])"


def _address_part(part: str) -> str:
    """A value part where '1丁目2番3号' also matches '1-2-3' and '1丁目2-3' (and the other way round)."""
    tokens = re.split(r"([0-9]+)", part)
    out = []
    for i, token in enumerate(tokens):
        if i % 2:
            out.append(token)
        elif 0 < i < len(tokens) - 1 and token in _ADDRESS_SEPARATORS:
            out.append(_ADDRESS_GAP)
        elif i == len(tokens) - 1 and i > 0 and token in ("号", "番地", "番"):
            out.append(r"(?:号|番地|番)?")
        else:
            out.append(re.escape(token))
    return "".join(out)


# Latin values stand alone: not inside a word, an email or a dotted name (x.smith@..., smith.io).
_LATIN_BEFORE = r"(?<![0-9a-z_%+@-])(?<![0-9a-z]\.)"
_LATIN_AFTER = r"(?![0-9a-z_%+@-])(?!\.[0-9a-z])"


def _bounded(body: str, first: str, last: str, email: bool = False) -> str:
    before = after = ""
    if first.isdigit():
        before = r"(?<![0-9])"
    elif email:
        before = r"(?<![0-9a-z._%+-])"
    elif first.isascii() and first.isalnum():
        before = _LATIN_BEFORE
    if last.isdigit():
        after = r"(?![0-9])"
    elif last.isascii() and last.isalnum():
        after = _LATIN_AFTER
    return before + body + after


def _value_pattern(value: str) -> str | None:
    """The regex of one own value (already in ``own_text`` form); None if too short to replace."""
    value = " ".join(value.split())
    compact = value.replace(" ", "")
    if len(compact) < 2:
        return None
    digits = _digits(value)
    if _PHONE_VALUE.fullmatch(value) and 7 <= len(digits) <= 15:
        return _phone_pattern(value)
    body = r"[\s・]*".join(_address_part(part) for part in value.split(" "))
    return _bounded(body, compact[0], compact[-1], email="@" in value)


def _part_pattern(part: str) -> str | None:
    """A name part (surname or given name) as its own value: kanji from 2 characters, kana and
    Latin letters from 3 (2 kana or 2 letters are too often part of another word)."""
    if len(part) < 2 or (len(part) < 3 and (_KANA_ONLY.fullmatch(part) or part.isascii())):
        return None
    if any(c.isdigit() for c in part):
        return None
    return _bounded(re.escape(part), part[0], part[-1])


@lru_cache(maxsize=4096)
def _own_matcher(values: tuple[tuple[str, ...], ...], placeholders: tuple[str, ...],
                 is_name: tuple[bool, ...]) -> tuple[re.Pattern, list[str]] | None:
    """One alternation of a subject's own values, longest first (a full name before its surname)."""
    entries: dict[str, tuple[int, str]] = {}
    for column_values, placeholder, name in zip(values, placeholders, is_name):
        for raw in column_values:
            value = " ".join(own_text(raw)[0].split())
            pattern = _value_pattern(value)
            if pattern and pattern not in entries:
                entries[pattern] = (len(value.replace(" ", "")), placeholder)
            if name:
                for part in value.split(" ") if " " in value else ():
                    part_pattern = _part_pattern(part)
                    if part_pattern and part_pattern not in entries:
                        entries[part_pattern] = (len(part), placeholder)
    if not entries:
        return None
    ordered = sorted(entries.items(), key=lambda item: (-item[1][0], item[0]))
    regex = re.compile("|".join(f"(?P<v{i}>{pattern})" for i, (pattern, _) in enumerate(ordered)))
    return regex, [placeholder for _, (_, placeholder) in ordered]


def scrub_own_text(text: str, values: Sequence[Sequence[str]], placeholders: Sequence[str],
                   is_name: Sequence[bool] | None = None) -> str:
    """Replace, in one text, every occurrence of the owner's values (the Python core of
    ``scrub_own_values``): ``values[i]`` are the values of column i, replaced by ``placeholders[i]``;
    ``is_name[i]`` also replaces the column's whitespace-separated parts (surname, given name)."""
    key = tuple(tuple(sorted({v for v in column if isinstance(v, str)})) for column in values)
    matcher = _own_matcher(key, tuple(placeholders), tuple(is_name or (False,) * len(key)))
    if matcher is None or not text:
        return text
    regex, labels = matcher
    normal, starts = own_text(text)
    spans = []
    for match in regex.finditer(normal):
        start, end = match.span()
        if start == end:
            continue
        if starts is not None:
            start, end = starts[start], starts[end] if end < len(starts) else len(text)
        spans.append((start, end, labels[int(match.lastgroup[1:])]))
    return _replace(text, spans)


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@register("scrub_own_values")
def scrub_own_values(df: DataFrame, text_columns: str | Sequence[str], owners: DataFrame, key: str,
                     value_columns: Sequence[str] | Mapping[str, str], name_columns: Sequence[str] = (),
                     placeholder: str = OWN_PLACEHOLDER) -> DataFrame:
    """Remove each subject's own identifying values from that subject's free text.

    ``df`` has the subject key column ``key`` and the string ``text_columns``; ``owners`` has ``key``
    and the ``value_columns`` (any type, cast to string; a mapping gives each column its placeholder,
    a list uses ``placeholder``). A left join on ``key`` (owner rows aggregated per key first, so
    duplicates never multiply ``df``'s rows; rows without an owner keep their text) brings each row
    its owner's values; every occurrence of one (>= 2 characters) in the row's texts becomes the
    placeholder. Matching folds NFKC forms, case, hiragana/katakana, half-width kana with voiced
    marks, spaces inside a value (山田太郎 = 山田 太郎 = 山田　太郎), a phone's punctuation and its +81
    form, and 丁目/番/号 against hyphens in addresses. ``name_columns`` (a subset of the value
    columns) also count their parts: surname and given name alone. Longest value first, so a full
    name goes before its surname. Returns exactly ``df``'s columns in ``df``'s order.
    """
    texts = column_list(df, text_columns, "text_columns")
    for name in texts:
        string_column(df, name, "text_columns")
    require_column(df, key, "key")
    require_column(owners, key, "key")
    if isinstance(value_columns, Mapping):
        columns = column_list(owners, list(value_columns), "value_columns")
        labels = [value_columns[c] for c in columns]
    else:
        columns = column_list(owners, value_columns, "value_columns")
        labels = [placeholder] * len(columns)
    if key in columns:
        raise OperatorError("value_columns must not list the key column")
    if key in texts:
        raise OperatorError("text_columns must not list the key column")
    if any(not isinstance(label, str) or not label for label in labels):
        raise OperatorError("placeholders must be non-empty strings")
    names = list(name_columns) if not isinstance(name_columns, str) else [name_columns]
    unknown = [c for c in names if c not in columns]
    if unknown:
        raise OperatorError(f"name_columns: column {unknown[0]!r} is not one of value_columns")
    is_name = tuple(c in names for c in columns)

    taken = set(df.columns)
    prefix = "_own"
    while any(c.startswith(prefix) for c in taken):
        prefix = "_" + prefix
    owner_key = f"{prefix}_key"
    value_names = [f"{prefix}_{i}" for i in range(len(columns))]
    per_owner = owners.groupBy(F.col(_quoted(key)).alias(owner_key)).agg(
        *[F.collect_set(F.col(_quoted(c)).cast("string")).alias(v) for c, v in zip(columns, value_names)])
    joined = df.join(per_owner, F.col(_quoted(key)) == F.col(owner_key), "left")
    own = F.struct(*[F.col(v) for v in value_names])
    label_tuple = tuple(labels)

    @pandas_udf("string")
    def own_batch(texts: pd.Series, values: pd.DataFrame) -> pd.Series:
        columns_of_values = [values[v] for v in value_names]
        out = []
        for text, *row_values in zip(texts, *columns_of_values):
            if not isinstance(text, str):
                out.append(None)
                continue
            lists = [list(v) if v is not None and not isinstance(v, float) else [] for v in row_values]
            out.append(scrub_own_text(text, lists, label_tuple, is_name))
        return pd.Series(out, index=texts.index, dtype=object)

    replaced = joined.withColumns({name: own_batch(F.col(_quoted(name)), own) for name in texts})
    return replaced.select(*[F.col(_quoted(c)) for c in df.columns])
