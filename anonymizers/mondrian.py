"""Distributed Mondrian k-anonymity / l-diversity with taxonomy-aware splits (APPI 匿名加工情報).

Algorithm (top-down specialization per partition, LeFevre et al.'s Mondrian generalized to
hierarchies):

- Every quasi-identifier value is a numeric *code*: the value itself for an ``IntervalHierarchy``,
  the depth-first leaf index for a ``CategoricalHierarchy`` (so that every hierarchy node is a
  contiguous code range). A class is released as the interval [min-max] of its values, or as the
  lowest common ancestor of its values in the taxonomy; its loss is the GCP cell penalty of that.
- A partition is split recursively. Candidate splits, all evaluated by the total loss of the
  resulting children over *all* attributes (a split on one attribute usually narrows the others):
  a binary cut of one attribute's sorted codes at any position (numeric intervals, and ordered
  cuts of the taxonomy's leaf order), and for a categorical attribute the multiway split into the
  children of the partition's current taxonomy node, where children too small for the privacy
  models are pooled into one remainder class. Every child must satisfy every privacy model;
  a partition with no valid split becomes an equivalence class.
- Optional suppression: with a budget of ``suppression * rows`` per partition, whole tuples are
  removed from classes when that lowers the total loss counting each suppressed row as fully
  generalized (the GCP penalty of ``*`` in every QI), greedily by gain per suppressed row.

Distributed design (the dataset is never collected):

1. ``groupBy(QIs[, sensitive])`` turns rows into distinct tuples with a weight; the rest of the
   algorithm works on tuples, and the released rows are joined back on the original QI values.
2. Distributed phase, while some partition holds more than ``local_threshold`` rows: one
   aggregation per round gives, per active partition, a histogram per attribute
   (count, min, max per leaf code or numeric bucket). From these summaries only, the driver picks
   a split per partition (the best own-attribute loss reduction among a balanced binary cut and the
   taxonomy multiway split) and assigns new partition ids through a broadcast join with a small
   split table (partition -> attribute, code -> child map). With l-diversity, one more
   aggregation checks the children's sensitive values and cancels splits that would break l.
3. Local phase (anonymizers/mondrian_local.py): ``groupBy(partition).applyInPandas`` finishes the
   partitioning of each partition on one executor with vectorized numpy (prefix/suffix min-max
   scans evaluate every cut of an attribute in one pass).
4. The generalized tuples are joined back to the input rows; suppressed rows are dropped.

The driver holds the hierarchies, the per-round histograms (active partitions x attribute domain
sizes) and the split tables; never rows.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from anonymizers.frames import local_frame
from anonymizers.hierarchy import Hierarchy, IntervalHierarchy
from anonymizers.mondrian_local import local_phase, merge_invalid_groups
from anonymizers.privacy_models import (
    ClassStats,
    KAnonymity,
    LDiversity,
    PrivacyModel,
    holds_all,
)

log = logging.getLogger(__name__)

DEFAULT_LOCAL_THRESHOLD = 50_000
NUMERIC_BUCKETS = 256  # resolution of numeric splits in the distributed phase only

_W = "__wasure_weight"
_PID = "__wasure_pid"
_CODES = "__wasure_codes"
_SUPP = "__wasure_suppressed"


class AnonymizationError(ValueError):
    """The privacy models cannot be satisfied (e.g. fewer than k rows in the whole input)."""

# =================================================================================================
@dataclass
class _Split:
    attribute: int
    child_of_code: dict[int, int]  # code -> child slot (0..n_children-1)
    sizes: list[float]

    @property
    def sizes_total(self) -> float:
        return float(sum(self.sizes))


def _split_from_histogram(j: int, h: Hierarchy, codes: np.ndarray, counts: np.ndarray,
                          vmin: np.ndarray, vmax: np.ndarray, k: int) -> tuple[float, _Split] | None:
    """Best split of one attribute of one partition from its histogram (codes sorted): a balanced
    binary cut, or for a taxonomy the children of the current node. Scored by own-attribute loss
    reduction (the only loss a marginal histogram can measure)."""
    n = counts.sum()
    if len(codes) < 2:
        return None

    def cost(lo, hi):
        lo_, hi_ = np.atleast_1d(lo), np.atleast_1d(hi)
        if h.kind == "categorical":
            return h.cost(lo_.astype(np.int64), hi_.astype(np.int64))
        return h.cost(lo_, hi_)

    before = float(cost(vmin.min(), vmax.max())[0]) * n
    best = None
    cum = np.cumsum(counts)[:-1]
    ok = np.nonzero((cum >= k) & (n - cum >= k))[0]
    if len(ok):
        c = int(ok[np.argmin(np.abs(cum[ok] - n / 2))])  # Mondrian's median cut
        after = (float(cost(vmin[: c + 1].min(), vmax[: c + 1].max())[0]) * cum[c]
                 + float(cost(vmin[c + 1:].min(), vmax[c + 1:].max())[0]) * (n - cum[c]))
        slots = (np.arange(len(codes)) > c).astype(int)
        best = (before - after, _Split(j, dict(zip(codes.tolist(), slots.tolist())), [cum[c], n - cum[c]]))
    if h.kind == "categorical":
        groups = h.child_groups(codes.astype(np.int64), int(codes.min()), int(codes.max()))
        labels = merge_invalid_groups(groups, counts.astype(np.float64), None, [KAnonymity(k)])
        if labels is not None:
            sizes = np.bincount(labels, weights=counts)
            after = sum(float(cost(codes[labels == g].min(), codes[labels == g].max())[0]) * sizes[g]
                        for g in range(len(sizes)))
            if best is None or before - after > best[0]:
                best = (before - after, _Split(j, dict(zip(codes.tolist(), labels.tolist())), sizes.tolist()))
    return best


def _choose_splits(summary: pd.DataFrame, hierarchies: Sequence[Hierarchy], k: int) -> dict[int, _Split]:
    """summary columns: pid, attr, code, n, vmin, vmax (one row per partition/attribute/code)."""
    chosen: dict[int, _Split] = {}
    for pid, part in summary.groupby("pid", sort=True):
        best = None
        for j, hist in part.groupby("attr", sort=True):
            hist = hist.sort_values("code")
            found = _split_from_histogram(int(j), hierarchies[int(j)], hist["code"].to_numpy(),
                                          hist["n"].to_numpy(dtype=np.float64),
                                          hist["vmin"].to_numpy(dtype=np.float64),
                                          hist["vmax"].to_numpy(dtype=np.float64), k)
            if found is None or found[0] <= 0:
                continue
            # Own-attribute gain per row, discounted by imbalance: a split that peels off a small
            # child leaves a partition almost as large, and each round is a pass over the data.
            score = found[0] / found[1].sizes_total * (1 - max(found[1].sizes) / found[1].sizes_total)
            if best is None or score > best[0]:
                best = (score, found[1])
        if best is not None:
            chosen[int(pid)] = best[1]
    return chosen


# =================================================================================================
# Spark entry point
# =================================================================================================
def _bind_domains(df: DataFrame, qis: Sequence[str], hierarchies: Mapping[str, Hierarchy],
                  ) -> tuple[list[Hierarchy], int, dict[str, list[float]]]:
    """Validate the QIs in one aggregation (no nulls, categorical values known to the hierarchy),
    give interval hierarchies their domain bounds and compute the numeric bucket cut points of the
    distributed phase in the same pass. Returns (hierarchies, row count, cut points per numeric QI)."""
    probs = [i / NUMERIC_BUCKETS for i in range(NUMERIC_BUCKETS + 1)]
    aggs = [F.count(F.lit(1)).alias("rows")]
    float_types = (T.FloatType, T.DoubleType)
    for i, q in enumerate(qis):
        h = hierarchies[q]
        bad = F.col(q).isNull()
        if isinstance(df.schema[q].dataType, float_types):
            bad = bad | F.isnan(F.col(q))
        if h.kind == "categorical":
            bad = bad | ~F.col(q).cast("string").isin(h.leaves)
        else:
            value = F.col(q).try_cast("double")  # a non-numeric value counts as bad, not a crash
            bad = bad | value.isNull()
            aggs += [F.min(value).alias(f"min{i}"), F.max(value).alias(f"max{i}"),
                     F.percentile_approx(value, probs, 4 * NUMERIC_BUCKETS).alias(f"cuts{i}")]
        aggs.append(F.sum(F.when(bad, 1).otherwise(0)).alias(f"bad{i}"))
    row = df.agg(*aggs).collect()[0]
    bound: list[Hierarchy] = []
    cuts: dict[str, list[float]] = {}
    for i, q in enumerate(qis):
        if row[f"bad{i}"]:
            what = "null or not in its hierarchy" if hierarchies[q].kind == "categorical" else "null, NaN or not numeric"
            raise AnonymizationError(f"quasi-identifier {q!r}: {row[f'bad{i}']} values are {what}")
        h = hierarchies[q]
        if isinstance(h, IntervalHierarchy):
            h = h.with_domain(row[f"min{i}"] if row[f"min{i}"] is not None else 0.0,
                              row[f"max{i}"] if row[f"max{i}"] is not None else 0.0)
            cuts[q] = sorted(set(row[f"cuts{i}"] or [0.0]))
        bound.append(h)
    return bound, int(row["rows"]), cuts


def _partition_stats(tuples: DataFrame, pid_col, sensitive: str | None) -> pd.DataFrame:
    """Per partition: size, and distinct / entropy of the sensitive attribute (small: collected)."""
    if sensitive is None:
        rows = tuples.groupBy(pid_col.alias("pid")).agg(F.sum(_W).alias("size")).collect()
        return pd.DataFrame([r.asDict() for r in rows], columns=["pid", "size"])
    per_value = tuples.groupBy(pid_col.alias("pid"), F.col(sensitive)).agg(F.sum(_W).alias("_n"))
    rows = per_value.groupBy("pid").agg(
        F.sum("_n").alias("size"), F.count(F.lit(1)).alias("distinct"),
        F.sum(F.col("_n") * F.log("_n")).alias("nlogn")).collect()
    out = pd.DataFrame([r.asDict() for r in rows], columns=["pid", "size", "distinct", "nlogn"])
    out["entropy"] = np.log(out["size"].astype(float)) - out["nlogn"].astype(float) / out["size"].astype(float)
    return out


def _stats_ok(stats: pd.DataFrame, models: Sequence[PrivacyModel], sensitive: str | None) -> np.ndarray:
    return holds_all(models, ClassStats(
        stats["size"].to_numpy(dtype=np.float64),
        stats["distinct"].to_numpy(dtype=np.float64) if sensitive else None,
        stats["entropy"].to_numpy(dtype=np.float64) if sensitive else None))


def _code_columns(tuples: DataFrame, qis: Sequence[str], hierarchies: Sequence[Hierarchy],
                  cuts: Mapping[str, list[float]]) -> DataFrame:
    """Array column of per-attribute codes for the distributed phase: the leaf index for a
    taxonomy, an approximate-quantile bucket for a numeric attribute (exact for <= 256 values)."""
    exprs = []
    for q, h in zip(qis, hierarchies):
        if h.kind == "categorical":
            mapping = F.create_map(*[F.lit(x) for pair in ((leaf, code) for code, leaf in enumerate(h.leaves)) for x in pair])
            exprs.append(mapping[F.col(q).cast("string")].cast("int"))
        else:
            bounds = F.array(*[F.lit(float(c)) for c in cuts[q]])
            # bucket = number of cut points <= value (the minimum is a cut point, so >= 1)
            exprs.append(F.size(F.filter(bounds, lambda c: c <= F.col(q).cast("double"))).cast("int"))
    return tuples.withColumn(_CODES, F.array(*exprs))


def _apply_splits(tuples: DataFrame, split_tables: list[DataFrame]) -> DataFrame:
    for table in split_tables:
        joined = tuples.join(F.broadcast(table), on=_PID, how="left")
        code = F.try_element_at(F.col(_CODES), (F.col("__attr") + 1).cast("int"))
        tuples = joined.withColumn(_PID, F.coalesce(F.try_element_at(F.col("__children"), code), F.col(_PID))) \
            .drop("__attr", "__children")
    return tuples


def _diverse_splits(current: DataFrame, proposed_table: DataFrame, rows: list, children: dict,
                    models: Sequence[PrivacyModel], sensitive: str) -> tuple[list, dict]:
    """The proposed splits whose children all satisfy the models: l-diversity cannot be read off
    marginal histograms, so the children's sensitive values are counted and the splits that would
    break it are cancelled. Returns (split rows, children) kept."""
    stats = _partition_stats(_apply_splits(current, [proposed_table]), F.col(_PID), sensitive)
    ok = dict(zip(stats["pid"].astype(int), _stats_ok(stats, models, sensitive)))
    rejected = {pid for pid, kids in children.items() if not all(ok.get(c, False) for c, _ in kids)}
    return ([r for r in rows if r[0] not in rejected],
            {pid: kids for pid, kids in children.items() if pid not in rejected})


def _distributed_phase(tuples: DataFrame, qis: Sequence[str], hierarchies: Sequence[Hierarchy],
                       cuts: Mapping[str, list[float]], models: Sequence[PrivacyModel], sensitive: str | None,
                       k: int, n_rows: int, threshold: int) -> tuple[DataFrame, list[DataFrame]]:
    """Split partitions larger than ``threshold`` from summaries; returns the coded tuples and the
    split tables to apply in order (the pid of a tuple is a function of its QI values)."""
    spark = tuples.sparkSession
    coded = _code_columns(tuples, qis, hierarchies, cuts).withColumn(_PID, F.lit(0).cast("long"))
    split_schema = T.StructType([
        T.StructField(_PID, T.LongType()), T.StructField("__attr", T.IntegerType()),
        T.StructField("__children", T.MapType(T.IntegerType(), T.LongType()))])
    numeric_value = [F.col(q).cast("double") if h.kind == "numeric" else F.col(_CODES)[j].cast("double")
                     for j, (q, h) in enumerate(zip(qis, hierarchies))]
    tables: list[DataFrame] = []
    # The tuples with their current partition id, cached per round so that a round reads the
    # previous round's result instead of re-running every earlier split join.
    assigned = coded.persist()
    cached = [assigned]
    active = {0: n_rows}
    next_pid = 1
    round_no = 0
    try:
        while active:
            round_no += 1
            # isin() of many literals becomes a hash-set lookup (InSet): no join needed.
            current = assigned.filter(F.col(_PID).isin(sorted(active)))
            exploded = current.select(
                F.col(_PID), F.col(_W),
                F.explode(F.array(*[F.struct(F.lit(j).alias("attr"), F.col(_CODES)[j].alias("code"), v.alias("v"))
                                    for j, v in enumerate(numeric_value)])).alias("e"))
            summary_rows = exploded.groupBy(F.col(_PID).alias("pid"), F.col("e.attr").alias("attr"),
                                            F.col("e.code").alias("code")) \
                .agg(F.sum(_W).alias("n"), F.min("e.v").alias("vmin"), F.max("e.v").alias("vmax")).collect()
            while len(cached) > 1:  # `assigned` is materialized now: its parent can go
                cached.pop(0).unpersist()
            summary = pd.DataFrame([r.asDict() for r in summary_rows],
                                   columns=["pid", "attr", "code", "n", "vmin", "vmax"])
            splits = _choose_splits(summary, hierarchies, k)
            children: dict[int, list[tuple[int, float]]] = {}
            rows = []
            for pid, split in sorted(splits.items()):
                ids = list(range(next_pid, next_pid + len(split.sizes)))
                next_pid += len(ids)
                children[pid] = list(zip(ids, split.sizes))
                rows.append((pid, split.attribute, {int(c): ids[slot] for c, slot in split.child_of_code.items()}))
            if rows and sensitive is not None:
                rows, children = _diverse_splits(current, local_frame(spark, rows, split_schema), rows, children,
                                                 models, sensitive)
            if not rows:
                break
            table = local_frame(spark, rows, split_schema)
            tables.append(table)
            assigned = _apply_splits(assigned, [table]).persist()
            cached.append(assigned)
            active = {c: n for kids in children.values() for c, n in kids if n > threshold}
            log.info("mondrian round %d: %d partitions split, %d still above %d rows",
                     round_no, len(children), len(active), threshold)
    finally:
        # The released DataFrame is lazy and may outlive this call: it re-derives the partition
        # ids from `coded` and the split tables instead of pinning cached data.
        for frame in cached:
            frame.unpersist()
    return coded, tables


def _models(df: DataFrame, qis: list[str], hierarchies: Mapping[str, Hierarchy], k: int,
            l_diversity: LDiversity | None, suppression: float, class_column: str) -> tuple[list[PrivacyModel], str | None]:
    """The arguments checked (ValueError naming the bad one): (privacy models, sensitive column)."""
    if not qis:
        raise ValueError("at least one quasi-identifier is required")
    missing = [c for c in qis if c not in df.columns] + [q for q in qis if q not in hierarchies]
    if missing:
        raise ValueError(f"quasi-identifiers without a column or a hierarchy: {sorted(set(missing))}")
    if class_column in df.columns:
        raise ValueError(f"class_column {class_column!r} already exists in the input")
    if not 0 <= suppression < 1:
        raise ValueError(f"suppression must be a fraction in [0, 1), got {suppression}")
    models: list[PrivacyModel] = [KAnonymity(int(k))]
    if l_diversity is None:
        return models, None
    if l_diversity.sensitive not in df.columns or l_diversity.sensitive in qis:
        raise ValueError(f"sensitive attribute {l_diversity.sensitive!r} must be a column that is not a QI")
    return models + [l_diversity], l_diversity.sensitive


def mondrian_anonymize(
    df: DataFrame,
    quasi_identifiers: Sequence[str],
    hierarchies: Mapping[str, Hierarchy],
    k: int,
    *,
    l_diversity: LDiversity | None = None,
    suppression: float = 0.0,
    local_threshold: int = DEFAULT_LOCAL_THRESHOLD,
    class_column: str = "eq_class",
) -> DataFrame:
    """Release ``df`` with its quasi-identifiers generalized so that every equivalence class holds
    at least ``k`` rows (and satisfies ``l_diversity`` on its sensitive attribute).

    Output: the input columns in their order, each QI replaced by a string (``[25-29]`` interval,
    taxonomy node, or the original value), plus ``class_column`` (a 64-bit hash of the released QI
    values: equal ids <=> same equivalence class). Rows suppressed within the budget
    (``suppression`` is a fraction of the input rows) are removed from the output.
    Raises ``AnonymizationError`` when the whole input cannot satisfy the models.
    Lazy: the result is computed when used; persist it if it is used more than once.
    """
    qis = list(quasi_identifiers)
    models, sensitive = _models(df, qis, hierarchies, k, l_diversity, suppression, class_column)
    threshold = max(int(local_threshold), 4 * int(k))

    bound, n_rows, cuts = _bind_domains(df, qis, hierarchies)
    keys = qis + ([sensitive] if sensitive else [])
    tuples = df.groupBy(*keys).agg(F.count(F.lit(1)).cast("double").alias(_W))
    if sensitive is None:  # the row count is the only statistic k needs: no extra job
        root = pd.DataFrame({"pid": [0], "size": [n_rows]})
    else:
        root = _partition_stats(tuples, F.lit(0), sensitive)
    if root.empty or not _stats_ok(root, models, sensitive)[0]:
        raise AnonymizationError(
            f"the whole input ({n_rows} rows) does not satisfy {models}: no generalization can")

    tables: list[DataFrame] = []
    if n_rows > threshold:
        tuples, tables = _distributed_phase(tuples, qis, bound, cuts, models, sensitive, int(k), n_rows, threshold)
    else:
        tuples = tuples.withColumn(_PID, F.lit(0).cast("long"))
    assigned = _apply_splits(tuples, tables).select(_PID, *keys, _W)

    key_fields = [df.schema[c] for c in keys]
    gen_names = [f"__wasure_gen{j}" for j in range(len(qis))]
    out_schema = T.StructType(
        [T.StructField(f"__wasure_key{i}", f.dataType, True) for i, f in enumerate(key_fields)]
        + [T.StructField(g, T.StringType(), False) for g in gen_names]
        + [T.StructField(_SUPP, T.BooleanType(), False)])
    local = local_phase(qis, keys, bound, models, sensitive, float(suppression), out_schema, _W, _SUPP)
    generalized = assigned.groupBy(_PID).applyInPandas(local, out_schema)

    condition = [df[c].eqNullSafe(generalized[f"__wasure_key{i}"]) for i, c in enumerate(keys)]
    joined = df.join(generalized, on=condition, how="inner").filter(~F.col(_SUPP))
    gen_of = dict(zip(qis, gen_names))
    columns = [F.col(gen_of[c]).alias(c) if c in gen_of else df[c] for c in df.columns]
    return joined.select(*columns, F.xxhash64(*[F.col(g) for g in gen_names]).alias(class_column))
