"""The candidates of the unkeyed-hash check: every unkeyed digest of every source identifier.

``ExpectPseudonymsNotUnkeyedHashes`` computes them inside its own query, from its ``source``. A
caller that checks several outputs of the same source (one per purpose) builds them once with
``unkeyed_digests`` and hands the result to each check: the digests of millions of identifiers
were the most expensive part of a pseudonymization gate, computed again for every purpose.

Only the digest text forms of the lengths a pseudonym has can match it, so a set is built for
given pseudonym lengths and says which it covers; a check fed a set counts any pseudonym of a
digest length the set does not cover as unchecked (a failure), never as clean.
"""
from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

from expectations import _sql

# Hash functions an unkeyed pseudonym is most often made with, as Spark SQL expressions.
DIGESTS = {
    "md5": "md5({x})",
    "sha1": "sha1({x})",
    "sha224": "sha2({x}, 224)",
    "sha256": "sha2({x}, 256)",
    "sha384": "sha2({x}, 384)",
    "sha512": "sha2({x}, 512)",
}
DEFAULT_ALGORITHMS = ("md5", "sha1", "sha256")

# Strip: remove leading / trailing ASCII whitespace (Java regex \s: [ \t\n\x0B\f\r]), U+3000
# (全角スペース) and NBSP, which Spark's plain trim() keeps. trim(BOTH set FROM x) needs no regex:
# 4x cheaper than regexp_replace on 12M identifiers. (\u escapes: Spark SQL literals have no \f.)
_STRIP = r"trim(BOTH ' \t\n\u000B\u000C\r\u3000\u00a0' FROM {x})"
# NFKC without a Python UDF: Spark 4 ships ICU4J (for collations) and reflect() calls its static
# Normalizer.compose(String, boolean compat=true), i.e. NFKC, on the executors. The CASE guards
# null, on which ICU throws. ASCII text is NFKC-invariant, so it skips the reflective call (one
# byte per character in UTF-8 <=> ASCII): most identifiers are ASCII, and there are millions.
_NFKC = ("CASE WHEN {x} IS NULL THEN NULL WHEN octet_length({x}) = char_length({x}) THEN {x} "
         "ELSE reflect('com.ibm.icu.text.Normalizer', 'compose', {x}, true) END")
# Bytes of each digest. A digest can only equal a pseudonym of the same length in one of the text
# forms a pseudonym may take: hex (2 per byte), unpadded base64url of the whole digest, or of its
# first 16 bytes (22 characters, the form of wasure's own 128-bit pseudonyms).
_DIGEST_BYTES = {"md5": 16, "sha1": 20, "sha224": 28, "sha256": 32, "sha384": 48, "sha512": 64}
# The lowercased, unpadded base64url text ({n}: its length) of base64 text {b}. Cut to length
# rather than trimmed of '=', lowercased before the URL alphabet's two characters are swapped in
# with replace(): Spark's translate() looks every character up in a map, and was half the cost of
# these forms (31M digests: 13.9 -> 8.3 s, measured).
_B64URL = "replace(replace(lower(substr({b}, 1, {n})), '+', '-'), '/', '_')"
# Spark's base64() writes MIME lines of 76 characters when spark.sql.chunkBase64String.enabled
# (the default in Spark 4.2): a longer text (sha512's: 88) loses its line break first.
_MIME_LINE = 76

# How a pseudonym cell is compared: trimmed and lowercased (upper-case hex is caught too).
PSEUDONYM_TEXT = "lower(trim({x}))"


def _apply(template: str, x: str) -> str:
    return template.replace("{x}", x)


def checked_algorithms(algorithms: Optional[Iterable[str]]) -> list[str]:
    chosen = list(algorithms or DEFAULT_ALGORITHMS)
    unknown = [a for a in chosen if a not in DIGESTS]
    if unknown:
        raise ValueError(f"unknown algorithms {unknown}; known: {sorted(DIGESTS)}")
    return chosen


def _b64url(hexed: str, length: int) -> str:
    encoded = f"base64(unhex({hexed}))"
    if -(-length // 4) * 4 > _MIME_LINE:       # the padded text's length
        encoded = f"replace({encoded}, '\\r\\n', '')"
    return _B64URL.replace("{n}", str(length)).replace("{b}", encoded)


def digest_forms(algorithm: str, x: str) -> list[tuple[int, str]]:
    """(text length, SQL) of each text form of ``algorithm``'s digest of ``x``, lowercased
    (Spark's md5 / sha1 / sha2 write lowercase hex)."""
    hexed = _apply(DIGESTS[algorithm], x)
    n = _DIGEST_BYTES[algorithm]
    forms = [(2 * n, hexed), (-(-4 * n // 3), _b64url(hexed, -(-4 * n // 3)))]
    if n > 16:
        forms.append((22, _b64url(f"substr({hexed}, 1, 32)", 22)))
    return forms


def digest_lengths(algorithms: Optional[Iterable[str]] = None) -> list[int]:
    """Every length a digest text form of ``algorithms`` can have: no other pseudonym can be one."""
    return sorted({length for a in checked_algorithms(algorithms) for length, _ in digest_forms(a, "x")})


def forms_sql(source: str) -> str:
    """One row per distinct form ``f`` of each value ``v`` of ``source``: raw and every combination
    of NFKC, strip and lowercase, in that order. NFKC and strip are computed once per value in an
    inner projection (inlined into 8 forms they ran 4 times each)."""
    return (
        "SELECT explode(array_distinct(array(v, lower(v), s, lower(s), n, lower(n), ns, lower(ns)))) AS f "
        f"FROM (SELECT v, s, n, {_apply(_STRIP, 'n')} AS ns "
        f"FROM (SELECT v, {_apply(_STRIP, 'v')} AS s, {_apply(_NFKC, 'v')} AS n FROM {source}) b0) b1"
    )


def digests_sql(values_of_source: str, distinct: bool, algorithms: Sequence[str], lengths: Optional[Sequence[int]],
                lengths_relation: str = "", function: Optional[str] = None) -> str:
    """A query of one column ``h`` (lowercased): the digests of every value ``v`` of
    ``values_of_source``. Only forms whose length is in ``lengths`` are computed; with ``lengths``
    None, the ones whose length is in the ``lengths`` array column of ``lengths_relation`` (a
    one-row relation known only when the query runs: CASE is lazy). ``function``: the name of a
    registered ``jvm_digests`` function for these algorithms and lengths, which writes the same
    texts in one call per value. Subqueries, no WITH: a cached DataFrame of it must be found again
    inside a query that has CTEs of its own, and Spark renumbers a nested WITH's relations there
    (the cache would miss)."""
    if lengths is None:
        exprs = [f"CASE WHEN array_contains(lengths, {n}) THEN {form} END"
                 for a in algorithms for n, form in digest_forms(a, "f")]
        cross = f" CROSS JOIN {lengths_relation}"
    else:
        wanted = set(lengths)
        exprs = [form for a in algorithms for n, form in digest_forms(a, "f") if n in wanted]
        cross = ""
    texts = f"{function}(f)" if function and lengths is not None else f"array({', '.join(exprs)})"
    # DISTINCT first (unless the caller's source is already distinct): a linking code repeats on
    # every row of its subject; hash each value once. Forms are deduplicated per value (most
    # identifiers are ASCII: NFKC and strip change nothing), not with a lake-wide DISTINCT: the
    # semi-join the digests feed needs no unique keys.
    src = f"(SELECT {'' if distinct else 'DISTINCT '}v FROM ({values_of_source}) u WHERE v IS NOT NULL) src"
    return (f"SELECT h FROM (SELECT explode({texts}) AS h FROM ({forms_sql(src)}) forms{cross}) d "
            "WHERE h IS NOT NULL")


JVM_DIGESTS_CLASS = "wasure.udf.UnkeyedDigests"


def jvm_digests(spark: Any, algorithms: Sequence[str], lengths: Sequence[int]) -> Optional[str]:
    """The name of a function (``value -> array<string>``) that writes what ``digest_forms`` writes
    for ``algorithms`` and ``lengths``, in the JVM: wasure-udf.jar's ``UnkeyedDigests``, registered
    under a random name; None without that class on the classpath (or without a classic session),
    where the SQL forms are the path. One call per value computes each digest once and writes its
    texts directly (Spark's SQL goes through hex, unhex, base64, a cut, lowercase and two
    replacements): 10.4M identifiers, 3 digests each, 21 -> 14-16 s (bench/analysis.md "Session 37")."""
    jvm = getattr(spark, "_jvm", None)
    if jvm is None or not lengths:
        return None
    from py4j.java_gateway import JavaClass

    found = functools.reduce(getattr, JVM_DIGESTS_CLASS.split("."), jvm)
    if not isinstance(found, JavaClass):
        return None
    name = f"unkeyed_digests_{uuid.uuid4().hex[:12]}"
    types = jvm.org.apache.spark.sql.types.DataTypes
    spark._jsparkSession.udf().register(name, found(list(algorithms), [int(n) for n in lengths]),
                                        types.createArrayType(types.StringType))
    return name


@dataclass(frozen=True)
class UnkeyedDigests:
    """The fingerprints (``fa``, ``fb``: ``_sql.fingerprint``) of every unkeyed ``algorithms``
    digest, in every text form of a length in ``lengths``, of every form of every source value;
    hash-partitioned on the fingerprint, so a join against it shuffles only the other side.
    Persist ``frame`` to share it between checks (and unpersist it after)."""
    frame: Any
    lengths: tuple[int, ...]
    algorithms: tuple[str, ...]


def unkeyed_digests(source: Any, lengths: Iterable[int], *, source_columns: Optional[Sequence[str]] = None,
                    algorithms: Optional[Iterable[str]] = None, source_distinct: bool = False) -> UnkeyedDigests:
    """The candidates ``ExpectPseudonymsNotUnkeyedHashes`` would compute from ``source`` (a
    DataFrame) for pseudonyms of ``lengths`` (``lower(trim(cell))``: e.g. the length of the
    pseudonyms a job writes); lengths no digest has are left out.

        digests = unkeyed_digests(identifiers, [22], source_distinct=True)
        digests.frame.persist()
        pseudonymized_suite(["email"], identifiers, digests=digests)   # once per output
    """
    chosen = checked_algorithms(algorithms)
    covered = tuple(sorted(set(int(n) for n in lengths) & set(digest_lengths(chosen))))
    columns = _sql.column_list(list(source_columns) if source_columns else list(source.columns), "source_columns")
    if not covered:         # no pseudonym can be a digest: nothing to compare with
        frame = source.sparkSession.createDataFrame([], "fa bigint, fb int")
    else:
        values = _sql.source_values(source, columns, "digest_source")
        function = jvm_digests(source.sparkSession, chosen, covered)
        frame = _sql.partitioned_on_fingerprint(
            source.sparkSession,
            f"SELECT {_sql.fingerprint('h')} FROM ({digests_sql(values, source_distinct, chosen, covered, '', function)}) digests")
    return UnkeyedDigests(frame, covered, tuple(chosen))
