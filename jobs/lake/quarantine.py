"""What follows a logical delete, for every job that deletes (retention, erasure): the commit's
bookkeeping, retention's subject delete (an erasure's is ``LakeTable.delete_values``), the quarantine ledger rebuilt from the tables' history, and
the physical purge after the grace period.

A delete commit carries its bookkeeping (job, run, purge due date; no personal value) in its
``userMetadata``, so ``reconcile`` can always rebuild the ledger and the audit rows from the table
history: a run killed between any two steps finishes correctly when run again. After the grace,
``physical_purge`` rewrites the files with deleted rows and deletes the superseded ones
(``LakeTable.purge``).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import operator
from typing import Iterable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from anonymizers.frames import local_frame
from jobs.lake.layout import SUBJECT_BUCKET, Lake, append_rows, is_delta, purge_superseded, read_now
from jobs.lake.lease import with_lease
from jobs.policy import Policy
from jobs.lake.table import LakeTable


@contextlib.contextmanager
def commit_metadata(spark: SparkSession, metadata: dict):
    """Attach bookkeeping (no personal value) to the Delta commits made inside the block."""
    key = "spark.databricks.delta.commitInfo.userMetadata"
    spark.conf.set(key, json.dumps(metadata, sort_keys=True, default=str))
    try:
        yield
    finally:
        spark.conf.unset(key)


# Up to this many (subject, bucket) keys a retention delete is a DELETE whose condition holds them in
# Java UDFs; each task carries the sets, like a broadcast. More keys: a DELETE by the complement
# (below) when its sets are as small, else a MERGE with the keys frame.
KEYS_IN_A_DELETE = 20_000
# The most subjects of either set of a DELETE by the complement (held, every row goes).
SUBJECTS_IN_A_SET = 20_000


def _at_most(subjects: DataFrame, limit: int) -> list[str] | None:
    """The ``subject`` values of ``subjects`` as text, or None when there are more than ``limit`` (or
    ``limit`` is 0)."""
    if not limit:
        return None
    rows = subjects.select("subject").coalesce(1).limit(limit + 1).collect()
    return None if len(rows) > limit else sorted({str(r.subject) for r in rows})


def delete_keys(spark: SparkSession, path: str, subject_key: str, keys: DataFrame,
                date_column: str | None, cutoff: dt.date | None, held: DataFrame | None = None,
                planned_version: int | None = None) -> None:
    """One delete commit: every row of the keys' subjects whose ``all_rows`` is true, only the rows
    older than ``cutoff`` of the others. Three forms, the same rows (no subject id reaches the
    commit: the sets are Java UDFs under random names, jobs/lake/value_sets.py):

    * up to ``KEYS_IN_A_DELETE`` keys, a DELETE of ``subject_bucket IN (...) AND (in_set_a(key) OR
      (in_set_b(key) AND date < cutoff))``: about half the Spark jobs of the MERGE (bench/analysis.md,
      sessions 21 and 23);
    * more keys, with a cutoff, ``held`` (the subjects of every hold on the table, a ``subject``
      column), a text subject key and the table still at ``planned_version`` (the version the
      plan read: no row has come since that the keys do not know), a DELETE by the complement:
      ``(in_set_a(key) OR (key IS NOT NULL AND date < cutoff)) AND NOT in_set_h(key)``, each set
      at most ``SUBJECTS_IN_A_SET``. A plan's keys are every
      subject with an expired row no hold covers, so the rows older than the cutoff of the subjects
      NOT held are the keys' dated rows; the sets are the all-rows subjects and the held ones, few
      where a business-date rule expires rows of most subjects (10M events, 99,516 keys: a MERGE of
      12-18 s -> 3 s, bench/analysis.md "Session 37");
    * otherwise, or without wasure-udf.jar, the MERGE with the keys frame."""
    date_condition = f"t.`{date_column}` < DATE'{cutoff.isoformat()}'" if date_column and cutoff else "false"
    table = LakeTable(spark, path)
    # One partition: a limited collect reads partitions one Spark job at a time until it has enough.
    rows = (keys.select("subject", "bucket", "all_rows").coalesce(1).limit(KEYS_IN_A_DELETE + 1).collect()
            if KEYS_IN_A_DELETE else [])
    before_cutoff = F.col(f"`{date_column}`") < F.lit(cutoff) if date_column and cutoff else None
    if rows and len(rows) <= KEYS_IN_A_DELETE:
        every_row = [str(r.subject) for r in rows if r.all_rows]
        dated = [str(r.subject) for r in rows if not r.all_rows] if before_cutoff is not None else []
        buckets = sorted({int(r.bucket) for r in rows})
        if table.delete_value_sets(subject_key, [(every_row, None), (dated, before_cutoff)],
                                   {SUBJECT_BUCKET: buckets}) is not None:
            return
    elif (before_cutoff is not None and held is not None and dict(keys.dtypes).get("subject") == "string"
          and planned_version is not None and table.version() == planned_version):
        # A text key: the sets compare text, as the plan's join with the holds does only for text.
        every_row = _at_most(keys.where("all_rows"), SUBJECTS_IN_A_SET)
        kept = _at_most(held, SUBJECTS_IN_A_SET) if every_row is not None else None
        if kept is not None and table.delete_value_sets(subject_key, [(every_row, None), (None, before_cutoff)],
                                                        keep=kept) is not None:
            return
    table.delete_matching(keys, f"t.`{subject_key}` = s.subject AND t.`{SUBJECT_BUCKET}` = s.bucket "
                                f"AND (s.all_rows OR {date_condition})")


# ------------------------------------------------------------------ ledger and audit (rebuilt from history)

LEDGER_SCHEMA = T.StructType([
    T.StructField("table", T.StringType()), T.StructField("path", T.StringType()),
    T.StructField("version", T.LongType()), T.StructField("job", T.StringType()),
    T.StructField("run_id", T.StringType()), T.StructField("deleted_at", T.TimestampType()),
    T.StructField("purge_due", T.DateType()), T.StructField("status", T.StringType()),
])

AUDIT_SCHEMA = T.StructType([
    T.StructField("run_id", T.StringType()), T.StructField("run_at", T.TimestampType()),
    T.StructField("as_of", T.DateType()), T.StructField("policy_sha256", T.StringType()),
    T.StructField("table", T.StringType()), T.StructField("action", T.StringType()),
    T.StructField("rows_before", T.LongType()), T.StructField("rows_removed", T.LongType()),
    T.StructField("rows_held", T.LongType()), T.StructField("rows_after", T.LongType()),
    T.StructField("files_touched", T.LongType()), T.StructField("bytes_touched", T.LongType()),
    T.StructField("version_before", T.LongType()), T.StructField("version_after", T.LongType()),
    T.StructField("purge_due", T.DateType()), T.StructField("recovered", T.BooleanType()),
])


def reconcile(spark: SparkSession, policy: Policy, lake: Lake, job: str = "retention", current_run: str | None = None,
              more_audit_rows: Iterable[tuple] = ()) -> int:
    """Record every deleting commit of `job` that the ledger/audit do not know yet (crash-safe).
    ``more_audit_rows`` (``AUDIT_SCHEMA``; the run's tables with nothing to remove) go into the same
    append as the audit rows of the commits."""
    ledger_path, audit_path = lake.state("quarantine_ledger"), lake.audit(job)
    known = set()
    if is_delta(ledger_path):
        known = {(r.table, r.version) for r in read_now(spark, ledger_path).select("table", "version").collect()}
    audited = set()
    if is_delta(audit_path):
        audited = {(r.run_id, r.table) for r in read_now(spark, audit_path).select("run_id", "table").collect()}
    ledger_rows, audit_rows = [], list(more_audit_rows)
    for name, table in policy.tables.items():
        path = lake.table_path(table)
        if not is_delta(path):
            continue
        for commit in LakeTable(spark, path).commits(containing=job):
            meta = commit.metadata()
            if meta.get("job") != job or meta.get("table") != name:
                continue
            due = dt.date.fromisoformat(meta["purge_due"])
            if (name, commit.version) not in known:
                ledger_rows.append((name, table.path, commit.version, job, meta["run_id"], commit.timestamp, due, "pending"))
            if (meta["run_id"], name) not in audited:
                removed = commit.rows_deleted
                audit_rows.append((meta["run_id"], commit.timestamp, dt.date.fromisoformat(meta["as_of"]), meta["policy_sha256"],
                                   name, meta["action"], meta["rows_before"], removed, meta["rows_held"],
                                   meta["rows_before"] - removed, meta["files"], meta["bytes"],
                                   meta["version_before"], commit.version, due, meta["run_id"] != current_run))
    if ledger_rows:
        append_rows(spark, ledger_path, local_frame(spark, ledger_rows, LEDGER_SCHEMA))
    if audit_rows:
        append_rows(spark, audit_path, local_frame(spark, audit_rows, AUDIT_SCHEMA))
    return len(ledger_rows)


@with_lease("physical purge")
def physical_purge(spark: SparkSession, policy: Policy, lake: Lake, today: dt.date) -> list[dict]:
    """After the grace: ``LakeTable.purge`` (files with deleted rows rewritten, then every superseded file deleted) of every table
    with a ledger entry due."""
    ledger_path = lake.state("quarantine_ledger")
    if not is_delta(ledger_path):
        return []
    due = (read_now(spark, ledger_path).where((F.col("status") == "pending") & (F.col("purge_due") <= F.lit(today)))
           .groupBy("table", "path").agg(F.max("version").alias("version")).collect())
    purged = []
    for entry in due:
        # Every superseded file goes (a later delete still inside its grace loses the rest of it:
        # earlier erasure, never later).
        purge_superseded(spark, lake.path(entry.path))
        purged.append({"table": entry.table, "up_to_version": int(entry.version)})
    if due:
        # One ledger commit for the run (one per table cost ~0.35 s each). A run stopped before it
        # leaves the entries pending: the next run purges those tables again, which finds nothing.
        done = functools.reduce(operator.or_, [(F.col("table") == entry.table) & (F.col("version") <= entry.version)
                                               for entry in due])
        LakeTable(spark, ledger_path).update_where((F.col("status") == "pending") & done, {"status": F.lit("purged")})
    return purged
