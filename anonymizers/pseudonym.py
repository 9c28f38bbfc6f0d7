"""Keyed pseudonyms (仮名加工情報, APPI Enforcement Rules art. 31 item 1): HMAC-SHA256 per purpose.

A pseudonym is the first 16 bytes (128 bits) of HMAC-SHA256(purpose key, value), written as
base64url without padding: 22 characters (encoding ``base64url128``). 128 bits keep collisions
out of reach (about 2^64 values before one is likely) at a third of the bytes of 64 hex
characters, which alone made pseudonymizing cost 1.44x a plain copy (docs/pseudonymization.md).
Outputs written before in 64-hex form (``hex``) are rewritten by the next pseudonymize run;
retained copies keep theirs, so erasure looks a subject up in both forms (``pseudonym_forms``).

Same key + same value gives the same pseudonym in every table, so pseudonymized tables still join;
without the key nobody can recompute or reverse the mapping. One key per processing purpose keeps
pseudonyms of different purposes unlinkable.

The key never becomes a Column literal. Two implementations give the same pseudonyms, byte for byte:
- ``python``: an Arrow (pandas) UDF with the key in its closure.
- ``jvm`` (default when ``wasure-udf.jar`` from ``make jars`` is on Spark's classpath): a Java UDF
  (``jars/udf/wasure/udf/KeyedPseudonym.java``) registered under a random name in the DataFrame's
  session, the key in the UDF object's field; several times cheaper per value than Python's HMAC.
  It normalizes non-ASCII text as Python's ``unicodedata`` does with the ICU4J Spark ships
  (``UnicodeText.java``: characters newer than Python's Unicode version are left as Python leaves
  them), so no Python worker is in the plan. With a Python or an ICU4J of other Unicode versions
  than the pair ``UnicodeText`` knows (3.11's 14.0, Spark 4.2's 17.0), non-ASCII values go to the
  Python twin instead.
Spark ships either to executors as serialized bytes but prints only the UDF's name in ``explain()``
and the query execution.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import unicodedata
import uuid
from typing import Callable, Sequence

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from anonymizers.registry import OperatorError, column_list, register

MIN_KEY_BYTES = 32  # the SHA-256 block output size; shorter keys weaken HMAC below 256 bits
PSEUDONYM_ENCODING = "base64url128"
LEGACY_ENCODING = "hex"          # the pseudonyms of wasure before the 128-bit format
ENCODINGS = ("base64url128", "hex", "base64url")
ENGINES = ("auto", "jvm", "python")
JVM_CLASS = "wasure.udf.KeyedPseudonym"
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


def normalize_value(value: str) -> str:
    """strip + NFKC, and lowercase emails: 'Ｔａｒｏ@Example.com ' and 'taro@example.com' are one person."""
    value = unicodedata.normalize("NFKC", value).strip()
    return value.lower() if _EMAIL.fullmatch(value) else value


def _check_key_bytes(key: object) -> None:
    if not isinstance(key, (bytes, bytearray)):
        raise OperatorError(f"key must be bytes, not {type(key).__name__}")
    if len(key) < MIN_KEY_BYTES:
        raise OperatorError(f"key must be at least {MIN_KEY_BYTES} bytes long (got {len(key)} bytes)")


def _validate_key(key: object, key_id: object) -> None:
    _check_key_bytes(key)
    if not isinstance(key_id, str) or not key_id.strip():
        raise OperatorError("key_id must be a non-empty string naming the key (not the key itself)")
    if bytes(key) in key_id.encode("utf-8"):
        # key_id is written into every row; a key pasted there would leak it.
        raise OperatorError("key_id must not contain the key")


def encode_digest(raw: bytes, encoding: str) -> str:
    """An HMAC-SHA256 digest as text: ``hex`` (64 characters), ``base64url`` (43) or
    ``base64url128`` (its first 16 bytes, 22 characters); base64url never padded."""
    if encoding == "hex":
        return raw.hex()
    if encoding == "base64url128":
        raw = raw[:16]
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


PSEUDONYM_LENGTH = len(encode_digest(bytes(32), PSEUDONYM_ENCODING))    # 22 characters


def pseudonym_of(key: bytes, value: str, *, normalize: bool = True, encoding: str = PSEUDONYM_ENCODING) -> str:
    """The pseudonym ``keyed_pseudonym`` writes for one value, computed on the driver (erasure
    looks a subject's rows up in 仮名加工情報 by it; the key never enters a Spark plan)."""
    _check_key_bytes(key)
    raw = hmac.new(bytes(key), (normalize_value(value) if normalize else value).encode("utf-8"), hashlib.sha256).digest()
    return encode_digest(raw, encoding)


def pseudonym_forms(key: bytes, value: str) -> list[str]:
    """Every form a copy may call ``value`` by: today's pseudonym and the legacy 64-hex one."""
    return [pseudonym_of(key, value, encoding=e) for e in (PSEUDONYM_ENCODING, LEGACY_ENCODING)]


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
            out.append(encode_digest(mac.digest(), encoding))
        return out

    # Arrow UDF: a batch of values per call, not a Python call per row through pickling. Linking
    # codes repeat (one member id on every event row of the member), so each distinct value of the
    # batch is hashed once.
    @pandas_udf("string")
    def keyed_pseudonym(values: pd.Series) -> pd.Series:
        # Deduplicated by Python's own equality: pandas' unique() takes "1" and "1\x00x" for one
        # value (its string hash table stops at NUL), which left "1" without a pseudonym.
        distinct = list(dict.fromkeys(v for v in values if v is not None and v == v))
        if not distinct:
            # The JVM engine sends only non-ASCII values here: most batches are all null.
            return pd.Series([None] * len(values), index=values.index, dtype=object)
        pseudonyms = dict(zip(distinct, digests(distinct)))
        # Built as an object Series of str/None: a batch of nulls only must stay a string column.
        return pd.Series([None if v is None or v != v else pseudonyms[v] for v in values],
                         index=values.index, dtype=object)

    return keyed_pseudonym


def _jvm_pseudonymizer(spark: SparkSession, key: bytes, normalize: bool, encoding: str) -> Callable | None:
    """The Java twin of ``_pseudonymizer``, registered in ``spark``'s session; None without the jar."""
    from py4j.java_gateway import JavaClass

    jvm = spark._jvm
    java_class = jvm
    for part in JVM_CLASS.split("."):
        java_class = getattr(java_class, part)
    if not isinstance(java_class, JavaClass):
        return None
    # A random name per registration: two keys in one session never share a function name, and
    # the name says nothing about the key.
    name = f"keyed_pseudonym_{uuid.uuid4().hex[:12]}"
    # With normalization, non-ASCII text is normalized in the JVM too when it knows how Python's
    # Unicode version differs from its ICU4J's (Spark's own); else those values go to the Python twin.
    unicode = unicodedata.unidata_version if normalize and java_class.normalizesUnicode(unicodedata.unidata_version) else None
    spark._jsparkSession.udf().register(name, java_class(bytearray(key), normalize, encoding, unicode),
                                        jvm.org.apache.spark.sql.types.DataTypes.StringType)
    if not normalize or unicode:
        return lambda column: F.call_udf(name, column)
    python = _pseudonymizer(key, normalize, encoding)

    def pseudonym(column):
        # The Java UDF returns null for non-ASCII values; only those reach Python (the others are
        # sent as nulls, which the Arrow UDF skips).
        non_ascii = F.octet_length(column) != F.length(column)
        return F.coalesce(F.call_udf(name, column), python(F.when(non_ascii, column)))

    return pseudonym


def keyed_hash(spark: SparkSession, key: bytes, *, normalize: bool = False, encoding: str = "hex",
               engine: str = "auto") -> Callable[[Column], Column]:
    """HMAC-SHA256(key, value) as a function of a string Column, for callers that need the keyed
    hash itself rather than a pseudonymized table (e.g. the deletion ledger's subject hashes). The
    same engines as ``keyed_pseudonym``; without ``normalize`` the value's UTF-8 bytes are hashed as
    they are, like ``hmac.new(key, value.encode("utf-8"), sha256)``."""
    _check_key_bytes(key)
    if encoding not in ENCODINGS:
        raise OperatorError(f"encoding must be one of {', '.join(ENCODINGS)}")
    if engine not in ENGINES:
        raise OperatorError(f"engine must be one of {', '.join(ENGINES)}")
    udf = _jvm_pseudonymizer(spark, bytes(key), bool(normalize), encoding) if engine != "python" else None
    if udf is None:
        if engine == "jvm":
            raise OperatorError(f"engine 'jvm' needs {JVM_CLASS} on Spark's classpath: run `make jars`")
        udf = _pseudonymizer(key, bool(normalize), encoding)
    return udf


@register("keyed_pseudonym")
def keyed_pseudonym(df: DataFrame, columns: str | Sequence[str], key: bytes, key_id: str,
                    key_id_column: str = "pseudonym_key_id", normalize: bool = True,
                    encoding: str = PSEUDONYM_ENCODING, engine: str = "auto") -> DataFrame:
    """Replace each of ``columns`` by HMAC-SHA256(key, value) (its first 128 bits, base64url,
    unless ``encoding`` says otherwise) and record ``key_id`` per row.

    Non-string columns are hashed as their Spark string form; nulls stay null. ``key_id_column``
    tells a later re-keying or erasure job which key made the pseudonyms. ``engine``: ``jvm``,
    ``python``, or ``auto`` (the JVM UDF when its jar is on the classpath, else Python).
    """
    _validate_key(key, key_id)
    names = column_list(df, columns)
    if not isinstance(key_id_column, str) or not key_id_column or key_id_column in names:
        raise OperatorError("key_id_column must be a column name other than the pseudonymized columns")
    udf = keyed_hash(df.sparkSession, key, normalize=normalize, encoding=encoding, engine=engine)
    out = df.withColumns({name: udf(F.col(name).cast("string")) for name in names})
    return out.withColumn(key_id_column, F.lit(key_id))
