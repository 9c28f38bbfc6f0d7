"""Sets of subjects the jobs act on, read from the lake's registers (all as DataFrames, never collected).

- closed accounts (and when), minors without guardian consent, withdrawn consents per purpose,
  restricted subjects, and active legal holds (policy holds + the legal_holds register).
"""
from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from anonymizers.frames import local_frame
from jobs.lake.layout import Lake, is_delta, read_now
from jobs.policy import Policy

HOLD_SCHEMA = T.StructType([
    T.StructField("hold_id", T.StringType()), T.StructField("subject", T.StringType()),
    T.StructField("table_name", T.StringType()), T.StructField("reason", T.StringType()),
    T.StructField("until", T.DateType()),
])


@dataclass
class Registers:
    """The registers of one run. Subject sets are materialized once (local checkpoint): every table
    of the run reuses them, and deleting from the subject table mid-run cannot change them."""
    spark: SparkSession
    policy: Policy
    lake: Lake
    _cache: dict = field(default_factory=dict, repr=False)
    # Tables of one step run on several threads (jobs.runtime.concurrency): each register is built once.
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def _memo(self, key, build):
        with self._lock:
            if key not in self._cache:
                self._cache[key] = build().localCheckpoint(eager=True)
            return self._cache[key]

    def _table(self, name: str | None) -> DataFrame | None:
        if name is None:
            return None
        path = self.lake.table_path(self.policy.tables[name])
        return read_now(self.spark, path) if is_delta(path) else None

    @property
    def key(self) -> str:
        return self.policy.subject.key

    def accounts(self) -> DataFrame:
        return self._memo("accounts", self._accounts)

    def _accounts(self) -> DataFrame:
        df = self._table(self.policy.subject.table)
        if df is None:
            raise FileNotFoundError(f"the subject table {self.policy.subject.table!r} is missing from the lake")
        return df

    def closed_before(self, cutoff: dt.date) -> DataFrame:
        return self._memo(("closed", cutoff), lambda: self._closed_before(cutoff))

    def _closed_before(self, cutoff: dt.date) -> DataFrame:
        column = F.col(self.policy.subject.closure_column)
        return self.accounts().where(column.isNotNull() & (F.to_date(column) < F.lit(cutoff))).select(F.col(self.key).alias("subject"))

    def minors_without_guardian_consent(self, as_of: dt.date) -> DataFrame:
        return self._memo(("minors", as_of), lambda: self._minors(as_of))

    def _minors(self, as_of: dt.date) -> DataFrame:
        subject = self.policy.subject
        if subject.birth_date_column is None:
            return self._empty()
        age = F.floor(F.months_between(F.lit(as_of), F.col(subject.birth_date_column)) / 12)
        consent = F.col(subject.guardian_consent_column) if subject.guardian_consent_column else F.lit(None)
        return (self.accounts().where((age < subject.adult_age) & ~F.coalesce(consent, F.lit(False)))
                .select(F.col(self.key).alias("subject")))

    def withdrawn(self, purposes: list[str]) -> DataFrame:
        consents = self._table(self.policy.subject.consents_table)
        if consents is None or not purposes:
            return self._empty()
        return self._consents_withdrawn_pairs(purposes).select("subject").distinct()

    def withdrawn_all(self, purposes: list[str]) -> DataFrame:
        """Subjects who withdrew consent for every one of `purposes`."""
        def build():
            return (self._consents_withdrawn_pairs(purposes).groupBy("subject").agg(F.countDistinct("purpose").alias("n"))
                    .where(F.col("n") == len(set(purposes))).select("subject"))
        return self._memo(("withdrawn_all", tuple(purposes)), build)

    def _consents_withdrawn_pairs(self, purposes: list[str]) -> DataFrame:
        """(subject, purpose) whose LATEST consent row is a withdrawal: a re-grant after a withdrawal
        counts, and so does a withdrawal after a grant (on a tie, withdrawal wins: the safer side)."""
        from pyspark.sql import Window

        consents = self._table(self.policy.subject.consents_table).where(F.col("purpose").isin(purposes))
        changed = self.policy.tables[self.policy.subject.consents_table].date_column or "changed_at"
        if changed not in consents.columns:      # a register without change times: any withdrawal counts
            return (consents.where(F.col("status") == "withdrawn")
                    .select(F.col(self.key).alias("subject"), "purpose").distinct())
        latest = Window.partitionBy(self.key, "purpose").orderBy(
            F.col(changed).desc_nulls_last(), (F.col("status") == "withdrawn").desc())
        return (consents.withColumn("_rank", F.row_number().over(latest)).where(F.col("_rank") == 1)
                .where(F.col("status") == "withdrawn").select(F.col(self.key).alias("subject"), "purpose"))

    def restricted(self, purpose: str | None = None) -> DataFrame:
        restrictions = self._table(self.policy.subject.restrictions_table)
        if restrictions is None:
            return self._empty()
        scopes = ["all_processing"] + ([purpose] if purpose else [])
        return restrictions.where(F.col("scope").isin(scopes)).select(F.col(self.key).alias("subject")).distinct()

    def holds(self, as_of: dt.date) -> DataFrame:
        """Active holds: (hold_id, subject or null = every subject, table_name or null = every table, reason, until)."""
        rows = []
        for hold in self.policy.legal_holds:
            if hold.until is not None and hold.until < as_of:
                continue
            subjects = hold.subjects or [None]
            tables = hold.tables or [None]
            rows += [(hold.id, s, t, hold.reason, hold.until) for s in subjects for t in tables]
        held = local_frame(self.spark, rows, HOLD_SCHEMA)
        register = self._table(self.policy.subject.legal_holds_table)
        if register is not None:
            held = held.unionByName(register.select(
                "hold_id", F.col(self.key).alias("subject"), "table_name", "reason", F.col("until").cast("date"))
                .where(F.col("until").isNull() | (F.col("until") >= F.lit(as_of))))
        return held

    def holds_for(self, table: str, as_of: dt.date) -> DataFrame:
        holds = self._memo(("holds", as_of), lambda: self.holds(as_of))
        return holds.where(F.col("table_name").isNull() | (F.col("table_name") == table))

    def held_subjects(self, table: str, as_of: dt.date) -> DataFrame:
        """The subjects (one column ``subject``) a hold keeps every row of in ``table``: what the
        retention gate exempts and retention's delete by the complement keeps."""
        return self.holds_for(table, as_of).where(F.col("subject").isNotNull()).select("subject")

    def table_level_hold(self, table: str, as_of: dt.date) -> str | None:
        """The id of a hold that covers the whole table (no subjects), if any (holds are few)."""
        with self._lock:
            if ("table_holds", as_of) not in self._cache:
                holds = self._memo(("holds", as_of), lambda: self.holds(as_of))
                rows = holds.where(F.col("subject").isNull()).select("hold_id", "table_name").collect()
                self._cache[("table_holds", as_of)] = rows
        for row in sorted(self._cache[("table_holds", as_of)], key=lambda r: r.hold_id):
            if row.table_name in (None, table):
                return row.hold_id
        return None

    def _empty(self) -> DataFrame:
        return local_frame(self.spark, [], T.StructType([T.StructField("subject", T.StringType())]))
