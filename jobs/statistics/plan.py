"""What a statistic of the policy means for the data: its dimensions, measures and public domains.

``plan_statistic`` turns ``statistics.<name>`` of the policy into a ``StatPlan`` before any row is
read: which columns are dimensions (and how they are generalized: birth date -> age band, dates ->
year-month), which are measures, the k of a k-anonymous statistic, and for a differentially private
one the public domain of every dimension, derived from the policy (never from the data) so that the
released key set says nothing about which cells are empty (docs/statistics.md).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from pyspark.sql import SparkSession
from pyspark.sql import types as T

from anonymizers import dp
from anonymizers.registry import OperatorError
from jobs.runtime.console import InputError
from jobs.lake.layout import Lake, check_lake, read_now, with_registers
from jobs.policy import RELEASE_FORBIDDEN, ColumnClass, Policy, Statistic

MAX_DIMENSIONS = 8       # the cube has 2^n groupings
DIMENSION_CLASSES = (ColumnClass.quasi_identifier, ColumnClass.other)
MEASURE_CLASSES = (ColumnClass.other, ColumnClass.sensitive)
FORBIDDEN_CLASSES = RELEASE_FORBIDDEN      # a statistic is a release: the classes of jobs.policy.TREATMENTS it may not carry
NUMERIC = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)
DATES = (T.DateType, T.TimestampType, T.TimestampNTZType)

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
    k: int | None
    dimensions: tuple[Dimension, ...]
    measures: tuple[tuple[str, str], ...]     # (column, "source" | "subject")
    age_width: int = 5
    age_top: int | None = 90
    dp: dp.DPSpec | None = None               # a differentially private statistic
    domains: tuple[tuple[str, ...], ...] = ()  # dp: the public labels of each dimension

    @property
    def dims(self) -> list[str]:
        return [d.output for d in self.dimensions]

    @property
    def per_subject_dims(self) -> list[str]:
        """Dimensions read from the subject table, one value per subject (anonymizers.cube.build_cube)."""
        return [d.output for d in self.dimensions if d.table == "subject"]

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


def plan_statistic(spark: SparkSession, policy: Policy, lake: Lake, name: str, as_of: dt.date | None = None) -> StatPlan:
    """Check a statistic against the policy and the lake's schemas; bad input raises InputError."""
    stat = policy.statistics[name]
    source = policy.tables[stat.table]
    subject = policy.tables[policy.subject.table]
    check_lake(spark, policy, lake, with_registers(policy, [stat.table]))   # missing, drift: exit 2
    schemas = {"source": read_now(spark, lake.table_path(source)).schema,
               "subject": read_now(spark, lake.table_path(subject)).schema}

    def where(column: str) -> tuple[str, object]:
        side = "source" if column in source.columns else "subject"
        return side, (source if side == "source" else subject).column(column)

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
    width, top = _age_hierarchy(policy, stat)
    plan = StatPlan(name=name, table=stat.table, k=stat.k, dimensions=tuple(dims), measures=tuple(measures),
                    age_width=width, age_top=top)
    return plan if stat.dp is None else _with_dp(policy, stat, plan, as_of or dt.datetime.now(dt.timezone.utc).date())


def _age_hierarchy(policy: Policy, stat: Statistic) -> tuple[int, int | None]:
    """The age bands: those of a dp domain's age_band hierarchy, else the hierarchy named "age" if it
    is an age band, else the first age band (5 years, 90+ without one)."""
    named = stat.dp.domains.get(policy.subject.birth_date_column) if stat.dp and policy.subject.birth_date_column else None
    bands = sorted(policy.hierarchies.items(), key=lambda item: item[0] != "age")
    hierarchy = (policy.hierarchies[named.hierarchy] if named is not None and named.hierarchy is not None
                 else next((h for _, h in bands if h.type == "age_band"), None))
    return (hierarchy.width if hierarchy and hierarchy.width else 5), (hierarchy.top if hierarchy else 90)


def _with_dp(policy: Policy, stat: Statistic, plan: StatPlan, as_of: dt.date) -> StatPlan:
    """The plan with its DP spec and the public domain of every dimension (from the policy only)."""
    config = stat.dp
    domains = tuple(tuple(public_domain(policy, plan, dim, config.domains[dim.source], as_of)) for dim in plan.dimensions)
    try:
        dp.check_domains([list(d) for d in domains])
    except OperatorError as exc:
        raise InputError(f"statistics.{plan.name}.dp.domains: {exc}") from None
    return replace(plan, dp=policy_dp_spec(stat), domains=domains)


def policy_dp_spec(stat: Statistic) -> dp.DPSpec:
    """A dp statistic's release as the policy asks for it, before any option tightens it."""
    config = stat.dp
    return dp.DPSpec(mechanism=config.mechanism, epsilon=config.epsilon, rho=config.rho, delta=config.delta,
                     budget=config.budget, max_rows_per_subject=config.max_rows_per_subject,
                     bounds={m: tuple(config.bounds[m]) for m in stat.measures})


def public_domain(policy: Policy, plan: StatPlan, dim: Dimension, domain, as_of: dt.date) -> list[str]:
    """The labels ``dim`` is published with: listed, a tree's leaves, age bands, or months."""
    where = f"statistics.{plan.name}.dp.domains.{dim.source}"
    monthly = domain.months is not None or domain.last_months is not None
    if monthly != (dim.kind == "month") and domain.values is None:
        raise InputError(f"{where}: {dim.source!r} is published as {dim.output!r} ({dim.kind}); "
                         + ("its domain is months or last_months" if dim.kind == "month" else "months are the domain of a date column"))
    if domain.values is not None:
        return list(domain.values)
    if domain.months is not None:
        return dp.month_labels(domain.months.from_, domain.months.to)
    if domain.last_months is not None:
        return dp.last_months(as_of, domain.last_months)
    hierarchy = policy.hierarchies[domain.hierarchy]
    if hierarchy.type == "age_band":
        return dp.age_band_labels(plan.age_width, plan.age_top)
    if dim.kind != "value":
        raise InputError(f"{where}: a tree's leaves cannot label {dim.source!r}, published as {dim.kind}")
    from jobs.anonymize import _tree_hierarchy       # the file next to the policy, errors as InputError

    return list(_tree_hierarchy(policy, domain.hierarchy, dim.output).leaves)


def check_dp_options(policy: Policy, names: list[str], epsilon: float | None, rho: float | None,
                     budget: float | None) -> None:
    """--epsilon applies to laplace statistics, --rho to gaussian ones, --budget to every dp one, each
    only to tighten the policy's value; an option that matches no selected statistic is bad input
    (DP is chosen in the policy). Checked from the policy alone, before Spark starts."""
    specs = {name: policy_dp_spec(policy.statistics[name]) for name in names if policy.statistics[name].dp is not None}
    for option, value, fits in (("epsilon", epsilon, lambda s: s.unit == "epsilon"),
                                ("rho", rho, lambda s: s.unit == "rho"), ("budget", budget, lambda s: True)):
        if value is not None and not any(fits(s) for s in specs.values()):
            raise InputError(f"--{option}: none of the selected statistics is differentially private "
                             f"{'' if option == 'budget' else 'with ' + option + ' '}(DP is chosen per statistic in the policy: dp)")
    for name, spec in specs.items():
        try:
            spec.tightened(epsilon, rho, budget)
        except OperatorError as exc:
            raise InputError(f"statistics.{name}.dp: {exc}") from None


def tightened_plans(plans: dict[str, StatPlan], epsilon: float | None, rho: float | None,
                    budget: float | None) -> dict[str, StatPlan]:
    """The plans with the request's options applied (``check_dp_options`` accepted them)."""
    return {name: replace(plan, dp=plan.dp.tightened(epsilon, rho, budget)) if plan.dp is not None else plan
            for name, plan in plans.items()}
