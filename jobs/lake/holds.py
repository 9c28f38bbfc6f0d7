"""Legal holds and statutory record keeping: which (subject, table) pairs an erasure keeps (S13)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import SparkSession

from jobs.lake.layout import Lake
from jobs.policy import Policy

# ------------------------------------------------------------------ holds (S13)

@dataclass(frozen=True)
class Hold:
    hold_id: str
    reason: str
    until: dt.date | None


class HoldBook:
    """Which (subject, table) pairs an erasure keeps, and why.

    - a legal hold (policy or legal_holds register, via ``Registers.holds``) on the subject and/or table;
    - the legal_holds register's own rows of a subject under an active hold (deleting them would
      lift the hold);
    - statutory record keeping: a ``record_keeping`` table with its own retention period (provision
      records, APPI art. 29/30: kept 3 years, "never purged early") keeps its rows until its
      retention removes them.
    """

    def __init__(self, policy: Policy, rows: list):
        self.policy = policy
        self.per_subject: dict[str, list[tuple[str | None, Hold]]] = {}
        self.everyone: list[tuple[str | None, Hold]] = []
        for row in sorted(rows, key=lambda r: r.hold_id):
            hold = Hold(row.hold_id, row.reason, row.until)
            if row.subject is None:
                self.everyone.append((row.table_name, hold))
            else:
                self.per_subject.setdefault(row.subject, []).append((row.table_name, hold))

    @classmethod
    def load(cls, spark: SparkSession, policy: Policy, lake: Lake, as_of: dt.date) -> "HoldBook":
        from jobs.lake.subjects import Registers

        return cls(policy, Registers(spark, policy, lake).holds(as_of).collect())

    def hold_for(self, subject: str, table: str) -> Hold | None:
        own = self.per_subject.get(subject, [])
        for table_name, hold in self.everyone + own:
            if table_name is None or table_name == table:
                return hold
        if own and table == self.policy.subject.legal_holds_table:
            return own[0][1]
        spec = self.policy.tables[table]
        if spec.record_keeping and spec.retention is not None:
            return Hold(f"statutory:{table}", f"record keeping: tables.{table} is kept {spec.retention.period_days} days "
                        "by its own retention (never purged early)", None)
        return None
