"""What follows a logical delete, for every job that deletes (retention, erasure): the commit's
bookkeeping, retention's subject delete (an erasure's is ``LakeTable.delete_values``), the quarantine ledger rebuilt from the tables' history, and
the physical purge after the grace period.

A delete commit carries its bookkeeping (job, run, purge due date; no personal value) in its
``userMetadata``, so ``reconcile`` can always rebuild the ledger and the audit rows from the table
history: a run killed between any two steps finishes correctly when run again. After the grace,
``physical_purge`` rewrites the files with deleted rows and VACUUMs the superseded ones
(``LakeTable.purge``).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.lake.layout import SUBJECT_BUCKET, Lake, append_rows, is_delta, purge_superseded, read_current
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


def delete_keys(spark: SparkSession, path: str, subject_key: str, keys: DataFrame,
                date_column: str | None, cutoff: dt.date | None) -> None:
    """One MERGE: delete every row of the listed subjects, or only their rows older than cutoff."""
    date_condition = f"t.`{date_column}` < DATE'{cutoff.isoformat()}'" if date_column and cutoff else "false"
    LakeTable(spark, path).delete_matching(keys, f"t.`{subject_key}` = s.subject AND t.`{SUBJECT_BUCKET}` = s.bucket "
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


def reconcile(spark: SparkSession, policy: Policy, lake: Lake, job: str = "retention", current_run: str | None = None) -> int:
    """Record every deleting commit of `job` that the ledger/audit do not know yet (crash-safe)."""
    ledger_path, audit_path = lake.state("quarantine_ledger"), lake.audit(job)
    known = set()
    if is_delta(ledger_path):
        known = {(r.table, r.version) for r in read_current(spark, ledger_path).select("table", "version").collect()}
    audited = set()
    if is_delta(audit_path):
        audited = {(r.run_id, r.table) for r in read_current(spark, audit_path).select("run_id", "table").collect()}
    ledger_rows, audit_rows = [], []
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
        append_rows(spark, ledger_path, spark.createDataFrame(ledger_rows, LEDGER_SCHEMA))
    if audit_rows:
        append_rows(spark, audit_path, spark.createDataFrame(audit_rows, AUDIT_SCHEMA))
    return len(ledger_rows)


@with_lease("physical purge")
def physical_purge(spark: SparkSession, policy: Policy, lake: Lake, today: dt.date) -> list[dict]:
    """After the grace: ``LakeTable.purge`` (files with deleted rows rewritten, then VACUUM) of every table
    with a ledger entry due."""
    ledger_path = lake.state("quarantine_ledger")
    if not is_delta(ledger_path):
        return []
    due = (read_current(spark, ledger_path).where((F.col("status") == "pending") & (F.col("purge_due") <= F.lit(today)))
           .groupBy("table", "path").agg(F.max("version").alias("version")).collect())
    purged = []
    for entry in due:
        path = lake.path(entry.path)
        # Every superseded file goes (a later delete still inside its grace loses the rest of it:
        # earlier erasure, never later).
        purge_superseded(spark, path)
        LakeTable(spark, ledger_path).update_where(
            (F.col("table") == entry.table) & (F.col("status") == "pending") & (F.col("version") <= entry.version),
            {"status": F.lit("purged")})
        purged.append({"table": entry.table, "up_to_version": int(entry.version)})
    return purged
