"""The subject bucket on the driver: Spark's ``pmod(xxhash64(subject), n)`` computed in Python.

Tables are partitioned by ``subject_bucket`` (jobs/lake/layout.py). To select a few subjects' rows a
job names their buckets in the query, so the read prunes every other partition; computing the
buckets with Spark would cost a Spark job per table and lookup. ``xxh64`` is the reference XXH64
(Spark's ``XXH64.hashUnsafeBytes`` over the UTF-8 bytes, seed 42); tests/test_storage.py checks it
against Spark's own ``xxhash64`` on ASCII, Japanese and long ids.
"""
from __future__ import annotations

SPARK_SEED = 42
_M = (1 << 64) - 1
_P1, _P2, _P3, _P4, _P5 = (11400714785074694791, 14029467366897019727, 1609587929392839161,
                           9650029242287828579, 2870177450012600261)


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M


def _round(acc: int, lane: int) -> int:
    return (_rotl((acc + lane * _P2) & _M, 31) * _P1) & _M


def _lane(data: bytes, i: int, width: int = 8) -> int:
    return int.from_bytes(data[i:i + width], "little")


def xxh64(data: bytes, seed: int = SPARK_SEED) -> int:
    """XXH64 of ``data`` as Spark returns it: a signed 64-bit integer."""
    n, i = len(data), 0
    if n >= 32:
        v = [(seed + _P1 + _P2) & _M, (seed + _P2) & _M, seed & _M, (seed - _P1) & _M]
        while i + 32 <= n:
            v = [_round(acc, _lane(data, i + 8 * k)) for k, acc in enumerate(v)]
            i += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M
        for acc in v:
            h = ((h ^ _round(0, acc)) * _P1 + _P4) & _M
    else:
        h = (seed + _P5) & _M
    h = (h + n) & _M
    while i + 8 <= n:
        h = (_rotl(h ^ _round(0, _lane(data, i)), 27) * _P1 + _P4) & _M
        i += 8
    if i + 4 <= n:
        h = (_rotl(h ^ (_lane(data, i, 4) * _P1) & _M, 23) * _P2 + _P3) & _M
        i += 4
    while i < n:
        h = (_rotl(h ^ (data[i] * _P5) & _M, 11) * _P1) & _M
        i += 1
    h ^= h >> 33
    h = (h * _P2) & _M
    h ^= h >> 29
    h = (h * _P3) & _M
    h ^= h >> 32
    return h - (1 << 64) if h >= 1 << 63 else h


def bucket_of(subject: str, buckets: int) -> int:
    """``subject_bucket(subject, buckets)`` without Spark (Python's % is Spark's pmod for n > 0)."""
    return xxh64(subject.encode("utf-8")) % buckets
