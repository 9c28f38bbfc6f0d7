"""Keyed pseudonyms (仮名加工情報, APPI Enforcement Rules art. 31 item 1): HMAC-SHA256 per purpose.

Same key + same value gives the same pseudonym in every table, so pseudonymized tables still join;
without the key nobody can recompute or reverse the mapping. One key per processing purpose keeps
pseudonyms of different purposes unlinkable.

The key never becomes a Column literal: it lives only in the closure of an Arrow (pandas) UDF, which
Spark ships to executors as pickled bytes but never prints in ``explain()`` or the query execution.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import unicodedata
from typing import Sequence

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from anonymizers.registry import OperatorError, column_list, register

MIN_KEY_BYTES = 32  # the SHA-256 block output size; shorter keys weaken HMAC below 256 bits
ENCODINGS = ("hex", "base64url")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


def normalize_value(value: str) -> str:
    """strip + NFKC, and lowercase emails: 'Ｔａｒｏ@Example.com ' and 'taro@example.com' are one person."""
    value = unicodedata.normalize("NFKC", value).strip()
    return value.lower() if _EMAIL.fullmatch(value) else value


def _validate_key(key: object, key_id: object) -> None:
    if not isinstance(key, (bytes, bytearray)):
        raise OperatorError(f"key must be bytes, not {type(key).__name__}")
    if len(key) < MIN_KEY_BYTES:
        raise OperatorError(f"key must be at least {MIN_KEY_BYTES} bytes long (got {len(key)} bytes)")
    if not isinstance(key_id, str) or not key_id.strip():
        raise OperatorError("key_id must be a non-empty string naming the key (not the key itself)")
    if bytes(key) in key_id.encode("utf-8"):
        # key_id is written into every row; a key pasted there would leak it.
        raise OperatorError("key_id must not contain the key")


def _pseudonymizer(key: bytes, normalize: bool, encoding: str):
    key = bytes(key)  # private copy: a caller's bytearray could change after the plan is built

    def digests(values) -> list[str]:
        # The keyed HMAC state is derived once per batch and copied per value (HMAC objects do not
        # pickle, so it is built here, on the worker).
        keyed = hmac.new(key, digestmod=hashlib.sha256)
        out = []
        for value in values:
            mac = keyed.copy()
            mac.update((normalize_value(value) if normalize else value).encode("utf-8"))
            raw = mac.digest()
            out.append(raw.hex() if encoding == "hex" else base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii"))
        return out

    # Arrow UDF: a batch of values per call, not a Python call per row through pickling. Linking
    # codes repeat (one member id on every event row of the member), so each distinct value of the
    # batch is hashed once.
    @pandas_udf("string")
    def keyed_pseudonym(values: pd.Series) -> pd.Series:
        distinct = values.dropna().unique()
        pseudonyms = dict(zip(distinct, digests(distinct)))
        # Built as an object Series of str/None: a batch of nulls only must stay a string column.
        return pd.Series([None if v is None or v != v else pseudonyms[v] for v in values],
                         index=values.index, dtype=object)

    return keyed_pseudonym


@register("keyed_pseudonym")
def keyed_pseudonym(df: DataFrame, columns: str | Sequence[str], key: bytes, key_id: str,
                    key_id_column: str = "pseudonym_key_id", normalize: bool = True,
                    encoding: str = "hex") -> DataFrame:
    """Replace each of ``columns`` by HMAC-SHA256(key, value) and record ``key_id`` per row.

    Non-string columns are hashed as their Spark string form; nulls stay null. ``key_id_column``
    tells a later re-keying or erasure job which key made the pseudonyms.
    """
    _validate_key(key, key_id)
    names = column_list(df, columns)
    if encoding not in ENCODINGS:
        raise OperatorError(f"encoding must be one of {', '.join(ENCODINGS)}")
    if not isinstance(key_id_column, str) or not key_id_column or key_id_column in names:
        raise OperatorError("key_id_column must be a column name other than the pseudonymized columns")
    udf = _pseudonymizer(key, bool(normalize), encoding)
    out = df.withColumns({name: udf(F.col(name).cast("string")) for name in names})
    return out.withColumn(key_id_column, F.lit(key_id))
