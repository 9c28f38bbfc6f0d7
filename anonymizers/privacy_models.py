"""Privacy models: k-anonymity, distinct l-diversity, entropy l-diversity.

Each model is a predicate over the statistics of one equivalence class (its size, the number of
distinct sensitive values, the entropy of the sensitive values). The same predicate serves

- the partitioning algorithm, vectorized over numpy arrays of candidate classes (``holds``), and
- the checks of a released DataFrame (``check_*``), where the statistics are computed per class
  with ``groupBy`` over the quasi-identifier columns and only the number of violating classes
  comes back to the driver.

An equivalence class is the set of rows sharing the same (generalized) quasi-identifier values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

# Entropies are compared with a tolerance: a class with exactly l equally frequent values has
# entropy log(l) up to rounding, and must pass.
_EPS = 1e-9


@dataclass(frozen=True)
class ClassStats:
    """Statistics of one or many classes (scalars or equally long numpy arrays)."""

    size: np.ndarray | float
    distinct: np.ndarray | float | None = None  # distinct sensitive values
    entropy: np.ndarray | float | None = None   # natural-log entropy of the sensitive values


@dataclass(frozen=True)
class KAnonymity:
    k: int

    sensitive = None

    def __post_init__(self):
        if int(self.k) < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")

    def holds(self, stats: ClassStats):
        return np.asarray(stats.size) >= self.k

    def holds_column(self, size: Column, distinct: Column | None = None, entropy: Column | None = None) -> Column:
        return size >= F.lit(self.k)


@dataclass(frozen=True)
class DistinctLDiversity:
    """Every class holds at least ``l`` different values of the ``sensitive`` attribute."""

    sensitive: str
    l: int

    def __post_init__(self):
        if int(self.l) < 1:
            raise ValueError(f"l must be >= 1, got {self.l}")

    def holds(self, stats: ClassStats):
        return np.asarray(stats.distinct) >= self.l

    def holds_column(self, size: Column, distinct: Column | None = None, entropy: Column | None = None) -> Column:
        return distinct >= F.lit(self.l)


@dataclass(frozen=True)
class EntropyLDiversity:
    """The entropy of the sensitive values of every class is at least log(l)."""

    sensitive: str
    l: float

    def __post_init__(self):
        if float(self.l) < 1:
            raise ValueError(f"l must be >= 1, got {self.l}")

    def holds(self, stats: ClassStats):
        return np.asarray(stats.entropy) >= math.log(self.l) - _EPS

    def holds_column(self, size: Column, distinct: Column | None = None, entropy: Column | None = None) -> Column:
        return entropy >= F.lit(math.log(self.l) - _EPS)


LDiversity = Union[DistinctLDiversity, EntropyLDiversity]
PrivacyModel = Union[KAnonymity, DistinctLDiversity, EntropyLDiversity]


def holds_all(models: Sequence[PrivacyModel], stats: ClassStats):
    """Element-wise AND of every model's predicate."""
    result = np.ones(np.shape(stats.size), dtype=bool)
    for model in models:
        result &= model.holds(stats)
    return result


# --- statistics of the sensitive attribute, shared with the algorithm ---------------------------
def sensitive_stats(counts: np.ndarray) -> tuple[float, int, float]:
    """(size, distinct, entropy) of one class from its per-sensitive-value counts."""
    counts = np.asarray(counts, dtype=np.float64)
    counts = counts[counts > 0]
    size = float(counts.sum())
    if size == 0:
        return 0.0, 0, 0.0
    p = counts / size
    return size, int(len(counts)), float(-(p * np.log(p)).sum())


# --- checks on a DataFrame ----------------------------------------------------------------------
def class_statistics(df: DataFrame, quasi_identifiers: Sequence[str], sensitive: str | None = None) -> DataFrame:
    """One row per equivalence class: the QI values, ``size``, and (with a sensitive attribute)
    ``distinct`` and ``entropy`` of its values. Distributed; nothing is collected."""
    qis = list(quasi_identifiers)
    if sensitive is None:
        return df.groupBy(*qis).agg(F.count(F.lit(1)).alias("size"))
    per_value = df.groupBy(*qis, sensitive).agg(F.count(F.lit(1)).alias("_n"))
    # H = log(N) - sum(n log n) / N, so one pass over the (class, value) counts is enough.
    return per_value.groupBy(*qis).agg(
        F.sum("_n").alias("size"),
        F.count(F.lit(1)).alias("distinct"),
        F.sum(F.col("_n") * F.log(F.col("_n"))).alias("_nlogn"),
    ).withColumn("entropy", F.log(F.col("size")) - F.col("_nlogn") / F.col("size")).drop("_nlogn")


def check_models(df: DataFrame, quasi_identifiers: Sequence[str], models: Sequence[PrivacyModel]) -> tuple[bool, int]:
    """(all classes satisfy every model, number of violating classes)."""
    sensitives = {m.sensitive for m in models if m.sensitive is not None}
    if len(sensitives) > 1:
        raise ValueError(f"one sensitive attribute per check, got {sorted(sensitives)}")
    stats = class_statistics(df, quasi_identifiers, next(iter(sensitives), None))
    ok = F.lit(True)
    for model in models:
        ok = ok & model.holds_column(
            F.col("size"),
            F.col("distinct") if sensitives else None,
            F.col("entropy") if sensitives else None,
        )
    violating = stats.filter(~ok).count()
    return violating == 0, int(violating)


def check_k_anonymity(df: DataFrame, quasi_identifiers: Sequence[str], k: int) -> tuple[bool, int]:
    return check_models(df, quasi_identifiers, [KAnonymity(k)])


def check_distinct_l_diversity(df: DataFrame, quasi_identifiers: Sequence[str], sensitive: str, l: int) -> tuple[bool, int]:
    return check_models(df, quasi_identifiers, [DistinctLDiversity(sensitive, l)])


def check_entropy_l_diversity(df: DataFrame, quasi_identifiers: Sequence[str], sensitive: str, l: float) -> tuple[bool, int]:
    return check_models(df, quasi_identifiers, [EntropyLDiversity(sensitive, l)])
