"""The cube of a k-anonymous statistic: every grouping, primary and complementary suppression,
and the differencing attack that checks it (docs/statistics.md; used by jobs/statistics/).

Pure Spark transformations (no reads, no writes): the job feeds one region's generalized rows
(``_subject``, the dimensions as strings, the measures) and stages what ``published_table``
returns. A ``plan`` is anything with ``dims``, ``measure_names`` and ``additive`` (the
published columns that add up along every dimension): jobs.statistics.StatPlan.
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Callable, Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

ALL = "(all)"            # value of a dimension a marginal total sums over
MISSING = "(missing)"    # a null source value (or a subject without an account row in the region)


# ------------------------------------------------------------------ cube and suppression

def _bit(gid: Column, i: int) -> Column:
    return F.shiftright(gid, i).bitwiseAND(F.lit(1)) == 1


def margin_over(gid: Column, dims: list[str]) -> Column:
    return F.concat_ws(",", *[F.when(_bit(gid, i), F.lit(d)) for i, d in enumerate(dims)])


def gid_of(margin: Column, dims: list[str]) -> Column:
    parts = F.split(margin, ",")
    return sum((F.array_contains(parts, F.lit(d)).cast("int") * (1 << i) for i, d in enumerate(dims)), F.lit(0))


# The cube from per-subject rows makes 2^v aggregations for v dimensions that vary within a
# subject. Measured with one (bench/analysis.md, Session 38); past two the general cube is kept
# rather than trading one aggregation for eight or more.
MAX_VARYING_DIMS = 2


def build_cube(rows: DataFrame, dims: list[str], measures: list[str], per_subject: Sequence[str] = ()) -> DataFrame:
    """Every grouping of the dimensions (cells and all marginal totals), true values, materialized.

    Columns: ``cell_id``, ``_gid`` (bit i set = summed over dims[i]), dims (``(all)`` where summed
    over), ``margin_over``, ``count``, ``subjects`` (distinct), ``sum_<m>``, ``avg_<m>``.

    ``per_subject`` names dimensions expected to hold one value per subject (those read from the
    subject table). With some, the cube is built from rows summed per (subject, cell) and counts
    subjects without a distinct count (``_cube_by_subject``); if a subject turns out to have two
    values of one of them, the cube is built the general way: the same cube either way.
    """
    fixed = [d for d in dims if d in per_subject]
    varying = [d for d in dims if d not in per_subject]
    if fixed and len(varying) <= MAX_VARYING_DIMS:
        cube = _cube_by_subject(rows, dims, measures, fixed, varying)
        if cube is not None:
            return cube
    aggs = [F.count(F.lit(1)).alias("count"), F.countDistinct("_subject").alias("subjects")]
    for m in measures:
        aggs += [F.sum(F.col(m).cast("double")).alias(f"sum_{m}"), F.avg(F.col(m).cast("double")).alias(f"avg_{m}")]
    gid = sum((F.grouping(d).cast("int") * (1 << i) for i, d in enumerate(dims)), F.lit(0))
    return _materialized(rows.cube(*dims).agg(*aggs, gid.alias("_gid")), dims)


def _materialized(cube: DataFrame, dims: list[str]) -> DataFrame:
    # Materialized together with the ids: they are drawn once and stay fixed afterwards.
    return cube.select(*[F.coalesce(F.col(d), F.lit(ALL)).alias(d) for d in dims], "_gid",
                       margin_over(F.col("_gid"), dims).alias("margin_over"),
                       *[c for c in cube.columns if c not in dims and c != "_gid"],
                       F.monotonically_increasing_id().alias("cell_id")).localCheckpoint(eager=True)


def _cube_by_subject(rows: DataFrame, dims: list[str], measures: list[str], fixed: list[str],
                     varying: list[str]) -> DataFrame | None:
    """The cube without a distinct count, or None where a subject has two values of a ``fixed`` dimension.

    Rows are first summed per (subject, cell). For each subset K of the ``varying`` dimensions,
    those sums are summed again per (subject, fixed values, K) and grouped by K and every subset of
    ``fixed``: as each subject has one value of each fixed dimension, a subject is ONE such row in
    every group that keeps K, so its rows count its subjects (Spark's distinct count groups every
    source row, copied once per grouping, by cell and subject). Every grouping of the cube is in
    exactly one of these 2^|varying| parts. Only the part that keeps none of ``varying`` (one row per subject and fixed values,
    small) counts distinct subjects, and beside them its rows: at the grand total both agree exactly
    when every subject has one value of each fixed dimension, which is checked before returning.
    """
    sums = [F.sum(F.col(f"_s_{m}")).alias(f"_s_{m}") for m in measures] + \
           [F.sum(F.col(f"_c_{m}")).alias(f"_c_{m}") for m in measures]
    cells = rows.groupBy("_subject", *dims).agg(
        F.count(F.lit(1)).alias("_n"), *[F.sum(F.col(m).cast("double")).alias(f"_s_{m}") for m in measures],
        *[F.count(F.col(m)).alias(f"_c_{m}") for m in measures])
    parts = []
    for size in range(len(varying), -1, -1):
        for kept in itertools.combinations(varying, size):
            base = cells if size == len(varying) else \
                cells.groupBy("_subject", *fixed, *kept).agg(F.sum("_n").alias("_n"), *sums)
            subjects = F.count("_subject") if kept else F.countDistinct("_subject")     # nulls are no subject
            aggs = [F.sum("_n").alias("count"), subjects.alias("subjects")]
            for m in measures:
                total, values = F.sum(f"_s_{m}"), F.sum(f"_c_{m}")
                aggs += [total.alias(f"sum_{m}"), F.when(values > 0, total / values).alias(f"avg_{m}")]
            gid = sum(((F.grouping(d).cast("int") if d in fixed or d in kept else F.lit(1)) * (1 << i)
                       for i, d in enumerate(dims)), F.lit(0))
            sets = [[*kept, *chosen] for n in range(len(fixed) + 1) for chosen in itertools.combinations(fixed, n)]
            part = base.groupingSets(sets, *kept, *fixed).agg(*aggs, gid.alias("_gid"), F.count("_subject").alias("_rows"))
            parts.append(part.select(*[F.col(d) if d in fixed or d in kept else F.lit(None).cast("string").alias(d)
                                       for d in dims], *[c for c in part.columns if c not in dims]))
    cube = _materialized(functools.reduce(DataFrame.unionByName, parts), dims)
    total = cube.where(F.col("_gid") == (1 << len(dims)) - 1).select("subjects", "_rows").first()
    if total is not None and total["subjects"] != total["_rows"]:
        return None
    return cube.drop("_rows")


def memberships(cube: DataFrame, dims: list[str]) -> DataFrame:
    """Every cell's place in the cube's equations: one row per (cell, dimension).

    The equation of (dimension i, total T) is T = sum of the cells that equal T except for a concrete
    value of dims[i]. Its key ``eq`` is (i, T's grouping, T's labels): the same key whether the cell
    is T (``is_parent``) or one of its children.
    """
    entries = []
    for i in range(len(dims)):
        labels = [F.lit(ALL) if j == i else F.col(d) for j, d in enumerate(dims)]
        eq = F.struct(F.lit(i).alias("dim"), F.col("_gid").bitwiseOR(F.lit(1 << i)).alias("gid"),
                      *[label.alias(f"v{j}") for j, label in enumerate(labels)])
        entries.append(F.struct(eq.alias("eq"), _bit(F.col("_gid"), i).alias("is_parent")))
    return (cube.select("cell_id", "count", "subjects", F.explode(F.array(*entries)).alias("m"))
            .select("cell_id", "count", "subjects", "m.eq", "m.is_parent"))


# Up to this many suppressed cells are broadcast to the memberships in each iteration of
# complementary suppression (8-byte ids: a few MB); a larger set, possible for a sparse cube with
# many cells below k, is joined with a shuffle instead of filling the driver's memory.
BROADCAST_SUPPRESSED_MAX = 1_000_000


@dataclass
class Suppression:
    suppressed: DataFrame       # cell_id of every suppressed cell
    primary: int
    complementary: int
    iterations: int


def suppress(cube: DataFrame, dims: list[str], k: int, progress: Callable[[str], None] = lambda _m: None,
             complementary: bool = True) -> Suppression:
    """Primary suppression (< k subjects), then complementary suppression to a fixed point."""
    suppressed = cube.where(F.col("subjects") < k).select("cell_id")     # the cube is materialized
    primary = suppressed.count()
    if not complementary or primary == 0:
        return Suppression(suppressed, primary, 0, 0)
    members = memberships(cube, dims).localCheckpoint(eager=True)
    # Prefer a child cell (the totals stay published), then the smallest, then a stable id.
    equation = Window.partitionBy("eq")
    smallest = equation.orderBy("is_parent", "count", "subjects", "cell_id")
    added, iterations = 0, 0
    while True:
        iterations += 1
        # The suppressed cells, while few, are broadcast; both windows partition by equation, so
        # an iteration shuffles the memberships once (a groupBy, then a join back, shuffled them twice).
        marks = suppressed.withColumn("_s", F.lit(1))
        if primary + added <= BROADCAST_SUPPRESSED_MAX:
            marks = F.broadcast(marks)
        flagged = members.join(marks, "cell_id", "left").withColumn("_s", F.coalesce(F.col("_s"), F.lit(0)))
        exposed = flagged.withColumn("_n", F.sum("_s").over(equation)).where((F.col("_n") == 1) & (F.col("_s") == 0))
        new = (exposed.withColumn("_r", F.row_number().over(smallest)).where(F.col("_r") == 1)
               .select("cell_id").distinct().localCheckpoint(eager=True))
        count = new.count()
        progress(f"complementary suppression: iteration {iterations}, {count} more cells")
        if count == 0:
            break
        added += count
        suppressed = suppressed.unionByName(new)      # both sides materialized: a short lineage
    return Suppression(suppressed, primary, added, iterations)



def published_table(cube: DataFrame, suppression: Suppression, plan, region: str) -> DataFrame:
    """The table as published: suppressed cells keep their labels only.

    ``plan``: anything with ``dims`` and ``measure_names`` (jobs.statistics.StatPlan).
    """
    df = (cube.join(suppression.suppressed.withColumn("suppressed", F.lit(True)), "cell_id", "left")
          .withColumn("suppressed", F.coalesce(F.col("suppressed"), F.lit(False))))
    hidden = F.col("suppressed")
    values: list[Column] = [F.when(~hidden, F.col("count")).cast("long").alias("count")]
    for m in plan.measure_names:
        values.append(F.when(~hidden, F.col(f"sum_{m}")).cast("double").alias(f"sum_{m}"))
    for m in plan.measure_names:
        values.append(F.when(~hidden, F.col(f"avg_{m}")).cast("double").alias(f"mean_{m}"))
    return df.select(F.lit(region).alias("region"), *plan.dims, "margin_over", "suppressed", *values)


# ------------------------------------------------------------------ the differencing attack

def differencing_attack(published: DataFrame, truth: DataFrame, plan) -> DataFrame:
    """Tries every equation of the published table as an attacker would, and compares with the truth.

    Works from the published rows alone (labels, ``margin_over``, ``suppressed``, the additive
    columns): for each total T and dimension d with T summed over d, the unknowns are the
    suppressed among T and its children. With exactly one unknown, subtraction gives its value
    (T - published children, or the sum of the children when T is the unknown); ``recovers`` says
    whether that equals the true value of any additive column. One row per equation:
    ``dimension``, ``members``, ``unknowns``, ``unknown`` (labels of the suppressed member when
    there is one), ``recovers``.
    """
    dims, additive = plan.dims, plan.additive
    key = dims + ["margin_over"]
    gid = gid_of(F.col("margin_over"), dims)
    rows = published.withColumn("_gid", gid)
    entries = []
    for i in range(len(dims)):
        eq = F.struct(F.lit(i).alias("dim"), F.col("_gid").bitwiseOR(F.lit(1 << i)).alias("gid"),
                      *[(F.lit(ALL) if j == i else F.col(d)).alias(f"v{j}") for j, d in enumerate(dims)])
        entries.append(F.struct(eq.alias("eq"), _bit(F.col("_gid"), i).alias("is_parent")))
    m = rows.select(*key, "suppressed", *additive, F.explode(F.array(*entries)).alias("e")).select("*", "e.eq", "e.is_parent")
    known = ~F.col("suppressed")
    aggs = [F.count(F.lit(1)).alias("members"), F.sum(F.col("suppressed").cast("int")).alias("unknowns"),
            F.max(F.when(F.col("suppressed"), F.struct(*[F.col(c) for c in key], F.col("is_parent")))).alias("unknown")]
    for a in additive:
        aggs.append(F.max(F.when(F.col("is_parent") & known, F.col(a).cast("double"))).alias(f"_p_{a}"))
        aggs.append(F.coalesce(F.sum(F.when(~F.col("is_parent") & known, F.col(a).cast("double"))), F.lit(0.0)).alias(f"_c_{a}"))
    eqs = m.groupBy("eq").agg(*aggs)
    t = truth.select(*[F.col(c).alias(f"_t_{c}") for c in key], *[F.col(a).cast("double").alias(f"_true_{a}") for a in additive])
    joined = eqs.join(t, [F.col(f"unknown.{c}") == F.col(f"_t_{c}") for c in key] + [F.col("unknowns") == 1], "left")
    tries = []
    for a in additive:
        recovered = F.when(F.col("unknown.is_parent"), F.col(f"_c_{a}")).otherwise(F.col(f"_p_{a}") - F.col(f"_c_{a}"))
        truth_value = F.col(f"_true_{a}")
        tries.append(F.coalesce(F.abs(recovered - truth_value) <= F.lit(1e-6) * F.greatest(F.lit(1.0), F.abs(truth_value)), F.lit(False)))
    recovers = F.lit(False)
    for attempt in tries:
        recovers = recovers | attempt
    dimension = F.element_at(F.array(*[F.lit(d) for d in dims]), F.col("eq.dim") + 1)
    return joined.select(dimension.alias("dimension"), "members", "unknowns", "unknown",
                         (recovers & (F.col("unknowns") == 1)).alias("recovers"))


# ------------------------------------------------------------------ what the gate judges

def gate_audit(staged: DataFrame, truth: DataFrame, plan) -> DataFrame:
    """One row per staged row, with what the gate needs to judge it (never written anywhere).

    ``published_subjects``: true distinct subjects of a published row (null for a suppressed one);
    ``shows_values``: a suppressed row still carries a value; ``exposed_by_subtraction`` /
    ``recovered_by_subtraction``: the row is the single unknown of an equation of the published
    table, and subtraction gives back its true value (from ``differencing_attack``).
    """
    key = plan.dims + ["margin_over"]
    attack = differencing_attack(staged, truth, plan).where(F.col("unknowns") == 1)
    found = (attack.select(*[F.col(f"unknown.{c}").alias(c) for c in key], "recovers").groupBy(*key)
             .agg(F.lit(True).alias("exposed_by_subtraction"), F.max("recovers").alias("recovered_by_subtraction")))
    audit = (staged.join(truth.select(*key, F.col("subjects").alias("_true_subjects")), key, "left")
             .join(found, key, "left"))
    shows = F.lit(False)
    for column in plan.value_columns:
        shows = shows | F.col(column).isNotNull()
    return audit.select(
        *staged.columns,
        F.when(~F.col("suppressed"), F.coalesce(F.col("_true_subjects"), F.lit(0))).alias("published_subjects"),
        (F.col("suppressed") & shows).alias("shows_values"),
        F.coalesce(F.col("exposed_by_subtraction"), F.lit(False)).alias("exposed_by_subtraction"),
        F.coalesce(F.col("recovered_by_subtraction"), F.lit(False)).alias("recovered_by_subtraction"))
