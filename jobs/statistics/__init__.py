"""Statistics (`wasure statistics`): REQUIREMENTS S7, per region (S15); docs/statistics.md.

For every ``statistics.<name>`` of the policy and every region, publishes one Delta table
``<lake>/statistics/<name>/region=<R>`` holding the whole cube of the statistic: the cells (every
dimension concrete) and every marginal total down to the grand total (a dimension summed over holds
``(all)``; ``margin_over`` lists those dimensions), with ``count``, ``sum_<m>``, ``mean_<m>`` and
``suppressed``. A statistic is one of two kinds, chosen in the policy:

* k-anonymous (``k``): true values; cells and totals of fewer than k subjects suppressed, then
  complementary suppression until no equation of the table has exactly one unknown
  (anonymizers/cube.py). The gate checks both with a differencing attack.
* differentially private (``dp:``): the public key set of the policy's domains, OpenDP's discrete
  noise on every count and sum, no suppression (anonymizers/dp.py). Each release is charged to the
  ledger ``<lake>/state/dp_budget`` before any noise is drawn; a release past the policy's budget is
  refused (InputError, exit 2, nothing written).

Source rows of ONE region (partition pruned) are joined, inside that region, with the subject table
for dimensions that live there; restricted subjects and subjects who withdrew consent for a
consent-based purpose of the source table are left out (S11). Dimensions are generalized: the
subject's birth date -> age band, dates -> year-month, other columns as they are. Each region's table
is built once and persisted (suppression and the drawn noise are fixed by then), validated by Great
Expectations, and published in ONE Delta transaction, or written under ``quarantine/`` on failure
(exit 1). Regions are independent: a statistic's regions are built a few at a time, and published a
few at a time after the one gate of the statistic (``WASURE_TABLE_THREADS``).

What a statistic means (dimensions, measures, public domains) is jobs/statistics/plan.py; the DP
budget ledger is jobs/statistics/ledger.py; the cube and the noise are in anonymizers/.
"""
from __future__ import annotations

import datetime as dt
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Callable

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from anonymizers import dp
from anonymizers.cube import (ALL, MISSING, Suppression, build_cube, differencing_attack,  # noqa: F401 (re-exported)
                              gate_audit, published_table, suppress)
from anonymizers.frames import local_frame
from jobs.runtime.console import CheckFailed, InputError
from jobs.lake.layout import Lake, is_delta, read_now
from jobs.lake.lease import with_lease
from jobs.statistics.plan import (FORBIDDEN_CLASSES, Dimension, StatPlan, check_dp_options,  # noqa: F401 (re-exported)
                                  plan_statistic, tightened_plans)
from jobs.statistics.ledger import _append, charge, check_budgets, ledger_path, read_ledger  # noqa: F401 (re-exported)
from jobs.policy import Policy
from jobs.lake.subjects import Registers
from jobs.lake.storage import join
from jobs.lake.table import LakeTable
from jobs.runtime.concurrency import for_each_table

AUDIT_SCHEMA = T.StructType([
    T.StructField("run_id", T.StringType()), T.StructField("statistic", T.StringType()),
    T.StructField("region", T.StringType()), T.StructField("as_of", T.DateType()),
    T.StructField("k", T.IntegerType()), T.StructField("cells", T.LongType()),
    T.StructField("published", T.LongType()), T.StructField("primary", T.LongType()),
    T.StructField("complementary", T.LongType()), T.StructField("iterations", T.IntegerType()),
    T.StructField("epsilon", T.DoubleType()), T.StructField("status", T.StringType()),
    T.StructField("policy_sha256", T.StringType()),
])


# ------------------------------------------------------------------ source rows of one region

def excluded_subjects(spark: SparkSession, policy: Policy, lake: Lake, table_name: str) -> DataFrame:
    """Subjects left out of the statistics of ``table_name`` (S11), as one column ``subject``:
    restricted for all processing or for any purpose the table serves, and subjects who withdrew
    consent for any consent-based purpose it serves. (Registers' scope rule, read once for all
    purposes instead of once per purpose.)"""
    table = policy.tables[table_name]
    registers = Registers(spark, policy, lake)
    excluded = local_frame(spark, [], "subject string")
    name = policy.subject.restrictions_table
    if name is not None and is_delta(lake.table_path(policy.tables[name])):
        restrictions = read_now(spark, lake.table_path(policy.tables[name]))
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
    rows = read_now(spark, lake.table_path(table)).where(F.col(table.region_column) == F.lit(region))
    if excluded is not None:
        rows = rows.join(excluded.select(F.col("subject").alias(key)), key, "left_anti")
    needed = [d.source for d in plan.dimensions if d.table == "subject"] + [m for m, s in plan.measures if s == "subject"]
    if needed:
        accounts = (read_now(spark, lake.table_path(home)).where(F.col(home.region_column) == F.lit(region))
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
    from anonymizers.registry import get_operator

    for dim in plan.dimensions:          # the registry's operators, by the names the plan's kinds map to
        if dim.kind == "age_band":
            rows = get_operator("age_band")(rows, dim.output, as_of, width=plan.age_width, top=plan.age_top, output=dim.output)
        elif dim.kind == "month":
            rows = get_operator("generalize_date")(rows, dim.output, "month")
    return rows.select("_subject", *[F.coalesce(F.col(d).cast("string"), F.lit(MISSING)).alias(d) for d in plan.dims],
                       *plan.measure_names)


# ------------------------------------------------------------------ gate

def gate_checks(region: str, staged: DataFrame, truth: DataFrame, plan: StatPlan, forbidden: dict) -> list:
    """(label, DataFrame, expectations) of one region's built table for ``run_gate``: one label per
    region, so each region is judged (and published or quarantined) on its own."""
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
        gx.expectations.ExpectColumnValuesToBeBetween(column="count", min_value=plan.k),
    ]
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


def dp_gate_checks(region: str, staged: DataFrame, plan: StatPlan, forbidden: dict) -> list:
    """The gate of a differentially private table: exactly the public key set (every key once, no
    label outside the domains), a value in every row, nothing suppressed. Nothing is compared with
    k or with the true values: noise replaces suppression."""
    import great_expectations as gx

    from expectations.custom import ExpectNoForbiddenColumns, ExpectRegionColumnToEqual

    ex = gx.expectations
    expectations = [
        ExpectRegionColumnToEqual(region_column="region", region=region),
        ExpectNoForbiddenColumns(forbidden_columns=forbidden),
        ex.ExpectTableRowCountToEqual(value=dp.cube_size([list(d) for d in plan.domains])),
        ex.ExpectCompoundColumnsToBeUnique(column_list=plan.dims + ["margin_over"]),
        *[ex.ExpectColumnValuesToBeInSet(column=d, value_set=[*values, ALL]) for d, values in zip(plan.dims, plan.domains)],
        *[ex.ExpectColumnValuesToNotBeNull(column=c) for c in plan.additive],
        ex.ExpectColumnValuesToBeInSet(column="suppressed", value_set=[False]),
    ]
    return [(region, staged, expectations)]


# ------------------------------------------------------------------ the job

def output_path(lake: Lake, name: str, region: str) -> str:
    return lake.path("statistics", name, f"region={region}")


def regions_with_rows(spark: SparkSession, policy: Policy, lake: Lake, plan: StatPlan, wanted: list[str]) -> list[str]:
    table = policy.tables[plan.table]
    present = {r[0] for r in read_now(spark, lake.table_path(table)).select(table.region_column).distinct().collect()}
    return [r for r in wanted if r in present]     # policy order; a handful of codes


def _dp_table(spark: SparkSession, rows: DataFrame, plan: StatPlan, region: str, calibration: dp.Calibration) -> tuple[DataFrame, int]:
    """Bounded rows -> true cube (collected: no larger than the public key set) -> OpenDP's noise on every key."""
    domains = [list(values) for values in plan.domains]
    bounded = dp.bound_contributions(rows, dict(zip(plan.dims, domains)), plan.dp.bounds, plan.dp.max_rows_per_subject,
                                     secrets.randbits(48))
    truth = dp.true_cube(bounded, plan.dims, plan.measure_names)      # stays in this function: never logged or written
    released = dp.noisy_rows(truth, plan.dims, domains, plan.dp, calibration, region)
    return local_frame(spark, released, dp.release_schema(plan.dims, plan.measure_names)), len(released)


def _stage_region(spark: SparkSession, policy: Policy, lake: Lake, plan: StatPlan, region: str, as_of: dt.date,
                  excluded: DataFrame, calibration: dp.Calibration | None, progress: Callable[[str], None],
                  complementary: bool, per_subject: list[str]) -> tuple[DataFrame, dict, list] | None:
    """Build one region's table: (persisted table, info, gate checks); None for a k-anonymous
    statistic without rows. The caller unpersists the table once it is published or quarantined.
    ``per_subject``: the dimensions the cube may count subjects by (``cube_dims_per_subject``)."""
    rows = source_rows(spark, policy, lake, plan, region, as_of, excluded)
    truth = None
    if plan.dp is not None:
        table, cells = _dp_table(spark, rows, plan, region, calibration)
        info = {"cells": cells, "published": cells, "primary": 0, "complementary": 0, "iterations": 0, "k": None}
    else:
        truth = build_cube(rows, plan.dims, plan.measure_names, per_subject)
        cells = truth.count()
        progress(f"{plan.name}: region {region}: {cells} cells and totals")
        if cells == 0:
            return None
        sup = suppress(truth, plan.dims, plan.k, progress, complementary=complementary)
        table = published_table(truth, sup, plan, region)
        info = {"cells": cells, "published": cells - sup.primary - sup.complementary, "primary": sup.primary,
                "complementary": sup.complementary, "iterations": sup.iterations, "k": plan.k}
    # One file, totals first (the grand total on top), then the cells in dimension order. Persisted:
    # the gate checks and the publish read these rows (driver-side noise, fixed suppression).
    built = (table.orderBy(F.length("margin_over").desc(), "margin_over", *plan.dims).coalesce(1)
             .persist(StorageLevel.MEMORY_AND_DISK))
    try:
        forbidden = forbidden_columns(policy, plan)
        checks = (dp_gate_checks(region, built, plan, forbidden) if plan.dp is not None
                  else gate_checks(region, built, truth, plan, forbidden))
    except BaseException:
        built.unpersist()
        raise
    progress(f"{plan.name}: region {region}: built")
    return built, {"statistic": plan.name, "region": region, **info}, checks


def _gate_and_publish(lake: Lake, policy: Policy, plan: StatPlan, staged: list, checks: list, run_id: str,
                      as_of: dt.date, results: StatisticsReport, progress: Callable[[str], None]) -> list[tuple]:
    """Run the statistic's gate over its built regions; publish each region (one Delta transaction)
    or write it under quarantine/. Returns audit rows."""
    from expectations.gates import run_gate

    progress(f"{plan.name}: gate")
    gate = run_gate(f"statistics-{plan.name}", checks, join(lake.docs, "statistics", run_id, plan.name))
    results.docs.append(gate.docs_index)
    failed: dict[str, list[str]] = {}
    for failure in gate.failures:
        failed.setdefault(failure.table, []).append(failure.message)

    def settle(item: tuple[str, DataFrame, dict]) -> str | None:
        """One region's table published, or written under quarantine/ (returned); its own Delta table."""
        region, built, _info = item
        if region in failed:
            where = lake.quarantine("statistics", plan.name, f"region={region}", run_id)
            LakeTable(built.sparkSession, where).write_new(built, [], published=True)
            return where
        LakeTable(built.sparkSession, output_path(lake, plan.name, region)).publish(built, [], published=True)
        return None

    audit = []
    for (region, _built, info), where in zip(staged, for_each_table(staged, settle)):
        if where:
            info["status"] = f"quarantined: {where}"
            results.failures.append(f"{plan.name}/{region}: " + "; ".join(failed[region]))
        else:
            info["status"], info["path"] = "published", output_path(lake, plan.name, region)
        results.statistics.append(info)
        audit.append((run_id, plan.name, region, as_of, plan.k, info["cells"], info["published"], info["primary"],
                      info["complementary"], info["iterations"], info.get("epsilon"),
                      "published" if region not in failed else "quarantined", policy.sha256))
    return audit


def _dp_info(plan: StatPlan, cal: dp.Calibration, budget: tuple[float, float]) -> dict:
    this = cal.epsilon if plan.dp.unit == "epsilon" else cal.rho
    return {"mechanism": cal.mechanism, "epsilon": cal.epsilon, "delta": cal.delta, "rho": cal.rho,
            "unit": plan.dp.unit, "spent": budget[1] + this, "budget": budget[0]}


@dataclass
class StatisticsReport:
    """What ``run`` did: one entry per (statistic, region) with its status, cells, suppression and,
    for a dp statistic, the mechanism and the budget spent (keys vary with the mechanism); the
    gates' Data Docs; the failures (no value in them)."""
    run_id: str
    as_of: str
    statistics: list[dict] = field(default_factory=list)
    docs: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StatisticsRequest:
    """The statistics and regions to publish; ``epsilon`` / ``rho`` / ``budget`` tighten the dp
    statistics' policy values (never loosen them); ``as_of``: the date ages are computed at (default
    today UTC). ``complementary`` is False only in tests (what the gate catches without it)."""
    names: tuple[str, ...]
    regions: tuple[str, ...]
    epsilon: float | None = None
    rho: float | None = None
    budget: float | None = None
    as_of: dt.date | None = None
    complementary: bool = True

    @classmethod
    def checked(cls, policy: Policy, names: list[str] | None = None, regions: list[str] | None = None, *,
                epsilon: float | None = None, rho: float | None = None, budget: float | None = None,
                as_of: dt.date | None = None, complementary: bool = True) -> StatisticsRequest:
        """Known statistics (default: all) and regions (default: every region of the policy), options
        that fit them: InputError (exit 2) before Spark starts."""
        for option, value in (("--epsilon", epsilon), ("--rho", rho), ("--budget", budget)):
            if value is not None and not value > 0:
                raise InputError(f"{option} must be a positive number")
        chosen = tuple(names or policy.statistics)
        unknown = [n for n in chosen if n not in policy.statistics]
        if unknown:
            raise InputError(f"unknown statistic(s): {', '.join(unknown)} (the policy has {', '.join(policy.statistics) or 'none'})")
        wanted = tuple(regions or policy.regions)
        bad = [r for r in wanted if r not in policy.regions]
        if bad:
            raise InputError(f"unknown region(s): {', '.join(bad)} (the policy has {', '.join(policy.regions)})")
        check_dp_options(policy, list(chosen), epsilon, rho, budget)
        return cls(chosen, wanted, epsilon, rho, budget, as_of, complementary)


# The cube from per-subject rows (anonymizers.cube.build_cube) saves work per source row and costs
# a few Spark jobs more per region. Measured (bench/analysis.md, Session 38): slower on the 0.3-MB
# demo lake, faster on 29 MB and 273 MB; this size lies between, on the side of the general cube.
CUBE_BY_SUBJECT_MIN_BYTES = 8 << 20


def cube_dims_per_subject(spark: SparkSession, policy: Policy, lake: Lake, plan: StatPlan) -> list[str]:
    """The plan's subject-table dimensions for a source table of CUBE_BY_SUBJECT_MIN_BYTES or more
    (its checksum file's size: no Spark job); none below (the general cube)."""
    size = LakeTable(spark, lake.table_path(policy.tables[plan.table])).size_bytes()
    return plan.per_subject_dims if size >= CUBE_BY_SUBJECT_MIN_BYTES else []


@with_lease("statistics")
def run(spark: SparkSession, policy: Policy, lake: Lake, request: StatisticsRequest,
        progress: Callable[[str], None] = lambda _msg: None) -> StatisticsReport:
    """Publish the request's statistics per region; see the module docstring.

    Raises InputError (exit 2, nothing written) for a statistic the lake cannot feed or an exhausted
    budget, CheckFailed (exit 1) after the run when a gate failed (that region's output quarantined).
    """
    names, wanted = list(request.names), list(request.regions)
    as_of = request.as_of or dt.datetime.now(dt.timezone.utc).date()
    plans = tightened_plans({name: plan_statistic(spark, policy, lake, name, as_of) for name in names},
                            request.epsilon, request.rho, request.budget)
    # A dp release covers every requested region: whether a region has rows is not public either.
    work = [(name, region) for name, plan in plans.items()
            for region in (wanted if plan.dp is not None else regions_with_rows(spark, policy, lake, plan, wanted))]
    run_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    calibrations = {name: dp.calibrate(plan.dp, len(plan.dims)) for name, plan in plans.items() if plan.dp is not None}
    dp_work = [(name, region) for name, region in work if name in calibrations]
    budgets = {}
    if dp_work:     # refused before anything is written; charged before any noise is drawn
        budgets = check_budgets(read_ledger(spark, lake), plans, calibrations, dp_work)
        charge(spark, lake, policy, plans, calibrations, run_id, budgets, dp_work)
    results = StatisticsReport(run_id, as_of.isoformat())
    audit_rows = []
    for name, plan in plans.items():
        # Materialized once per statistic: every region's anti-join reuses it (ids only, never output).
        excluded = excluded_subjects(spark, policy, lake, plan.table).localCheckpoint(eager=True)
        per_subject = cube_dims_per_subject(spark, policy, lake, plan)
        staged, checks, persisted = [], [], []
        regions = [r for n, r in work if n == name]

        def stage(region: str):
            progress(f"{name}: region {region}")
            out = _stage_region(spark, policy, lake, plan, region, as_of, excluded, calibrations.get(name), progress,
                                request.complementary, per_subject)
            if out is not None:
                persisted.append(out[0])      # released below even if another region fails
            return out

        try:
            # Regions are independent: built a few at once (jobs.runtime.concurrency), gated together.
            for region, out in zip(regions, for_each_table(regions, stage)):
                if out is None:
                    results.statistics.append({"statistic": name, "region": region, "status": "no rows", "cells": 0})
                    continue
                built, info, region_checks = out
                if plan.dp is not None:
                    info.update(_dp_info(plan, calibrations[name], budgets[(name, region)]))
                staged.append((region, built, info))
                checks += region_checks
            if staged:
                audit_rows += _gate_and_publish(lake, policy, plan, staged, checks, run_id, as_of, results, progress)
        finally:
            for built in persisted:
                built.unpersist()
    if audit_rows:
        _append(local_frame(spark, audit_rows, AUDIT_SCHEMA), lake.audit("statistics"))
    if results.failures:
        raise CheckFailed("statistics gate failed (outputs quarantined, Data Docs: "
                          f"{', '.join(results.docs)}): " + " | ".join(results.failures))
    return results


def demo_step(spark: SparkSession, policy: Policy, lake: Lake) -> dict:
    """`wasure demo`: publish the policy's k-anonymous statistics, report the gate (dp statistics
    spend a budget: they are released on purpose, with `wasure statistics --name`)."""
    from jobs.runtime.console import summary_table

    names = [name for name, stat in policy.statistics.items() if stat.dp is None]
    if not names:
        return {"gate": "passed", "docs": "no k-anonymous statistics in the policy"}
    try:
        result = run(spark, policy, lake, StatisticsRequest.checked(policy, names))
    except CheckFailed as exc:
        return {"gate": "failed", "docs": str(exc)}
    summary_table("statistics (k-anonymous, per region)", ["statistic", "region", "cells", "published", "suppressed (primary + complementary)", "status"],
                  [(s["statistic"], s["region"], s.get("cells"), s.get("published"),
                    f"{s.get('primary', 0)} + {s.get('complementary', 0)}", s["status"]) for s in result.statistics])
    return {"gate": "passed", "docs": ", ".join(result.docs) or "no rows", "statistics": result.statistics}
