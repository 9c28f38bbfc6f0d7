"""Information loss of a released (generalized) DataFrame, computed with Spark aggregations.

- GCP, global certainty penalty: mean over all QI cells of the cell penalty, normalized to [0, 1].
  Categorical cell: (leaves covered by the released node - 1) / (leaves of the hierarchy - 1).
  Numeric cell ``[a-b]``: (b - a) / (domain max - domain min); ``*`` costs 1 in both.
- NCP per attribute: the same penalty averaged over the rows of one attribute.
- Discernibility metric: sum over classes of |class|^2, plus |input| per suppressed row.
- Average equivalence-class size, and the normalized C_avg = rows / classes / k.

Suppressed rows are gone from the output; pass their number as ``suppressed`` so that they count
as fully generalized rows (loss 1 in every cell), as ARX reports them.
The numeric domain is the hierarchy's (``IntervalHierarchy.lower/upper``) if fixed, else the
span of the released intervals, which is the input's span because every class interval holds
actual values.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from anonymizers.hierarchy import SUPPRESSED, Hierarchy

_INTERVAL = r"^\[(-?[0-9.eE+]+)-(-?[0-9.eE+]+)\]$"


def _interval_bounds(col: Column) -> tuple[Column, Column]:
    """(low, high) of a released numeric cell: "[25-29]" -> 25, 29; "31" -> 31, 31; "*" -> nulls."""
    text = F.trim(col.cast("string"))
    is_interval = text.rlike(_INTERVAL)
    low = F.when(is_interval, F.regexp_extract(text, _INTERVAL, 1)).otherwise(text)
    high = F.when(is_interval, F.regexp_extract(text, _INTERVAL, 2)).otherwise(text)
    return low.try_cast("double"), high.try_cast("double")


def attribute_losses(df: DataFrame, quasi_identifiers: Sequence[str], hierarchies: Mapping[str, Hierarchy],
                     *, suppressed: int = 0) -> tuple[dict[str, float], int]:
    """NCP per attribute (mean cell penalty over released + suppressed rows) and the released row
    count, in one aggregation."""
    qis = list(quasi_identifiers)
    aggs = [F.count(F.lit(1)).alias("rows")]
    for i, q in enumerate(qis):
        h = hierarchies[q]
        if h.kind == "categorical":
            costs = h.label_costs()
            table = F.create_map(*[F.lit(x) for label, cost in costs.items() for x in (label, float(cost))])
            cell = table[F.col(q).cast("string")]
            aggs += [F.sum(F.coalesce(cell, F.lit(0.0))).alias(f"sum{i}"),
                     F.sum(F.when(cell.isNull(), 1).otherwise(0)).alias(f"unknown{i}")]
        else:
            low, high = _interval_bounds(F.col(q))
            star = F.trim(F.col(q).cast("string")) == F.lit(SUPPRESSED)
            aggs += [F.sum(F.when(~star, high - low)).alias(f"span{i}"),
                     F.sum(F.when(star, 1).otherwise(0)).alias(f"stars{i}"),
                     F.min(low).alias(f"lo{i}"), F.max(high).alias(f"hi{i}"),
                     F.sum(F.when(~star & (low.isNull() | high.isNull()), 1).otherwise(0)).alias(f"unknown{i}")]
    row = df.agg(*aggs).collect()[0]
    released = int(row["rows"])
    total = released + int(suppressed)
    losses: dict[str, float] = {}
    for i, q in enumerate(qis):
        if row[f"unknown{i}"]:
            raise ValueError(f"column {q!r}: {row[f'unknown{i}']} released values are not "
                             f"{'nodes of its hierarchy' if hierarchies[q].kind == 'categorical' else 'intervals'}")
        if total == 0:
            losses[q] = 0.0
            continue
        h = hierarchies[q]
        if h.kind == "categorical":
            cells = float(row[f"sum{i}"] or 0.0)
        else:
            lower = h.lower if h.lower is not None else row[f"lo{i}"]
            upper = h.upper if h.upper is not None else row[f"hi{i}"]
            width = (upper - lower) if lower is not None and upper is not None else 0.0
            span = float(row[f"span{i}"] or 0.0)
            cells = (span / width if width > 0 else 0.0) + float(row[f"stars{i}"])
        losses[q] = (cells + suppressed) / total
    return losses, released


def ncp(df: DataFrame, quasi_identifiers: Sequence[str], hierarchies: Mapping[str, Hierarchy],
        *, suppressed: int = 0) -> dict[str, float]:
    """Normalized certainty penalty per attribute, each in [0, 1]."""
    return attribute_losses(df, quasi_identifiers, hierarchies, suppressed=suppressed)[0]


def gcp(df: DataFrame, quasi_identifiers: Sequence[str], hierarchies: Mapping[str, Hierarchy],
        *, suppressed: int = 0) -> float:
    """Global certainty penalty in [0, 1]: mean of the per-attribute NCPs (equal row counts)."""
    losses = ncp(df, quasi_identifiers, hierarchies, suppressed=suppressed)
    return float(sum(losses.values()) / len(losses)) if losses else 0.0


def class_size_summary(df: DataFrame, quasi_identifiers: Sequence[str]) -> dict[str, float]:
    """rows, classes, sum of squared class sizes, smallest class: one groupBy + one aggregation."""
    sizes = df.groupBy(*quasi_identifiers).agg(F.count(F.lit(1)).alias("size"))
    row = sizes.agg(F.sum("size").alias("rows"), F.count(F.lit(1)).alias("classes"),
                    F.sum(F.col("size") * F.col("size")).alias("squares"),
                    F.min("size").alias("smallest")).collect()[0]
    return {"rows": float(row["rows"] or 0), "classes": float(row["classes"] or 0),
            "squares": float(row["squares"] or 0), "smallest": float(row["smallest"] or 0)}


def discernibility(df: DataFrame, quasi_identifiers: Sequence[str], *, suppressed: int = 0) -> float:
    """DM = sum |E|^2 over classes + suppressed * (released + suppressed)."""
    summary = class_size_summary(df, quasi_identifiers)
    return summary["squares"] + suppressed * (summary["rows"] + suppressed)


def average_class_size(df: DataFrame, quasi_identifiers: Sequence[str]) -> float:
    summary = class_size_summary(df, quasi_identifiers)
    return summary["rows"] / summary["classes"] if summary["classes"] else 0.0


def utility_report(df: DataFrame, quasi_identifiers: Sequence[str], hierarchies: Mapping[str, Hierarchy],
                   *, k: int | None = None, suppressed: int = 0) -> dict[str, float]:
    """All metrics in two Spark jobs: gcp, ncp_<attribute>, discernibility, avg_class_size,
    normalized_avg_class_size (if k), classes, rows, suppressed."""
    losses, _ = attribute_losses(df, quasi_identifiers, hierarchies, suppressed=suppressed)
    summary = class_size_summary(df, quasi_identifiers)
    rows, classes = summary["rows"], summary["classes"]
    report = {"gcp": float(sum(losses.values()) / len(losses)) if losses else 0.0}
    report.update({f"ncp_{q}": float(v) for q, v in losses.items()})
    report["discernibility"] = summary["squares"] + suppressed * (rows + suppressed)
    report["avg_class_size"] = rows / classes if classes else 0.0
    if k:
        report["normalized_avg_class_size"] = report["avg_class_size"] / k
    report["classes"] = classes
    report["rows"] = rows
    report["suppressed"] = float(suppressed)
    return report
