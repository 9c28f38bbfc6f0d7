"""k-anonymous statistics (`wasure statistics`): REQUIREMENTS S7, per region (S15).

For every ``statistics.<name>`` of the policy and every region, publishes one Delta table

    <lake>/statistics/<name>/region=<R>

holding the whole cube of the statistic: the cells (every dimension concrete) and every marginal
total down to the grand total (a dimension summed over holds ``(all)``; ``margin_over`` lists those
dimensions). Totals are computed from all rows, so they are true (or, with differential privacy,
noised from the true value). Each row has ``count`` (source rows), ``sum_<m>`` and ``mean_<m>``
per measure, and ``suppressed``.

Method (docs/statistics.md):

1. Source rows of ONE region (partition pruned on the region column) are joined, inside that
   region, with the subject table for dimensions that live there; restricted subjects and subjects
   who withdrew consent for a consent-based purpose of the source table are left out (S11).
2. Dimensions are generalized: the subject's birth date -> 5-year age band (policy hierarchy of
   type ``age_band``, top-coded), dates / timestamps -> year-month, other columns as they are.
3. Primary suppression: a cell (or total) of fewer than k distinct *subjects* is suppressed (a
   cell of 15 rows of one person is not k-anonymous).
4. Complementary suppression: every total and the cells it adds up form an equation; an equation
   with exactly one suppressed member gives that member away by subtraction. Until no equation
   has exactly one, the smallest published child of each such equation (the total itself only if
   no child is left) is suppressed too. Spark joins / windows only; the driver sees one count per
   iteration.
5. Optional differential privacy (Laplace or Gaussian, noise drawn in Spark from ``rand(seed)``
   with an unstored seed) on counts and sums of published cells; each release is charged to an
   epsilon ledger (``<lake>/state/dp_budget``) per statistic and region *before* any noise is drawn;
   a release that would exceed the budget is refused (InputError, exit 2, nothing written).
6. Gate: staged output is validated by Great Expectations (region, no forbidden column, every
   published cell of >= k true subjects, nothing left in suppressed cells, a differencing attack
   that tries every equation of the published table) and promoted; on failure quarantined (exit 1).
"""
from __future__ import annotations

import datetime as dt
import json
import math
import secrets
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.console import CheckFailed, InputError, entry_point
from jobs.lake import Lake, check_lake, is_delta, read_current, with_registers, write_new_table
from jobs.lease import with_lease
from jobs.policy import ColumnClass, Policy
from jobs.subjects import Registers

ALL = "(all)"            # value of a dimension a marginal total sums over
MISSING = "(missing)"    # a null source value (or a subject without an account row in the region)
MAX_DIMENSIONS = 8       # the cube has 2^n groupings
DEFAULT_BUDGET = 1.0     # total epsilon per statistic and region, unless --budget (tightening only)
DEFAULT_DELTA_BUDGET = 1e-5
DEFAULT_MAX_ROWS = 20    # rows one subject may contribute to a DP release (contribution bound)
MECHANISMS = ("laplace", "gaussian")
DIMENSION_CLASSES = (ColumnClass.quasi_identifier, ColumnClass.other)
MEASURE_CLASSES = (ColumnClass.other, ColumnClass.sensitive)
FORBIDDEN_CLASSES = ("identifying", "individual_code", "property_damage", "linking_code", "free_text")
NUMERIC = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)
DATES = (T.DateType, T.TimestampType, T.TimestampNTZType)

LEDGER_SCHEMA = T.StructType([
    T.StructField("statistic", T.StringType()), T.StructField("region", T.StringType()),
    T.StructField("release_id", T.StringType()), T.StructField("charged_at", T.TimestampType()),
    T.StructField("mechanism", T.StringType()), T.StructField("epsilon", T.DoubleType()),
    T.StructField("delta", T.DoubleType()), T.StructField("budget", T.DoubleType()),
    T.StructField("delta_budget", T.DoubleType()), T.StructField("parameters", T.StringType()),
    T.StructField("policy_sha256", T.StringType()),
])
AUDIT_SCHEMA = T.StructType([
    T.StructField("run_id", T.StringType()), T.StructField("statistic", T.StringType()),
    T.StructField("region", T.StringType()), T.StructField("as_of", T.DateType()),
    T.StructField("k", T.IntegerType()), T.StructField("cells", T.LongType()),
    T.StructField("published", T.LongType()), T.StructField("primary", T.LongType()),
    T.StructField("complementary", T.LongType()), T.StructField("iterations", T.IntegerType()),
    T.StructField("epsilon", T.DoubleType()), T.StructField("status", T.StringType()),
    T.StructField("policy_sha256", T.StringType()),
])


# ------------------------------------------------------------------ plan

@dataclass(frozen=True)
class Dimension:
    source: str        # column in the source or subject table
    output: str        # published column name
    kind: str          # "age_band", "month" or "value"
    table: str         # "source" or "subject"


@dataclass(frozen=True)
class StatPlan:
    name: str
    table: str
    k: int
    dimensions: tuple[Dimension, ...]
    measures: tuple[tuple[str, str], ...]     # (column, "source" | "subject")
    age_width: int = 5
    age_top: int | None = 90

    @property
    def dims(self) -> list[str]:
        return [d.output for d in self.dimensions]

    @property
    def measure_names(self) -> list[str]:
        return [m for m, _ in self.measures]

    @property
    def additive(self) -> list[str]:
        """Published columns that add up along every dimension (what differencing works on)."""
        return ["count"] + [f"sum_{m}" for m in self.measure_names]

    @property
    def value_columns(self) -> list[str]:
        return self.additive + [f"mean_{m}" for m in self.measure_names]


@dataclass(frozen=True)
class DPOptions:
    epsilon: float
    mechanism: str = "laplace"
    delta: float = 0.0
    budget: float | None = None
    delta_budget: float | None = None
    max_rows_per_subject: int = DEFAULT_MAX_ROWS
    bounds: dict = field(default_factory=dict)     # measure -> (low, high)

    def queries(self, plan: StatPlan) -> int:
        return 1 + len(plan.measures)           # the count vector and one sum vector per measure

    def scales(self, plan: StatPlan) -> dict[str, float]:
        """Noise scale per additive column: Laplace b, or Gaussian sigma.

        Unit of privacy: one subject, who contributes at most L rows (the contribution bound) to each
        of the 2^n groupings, measures clipped to [low, high]. The epsilon (and delta) of the release
        is split evenly over the count and the sums (sequential composition).
        """
        groupings = 2 ** len(plan.dimensions)
        eps_q = self.epsilon / self.queries(plan)
        L = self.max_rows_per_subject
        magnitude = {"count": 1.0}
        for m in plan.measure_names:
            low, high = self.bounds[m]
            magnitude[f"sum_{m}"] = max(abs(low), abs(high))
        if self.mechanism == "laplace":
            return {c: groupings * L * mag / eps_q for c, mag in magnitude.items()}
        delta_q = self.delta / self.queries(plan)
        factor = math.sqrt(2 * math.log(1.25 / delta_q)) / eps_q
        return {c: math.sqrt(groupings) * L * mag * factor for c, mag in magnitude.items()}


def plan_statistic(spark: SparkSession, policy: Policy, lake: Lake, name: str) -> StatPlan:
    """Check a statistic against the policy and the lake's schemas; bad input raises InputError."""
    stat = policy.statistics[name]
    source = policy.tables[stat.table]
    subject = policy.tables[policy.subject.table]
    check_lake(spark, policy, lake, with_registers(policy, [stat.table]))   # missing, drift: exit 2
    schemas = {"source": read_current(spark, lake.table_path(source)).schema,
               "subject": read_current(spark, lake.table_path(subject)).schema}

    def where(column: str) -> tuple[str, object]:
        side = "source" if column in source.columns else "subject"
        return side, (source if side == "source" else subject).column(column)

    # The age hierarchy: the one named "age" if it is an age band, else the first age band.
    bands = sorted(policy.hierarchies.items(), key=lambda item: item[0] != "age")
    hierarchy = next((h for _, h in bands if h.type == "age_band"), None)
    if len(stat.dimensions) > MAX_DIMENSIONS:
        raise InputError(f"statistics.{name}: at most {MAX_DIMENSIONS} dimensions (the cube has 2^n groupings)")
    dims: list[Dimension] = []
    for column in stat.dimensions:
        side, spec = where(column)
        if spec.class_ not in DIMENSION_CLASSES:
            raise InputError(f"statistics.{name}: dimension {column!r} is of class {spec.class_.value}; only "
                             "quasi_identifier and other columns can be dimensions (a suppressed cell still shows its labels)")
        if column == source.subject_key or column == policy.subject.key:
            raise InputError(f"statistics.{name}: the subject key cannot be a dimension")
        data_type = schemas[side][column].dataType
        if side == "subject" and column == policy.subject.birth_date_column:
            dims.append(Dimension(column, "age_band", "age_band", side))
        elif isinstance(data_type, DATES):
            dims.append(Dimension(column, f"{column}_month", "month", side))
        else:
            dims.append(Dimension(column, column, "value", side))
    measures = []
    for column in stat.measures:
        side, spec = where(column)
        if spec.class_ not in MEASURE_CLASSES:
            raise InputError(f"statistics.{name}: measure {column!r} is of class {spec.class_.value}; "
                             "only other and sensitive columns can be measures")
        if not isinstance(schemas[side][column].dataType, NUMERIC):
            raise InputError(f"statistics.{name}: measure {column!r} is not numeric")
        measures.append((column, side))
    outputs = [d.output for d in dims]
    reserved = {"region", "margin_over", "suppressed", "count"} | {f"{p}_{m}" for p in ("sum", "mean") for m, _ in measures}
    clash = sorted({o for o in outputs if outputs.count(o) > 1 or o in reserved or "," in o})
    if clash:
        raise InputError(f"statistics.{name}: dimension output name(s) {', '.join(clash)} clash with another column")
    return StatPlan(name=name, table=stat.table, k=stat.k, dimensions=tuple(dims), measures=tuple(measures),
                    age_width=(hierarchy.width if hierarchy and hierarchy.width else 5),
                    age_top=(hierarchy.top if hierarchy else 90))


def dp_options(epsilon: float | None, mechanism: str = "laplace", delta: float | None = None,
               budget: float | None = None, delta_budget: float | None = None,
               max_rows_per_subject: int | None = None, bounds: dict | None = None) -> DPOptions | None:
    """Validated DP options (None when epsilon is None: no noise). Bad values raise InputError."""
    if epsilon is None:
        return None
    if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon > 0):
        raise InputError("--epsilon must be a positive number")
    if mechanism not in MECHANISMS:
        raise InputError(f"--mechanism must be one of {', '.join(MECHANISMS)}")
    if budget is not None and not (math.isfinite(budget) and budget > 0):
        raise InputError("--budget must be a positive number")
    if mechanism == "gaussian":
        if delta is None or not (0 < delta < 1):
            raise InputError("the gaussian mechanism needs --delta in (0, 1)")
    elif delta not in (None, 0, 0.0):
        raise InputError("--delta applies to the gaussian mechanism only")
    rows = DEFAULT_MAX_ROWS if max_rows_per_subject is None else max_rows_per_subject
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise InputError("--max-rows-per-subject must be a positive integer")
    clean = {}
    for measure, pair in (bounds or {}).items():
        try:
            low, high = float(pair[0]), float(pair[1])
        except (TypeError, ValueError, IndexError):
            raise InputError(f"--bound {measure}: expected LOW:HIGH numbers") from None
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise InputError(f"--bound {measure}: LOW must be <= HIGH, both finite")
        clean[measure] = (low, high)
    return DPOptions(epsilon=float(epsilon), mechanism=mechanism, delta=float(delta or 0.0), budget=budget,
                     delta_budget=delta_budget, max_rows_per_subject=rows, bounds=clean)


def parse_bounds(values: list[str] | None) -> dict:
    """`measure=LOW:HIGH` strings (CLI) -> {measure: (low, high)}."""
    bounds = {}
    for value in values or []:
        name, _, rest = value.partition("=")
        low, sep, high = rest.partition(":")
        if not name or not sep:
            raise InputError(f"--bound must look like measure=LOW:HIGH, got {value!r}")
        try:
            bounds[name.strip()] = (float(low), float(high))
        except ValueError:
            raise InputError(f"--bound {name}: LOW and HIGH must be numbers") from None
    return bounds


# ------------------------------------------------------------------ source rows of one region

def excluded_subjects(spark: SparkSession, policy: Policy, lake: Lake, table_name: str) -> DataFrame:
    """Subjects left out of the statistics of ``table_name`` (S11), as one column ``subject``:
    restricted for all processing or for any purpose the table serves, and subjects who withdrew
    consent for any consent-based purpose it serves. (Registers' scope rule, read once for all
    purposes instead of once per purpose.)"""
    table = policy.tables[table_name]
    registers = Registers(spark, policy, lake)
    excluded = spark.createDataFrame([], "subject string")
    name = policy.subject.restrictions_table
    if name is not None and is_delta(lake.table_path(policy.tables[name])):
        restrictions = read_current(spark, lake.table_path(policy.tables[name]))
        excluded = restrictions.where(F.col("scope").isin(["all_processing", *table.purposes])) \
            .select(F.col(policy.subject.key).alias("subject"))
    consent_based = [p for p in table.purposes if policy.purposes[p].requires_consent]
    if consent_based:
        excluded = excluded.unionByName(registers.withdrawn(consent_based))
    return excluded.distinct()


def source_rows(spark: SparkSession, policy: Policy, lake: Lake, plan: StatPlan, region: str,
                as_of: dt.date, excluded: DataFrame | None = None) -> DataFrame:
    """One region's rows: ``_subject``, the generalized dimensions (strings, never null), the measures.

    Both tables are filtered on their region column before the join (partition pruning): no row of
    another region is read, joined or aggregated.
    """
    table = policy.tables[plan.table]
    home = policy.tables[policy.subject.table]
    key = table.subject_key
    rows = read_current(spark, lake.table_path(table)).where(F.col(table.region_column) == F.lit(region))
    if excluded is not None:
        rows = rows.join(excluded.select(F.col("subject").alias(key)), key, "left_anti")
    needed = [d.source for d in plan.dimensions if d.table == "subject"] + [m for m, s in plan.measures if s == "subject"]
    if needed:
        accounts = (read_current(spark, lake.table_path(home)).where(F.col(home.region_column) == F.lit(region))
                    .select(F.col(policy.subject.key).alias("_account"), *[F.col(c).alias(f"_subj_{c}") for c in dict.fromkeys(needed)]))
        rows = rows.join(accounts, rows[key] == accounts["_account"], "left")
    columns = [F.col(key).alias("_subject")]
    for dim in plan.dimensions:
        columns.append((F.col(dim.source) if dim.table == "source" else F.col(f"_subj_{dim.source}")).alias(dim.output))
    for measure, side in plan.measures:
        columns.append((F.col(measure) if side == "source" else F.col(f"_subj_{measure}")).alias(measure))
    return generalize(rows.select(*columns), plan, as_of)


def generalize(rows: DataFrame, plan: StatPlan, as_of: dt.date) -> DataFrame:
    """Dimensions -> published classes, as non-null strings (null -> ``(missing)``)."""
    from anonymizers.generalize import age_band, generalize_date

    for dim in plan.dimensions:
        if dim.kind == "age_band":
            rows = age_band(rows, dim.output, as_of, width=plan.age_width, top=plan.age_top, output=dim.output)
        elif dim.kind == "month":
            rows = generalize_date(rows, dim.output, "month")
    return rows.select("_subject", *[F.coalesce(F.col(d).cast("string"), F.lit(MISSING)).alias(d) for d in plan.dims],
                       *plan.measure_names)


def bound_contributions(rows: DataFrame, plan: StatPlan, dp: DPOptions, seed: int) -> DataFrame:
    """DP only: at most L random rows per subject, measures clipped to their public bounds."""
    pick = Window.partitionBy("_subject").orderBy(F.rand(seed))
    rows = rows.withColumn("_n", F.row_number().over(pick)).where(F.col("_n") <= dp.max_rows_per_subject).drop("_n")
    for m in plan.measure_names:
        low, high = dp.bounds[m]
        rows = rows.withColumn(m, F.least(F.greatest(F.col(m).cast("double"), F.lit(low)), F.lit(high)))
    return rows


# ------------------------------------------------------------------ cube and suppression

def _bit(gid: Column, i: int) -> Column:
    return F.shiftright(gid, i).bitwiseAND(F.lit(1)) == 1


def margin_over(gid: Column, dims: list[str]) -> Column:
    return F.concat_ws(",", *[F.when(_bit(gid, i), F.lit(d)) for i, d in enumerate(dims)])


def gid_of(margin: Column, dims: list[str]) -> Column:
    parts = F.split(margin, ",")
    return sum((F.array_contains(parts, F.lit(d)).cast("int") * (1 << i) for i, d in enumerate(dims)), F.lit(0))


def build_cube(rows: DataFrame, dims: list[str], measures: list[str]) -> DataFrame:
    """Every grouping of the dimensions (cells and all marginal totals), true values, materialized.

    Columns: ``cell_id``, ``_gid`` (bit i set = summed over dims[i]), dims (``(all)`` where summed
    over), ``margin_over``, ``count``, ``subjects`` (distinct), ``sum_<m>``, ``avg_<m>``.
    """
    aggs = [F.count(F.lit(1)).alias("count"), F.countDistinct("_subject").alias("subjects")]
    for m in measures:
        aggs += [F.sum(F.col(m).cast("double")).alias(f"sum_{m}"), F.avg(F.col(m).cast("double")).alias(f"avg_{m}")]
    gid = sum((F.grouping(d).cast("int") * (1 << i) for i, d in enumerate(dims)), F.lit(0))
    cube = rows.cube(*dims).agg(*aggs, gid.alias("_gid"))
    # Materialized together with the ids: they are drawn once and stay fixed afterwards.
    return cube.select(*[F.coalesce(F.col(d), F.lit(ALL)).alias(d) for d in dims], "_gid",
                       margin_over(F.col("_gid"), dims).alias("margin_over"),
                       *[c for c in cube.columns if c not in dims and c != "_gid"],
                       F.monotonically_increasing_id().alias("cell_id")).localCheckpoint(eager=True)


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
    smallest = Window.partitionBy("eq").orderBy("is_parent", "count", "subjects", "cell_id")
    added, iterations = 0, 0
    while True:
        iterations += 1
        flagged = (members.join(suppressed.withColumn("_s", F.lit(1)), "cell_id", "left")
                   .withColumn("_s", F.coalesce(F.col("_s"), F.lit(0))))
        exposed = flagged.groupBy("eq").agg(F.sum("_s").alias("_n")).where(F.col("_n") == 1).select("eq")
        new = (flagged.join(exposed, "eq", "left_semi").where(F.col("_s") == 0)
               .withColumn("_r", F.row_number().over(smallest)).where(F.col("_r") == 1)
               .select("cell_id").distinct().localCheckpoint(eager=True))
        count = new.count()
        progress(f"complementary suppression: iteration {iterations}, {count} more cells")
        if count == 0:
            break
        added += count
        suppressed = suppressed.unionByName(new)      # both sides materialized: a short lineage
    return Suppression(suppressed, primary, added, iterations)


# ------------------------------------------------------------------ publishing

def laplace_noise(seed: int, scale: float) -> Column:
    """Laplace(0, scale) by inverse CDF of rand(seed): -b sgn(u) ln(1 - 2|u|), u uniform on [-1/2, 1/2)."""
    u = F.rand(seed) - F.lit(0.5)
    return -F.lit(scale) * F.signum(u) * F.log(F.greatest(F.lit(1.0) - F.lit(2.0) * F.abs(u), F.lit(1e-300)))


def published_table(cube: DataFrame, suppression: Suppression, plan: StatPlan, region: str,
                    dp: DPOptions | None = None, seed: int | None = None) -> DataFrame:
    """The table as published: suppressed cells keep their labels only; DP noise on the rest."""
    df = (cube.join(suppression.suppressed.withColumn("suppressed", F.lit(True)), "cell_id", "left")
          .withColumn("suppressed", F.coalesce(F.col("suppressed"), F.lit(False))))
    hidden = F.col("suppressed")
    values: list[Column] = []
    if dp is None:
        values.append(F.when(~hidden, F.col("count")).cast("long").alias("count"))
        for m in plan.measure_names:
            values.append(F.when(~hidden, F.col(f"sum_{m}")).cast("double").alias(f"sum_{m}"))
        for m in plan.measure_names:
            values.append(F.when(~hidden, F.col(f"avg_{m}")).cast("double").alias(f"mean_{m}"))
    else:
        scales = dp.scales(plan)
        seed = secrets.randbits(62) if seed is None else seed

        def noise(column: str, offset: int) -> Column:
            if dp.mechanism == "laplace":
                return laplace_noise(seed + offset, scales[column])
            return F.randn(seed + offset) * F.lit(scales[column])
        noisy_count = F.greatest(F.round(F.col("count") + noise("count", 0)), F.lit(0)).cast("long")
        df = df.withColumn("_count", noisy_count)
        values.append(F.when(~hidden, F.col("_count")).alias("count"))
        for j, m in enumerate(plan.measure_names, 1):
            low, high = dp.bounds[m]
            raw = F.col(f"sum_{m}") + noise(f"sum_{m}", j)
            # Post-processing: a sum of _count values within [low, high].
            df = df.withColumn(f"_sum_{m}", F.least(F.greatest(raw, F.col("_count") * F.lit(low)), F.col("_count") * F.lit(high)))
        for m in plan.measure_names:
            values.append(F.when(~hidden, F.col(f"_sum_{m}")).cast("double").alias(f"sum_{m}"))
        for m in plan.measure_names:
            values.append(F.when(~hidden & (F.col("_count") > 0), F.col(f"_sum_{m}") / F.col("_count"))
                          .cast("double").alias(f"mean_{m}"))
    return df.select(F.lit(region).alias("region"), *plan.dims, "margin_over", "suppressed", *values)


# ------------------------------------------------------------------ the differencing attack

def differencing_attack(published: DataFrame, truth: DataFrame, plan: StatPlan) -> DataFrame:
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


# ------------------------------------------------------------------ gate

def gate_audit(staged: DataFrame, truth: DataFrame, plan: StatPlan) -> DataFrame:
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


def gate_checks(region: str, staged: DataFrame, truth: DataFrame, plan: StatPlan, forbidden: dict,
                dp: DPOptions | None) -> list:
    """(label, DataFrame, expectations) of one region's staged table for ``run_gate``: one label per
    region, so each region is judged (and promoted or quarantined) on its own."""
    import great_expectations as gx

    from expectations.custom import ExpectNoForbiddenColumns, ExpectRegionColumnToEqual

    expectations = [
        ExpectRegionColumnToEqual(region_column="region", region=region),
        ExpectNoForbiddenColumns(forbidden_columns=forbidden),
        # Null for suppressed rows, which column-map expectations skip: "published => >= k".
        gx.expectations.ExpectColumnValuesToBeBetween(column="published_subjects", min_value=plan.k),
        gx.expectations.ExpectColumnValuesToBeInSet(column="shows_values", value_set=[False]),
        gx.expectations.ExpectColumnValuesToBeInSet(column="exposed_by_subtraction", value_set=[False]),
        gx.expectations.ExpectColumnValuesToBeInSet(column="recovered_by_subtraction", value_set=[False]),
    ]
    if dp is None:   # with noise a published count may fall below k; the true count may not
        expectations.append(gx.expectations.ExpectColumnValuesToBeBetween(column="count", min_value=plan.k))
    # Materialized once (one row per staged row): GE's many metric queries then read memory.
    return [(region, gate_audit(staged, truth, plan).localCheckpoint(eager=True), expectations)]


def forbidden_columns(policy: Policy, plan: StatPlan) -> dict:
    found = {}
    for name in (plan.table, policy.subject.table):
        table = policy.tables[name]
        for column in table.columns:
            klass = table.column(column).class_.value
            if klass in FORBIDDEN_CLASSES:
                found.setdefault(column, klass)
    return found


# ------------------------------------------------------------------ budget ledger

def ledger_path(lake: Lake) -> str:
    return lake.state("dp_budget")


def read_ledger(spark: SparkSession, lake: Lake) -> dict:
    """{(statistic, region): {epsilon, delta spent; budget, delta_budget (the tightest recorded)}}."""
    path = ledger_path(lake)
    if not is_delta(path):
        return {}
    rows = (read_current(spark, path).groupBy("statistic", "region")
            .agg(F.sum("epsilon").alias("epsilon"), F.sum("delta").alias("delta"),
                 F.min("budget").alias("budget"), F.min("delta_budget").alias("delta_budget"), F.count("*").alias("releases"))
            .collect())   # one small row per statistic and region
    return {(r.statistic, r.region): {"epsilon": float(r.epsilon), "delta": float(r.delta or 0.0), "budget": float(r.budget),
                                      "delta_budget": float(r.delta_budget), "releases": int(r.releases)} for r in rows}


def _tightest(*values: float | None, default: float) -> float:
    given = [v for v in values if v is not None]
    return min(given) if given else default


def check_budget(ledger: dict, dp: DPOptions, work: list[tuple[str, str]]) -> dict:
    """The budget of each (statistic, region) of this release; raises InputError if one would be exceeded."""
    budgets, refusals = {}, []
    for name, region in work:
        spent = ledger.get((name, region), {"epsilon": 0.0, "delta": 0.0, "budget": None, "delta_budget": None})
        budget = _tightest(spent["budget"], dp.budget, default=DEFAULT_BUDGET)
        delta_budget = _tightest(spent["delta_budget"], dp.delta_budget, default=DEFAULT_DELTA_BUDGET)
        budgets[(name, region)] = (budget, delta_budget, spent["epsilon"], spent["delta"])
        if spent["epsilon"] + dp.epsilon > budget * (1 + 1e-9):
            refusals.append(f"{name} region {region}: epsilon {dp.epsilon:g} would exceed the budget "
                            f"(spent {spent['epsilon']:g} of {budget:g})")
        if dp.delta and spent["delta"] + dp.delta > delta_budget * (1 + 1e-9):
            refusals.append(f"{name} region {region}: delta {dp.delta:g} would exceed the delta budget "
                            f"(spent {spent['delta']:g} of {delta_budget:g})")
    if refusals:
        raise InputError("differential privacy budget exceeded, release refused: " + "; ".join(refusals))
    return budgets


def charge(spark: SparkSession, lake: Lake, policy: Policy, dp: DPOptions, release_id: str, budgets: dict,
           work: list[tuple[str, str]], plans: dict) -> None:
    """Append the release's epsilon to the ledger (before any noise is drawn: a crash still counts)."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    rows = []
    for name, region in work:
        budget, delta_budget, _, _ = budgets[(name, region)]
        parameters = {"max_rows_per_subject": dp.max_rows_per_subject,
                      "bounds": {m: list(dp.bounds[m]) for m in plans[name].measure_names},
                      "scales": dp.scales(plans[name]), "groupings": 2 ** len(plans[name].dimensions)}
        rows.append((name, region, release_id, now, dp.mechanism, dp.epsilon, dp.delta, budget, delta_budget,
                     json.dumps(parameters, sort_keys=True), policy.sha256))
    _append(spark.createDataFrame(rows, LEDGER_SCHEMA), ledger_path(lake))


# ------------------------------------------------------------------ the job

def _append(df: DataFrame, path: str) -> None:
    """Append to a small bookkeeping table (ledger, audit): created by its first append, one commit."""
    df.coalesce(1).write.format("delta").mode("append").save(path)


def output_path(lake: Lake, name: str, region: str) -> str:
    return str(lake.root / "statistics" / name / f"region={region}")


def _promote(staging: str, final: str) -> None:
    final_path, old = Path(final), Path(final + ".old")
    final_path.parent.mkdir(parents=True, exist_ok=True)
    if old.exists():
        shutil.rmtree(old)
    if final_path.exists():
        final_path.rename(old)
    Path(staging).rename(final_path)
    if old.exists():
        shutil.rmtree(old)


def _quarantine(staging: str, lake: Lake, name: str, region: str, run_id: str) -> str:
    target = Path(lake.quarantine("statistics", name, f"region={region}", run_id))
    target.parent.mkdir(parents=True, exist_ok=True)
    Path(staging).rename(target)
    return str(target)


def regions_with_rows(spark: SparkSession, policy: Policy, lake: Lake, plan: StatPlan, wanted: list[str]) -> list[str]:
    table = policy.tables[plan.table]
    present = {r[0] for r in read_current(spark, lake.table_path(table)).select(table.region_column).distinct().collect()}
    return [r for r in wanted if r in present]     # policy order; a handful of codes


@with_lease("statistics")
def run(spark: SparkSession, policy: Policy, lake: Lake, names: list[str] | None = None, epsilon: float | None = None,
        progress: Callable[[str], None] = lambda _msg: None, *, regions: list[str] | None = None,
        mechanism: str = "laplace", delta: float | None = None, budget: float | None = None,
        delta_budget: float | None = None, max_rows_per_subject: int | None = None, bounds: dict | None = None,
        as_of: dt.date | None = None, complementary: bool = True) -> dict:
    """Publish the policy's statistics (all, or ``names``) per region; see the module docstring.

    Returns {"run_id", "statistics": [per (name, region)], "docs": [...], "failures": [...]}.
    Raises InputError (exit 2, nothing written) for bad names / regions / DP options or an exhausted
    budget, CheckFailed (exit 1) after the run when a gate failed (that region's output quarantined).
    """
    names = list(names or policy.statistics)
    unknown = [n for n in names if n not in policy.statistics]
    if unknown:
        raise InputError(f"unknown statistic(s): {', '.join(unknown)} (the policy has {', '.join(policy.statistics) or 'none'})")
    wanted = list(regions or policy.regions)
    bad = [r for r in wanted if r not in policy.regions]
    if bad:
        raise InputError(f"unknown region(s): {', '.join(bad)} (the policy has {', '.join(policy.regions)})")
    dp = dp_options(epsilon, mechanism, delta, budget, delta_budget, max_rows_per_subject, bounds)
    as_of = as_of or dt.datetime.now(dt.timezone.utc).date()
    plans = {name: plan_statistic(spark, policy, lake, name) for name in names}
    if dp is not None:
        for plan in plans.values():
            missing = [m for m in plan.measure_names if m not in dp.bounds]
            if missing:
                raise InputError(f"statistics.{plan.name}: differential privacy needs public bounds for every measure "
                                 f"(--bound {missing[0]}=LOW:HIGH); missing: {', '.join(missing)}")
    work = [(name, region) for name, plan in plans.items() for region in regions_with_rows(spark, policy, lake, plan, wanted)]
    run_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    budgets = {}
    if dp is not None and work:
        budgets = check_budget(read_ledger(spark, lake), dp, work)     # refuse before anything is written
        charge(spark, lake, policy, dp, run_id, budgets, work, plans)
    results: dict = {"run_id": run_id, "as_of": as_of.isoformat(), "statistics": [], "docs": [], "failures": []}
    audit_rows = []
    from expectations.gates import run_gate

    for name, plan in plans.items():
        # Materialized once per statistic: every region's anti-join reuses it (ids only, never output).
        excluded = excluded_subjects(spark, policy, lake, plan.table).localCheckpoint(eager=True)
        staged, checks = [], []
        for region in [r for n, r in work if n == name]:
            progress(f"{name}: region {region}")
            rows = source_rows(spark, policy, lake, plan, region, as_of, excluded)
            seed = secrets.randbits(48)
            if dp is not None:
                rows = bound_contributions(rows, plan, dp, seed)
            cube = build_cube(rows, plan.dims, plan.measure_names)
            cells = cube.count()
            progress(f"{name}: region {region}: {cells} cells and totals")
            if cells == 0:
                results["statistics"].append({"statistic": name, "region": region, "status": "no rows", "cells": 0})
                continue
            sup = suppress(cube, plan.dims, plan.k, progress, complementary=complementary)
            table = published_table(cube, sup, plan, region, dp, seed=secrets.randbits(48) if dp else None)
            staging = lake.staging("statistics", name, f"region={region}")
            if Path(staging).exists():
                shutil.rmtree(staging)
            write_new_table(staging, table.orderBy(F.length("margin_over").desc(), "margin_over", *plan.dims).coalesce(1),
                            [], published=True)
            progress(f"{name}: region {region}: staged")
            written = read_current(spark, staging)
            checks += gate_checks(region, written, cube, plan, forbidden_columns(policy, plan), dp)
            info = {"statistic": name, "region": region, "cells": cells, "published": cells - sup.primary - sup.complementary,
                    "primary": sup.primary, "complementary": sup.complementary, "iterations": sup.iterations, "k": plan.k}
            if dp is not None:
                b, _, spent, _ = budgets[(name, region)]
                info.update({"epsilon": dp.epsilon, "mechanism": dp.mechanism, "epsilon_spent": spent + dp.epsilon, "budget": b})
            staged.append((region, staging, info))
        if not staged:
            continue
        progress(f"{name}: gate")
        gate = run_gate(f"statistics-{name}", checks, str(lake.docs / "statistics" / run_id / name))
        results["docs"].append(gate.docs_index)
        failed: dict[str, list[str]] = {}
        for failure in gate.failures:
            failed.setdefault(failure.table, []).append(failure.message)
        for region, staging, info in staged:
            if region in failed:
                where = _quarantine(staging, lake, name, region, run_id)
                info["status"] = f"quarantined: {where}"
                results["failures"].append(f"{name}/{region}: " + "; ".join(failed[region]))
            else:
                _promote(staging, output_path(lake, name, region))
                info["status"] = "published"
                info["path"] = output_path(lake, name, region)
            results["statistics"].append(info)
            audit_rows.append((run_id, name, region, as_of, plan.k, info["cells"], info["published"], info["primary"],
                               info["complementary"], info["iterations"], dp.epsilon if dp else None,
                               "published" if region not in failed else "quarantined", policy.sha256))
    if audit_rows:
        _append(spark.createDataFrame(audit_rows, AUDIT_SCHEMA), lake.audit("statistics"))
    if results["failures"]:
        raise CheckFailed("statistics gate failed (outputs quarantined, Data Docs: "
                          f"{', '.join(results['docs'])}): " + " | ".join(results["failures"]))
    return results


def demo_step(spark: SparkSession, policy: Policy, lake: Lake) -> dict:
    """`wasure demo`: publish every statistic of the policy without noise, report the gate."""
    from jobs.console import summary_table

    if not policy.statistics:
        return {"gate": "passed", "docs": "no statistics in the policy"}
    try:
        result = run(spark, policy, lake)
    except CheckFailed as exc:
        return {"gate": "failed", "docs": str(exc)}
    summary_table("statistics (k-anonymous, per region)", ["statistic", "region", "cells", "published", "suppressed (primary + complementary)", "status"],
                  [(s["statistic"], s["region"], s.get("cells"), s.get("published"),
                    f"{s.get('primary', 0)} + {s.get('complementary', 0)}", s["status"]) for s in result["statistics"]])
    return {"gate": "passed", "docs": ", ".join(result["docs"]) or "no rows", "statistics": result["statistics"]}


@entry_point
def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point: `python -m jobs.statistics --policy P --lake L [--name N] [--epsilon E ...]`."""
    import argparse

    from jobs.policy import load_policy
    from jobs.runtime import get_spark

    parser = argparse.ArgumentParser(prog="jobs.statistics")
    parser.add_argument("--policy", required=True)
    parser.add_argument("--lake", required=True)
    parser.add_argument("--name", action="append")
    parser.add_argument("--region", action="append")
    parser.add_argument("--epsilon", type=float)
    parser.add_argument("--budget", type=float)
    parser.add_argument("--mechanism", default="laplace", choices=MECHANISMS)
    parser.add_argument("--delta", type=float)
    parser.add_argument("--max-rows-per-subject", type=int)
    parser.add_argument("--bound", action="append", help="measure=LOW:HIGH")
    parser.add_argument("--as-of", type=dt.date.fromisoformat)
    args = parser.parse_args(argv)
    policy, bounds = load_policy(args.policy), parse_bounds(args.bound)   # exit 2 before Spark starts
    result = run(get_spark("wasure-statistics"), policy, Lake.at(args.lake), args.name, args.epsilon,
                 regions=args.region, mechanism=args.mechanism, delta=args.delta, budget=args.budget,
                 max_rows_per_subject=args.max_rows_per_subject, bounds=bounds, as_of=args.as_of)
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
