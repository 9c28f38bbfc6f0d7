"""The deletion ledger: subjects erased while unexpired backups still hold them (REQUIREMENTS S3).

    <root>/state/deletion_ledger    keyed hashes of erased subjects and the backups holding them

A row holds HMAC-SHA256 of the subject id under the ledger key (``policy.defaults.ledger_key_id``,
kept outside the lake), the request id, when, the tables erased and the backups holding them: those
backups are quarantined for that subject, and a restore re-applies the whole ledger first
(jobs/backup.py). A subject's quarantine ends when the last backup holding them is gone
(``sync_ledger``, derived from what is on disk).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Iterable

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from anonymizers.frames import local_frame
from jobs.lake.backup_catalog import backup_dir, list_backups
from jobs.lake.backup_crypto import reading_backups
from jobs.runtime.keys import load_key
from jobs.lake.buckets import bucket_of
from jobs.lake.layout import SUBJECT_BUCKET, Lake, create_table, is_delta, of_subjects, read_current, read_now
from jobs.policy import Policy
from jobs.lake.table import LakeTable

LEDGER = "deletion_ledger"

LEDGER_SCHEMA = T.StructType([
    T.StructField("subject_hash", T.StringType()), T.StructField("request_id", T.StringType()),
    T.StructField("erased_at", T.TimestampType()), T.StructField("tables", T.ArrayType(T.StringType())),
    T.StructField("backups", T.ArrayType(T.StringType())), T.StructField("quarantine_until", T.DateType()),
    T.StructField("status", T.StringType()), T.StructField("released_at", T.TimestampType()),
    T.StructField("key_id", T.StringType()),
])


# ------------------------------------------------------------------ keyed hashes (ledger key)

def ledger_key(policy: Policy, lake: Lake | None = None) -> tuple[str, bytes]:
    """(key id, key) of the deletion ledger; a missing or short key is bad input (exit 2, nothing written)."""
    key_id = policy.defaults.ledger_key_id
    return key_id, load_key(key_id, lake)


def subject_hash(key: bytes, subject: str) -> str:
    """HMAC-SHA256(ledger key, subject id), hex: the only form of a subject id the ledger, state,
    audit and receipts hold. Without the key nobody can test a guessed id against it."""
    return hmac.new(key, subject.encode("utf-8"), hashlib.sha256).hexdigest()


def hash_column(column: Column, key: bytes) -> Column:
    """The same keyed hash as a Spark Column: the JVM HMAC UDF when its jar is on the classpath,
    else an Arrow UDF (the key stays in the UDF object or closure, never in a plan). The gates hash
    every row of the largest tables with it."""
    from anonymizers.pseudonym import keyed_hash

    return keyed_hash(SparkSession.active(), key)(column.cast("string"))


# ------------------------------------------------------------------ the ledger table

def ledger_path(lake: Lake) -> str:
    return lake.state(LEDGER)


def read_ledger(spark: SparkSession, lake: Lake) -> DataFrame | None:
    path = ledger_path(lake)
    return read_now(spark, path) if is_delta(path) else None


def add_to_ledger(spark: SparkSession, lake: Lake, rows: list[tuple]) -> None:
    """Insert ledger rows (LEDGER_SCHEMA) not there yet, keyed on (subject_hash, request_id): re-runs add nothing."""
    if not rows:
        return
    df = local_frame(spark, rows, LEDGER_SCHEMA)
    path = ledger_path(lake)
    create_table(spark, path, df, [])
    # Only an erasure inserts here, under the lake lease (jobs/lake/lease.py): no MERGE needed unless a re-run's rows are there.
    LakeTable(spark, path).insert_new(df, "t.subject_hash = s.subject_hash AND t.request_id = s.request_id", sole_inserter=True)


def sync_ledger(spark: SparkSession, lake: Lake) -> int:
    """Drop backups that no longer exist from every ledger row; a row left with none is released.

    Derived from what is on disk, so a `--expire` killed between deleting a backup and updating
    the ledger is healed by the next run. Returns the number of rows released now."""
    path = ledger_path(lake)
    if not is_delta(path):
        return 0
    existing = {d.isoformat() for d in list_backups(lake)}
    changes = []
    for row in read_now(spark, path).where(F.col("status") == "quarantined").select("subject_hash", "request_id", "backups").collect():
        still = sorted(d for d in (row.backups or []) if d in existing)
        if still != sorted(row.backups or []):
            changes.append((row.subject_hash, row.request_id, still, "quarantined" if still else "released"))
    if not changes:
        return 0
    updates = local_frame(spark, changes, "subject_hash string, request_id string, backups array<string>, status string")
    LakeTable(spark, path).update_matching(
        updates, "t.subject_hash = s.subject_hash AND t.request_id = s.request_id",
        {"backups": "s.backups", "status": "s.status",
         "released_at": "CASE WHEN s.status = 'released' THEN current_timestamp() ELSE t.released_at END"})
    return sum(1 for c in changes if c[3] == "released")


def subjects_in_backups(spark: SparkSession, policy: Policy, lake: Lake, subjects: list[str],
                        days: Iterable[dt.date]) -> dict[str, list[str]]:
    """subject id -> dates (ISO) of the given backups that hold any row of them, in ONE Spark job
    that reads only the subjects' bucket partitions (``_rows_of``)."""
    days = list(days)
    if not subjects:
        return {}
    found: dict[str, set[str]] = {}
    with reading_backups(spark, lake, days):      # Parquet footers are read as the query is built
        parts = None
        for day in days:
            target = Lake(backup_dir(lake, day))
            for table in policy.tables.values():
                path = target.table_path(table)
                rows = _rows_of(spark, path, table, subjects) if is_delta(path) else None
                if rows is None:
                    continue
                part = rows.select(F.col(table.subject_key).cast("string").alias("subject"), F.lit(day.isoformat()).alias("day"))
                parts = part if parts is None else parts.unionByName(part)
        if parts is not None:
            for row in parts.distinct().collect():
                found.setdefault(row.subject, set()).add(row.day)
    return {s: sorted(d) for s, d in found.items()}


def _rows_of(spark: SparkSession, path: str, table, subjects: list[str]) -> DataFrame | None:
    """The subjects' rows of one backup table (None: no file in their buckets). A backup is written
    once, in one commit without deletion vectors, so its log names its files and their bucket
    partitions (``LakeTable.files_from_log``): those are read as Parquet, without the two planning
    jobs of a Delta read (a backup has 9 tables: 18 jobs an erasure used to spend). A table whose log
    cannot say is read through Delta."""
    backup = LakeTable(spark, path)
    files = backup.files_from_log()
    if files is None:
        return read_current(spark, path).where(of_subjects(table.subject_key, subjects, table.subject_buckets))
    buckets = {str(bucket_of(s, table.subject_buckets)) for s in subjects}
    chosen = [uri for uri, partitions in files if partitions.get(SUBJECT_BUCKET) in buckets]
    if not chosen:
        return None
    return backup.read_files(chosen, [table.subject_key]).where(F.col(table.subject_key).isin(list(subjects)))
