"""The policy's typed model (pydantic): one class per YAML block, each field checked on its own.
Cross-references between blocks are checked in ``jobs.policy.rules``."""
from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, field_validator

from jobs.policy.classes import (AGE_MAX, BACKUP_RETENTION_DAYS_MAX, ERASURE_DEADLINE_DAYS_MAX, GRACE_DAYS_MAX, K_MAX, L_MAX,
                                 PERIOD_DAYS_MAX, ColumnClass)


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
