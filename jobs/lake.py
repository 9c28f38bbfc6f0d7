"""Lake layout and the Delta read/write helpers every job uses.

    <root>/raw/<table>                      personal data, partitioned by region and subject bucket
    <root>/pseudonymized/<purpose>/<table>  仮名加工情報
    <root>/anonymized/<release>/<table>     匿名加工情報 (promoted releases only)
    <root>/staging/...                      outputs waiting for their gate
    <root>/quarantine/...                   failed outputs and files awaiting physical purge
    <root>/audit/<name>                     audit tables (no personal values)
    <root>/backups/YYYY-MM-DD/...           dated snapshots
    <root>/docs/                            Great Expectations Data Docs
    <root>/receipts/                        erasure receipts (JSON)

Keys (削除情報等) never live under the root: see jobs/keys.py.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.console import InputError
from jobs.policy import Policy, Table

SUBJECT_BUCKET = "subject_bucket"
STATS_TYPES = {"string", "integer", "long", "short", "byte", "double", "float", "decimal", "date", "timestamp"}


@dataclass(frozen=True)
class Lake:
    root: Path

    @classmethod
    def at(cls, root: str | Path | None = None) -> "Lake":
        return cls(Path(root or os.environ.get("WASURE_LAKE", "lake")).resolve())

    def table_path(self, table: Table) -> str:
        return str(self.root / table.path)

    def pseudonymized(self, purpose: str, table: str) -> str:
        return str(self.root / "pseudonymized" / purpose / table)

    def anonymized(self, release: str, table: str = "data") -> str:
        return str(self.root / "anonymized" / release / table)

    def staging(self, *parts: str) -> str:
        return str(self.root.joinpath("staging", *parts))

    def quarantine(self, *parts: str) -> str:
        return str(self.root.joinpath("quarantine", *parts))

    def audit(self, name: str) -> str:
        return str(self.root / "audit" / name)

    def state(self, name: str) -> str:
        return str(self.root / "state" / name)

    @property
    def docs(self) -> Path:
        return self.root / "docs"

    @property
    def receipts(self) -> Path:
        return self.root / "receipts"

    @property
    def backups(self) -> Path:
        return self.root / "backups"


def subject_bucket(subject: Column, buckets: int) -> Column:
    """Stable bucket of a subject id: a purge of a few subjects touches only their buckets' files."""
    return F.pmod(F.xxhash64(subject), F.lit(buckets)).cast("int")


def is_delta(path: str | Path) -> bool:
    return (Path(path) / "_delta_log").is_dir()


class SchemaDrift(InputError):
    """The lake's columns differ from the policy's: exit 2, nothing written or published."""


def check_lake(spark: SparkSession, policy: Policy, lake: Lake, tables: list[str] | None = None) -> None:
    """The listed tables (default: all) exist, and their schemas match the policy (``check_lake_schemas``)."""
    names = tables if tables is not None else list(policy.tables)
    missing = [n for n in names if not is_delta(lake.table_path(policy.tables[n]))]
    if missing:
        raise InputError(f"the lake {lake.root} has no table(s) {', '.join(missing)}: run `wasure generate` first")
    check_lake_schemas(spark, policy, lake, names)


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
        columns = read_current(spark, path).columns
        problems += [f"{name}.{c}: in the lake table {table.path} but not classified in the policy (tables.{name}.columns)"
                     for c in columns if c not in table.columns and c != SUBJECT_BUCKET]
        problems += [f"{name}.{c}: classified in the policy (tables.{name}.columns.{c}) but missing from the lake table {table.path}"
                     for c in table.columns if c not in columns]
    if problems:
        raise SchemaDrift("the lake's schema differs from the policy " + policy.source + ":\n  " + "\n  ".join(problems)
                          + "\nclassify the new column(s) in the policy (or drop them from the lake) before any job runs")


def table_version(spark: SparkSession, path: str) -> int:
    """The table's latest version: the highest ``_delta_log/<version>.json``, listed through Hadoop's
    FileSystem (any URI Spark can read). Delta writes that file for every commit and its log
    cleanup never removes the newest, so this is the version a read would see now, without the
    Spark job of ``DESCRIBE HISTORY`` (one per table per step added up: docs/performance.md)."""
    jvm = spark.sparkContext._jvm
    log = jvm.org.apache.hadoop.fs.Path(path.rstrip("/") + "/_delta_log")
    fs = log.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    versions = [int(name[:-5]) for name in (status.getPath().getName() for status in fs.listStatus(log))
                if name.endswith(".json") and name[:-5].isdigit()]
    if not versions:
        raise InputError(f"{path} is not a Delta table (no commit in its _delta_log)")
    return max(versions)


def read_current(spark: SparkSession, path: str) -> DataFrame:
    """The read path of jobs and analysts: the current version only, never time travel."""
    return spark.read.format("delta").load(path)


def table_properties(df: DataFrame, partition_by: list[str], stats_columns: list[str] | None = None,
                     change_data_feed: bool = False, published: bool = False) -> dict[str, str]:
    """The Delta properties of a wasure table.

    stats_columns: the only columns whose min/max go into ``_delta_log`` (personal columns never
    do, or the values outlive a delete there). ``None`` keeps Delta's default (tables without
    personal data: audit, ledgers).
    published: a table data scientists read (pseudonymized/, anonymized/, statistics/). Those are
    rewritten whole, so deletion vectors buy nothing there, and the ``deltalake`` (delta-rs) reader
    behind pandas and polars refuses tables with that reader feature (docs/reading.md). Raw tables
    keep them: a subject delete marks rows instead of rewriting whole files.
    """
    properties = {"delta.enableDeletionVectors": str(not published).lower(),
                  "delta.enableChangeDataFeed": str(change_data_feed).lower()}
    if stats_columns is not None:
        # Delta collects min/max only for orderable types (not booleans, maps, arrays).
        types = {f.name: f.dataType.typeName() for f in df.schema.fields}
        usable = [c for c in stats_columns if c not in partition_by and types.get(c) in STATS_TYPES]
        if usable:
            properties["delta.dataSkippingStatsColumns"] = ",".join(f"`{c}`" for c in usable)
        else:
            properties["delta.dataSkippingNumIndexedCols"] = "0"
    return properties


def create_table(spark: SparkSession, path: str, df: DataFrame, partition_by: list[str],
                 stats_columns: list[str] | None = None, change_data_feed: bool = False, published: bool = False) -> None:
    """Create the (empty) Delta table with the properties wasure relies on (idempotent)."""
    from delta.tables import DeltaTable

    builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(df.schema)
    for name, value in table_properties(df, partition_by, stats_columns, change_data_feed, published).items():
        builder = builder.property(name, value)
    if partition_by:
        builder = builder.partitionedBy(*partition_by)
    builder.execute()


def purge_superseded(spark: SparkSession, path: str) -> None:
    """Physically remove what the table's current version no longer references: REORG ... APPLY
    (PURGE) rewrites files with deletion vectors, then VACUUM with 0 hours reaches the files that
    REORG superseded just now (the safety check lifted for this call only). Callers hold the lake
    lease (jobs/lease.py): a writer running at the same time would lose its uncommitted files."""
    if "`" in path:
        raise ValueError(f"a table path may not contain a backtick: {path!r}")
    spark.sql(f"REORG TABLE delta.`{path}` APPLY (PURGE)")
    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    try:
        spark.sql(f"VACUUM delta.`{path}` RETAIN 0 HOURS")
    finally:
        spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "true")


def write_new_table(path: str, df: DataFrame, partition_by: list[str], stats_columns: list[str] | None = None,
                    published: bool = False) -> None:
    """Write ``df`` as a new Delta table at ``path``, data and properties in one commit.

    For staging and backup copies, which always start from an empty directory: half the commits of
    ``create_table`` + write, and no moment where the table exists without its rows.
    """
    if "`" in path:
        raise ValueError(f"a table path may not contain a backtick: {path!r}")
    writer = df.writeTo(f"delta.`{path}`").using("delta")
    for name, value in table_properties(df, partition_by, stats_columns, published=published).items():
        writer = writer.tableProperty(name, value)
    if partition_by:
        writer = writer.partitionedBy(*[F.col(c) for c in partition_by])
    writer.create()


def write_policy_table(spark: SparkSession, lake: Lake, table: Table, df: DataFrame, mode: str = "overwrite") -> None:
    """Write a policy table laid out by region and subject bucket, with personal columns kept out of stats."""
    df = df.withColumn(SUBJECT_BUCKET, subject_bucket(F.col(table.subject_key), table.subject_buckets))
    partition_by = [table.region_column, SUBJECT_BUCKET]
    path = lake.table_path(table)
    # One file per (region, bucket): few files per purge, no small-file storm.
    laid_out = df.repartition(*[F.col(c) for c in partition_by])
    if not is_delta(path):
        write_new_table(path, laid_out, partition_by, stats_columns=table.stats_columns())
        return
    laid_out.write.format("delta").mode(mode).option("overwriteSchema", "false").save(path)


def append_rows(spark: SparkSession, path: str, df: DataFrame, partition_by: list[str] | None = None) -> None:
    """Append to a small bookkeeping table (audit, ledger, state), creating it on first use."""
    create_table(spark, path, df, partition_by or [])
    df.coalesce(1).write.format("delta").mode("append").save(path)


def table_summary(spark: SparkSession, path: str) -> dict:
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").select("numFiles", "sizeInBytes").first()
    rows = read_current(spark, path).count()
    return {"version": table_version(spark, path), "files": int(detail.numFiles), "bytes": int(detail.sizeInBytes), "rows": int(rows)}


def rows_of_keys(source: DataFrame, table: Table, keys: DataFrame, cutoff=None) -> DataFrame:
    """The rows a delete by (subject, bucket, all_rows) keys removes: every row of a subject whose
    ``all_rows`` is true, else only its rows dated before ``cutoff`` (the same rule as the MERGE)."""
    rows = source.join(keys.select(F.col("subject").alias(table.subject_key), F.col("bucket").alias(SUBJECT_BUCKET), "all_rows"),
                       [table.subject_key, SUBJECT_BUCKET])
    if cutoff is not None and table.date_column:
        rows = rows.where(F.col("all_rows") | (F.col(table.date_column) < F.lit(cutoff)))
    return rows.drop("all_rows")
