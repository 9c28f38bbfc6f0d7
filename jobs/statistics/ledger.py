"""The differential-privacy budget ledger of `wasure statistics` (docs/statistics.md).

``<lake>/state/dp_budget``: one row per DP release of a statistic in a region, charged *before*
any noise is drawn (a crashed run still counts), with the mechanism, epsilon, delta or rho, and the
budget in force. A release that would take a (statistic, region) past its budget is refused before
anything is written; a budget once recorded is never raised by a later, looser policy.
"""
from __future__ import annotations

import datetime as dt
import json

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from anonymizers import dp
from anonymizers.frames import local_frame
from jobs.runtime.console import InputError
from jobs.lake.layout import Lake, is_delta, read_now
from jobs.policy import Policy

LEDGER_SCHEMA = T.StructType([
    T.StructField("statistic", T.StringType()), T.StructField("region", T.StringType()),
    T.StructField("release_id", T.StringType()), T.StructField("charged_at", T.TimestampType()),
    T.StructField("mechanism", T.StringType()), T.StructField("epsilon", T.DoubleType()),
    T.StructField("delta", T.DoubleType()), T.StructField("rho", T.DoubleType()),
    T.StructField("budget", T.DoubleType()), T.StructField("budget_unit", T.StringType()),
    T.StructField("parameters", T.StringType()), T.StructField("policy_sha256", T.StringType()),
])

def ledger_path(lake: Lake) -> str:
    return lake.state("dp_budget")


def read_ledger(spark: SparkSession, lake: Lake) -> dict:
    """{(statistic, region): what was spent: epsilon, rho, delta sums; approximate (a release with
    delta > 0); rho_known (every release recorded rho); the tightest recorded budget per unit}."""
    path = ledger_path(lake)
    if not is_delta(path):
        return {}
    df = read_now(spark, path)

    def col(name: str):      # ledgers written before rho / budget_unit existed lack them
        return F.col(name) if name in df.columns else F.lit(None).cast("double" if name == "rho" else "string")
    unit = F.coalesce(col("budget_unit"), F.lit("epsilon"))
    rows = (df.groupBy("statistic", "region").agg(
        F.sum("epsilon").alias("epsilon"), F.sum(F.coalesce("delta", F.lit(0.0))).alias("delta"),
        F.sum(col("rho")).alias("rho"), F.max(F.coalesce("delta", F.lit(0.0)) > 0).alias("approximate"),
        (F.count(F.lit(1)) == F.count(col("rho"))).alias("rho_known"), F.count(F.lit(1)).alias("releases"),
        F.min(F.when(unit == "epsilon", F.col("budget"))).alias("epsilon_budget"),
        F.min(F.when(unit == "rho", F.col("budget"))).alias("rho_budget")).collect())   # one small row each
    return {(r.statistic, r.region): {"epsilon": float(r.epsilon or 0.0), "delta": float(r.delta), "rho": float(r.rho or 0.0),
                                      "approximate": bool(r.approximate), "rho_known": bool(r.rho_known),
                                      "releases": int(r.releases),
                                      "budgets": {"epsilon": r.epsilon_budget, "rho": r.rho_budget}} for r in rows}


def check_budgets(ledger: dict, plans: dict, calibrations: dict, work: list[tuple[str, str]]) -> dict:
    """{(statistic, region): (budget, spent before)} of this run's dp releases; InputError naming every
    release that would exceed its budget. The budget is the policy's (tightened by --budget) or a
    smaller one recorded by an earlier release: a budget once promised is never raised."""
    budgets, refusals = {}, []
    for name, region in work:
        spec, spent = plans[name].dp, ledger.get((name, region))
        recorded = (spent or {}).get("budgets", {}).get(spec.unit)
        budget = min(spec.budget, recorded) if recorded is not None else spec.budget
        budgets[(name, region)] = (budget, (spent or {}).get(spec.unit, 0.0))
        why = dp.refusal(spent, spec, calibrations[name], budget)
        if why:
            refusals.append(f"{name} region {region}: {why}")
    if refusals:
        raise InputError("differential privacy budget exceeded, release refused: " + "; ".join(refusals))
    return budgets


def charge(spark: SparkSession, lake: Lake, policy: Policy, plans: dict, calibrations: dict, release_id: str,
           budgets: dict, work: list[tuple[str, str]]) -> None:
    """Append every release to the ledger (before any noise is drawn: a crash still counts)."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    rows = []
    for name, region in work:
        plan, cal = plans[name], calibrations[name]
        parameters = {"max_rows_per_subject": plan.dp.max_rows_per_subject,
                      "bounds": {m: list(b) for m, b in plan.dp.bounds.items()}, "sensitivities": cal.sensitivities,
                      "scales": cal.scales, "groupings": 2 ** len(plan.dims),
                      "domain_sizes": dict(zip(plan.dims, map(len, plan.domains))), "library": "opendp"}
        rows.append((name, region, release_id, now, cal.mechanism, cal.epsilon, cal.delta, cal.rho,
                     budgets[(name, region)][0], plan.dp.unit, json.dumps(parameters, sort_keys=True), policy.sha256))
    _append(local_frame(spark, rows, LEDGER_SCHEMA), ledger_path(lake), merge_schema=True)


def _append(df: DataFrame, path: str, merge_schema: bool = False) -> None:
    """Append to a small bookkeeping table (ledger, audit): created by its first append, one commit.
    The ledger merges its schema: ledgers of older releases lack rho and budget_unit."""
    df.coalesce(1).write.format("delta").mode("append").option("mergeSchema", str(merge_schema).lower()).save(path)
