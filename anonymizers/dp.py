"""Differential privacy for a statistic's cube, with OpenDP's measurements (docs/statistics.md).

The unit of privacy is one subject. What is released is the whole cube of the statistic (every
cell and every marginal total, 2^n groupings) over a PUBLIC key set: the cross product of the
dimensions' public domains (from the policy, never from the data), cells absent from the data
released as noisy zeros. Steps (jobs/statistics/ runs them in this order):

1. ``bound_contributions`` (Spark): rows whose labels are outside the public domains are dropped, at
   most L rows per subject are kept, each measure is rounded and clipped to public integer bounds;
2. ``true_cube`` (Spark): count and integer sums of every grouping, collected (bounded by the key set);
3. ``calibrate``: the noise scale of each released vector, found with OpenDP's own privacy map for
   the vector's sensitivity (from L, the bounds and the number of groupings);
4. ``noisy_rows``: discrete Laplace (pure epsilon-DP) or discrete Gaussian (rho-zCDP) noise drawn by
   OpenDP (exact integer samplers, OS randomness: no seed, no floating-point noise) on every key.

Pure: no reads, no writes. Bad parameters raise OperatorError (the job reports them as bad input).
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, replace
from functools import reduce
from itertools import product

from pyspark.sql import DataFrame, Row, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from anonymizers.cube import ALL
from anonymizers.registry import OperatorError

CELLS_MAX = 1_000_000    # rows of a released cube (cells and totals): collected to the driver
MECHANISMS = ("laplace", "gaussian")


def _opendp():
    import opendp.prelude as dp

    dp.enable_features("contrib")     # the measurements used here are OpenDP's "contrib" ones
    return dp


# ------------------------------------------------------------------ the public key set

def age_band_labels(width: int, top: int | None) -> list[str]:
    """The labels anonymizers.generalize.age_band gives ('0-4' ... '85-89', '90+')."""
    if top is None:
        raise OperatorError("an age band domain needs the hierarchy's top (ages without a top are unbounded)")
    labels = [f"{low}-{min(low + width - 1, top - 1)}" for low in range(0, top, width)]
    return labels + [f"{top}+"]


def month_labels(first: str, last: str) -> list[str]:
    """'YYYY-MM' from ``first`` to ``last`` inclusive."""
    y0, m0 = (int(p) for p in first.split("-"))
    y1, m1 = (int(p) for p in last.split("-"))
    return [f"{n // 12:04d}-{n % 12 + 1:02d}" for n in range(y0 * 12 + m0 - 1, y1 * 12 + m1)]


def last_months(as_of: dt.date, count: int) -> list[str]:
    """The ``count`` months up to and including the month of ``as_of`` (a public date)."""
    end = as_of.year * 12 + as_of.month - 1
    start = end - count + 1
    return month_labels(f"{start // 12:04d}-{start % 12 + 1:02d}", f"{as_of.year:04d}-{as_of.month:02d}")


def cube_size(domains: list[list[str]]) -> int:
    """Rows of the released cube: every value of each dimension, or ``(all)``."""
    return math.prod(len(values) + 1 for values in domains)


def check_domains(domains: list[list[str]], cap: int = CELLS_MAX) -> None:
    for values in domains:
        if not values or len(set(values)) != len(values) or ALL in values:
            raise OperatorError(f"a public domain is a non-empty list of distinct labels without {ALL!r}")
    if cube_size(domains) > cap:
        raise OperatorError(f"the public domains give {cube_size(domains)} cells and totals, more than {cap}: "
                            "fewer dimensions or coarser domains")


def key_set(domains: list[list[str]]) -> list[tuple[str, ...]]:
    return list(product(*[values + [ALL] for values in domains]))


# ------------------------------------------------------------------ Spark: bounded rows, true cube

def bound_contributions(rows: DataFrame, domains: dict[str, list[str]], bounds: dict[str, tuple[int, int]],
                        max_rows: int, seed: int) -> DataFrame:
    """Rows inside the public domains, at most ``max_rows`` per subject, measures in [low, high].

    The L rows kept are a random choice per subject (``seed`` picks it; it adds no noise). A missing
    or fractional measure becomes an integer: the nearest one, or low when missing.
    """
    inside = reduce(lambda a, b: a & b, [F.col(d).isin(values) for d, values in domains.items()])
    pick = Window.partitionBy("_subject").orderBy(F.rand(seed))
    rows = rows.where(inside).withColumn("_n", F.row_number().over(pick)).where(F.col("_n") <= max_rows).drop("_n")
    for measure, (low, high) in bounds.items():
        value = F.coalesce(F.round(F.col(measure).cast("double")).cast("long"), F.lit(low))
        rows = rows.withColumn(measure, F.least(F.greatest(value, F.lit(low)), F.lit(high)))
    return rows


def true_cube(rows: DataFrame, dims: list[str], measures: list[str]) -> dict[tuple[str, ...], tuple[int, ...]]:
    """{key: (count, sum per measure)} of every grouping present in the bounded rows."""
    aggs = [F.count(F.lit(1)).alias("count")] + [F.sum(F.col(m)).cast("long").alias(f"sum_{m}") for m in measures]
    cube = rows.cube(*dims).agg(*aggs, *[F.grouping(d).alias(f"_g_{d}") for d in dims])
    labels = [F.when(F.col(f"_g_{d}") == 1, F.lit(ALL)).otherwise(F.col(d)).alias(d) for d in dims]
    collected: list[Row] = cube.select(*labels, "count", *[f"sum_{m}" for m in measures]).collect()
    return {tuple(r[d] for d in dims): (int(r["count"]), *[int(r[f"sum_{m}"] or 0) for m in measures]) for r in collected}


# ------------------------------------------------------------------ calibration with OpenDP

@dataclass(frozen=True)
class DPSpec:
    """One release as the policy (tightened by the CLI) asks for it."""
    mechanism: str                       # "laplace" (pure epsilon-DP) or "gaussian" (rho-zCDP)
    epsilon: float | None                # laplace: epsilon of one release
    rho: float | None                    # gaussian: rho of one release
    delta: float | None                  # gaussian: the delta its (epsilon, delta) is reported at
    budget: float                        # total epsilon (laplace) or rho (gaussian) per statistic and region
    max_rows_per_subject: int
    bounds: dict[str, tuple[int, int]]   # measure -> (low, high), integers

    @property
    def unit(self) -> str:
        return "epsilon" if self.mechanism == "laplace" else "rho"

    @property
    def amount(self) -> float:
        return self.epsilon if self.mechanism == "laplace" else self.rho

    def tightened(self, epsilon: float | None, rho: float | None, budget: float | None) -> "DPSpec":
        """This spec with a smaller epsilon (laplace) / rho (gaussian) / budget: never a larger one."""
        changes = {}
        for name, value in (("epsilon", epsilon), ("rho", rho), ("budget", budget)):
            if value is None or name not in (self.unit, "budget"):
                continue
            if not value > 0 or value > getattr(self, name):
                raise OperatorError(f"--{name} {value:g} is not in (0, {getattr(self, name):g}], the policy's {name}: "
                                    "options may only tighten the policy")
            changes[name] = value
        return replace(self, **changes)


@dataclass(frozen=True)
class Calibration:
    mechanism: str
    sensitivities: dict[str, float]   # released column -> L1 (laplace) or L2 (gaussian) sensitivity
    scales: dict[str, float]          # discrete Laplace scale, or discrete Gaussian sigma
    epsilon: float                    # laplace: OpenDP's map; gaussian: the epsilon at delta the rho implies
    delta: float                      # 0 for laplace
    rho: float                        # gaussian: OpenDP's map; laplace: epsilon^2/2 (epsilon-DP implies it)


def sensitivities(mechanism: str, n_dims: int, max_rows: int, bounds: dict[str, tuple[int, int]]) -> dict[str, float]:
    """A subject adds at most L rows to each of the 2^n groupings, so its rows change the count vector
    by at most L per grouping (L1: 2^n L; L2: sqrt(2^n) L) and a sum vector by L max(|low|, |high|)."""
    groupings = 2 ** n_dims
    magnitude = {"count": 1} | {f"sum_{m}": max(abs(low), abs(high)) for m, (low, high) in bounds.items()}
    if mechanism == "laplace":
        return {column: groupings * max_rows * mag for column, mag in magnitude.items()}
    return {column: math.sqrt(groupings) * max_rows * mag for column, mag in magnitude.items()}


def _measurement(mechanism: str, scale: float):
    dp = _opendp()
    if mechanism == "laplace":     # on integers: the discrete Laplace (geometric) mechanism
        return dp.m.make_laplace(dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64"), scale=scale)
    return dp.m.make_gaussian(dp.vector_domain(dp.atom_domain(T="i64")), dp.l2_distance(T="f64"), scale=scale)


def zcdp_epsilon(rho: float, delta: float) -> float:
    """The epsilon at ``delta`` that rho-zCDP implies (OpenDP's conversion, tighter than
    rho + 2 sqrt(rho ln(1/delta))). The profile depends on rho alone: it is read from a reference
    Gaussian measurement whose map at sqrt(2 rho) is rho."""
    dp = _opendp()
    reference = dp.m.make_gaussian(dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float), scale=1.0)
    epsilon, _ = dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(reference), delta).map(math.sqrt(2 * rho))
    return float(epsilon)


def calibrate(spec: DPSpec, n_dims: int) -> Calibration:
    """Noise scales so that the count and every sum each spend an equal share of the release's
    epsilon (or rho); the total is what OpenDP's privacy maps give (sequential composition adds)."""
    if spec.mechanism not in MECHANISMS:
        raise OperatorError(f"mechanism must be one of {', '.join(MECHANISMS)}")
    dp = _opendp()
    sens = sensitivities(spec.mechanism, n_dims, spec.max_rows_per_subject, spec.bounds)
    share = spec.amount / len(sens)
    scales, spent = {}, 0.0
    for column, d_in in sens.items():
        d_in = int(d_in) if spec.mechanism == "laplace" else float(d_in)
        scale = dp.binary_search_param(lambda s: _measurement(spec.mechanism, s), d_in=d_in, d_out=share)
        scales[column] = float(scale)
        spent += float(_measurement(spec.mechanism, scale).map(d_in))
    if spec.mechanism == "laplace":
        return Calibration("laplace", sens, scales, epsilon=spent, delta=0.0, rho=spent ** 2 / 2)
    return Calibration("gaussian", sens, scales, epsilon=zcdp_epsilon(spent, spec.delta), delta=spec.delta, rho=spent)


# ------------------------------------------------------------------ the noisy release

def release_schema(dims: list[str], measures: list[str]) -> T.StructType:
    return T.StructType(
        [T.StructField("region", T.StringType(), False)] + [T.StructField(d, T.StringType(), False) for d in dims]
        + [T.StructField("margin_over", T.StringType(), False), T.StructField("suppressed", T.BooleanType(), False),
           T.StructField("count", T.LongType(), False)]
        + [T.StructField(f"sum_{m}", T.LongType(), False) for m in measures]
        + [T.StructField(f"mean_{m}", T.DoubleType(), True) for m in measures])


def noisy_rows(truth: dict[tuple[str, ...], tuple[int, ...]], dims: list[str], domains: list[list[str]],
               spec: DPSpec, calibration: Calibration, region: str) -> list[tuple]:
    """One row per public key (``release_schema``), true values 0 where the data has none.

    Counts and sums keep their (possibly negative) noisy integers: clamping at 0 would bias every
    total built from cells. ``mean_<m>`` is noisy sum / noisy count, kept in [low, high], null when
    the noisy count is not positive (post-processing: no further privacy cost).
    """
    keys = key_set(domains)
    measures = list(spec.bounds)
    columns = ["count"] + [f"sum_{m}" for m in measures]
    zero = (0,) * len(columns)
    noisy = {}
    for j, column in enumerate(columns):
        true_values = [truth.get(key, zero)[j] for key in keys]
        noisy[column] = _measurement(calibration.mechanism, calibration.scales[column])(true_values)
    out = []
    for i, key in enumerate(keys):
        count = noisy["count"][i]
        sums = [noisy[f"sum_{m}"][i] for m in measures]
        means = [float(min(max(s / count, spec.bounds[m][0]), spec.bounds[m][1])) if count > 0 else None
                 for m, s in zip(measures, sums)]
        margin = ",".join(d for d, label in zip(dims, key) if label == ALL)
        out.append((region, *key, margin, False, int(count), *[int(s) for s in sums], *means))
    return out


# ------------------------------------------------------------------ the budget

def refusal(spent: dict | None, spec: DPSpec, calibration: Calibration, budget: float) -> str | None:
    """Why this release would break the budget, or None. ``spent``: the ledger's sums for the
    statistic and region (epsilon, rho, approximate: a release with delta > 0, rho_known: every
    release recorded its rho)."""
    spent = spent or {"epsilon": 0.0, "rho": 0.0, "approximate": False, "rho_known": True}
    if spec.unit == "epsilon":
        if spent["approximate"]:
            return "the ledger holds (epsilon, delta) releases, which a pure epsilon budget cannot count"
        used, this = spent["epsilon"], calibration.epsilon
    else:
        if not spent["rho_known"]:
            return "the ledger holds releases without a recorded rho, which a rho budget cannot count"
        used, this = spent["rho"], calibration.rho
    if used + this > budget * (1 + 1e-9):
        return f"{spec.unit} {this:g} would exceed the budget (spent {used:g} of {budget:g})"
    return None
