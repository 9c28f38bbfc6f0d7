"""Policy as code: ``policies/*.yaml`` parsed and validated into typed objects.

Every error names the file, the key path (``tables.accounts.columns.email.class``) and what is
wrong. Jobs load the policy before they touch any data, so an invalid policy writes nothing.
"""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import math
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError, field_validator


class PolicyError(ValueError):
    """An invalid policy. ``problems`` is a list of (key path, message)."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {path}: {msg}" for path, msg in problems]
        super().__init__("invalid policy\n" + "\n".join(lines))


class ColumnClass(str, Enum):
    identifying = "identifying"              # name, address detail, phone, email (APPI rule 31 item 1)
    individual_code = "individual_code"      # 個人識別符号: My Number, passport, licence, biometrics
    property_damage = "property_damage"      # card numbers, bank accounts, payment / Wi-Fi credentials
    quasi_identifier = "quasi_identifier"    # birth date, gender, postal area: generalized for release
    sensitive = "sensitive"                  # health measurements: only inside k-anonymous classes
    linking_code = "linking_code"            # member / device ids, persistent pseudonyms (連結符号)
    free_text = "free_text"                  # text that may mention any of the above
    other = "other"                          # not personal on its own (timestamps, counters, flags)


PERSONAL_CLASSES = {
    ColumnClass.identifying, ColumnClass.individual_code, ColumnClass.property_damage,
    ColumnClass.quasi_identifier, ColumnClass.sensitive, ColumnClass.linking_code, ColumnClass.free_text,
}


@dataclass(frozen=True)
class Treatment:
    """What a column of one class becomes in each kind of output: the one table that pseudonymize,
    anonymize, statistics and their gates all read (APPI rule 31 for 仮名加工情報, rule 34 and
    k-anonymity for 匿名加工情報 and statistics)."""

    pseudonymized: str                    # the default in 仮名加工情報: pseudonymize / drop / scrub / keep
    allowed: tuple[str, ...] | None       # treatments a policy may choose instead (None: any)
    refusal: str = ""                     # why another treatment is refused (policy validation)
    released: bool = True                 # may a release or a statistics table carry it (generalized)


TREATMENTS: dict[ColumnClass, Treatment] = {
    ColumnClass.identifying: Treatment("pseudonymize", ("pseudonymize", "drop"),
                                       "identifying columns are pseudonymized or dropped", released=False),
    ColumnClass.individual_code: Treatment("drop", ("drop",), "{cls} is always dropped (APPI rule 31); "
                                           "treatment {treatment!r} is not allowed", released=False),
    ColumnClass.property_damage: Treatment("drop", ("drop",), "{cls} is always dropped (APPI rule 31); "
                                           "treatment {treatment!r} is not allowed", released=False),
    ColumnClass.quasi_identifier: Treatment("keep", None),
    ColumnClass.sensitive: Treatment("keep", None),
    ColumnClass.linking_code: Treatment("pseudonymize", None, released=False),
    ColumnClass.free_text: Treatment("scrub", ("scrub", "drop"), "free_text columns are scrubbed or dropped", released=False),
    ColumnClass.other: Treatment("keep", None),
}
# The operator (anonymizers.registry, by name) that carries out each 仮名加工情報 treatment.
PSEUDONYMIZED_OPERATORS = {"drop": "drop", "scrub": "scrub", "pseudonymize": "keyed_pseudonym"}
# Classes no output may carry at all: always dropped, even from 仮名加工情報.
PSEUDONYMIZED_FORBIDDEN = tuple(c.value for c, t in TREATMENTS.items() if t.pseudonymized == "drop" and t.allowed == ("drop",))
# Classes a 匿名加工情報 release or a statistics table may not carry.
RELEASE_FORBIDDEN = tuple(c.value for c, t in TREATMENTS.items() if not t.released)


# Sane ranges (docs/policy.md, "Bounds and checks"): a value outside them is a typo or a
# misunderstanding (hours for days, a share as a percentage), never a policy anyone means.
PERIOD_DAYS_MAX = 36500            # retention period: 1 day .. 100 years
GRACE_DAYS_MAX = 3650              # logical delete -> physical purge: 0 .. 10 years
BACKUP_RETENTION_DAYS_MAX = 3650   # 1 day .. 10 years
ERASURE_DEADLINE_DAYS_MAX = 90     # CCPA: 45 days, extendable once by 45 (Cal. Civ. Code 1798.130(a)(2))
K_MAX = 1000                       # k of a release or a statistic: 2 .. 1000
L_MAX = 1000                       # l of a release: 1 .. 1000
AGE_MAX = 150                      # age_band width and top


def _rare_bounds(value: Any) -> Any:
    """``[low, high]``: two finite numbers or null (no bound on that side), low below high.
    Strict on purpose: a quoted number, a boolean or NaN is a typo, not a bound."""
    def number(item: Any) -> bool:
        return item is None or (isinstance(item, (int, float)) and not isinstance(item, bool) and math.isfinite(item))

    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(number(v) for v in value):
        # No "[letter..." in messages: the CLI prints them as rich markup.
        raise ValueError("rare-value bounds are a list of two numbers, low and high, null for no bound on one side "
                         "(e.g. [35.5, 38.5] or [35.5, null])")
    low, high = value
    if low is None and high is None:
        raise ValueError("at least one bound is needed (two nulls code nothing)")
    if low is not None and high is not None and low >= high:
        raise ValueError(f"low ({low:g}) must be below high ({high:g}): values <= low are coded '<=low', "
                         "values >= high 'high+'")
    return value


RareBounds = Annotated[tuple[float | None, float | None], BeforeValidator(_rare_bounds)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(Strict):
    class_: ColumnClass = Field(alias="class")
    treatment: Literal["pseudonymize", "drop", "scrub", "generalize", "keep"] | None = None
    hierarchy: str | None = None
    description: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Hierarchy(Strict):
    type: Literal["date", "age_band", "address", "bins", "tree", "keep"]
    levels: list[str] = Field(default_factory=list)
    width: int | None = Field(default=None, gt=0, le=AGE_MAX)
    top: int | None = None
    bottom: int | None = None
    edges: list[float] = Field(default_factory=list)
    file: str | None = None


class Retention(Strict):
    basis: Literal["business_date", "account_closure"]
    period_days: int = Field(ge=1, le=PERIOD_DAYS_MAX)
    action: Literal["delete", "pseudonymize", "anonymize"] = "delete"
    purpose: str | None = None
    release: str | None = None      # action anonymize: the release (QIs, k, l) the expired rows are kept as
    grace_days: int | None = Field(default=None, ge=0, le=GRACE_DAYS_MAX)


class Table(Strict):
    path: str
    subject_key: str
    date_column: str | None = None
    region_column: str = "region"
    subject_buckets: int = Field(default=8, ge=1, le=4096)
    purposes: list[str] = Field(default_factory=list)
    columns: dict[str, Union[ColumnClass, ColumnSpec]]
    retention: Retention | None = None
    # A register (consents, provision records, holds) is evidence: subject-level rules (minors,
    # withdrawn consent) never delete it; only its own retention rule and erasure apply.
    record_keeping: bool = False
    description: str | None = None

    @field_validator("path")
    @classmethod
    def _relative_path(cls, value: str) -> str:
        if value.startswith("/") or ".." in Path(value).parts or not value.strip():
            raise ValueError("must be a non-empty path relative to the lake root, without '..'")
        return value

    def column(self, name: str) -> ColumnSpec:
        spec = self.columns[name]
        return spec if isinstance(spec, ColumnSpec) else ColumnSpec(**{"class": spec})

    def columns_of(self, *classes: ColumnClass) -> list[str]:
        return [name for name in self.columns if self.column(name).class_ in classes]

    def stats_columns(self) -> list[str]:
        """Columns allowed into Delta's min/max statistics: never a personal column."""
        return [n for n in self.columns
                if self.column(n).class_ == ColumnClass.other or n == self.date_column]


class Purpose(Strict):
    key_id: str = Field(min_length=1)
    requires_consent: bool = False
    description: str | None = None


class LegalHold(Strict):
    id: str
    reason: str = Field(min_length=3)
    subjects: list[str] = Field(default_factory=list)
    tables: list[str] = Field(default_factory=list)
    until: dt.date | None = None


class Release(Strict):
    table: str
    quasi_identifiers: dict[str, str | None]
    sensitive: list[str] = Field(default_factory=list)
    region: str | None = None
    # 特異な記述 of sensitive attributes: bottom/top-coded at [low, high] (QIs are coded by their hierarchy).
    rare_values: dict[str, RareBounds] = Field(default_factory=dict)
    k: int = Field(ge=2, le=K_MAX)
    l: int | None = Field(default=None, ge=1, le=L_MAX)
    suppression_budget: float = Field(default=0.0, ge=0.0, le=0.5)
    purpose: str | None = None


# Differential privacy of a statistic (docs/statistics.md): sane ranges, as above.
DP_EPSILON_MAX = 10.0              # epsilon of one release
DP_RHO_MAX = 10.0                  # rho of one release (zCDP)
DP_DELTA_MAX = 1e-3                # the delta a zCDP release's (epsilon, delta) is reported at
DP_BUDGET_MAX = 100.0              # total epsilon or rho per statistic and region
DP_ROWS_MAX = 10000                # rows one subject may contribute
DP_BOUND_MAX = 10 ** 9             # |clip bound| of a measure: integer sums stay far from 2^63


def _dp_bounds(value: Any) -> Any:
    """``[low, high]``: two integers (DP sums are sums of integers), low <= high, within DP_BOUND_MAX."""
    def integer(item: Any) -> bool:
        return isinstance(item, int) and not isinstance(item, bool) and abs(item) <= DP_BOUND_MAX

    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(integer(v) for v in value):
        raise ValueError(f"clip bounds are a list of two integers, low and high, within +-{DP_BOUND_MAX} (e.g. 0, 50000000)")
    if value[0] > value[1]:
        raise ValueError(f"low ({value[0]}) must not be above high ({value[1]})")
    return value


DPBounds = Annotated[tuple[int, int], BeforeValidator(_dp_bounds)]
MONTH = r"^[0-9]{4}-(0[1-9]|1[0-2])$"


class MonthRange(Strict):
    from_: str = Field(alias="from", pattern=MONTH)
    to: str = Field(pattern=MONTH)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class DPDomain(Strict):
    """The public values of one dimension, never taken from the data: exactly one of ``values``,
    ``hierarchy`` (a tree's leaves, or an age_band's bands), ``months`` or ``last_months``."""
    values: list[str] | None = Field(default=None, min_length=1)
    hierarchy: str | None = None
    months: MonthRange | None = None
    last_months: int | None = Field(default=None, ge=1, le=1200)   # up to the release's as-of month


class DifferentialPrivacy(Strict):
    mechanism: Literal["laplace", "gaussian"] = "laplace"
    epsilon: float | None = Field(default=None, gt=0, le=DP_EPSILON_MAX)   # laplace, per release
    rho: float | None = Field(default=None, gt=0, le=DP_RHO_MAX)           # gaussian, per release
    delta: float | None = Field(default=None, gt=0, le=DP_DELTA_MAX)       # gaussian
    budget: float = Field(gt=0, le=DP_BUDGET_MAX)        # epsilon (laplace) or rho (gaussian), all releases
    max_rows_per_subject: int = Field(ge=1, le=DP_ROWS_MAX)
    bounds: dict[str, DPBounds] = Field(default_factory=dict)   # every measure
    domains: dict[str, DPDomain]                                # every dimension


class Statistic(Strict):
    table: str
    dimensions: list[str] = Field(min_length=1)
    measures: list[str] = Field(default_factory=list)
    k: int | None = Field(default=None, ge=2, le=K_MAX)    # k-anonymous statistics (no dp)
    dp: DifferentialPrivacy | None = None                  # differentially private instead


class Subject(Strict):
    key: str
    id_pattern: str
    table: str
    closure_column: str
    birth_date_column: str | None = None
    guardian_consent_column: str | None = None
    adult_age: int = Field(default=18, ge=1, le=30)
    # Registers the jobs read: consents (<key>, purpose, status), restrictions (<key>, scope),
    # legal holds (hold_id, <key>, table_name, reason, until).
    consents_table: str | None = None
    restrictions_table: str | None = None
    legal_holds_table: str | None = None

    @field_validator("id_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression ({exc})") from exc
        return value


class Defaults(Strict):
    grace_days: int = Field(default=7, ge=0, le=GRACE_DAYS_MAX)
    max_delete_share: float = Field(default=0.5, gt=0.0, le=1.0)
    backup_retention_days: int = Field(default=35, ge=1, le=BACKUP_RETENTION_DAYS_MAX)
    erasure_deadline_days: int = Field(default=45, ge=1, le=ERASURE_DEADLINE_DAYS_MAX)
    # Key of the deletion ledger's keyed hashes of erased subject ids (never plain ids).
    ledger_key_id: str = Field(default="deletion-ledger", min_length=1)


class Policy(Strict):
    version: Literal[1]
    name: str
    description: str | None = None
    regions: list[str] = Field(min_length=1)
    subject: Subject
    defaults: Defaults = Defaults()
    hierarchies: dict[str, Hierarchy] = Field(default_factory=dict)
    purposes: dict[str, Purpose] = Field(default_factory=dict)
    tables: dict[str, Table] = Field(min_length=1)
    legal_holds: list[LegalHold] = Field(default_factory=list)
    releases: dict[str, Release] = Field(default_factory=dict)
    statistics: dict[str, Statistic] = Field(default_factory=dict)

    # Filled by parse_policy, not part of the YAML.
    _source: str = PrivateAttr(default="<memory>")
    _sha256: str = PrivateAttr(default="")

    @property
    def source(self) -> str:
        return self._source

    @property
    def sha256(self) -> str:
        return self._sha256

    def table(self, name: str) -> Table:
        return self.tables[name]

    def grace_days(self, table: str) -> int:
        retention = self.tables[table].retention
        if retention is not None and retention.grace_days is not None:
            return retention.grace_days
        return self.defaults.grace_days

    def subject_id_regex(self) -> re.Pattern[str]:
        return re.compile(self.subject.id_pattern)


def _semantic_problems(policy: Policy) -> list[tuple[str, str]]:
    """Cross-references pydantic cannot check field by field."""
    problems: list[tuple[str, str]] = []
    tables = policy.tables
    if policy.subject.table not in tables:
        problems.append(("subject.table", f"unknown table {policy.subject.table!r}"))
    else:
        home = tables[policy.subject.table]
        for key in ("consents_table", "restrictions_table", "legal_holds_table"):
            name = getattr(policy.subject, key)
            if name is not None and name not in tables:
                problems.append((f"subject.{key}", f"unknown table {name!r}"))
        for name, purpose in policy.purposes.items():
            if purpose.requires_consent and policy.subject.consents_table is None:
                problems.append((f"purposes.{name}.requires_consent", "a purpose based on consent needs the consent "
                                 "register: set subject.consents_table (or requires_consent: false)"))
        for key in ("closure_column", "birth_date_column", "guardian_consent_column"):
            column = getattr(policy.subject, key)
            if column is not None and column not in home.columns:
                problems.append((f"subject.{key}", f"column {column!r} is not in table {policy.subject.table!r}"))
    for name, table in tables.items():
        base = f"tables.{name}"
        if table.subject_key not in table.columns:
            problems.append((f"{base}.subject_key", f"column {table.subject_key!r} is not classified in columns"))
        elif table.column(table.subject_key).class_ != ColumnClass.linking_code:
            problems.append((f"{base}.columns.{table.subject_key}.class", "the subject key must be class linking_code"))
        elif table.purposes and table.column(table.subject_key).treatment == "drop":
            problems.append((f"{base}.columns.{table.subject_key}.treatment", "the subject key of a table that serves a "
                             "purpose is pseudonymized, not dropped: erasure finds a subject's 仮名加工情報 by it"))
        if table.date_column is not None and table.date_column not in table.columns:
            problems.append((f"{base}.date_column", f"column {table.date_column!r} is not classified in columns"))
        if table.region_column not in table.columns:
            problems.append((f"{base}.region_column", f"column {table.region_column!r} is not classified in columns"))
        for i, purpose in enumerate(table.purposes):
            if purpose not in policy.purposes:
                problems.append((f"{base}.purposes[{i}]", f"unknown purpose {purpose!r}"))
        for column in table.columns:
            spec = table.column(column)
            where = f"{base}.columns.{column}"
            if spec.class_ == ColumnClass.quasi_identifier and spec.hierarchy is None:
                problems.append((f"{where}.hierarchy", "a quasi_identifier needs a generalization hierarchy"))
            if spec.hierarchy is not None and spec.hierarchy not in policy.hierarchies:
                problems.append((f"{where}.hierarchy", f"unknown hierarchy {spec.hierarchy!r}"))
            rule = TREATMENTS[spec.class_]
            if rule.allowed is not None and spec.treatment not in (None, *rule.allowed):
                problems.append((f"{where}.treatment", rule.refusal.format(cls=spec.class_.value, treatment=spec.treatment)))
        retention = table.retention
        if retention is not None:
            if retention.basis == "business_date" and table.date_column is None:
                problems.append((f"{base}.retention.basis", "business_date retention needs the table's date_column"))
            if retention.purpose is not None and retention.purpose not in policy.purposes:
                problems.append((f"{base}.retention.purpose", f"unknown purpose {retention.purpose!r}"))
            if retention.action == "pseudonymize" and not table.purposes:
                problems.append((f"{base}.retention.action", "pseudonymize needs a purpose in the table's purposes"))
            if retention.action == "anonymize":
                if retention.release is None:
                    problems.append((f"{base}.retention.release", "action anonymize needs the release whose QIs and k the expired rows are kept as"))
                elif retention.release not in policy.releases:
                    problems.append((f"{base}.retention.release", f"unknown release {retention.release!r}"))
                elif policy.releases[retention.release].table != name:
                    problems.append((f"{base}.retention.release", f"release {retention.release!r} is built from table "
                                                                  f"{policy.releases[retention.release].table!r}, not {name!r}"))
            elif retention.release is not None:
                problems.append((f"{base}.retention.release", "only action anonymize takes a release"))
    problems += _closure_order_problems(policy)
    problems += _statistic_dp_problems(policy)
    for name, hierarchy in policy.hierarchies.items():
        base = f"hierarchies.{name}"
        if hierarchy.type == "tree" and not hierarchy.file:
            problems.append((f"{base}.file", "a tree hierarchy needs its ARX CSV file (';'-separated, relative to the policy file)"))
        elif hierarchy.type != "tree" and hierarchy.file is not None:
            problems.append((f"{base}.file", f"only tree hierarchies read a file; a {hierarchy.type} hierarchy would ignore it"))
        if hierarchy.type == "age_band" and hierarchy.top is not None and not 1 <= hierarchy.top <= AGE_MAX:
            problems.append((f"{base}.top", f"an age between 1 and {AGE_MAX} (ages from it on are one value, e.g. 90+)"))
    for i, hold in enumerate(policy.legal_holds):
        for j, table in enumerate(hold.tables):
            if table not in tables:
                problems.append((f"legal_holds[{i}].tables[{j}]", f"unknown table {table!r}"))
        for j, subject in enumerate(hold.subjects):
            if not policy.subject_id_regex().fullmatch(subject):
                problems.append((f"legal_holds[{i}].subjects[{j}]", "not a valid subject id (see subject.id_pattern)"))
        if not hold.subjects and not hold.tables:
            problems.append((f"legal_holds[{i}]", "a hold names subjects, tables, or both"))
    entry_table_stub = Table(path="stub", subject_key="-", columns={})
    seen_keys: dict[str, str] = {}
    for name, purpose in policy.purposes.items():
        if purpose.key_id in seen_keys:
            problems.append((f"purposes.{name}.key_id",
                             f"key id already used by purpose {seen_keys[purpose.key_id]!r}: one key per purpose"))
        seen_keys[purpose.key_id] = name
    for kind, entries in (("releases", policy.releases), ("statistics", policy.statistics)):
        for name, entry in entries.items():
            base = f"{kind}.{name}"
            if entry.table not in tables:
                problems.append((f"{base}.table", f"unknown table {entry.table!r}"))
                continue
            known = set(tables[entry.table].columns) | set(tables.get(policy.subject.table, entry_table_stub).columns)
            columns = (list(entry.quasi_identifiers) + entry.sensitive if kind == "releases"
                       else entry.dimensions + entry.measures)
            for column in columns:
                if column not in known:
                    problems.append((f"{base}", f"column {column!r} is neither in {entry.table!r} nor in the subject table"))
            if kind == "releases":
                for column, hierarchy in entry.quasi_identifiers.items():
                    if hierarchy is not None and hierarchy not in policy.hierarchies:
                        problems.append((f"{base}.quasi_identifiers.{column}", f"unknown hierarchy {hierarchy!r}"))
                owner = tables[entry.table]
                for column in list(entry.quasi_identifiers) + entry.sensitive:
                    home = owner if column in owner.columns else tables.get(policy.subject.table)
                    if home is not None and column in home.columns and home.column(column).class_.value in RELEASE_FORBIDDEN:
                        problems.append((f"{base}", f"column {column!r} is {home.column(column).class_.value}: "
                                                    "it can never be part of 匿名加工情報 (APPI rule 34)"))
                if entry.region is not None and entry.region not in policy.regions:
                    problems.append((f"{base}.region", f"unknown region {entry.region!r}"))
                for column in entry.rare_values:
                    if column in entry.quasi_identifiers:
                        problems.append((f"{base}.rare_values.{column}",
                                         f"{column!r} is a quasi-identifier: rare values are coded for sensitive attributes "
                                         "only; a quasi-identifier's rare values are coded by its hierarchy (age_band "
                                         "'top', tree levels): remove it here"))
                    elif column not in entry.sensitive:
                        problems.append((f"{base}.rare_values.{column}",
                                         f"{column!r} is not a sensitive attribute of the release (sensitive: "
                                         f"{', '.join(entry.sensitive) or 'none'}): rare values are coded for sensitive "
                                         "attributes only"))
                if entry.l is not None and not entry.sensitive:
                    problems.append((f"{base}.l", "l-diversity needs at least one sensitive column"))
    return problems


def _statistic_dp_problems(policy: Policy) -> list[tuple[str, str]]:
    """A statistic is k-anonymous (k) or differentially private (dp), and a dp block names its
    privacy parameters, a clip bound for every measure and a public domain for every dimension."""
    problems: list[tuple[str, str]] = []
    for name, stat in policy.statistics.items():
        base, dp = f"statistics.{name}", stat.dp
        if dp is None:
            if stat.k is None:
                problems.append((f"{base}.k", "a statistic without dp needs k (k-anonymous cells, suppression below k)"))
            continue
        base = f"{base}.dp"
        if stat.k is not None:
            problems.append((f"statistics.{name}.k", "k applies to k-anonymous statistics; a dp statistic is not "
                                                     "suppressed (its noise replaces suppression): remove k"))
        amount, other = ("epsilon", "rho") if dp.mechanism == "laplace" else ("rho", "epsilon")
        if getattr(dp, amount) is None:
            problems.append((f"{base}.{amount}", f"the {dp.mechanism} mechanism needs {amount} (per release)"))
        elif getattr(dp, amount) > dp.budget:
            problems.append((f"{base}.budget", f"the budget ({dp.budget:g} {amount}) is below one release ({getattr(dp, amount):g})"))
        if getattr(dp, other) is not None:
            problems.append((f"{base}.{other}", f"the {dp.mechanism} mechanism is accounted in {amount}, not {other}"))
        if dp.mechanism == "gaussian" and dp.delta is None:
            problems.append((f"{base}.delta", "the gaussian mechanism needs delta (its rho is also reported as (epsilon, delta))"))
        if dp.mechanism == "laplace" and dp.delta is not None:
            problems.append((f"{base}.delta", "the laplace mechanism is pure epsilon-DP: no delta"))
        for measure in stat.measures:
            if measure not in dp.bounds:
                problems.append((f"{base}.bounds", f"measure {measure!r} needs public clip bounds [low, high]"))
        problems += [(f"{base}.bounds.{m}", "not a measure of the statistic") for m in dp.bounds if m not in stat.measures]
        for column in stat.dimensions:
            if column not in dp.domains:
                problems.append((f"{base}.domains", f"dimension {column!r} needs a public domain (never taken from the data)"))
        for column, domain in dp.domains.items():
            problems += _dp_domain_problems(policy, f"{base}.domains.{column}", column, domain, stat.dimensions)
    return problems


def _dp_domain_problems(policy: Policy, where: str, column: str, domain: DPDomain, dimensions: list[str]) -> list[tuple[str, str]]:
    if column not in dimensions:
        return [(where, "not a dimension of the statistic")]
    given = [key for key in ("values", "hierarchy", "months", "last_months") if getattr(domain, key) is not None]
    if len(given) != 1:
        return [(where, "exactly one of values, hierarchy, months, last_months")]
    if domain.values is not None and (len(set(domain.values)) != len(domain.values) or "(all)" in domain.values):
        return [(f"{where}.values", "distinct labels, without '(all)' (the label of totals)")]
    if domain.months is not None and domain.months.from_ > domain.months.to:
        return [(f"{where}.months", "from must not be after to")]
    if domain.hierarchy is None:
        return []
    hierarchy = policy.hierarchies.get(domain.hierarchy)
    if hierarchy is None:
        return [(f"{where}.hierarchy", f"unknown hierarchy {domain.hierarchy!r}")]
    if hierarchy.type not in ("tree", "age_band"):
        return [(f"{where}.hierarchy", f"a domain comes from a tree (its leaves) or an age_band hierarchy, not {hierarchy.type}")]
    if hierarchy.type == "age_band" and column != policy.subject.birth_date_column:
        return [(f"{where}.hierarchy", "age bands are the domain of the subject's birth date column only")]
    if hierarchy.type == "age_band" and hierarchy.top is None:
        return [(f"{where}.hierarchy", f"age_band hierarchy {domain.hierarchy!r} needs a top: without one the ages are unbounded")]
    return []


def _closure_order_problems(policy: Policy) -> list[tuple[str, str]]:
    """Retention by account closure reads the closure date from the subject table's rows. A table
    whose closure period is longer than the subject table's own would look for closure dates that
    the subject table's retention already removed: its rows of those subjects would never expire.
    Equal periods are safe: one retention run reads the closure dates once, before its first delete."""
    subject_table = policy.subject.table
    home = policy.tables.get(subject_table)
    if home is None or home.retention is None:
        return []       # no rule removes the subject rows: every closure date stays readable
    closure_tables = {name: table.retention for name, table in policy.tables.items()
                      if name != subject_table and table.retention is not None and table.retention.basis == "account_closure"}
    if not closure_tables:
        return []
    own = home.retention
    if own.basis != "account_closure":
        return [(f"tables.{subject_table}.retention.basis",
                 f"tables {', '.join(sorted(closure_tables))} are retained by account_closure and read the closure date "
                 f"({policy.subject.closure_column}) from {subject_table!r}; a business_date rule removes {subject_table!r} rows "
                 "whether or not the account is closed, and their rows would then never expire: use basis account_closure "
                 f"with a period at least as long as theirs here (or no retention for {subject_table!r})")]
    return [(f"tables.{name}.retention.period_days",
             f"{retention.period_days} days after closure is longer than the closure period of the subject table "
             f"{subject_table!r} ({own.period_days} days, tables.{subject_table}.retention.period_days): retention reads "
             f"the closure date from {subject_table}.{policy.subject.closure_column}, which would be gone first, and these "
             f"rows would never expire; use at most {own.period_days} days here or lengthen the period of {subject_table!r}")
            for name, retention in closure_tables.items() if retention.period_days > own.period_days]


def _loc_to_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("ColumnClass", "ColumnSpec") or str(item).startswith(("function-", "union[", "literal[")):
            continue  # pydantic's union branch names are noise in a key path
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "<root>"


def hierarchy_file_problems(hierarchies: Any, base_dir: Path) -> list[tuple[str, str]]:
    """Every tree hierarchy's file, resolved against ``base_dir`` (the policy file's directory, as
    the anonymize job resolves it) and parsed by the loader Mondrian uses. Works on the raw YAML
    mapping, so that a file problem is reported together with the policy's other problems."""
    if not isinstance(hierarchies, dict):
        return []
    problems: list[tuple[str, str]] = []
    for name, spec in hierarchies.items():
        if not isinstance(spec, dict) or spec.get("type") != "tree":
            continue
        file = spec.get("file")
        if not isinstance(file, str) or not file.strip():
            continue        # a missing file is a problem of the policy itself (_semantic_problems)
        where, path = f"hierarchies.{name}.file", base_dir / file
        if not path.exists():
            problems.append((where, f"hierarchy file {file!r} not found (resolved next to the policy file: {path})"))
            continue
        if not path.is_file():
            problems.append((where, f"hierarchy file {file!r} is not a file ({path})"))
            continue
        # The loader's own parsing (no Spark I/O; importing it loads numpy / pandas / pyspark modules).
        from anonymizers.hierarchy import CategoricalHierarchy, HierarchyError

        try:
            CategoricalHierarchy.from_csv(path, name=str(name))
        except UnicodeDecodeError:
            problems.append((where, f"hierarchy file {file!r} is not UTF-8 text"))
        except OSError as exc:
            problems.append((where, f"hierarchy file {file!r} cannot be read ({exc.strerror or exc})"))
        except (HierarchyError, csv.Error) as exc:   # the file's labels (categories), never personal values
            problems.append((where, f"hierarchy file {file!r} is not a valid ARX hierarchy CSV: {exc}"))
    return problems


def parse_policy(data: Any, source: str = "<memory>", raw: bytes | None = None,
                 base_dir: Path | None = None) -> Policy:
    """``base_dir``: where relative hierarchy files are (the policy file's directory); when given,
    every tree hierarchy's file is checked too (load_policy does this)."""
    if not isinstance(data, dict):
        raise PolicyError(source, [("<root>", "the policy must be a YAML mapping")])
    file_problems = hierarchy_file_problems(data.get("hierarchies"), base_dir) if base_dir is not None else []
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        problems: dict[str, str] = {}
        for error in exc.errors():
            path = _loc_to_path(error["loc"])
            # Union errors repeat per branch; keep the first message per key path.
            problems.setdefault(path, error["msg"])
        for path, message in file_problems:
            problems.setdefault(path, message)
        raise PolicyError(source, sorted(problems.items())) from None
    problems = _semantic_problems(policy) + file_problems
    if problems:
        raise PolicyError(source, problems)
    digest = hashlib.sha256(raw if raw is not None else json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
    policy._source, policy._sha256 = source, digest
    return policy


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise PolicyError(source, [("<file>", "policy file not found")])
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<file>"
        raise PolicyError(source, [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    return parse_policy(data, source, raw, base_dir=path.resolve().parent)


def check_table_schema(policy: Policy, table: str, columns: list[str]) -> None:
    """An unclassified column in the lake is an error: new personal columns must not slip through."""
    spec = policy.tables[table]
    problems = [(f"tables.{table}.columns", f"column {c!r} exists in the lake but is not classified")
                for c in columns if c not in spec.columns and c != "subject_bucket"]
    if problems:
        raise PolicyError(policy.source, problems)


def json_schema() -> dict[str, Any]:
    schema = Policy.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "wasure policy"
    return schema


def default_policy_path() -> Path:
    import os

    env = os.environ.get("WASURE_POLICY")
    if env:
        return Path(env)
    local = Path("policies/example.yaml")
    if local.is_file():
        return local
    return Path(__file__).resolve().parent.parent / "policies" / "example.yaml"
