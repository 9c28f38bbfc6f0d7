"""Lake layout under one root URI, and the policy-aware checks and writes every job uses.

The root is a URI (a local path, hdfs://, s3a://...): the layout only joins strings. Files are
read and written by ``jobs.lake.storage``, Delta tables by the handle ``jobs.lake.table.LakeTable``; the short
functions below (``read_current``, ``read_now``, ``table_version``...) are that handle's most used actions;
``read_now`` is the read of a step that uses the rows right away (a small table comes without Delta's planning).

    <root>/raw/<table>                      personal data, partitioned by region and subject bucket
    <root>/pseudonymized/<purpose>/<table>  仮名加工情報
    <root>/anonymized/<release>/<table>     匿名加工情報 (promoted releases only)
    <root>/staging/...                      restores waiting for their gate
    <root>/quarantine/...                   failed outputs and files awaiting physical purge
    <root>/audit/<name>                     audit tables (no personal values)
    <root>/backups/YYYY-MM-DD/...           dated snapshots
    <root>/docs/                            Great Expectations Data Docs
    <root>/receipts/                        erasure receipts (JSON)
    <root>/state/                           job state (JSON, small Delta ledgers)

Keys (削除情報等) never live under the root: see jobs/runtime/keys.py.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.runtime.console import InputError
from jobs.lake.buckets import bucket_of
from jobs.lake.storage import files_for, is_local, join, normalize
from jobs.policy import Policy, Table
from jobs.lake.table import LakeTable

SUBJECT_BUCKET = "subject_bucket"


@dataclass(frozen=True)
class Lake:
    """The lake's layout under one root URI (a local path, hdfs://, s3a://...). Every path it
    answers is a URI string for ``jobs.lake.storage`` and ``jobs.lake.table``; nothing here touches a file."""

    uri: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "uri", normalize(self.uri))

    @classmethod
    def at(cls, root: str | Path | None = None) -> "Lake":
        return cls(str(root or os.environ.get("WASURE_LAKE", "lake")))

    @property
    def is_local(self) -> bool:
        return is_local(self.uri)

    @property
    def root(self) -> Path:
        """The local directory of a local lake (tests, and the checks that a key file or an export
        lies outside it). Remote lakes have none."""
        if not self.is_local:
            raise InputError(f"the lake {self.uri} is not a local directory")
        return Path(self.uri)

    @property
    def files(self):
        return files_for(self.uri)

    def path(self, *parts: str) -> str:
        return join(self.uri, *parts)

    def table_path(self, table: Table) -> str:
        return join(self.uri, table.path)

    def pseudonymized(self, purpose: str, table: str) -> str:
        return join(self.uri, "pseudonymized", purpose, table)

    def anonymized(self, release: str, table: str = "data") -> str:
        return join(self.uri, "anonymized", release, table)

    def staging(self, *parts: str) -> str:
        return join(self.uri, "staging", *parts)

    def quarantine(self, *parts: str) -> str:
        return join(self.uri, "quarantine", *parts)

    def audit(self, name: str) -> str:
        return join(self.uri, "audit", name)

    def state(self, name: str) -> str:
        return join(self.uri, "state", name)

    @property
    def docs(self) -> str:
        return join(self.uri, "docs")

    @property
    def receipts(self) -> str:
        return join(self.uri, "receipts")

    @property
    def backups(self) -> str:
        return join(self.uri, "backups")

    def __str__(self) -> str:
        return self.uri


def subject_bucket(subject: Column, buckets: int) -> Column:
    """Stable bucket of a subject id: a purge of a few subjects touches only their buckets' files."""
    return F.pmod(F.xxhash64(subject), F.lit(buckets)).cast("int")


def of_subjects(subject_key: str, subjects: list[str], buckets: int) -> Column:
    """The rows of these subjects: ``key IN (...) AND bucket IN (their buckets)``. The bucket
    condition prunes the table's partitions, and both lists are literals of the query, computed on
    the driver (jobs/lake/buckets.py): no Spark job, where a broadcast join of the list cost one
    per table and lookup.

    For reads only: a Delta DELETE / UPDATE / MERGE records its condition in the commit's
    ``operationParameters``, so the ids would stay in ``_delta_log`` (the erasure's verification
    scan finds them there: bench/analysis.md, session 14). Deletes join a keys frame (retention) or
    hold the ids in a UDF (``LakeTable.delete_values``, erasure) instead."""
    return (F.col(subject_key).isin(list(subjects))
            & F.col(SUBJECT_BUCKET).isin(sorted({bucket_of(s, buckets) for s in subjects})))


def is_delta(path: str | Path) -> bool:
    return files_for(str(path)).is_dir(join(str(path), "_delta_log"))


class SchemaDrift(InputError):
    """The lake's columns differ from the policy's: exit 2, nothing written or published."""


def check_lake(spark: SparkSession, policy: Policy, lake: Lake, tables: list[str] | None = None) -> None:
    """The listed tables (default: all) exist, and their schemas match the policy (``check_lake_schemas``)."""
    names = tables if tables is not None else list(policy.tables)
    missing = [n for n in names if not is_delta(lake.table_path(policy.tables[n]))]
    if missing:
        raise InputError(f"the lake {lake.uri} has no table(s) {', '.join(missing)}: run `wasure generate` first")
    check_lake_schemas(spark, policy, lake, names)
    from jobs.runtime.spark import size_queries_to

    files = lake.files
    size_queries_to(spark, sum(files.size(lake.table_path(t)) for t in policy.tables.values()))


def with_registers(policy: Policy, tables: list[str]) -> list[str]:
    """``tables`` plus the subject table and the registers a job reads alongside them."""
    subject = policy.subject
    registers = [subject.table, subject.consents_table, subject.restrictions_table, subject.legal_holds_table]
    return sorted(set(tables) | {t for t in registers if t})


def check_lake_schemas(spark: SparkSession, policy: Policy, lake: Lake, tables: list[str] | None = None) -> None:
    """Every listed table's columns in the lake (its current Delta schema) against the policy, before
    a job's first write. A column the policy does not classify could be personal data that no rule
    covers (it would be published as is); a classified column that is missing means the policy no
    longer describes the table. Both name table.column; all problems are reported at once."""
    problems = []
    for name in tables if tables is not None else list(policy.tables):
        table = policy.tables[name]
        path = lake.table_path(table)
        if not is_delta(path):
            continue                  # each job reports missing tables its own way
        columns = LakeTable(spark, path).columns()
        problems += [f"{name}.{c}: in the lake table {table.path} but not classified in the policy (tables.{name}.columns)"
                     for c in columns if c not in table.columns and c != SUBJECT_BUCKET]
        problems += [f"{name}.{c}: classified in the policy (tables.{name}.columns.{c}) but missing from the lake table {table.path}"
                     for c in table.columns if c not in columns]
    if problems:
        raise SchemaDrift("the lake's schema differs from the policy " + policy.source + ":\n  " + "\n  ".join(problems)
                          + "\nclassify the new column(s) in the policy (or drop them from the lake) before any job runs")


# Shorthands of the table handle (jobs.lake.table.LakeTable) for the operations every job uses.

def table_version(spark: SparkSession, path: str) -> int:
    return LakeTable(spark, path).version()


def read_current(spark: SparkSession, path: str) -> DataFrame:
    """The read path of jobs and analysts: the current version only, never time travel."""
    return LakeTable(spark, path).read()


def read_now(spark: SparkSession, path: str) -> DataFrame:
    """The current version for a read used right away (bookkeeping, gates): ``LakeTable.read_now``."""
    return LakeTable(spark, path).read_now()


def create_table(spark: SparkSession, path: str, df: DataFrame, partition_by: list[str],
                 stats_columns: list[str] | None = None) -> None:
    """A bookkeeping table (state, ledger, inbox) created unless it exists: ``LakeTable.create_bookkeeping``."""
    LakeTable(spark, path).create_bookkeeping(df, partition_by, stats_columns)


def purge_superseded(spark: SparkSession, path: str) -> None:
    LakeTable(spark, path).purge()


def write_new_table(path: str, df: DataFrame, partition_by: list[str], stats_columns: list[str] | None = None,
                    published: bool = False) -> None:
    LakeTable(df.sparkSession, path).write_new(df, partition_by, stats_columns, published)


def write_policy_table(spark: SparkSession, lake: Lake, table: Table, df: DataFrame, mode: str = "overwrite") -> None:
    """Write a policy table laid out by region and subject bucket, with personal columns kept out of stats."""
    df = df.withColumn(SUBJECT_BUCKET, subject_bucket(F.col(table.subject_key), table.subject_buckets))
    partition_by = [table.region_column, SUBJECT_BUCKET]
    path = lake.table_path(table)
    # One file per (region, bucket): few files per purge, no small-file storm.
    laid_out = df.repartition(*[F.col(c) for c in partition_by])
    if not is_delta(path):
        LakeTable(spark, path).write_new(laid_out, partition_by, stats_columns=table.stats_columns())
        return
    laid_out.write.format("delta").mode(mode).option("overwriteSchema", "false").save(path)


def append_rows(spark: SparkSession, path: str, df: DataFrame, partition_by: list[str] | None = None) -> None:
    LakeTable(spark, path).append(df, partition_by)


def table_summary(spark: SparkSession, path: str) -> dict:
    return LakeTable(spark, path).summary()


def rows_of_keys(source: DataFrame, table: Table, keys: DataFrame, cutoff=None) -> DataFrame:
    """The rows a delete by (subject, bucket, all_rows) keys removes: every row of a subject whose
    ``all_rows`` is true, else only its rows dated before ``cutoff`` (the same rule as the MERGE)."""
    rows = source.join(keys.select(F.col("subject").alias(table.subject_key), F.col("bucket").alias(SUBJECT_BUCKET), "all_rows"),
                       [table.subject_key, SUBJECT_BUCKET])
    if cutoff is not None and table.date_column:
        rows = rows.where(F.col("all_rows") | (F.col(table.date_column) < F.lit(cutoff)))
    return rows.drop("all_rows")
