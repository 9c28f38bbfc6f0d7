"""Re-identification risk of a released DataFrame under the prosecutor model.

A prosecutor who knows that a person is in the release and knows their quasi-identifiers can
single them out with probability 1 / |class| (the size of the equivalence class that matches).
All figures come from one ``groupBy`` over the QI columns and one aggregation of the class sizes.
"""
from __future__ import annotations

from typing import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def risk_report(df: DataFrame, quasi_identifiers: Sequence[str], k: int | None = None) -> dict[str, float]:
    """max_prosecutor_risk (1 / smallest class), mean_prosecutor_risk (mean over records of
    1 / |class| = classes / rows), records_below_k_share (share of records in classes < k, if k),
    sample_uniques (records alone in their class), classes, rows."""
    sizes = df.groupBy(*quasi_identifiers).agg(F.count(F.lit(1)).alias("size"))
    aggs = [F.sum("size").alias("rows"), F.count(F.lit(1)).alias("classes"), F.min("size").alias("smallest"),
            F.sum(F.when(F.col("size") == 1, 1).otherwise(0)).alias("uniques")]
    if k is not None:
        aggs.append(F.sum(F.when(F.col("size") < k, F.col("size")).otherwise(0)).alias("below_k"))
    row = sizes.agg(*aggs).collect()[0]
    rows = float(row["rows"] or 0)
    classes = float(row["classes"] or 0)
    report = {
        "max_prosecutor_risk": 1.0 / row["smallest"] if row["smallest"] else 0.0,
        # Each record's risk is 1/|E|; summed over the |E| records of a class that is 1 per class.
        "mean_prosecutor_risk": classes / rows if rows else 0.0,
        "sample_uniques": float(row["uniques"] or 0),
        "classes": classes,
        "rows": rows,
    }
    if k is not None:
        report["records_below_k_share"] = float(row["below_k"] or 0) / rows if rows else 0.0
    return report


def max_prosecutor_risk(df: DataFrame, quasi_identifiers: Sequence[str]) -> float:
    return risk_report(df, quasi_identifiers)["max_prosecutor_risk"]


def mean_prosecutor_risk(df: DataFrame, quasi_identifiers: Sequence[str]) -> float:
    return risk_report(df, quasi_identifiers)["mean_prosecutor_risk"]


def records_below_k_share(df: DataFrame, quasi_identifiers: Sequence[str], k: int) -> float:
    return risk_report(df, quasi_identifiers, k)["records_below_k_share"]


def sample_uniques(df: DataFrame, quasi_identifiers: Sequence[str]) -> int:
    return int(risk_report(df, quasi_identifiers)["sample_uniques"])
