"""Planning (counts, files; nothing written) and the history of erasure commits that makes every step re-runnable."""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.lake.backup_catalog import list_backups
from jobs.lake.backup_ledger import read_ledger
from jobs.lake.holds import HoldBook
from jobs.erasure.model import JOB, MIN_VALUE_LENGTH, ROWS_TABLE, VALUE_CLASSES
from jobs.lake.layout import Lake, is_delta, of_subjects, read_current, subject_bucket
from jobs.lake.table import LakeTable
from jobs.lake.lineage import keeps_pseudonymized
from jobs.policy import Policy
from jobs.lake.storage import relative
from jobs.lake.residue import Finding, cell_tokens
from jobs.lake.value_sets import token_hits_udf

# ------------------------------------------------------------------ planning (counts, files; nothing written)

def subjects_frame(spark: SparkSession, subjects: list[str], buckets: int) -> DataFrame:
    return (spark.createDataFrame([(s,) for s in subjects], "subject string")
            .withColumn("bucket", subject_bucket(F.col("subject"), buckets)))


def table_hits(spark: SparkSession, lake: Lake, policy: Policy, tables: list[str], subjects: list[str]
               ) -> dict[str, dict[str, dict[tuple[str, int], int]]]:
    """table -> subject -> {(file path, file size): rows} in the current versions, in ONE Spark job
    that reads only the subjects' bucket partitions (``of_subjects``)."""
    out: dict[str, dict[str, dict[tuple[str, int], int]]] = {name: {} for name in tables}
    if not subjects or not tables:
        return out
    parts = None
    for name in tables:
        table = policy.tables[name]
        part = (read_current(spark, lake.table_path(table))
                .where(of_subjects(table.subject_key, subjects, table.subject_buckets))
                .select(F.lit(name).alias("table"), F.col(table.subject_key).cast("string").alias("subject"),
                        F.col("_metadata.file_path").alias("file"), F.col("_metadata.file_size").alias("size")))
        parts = part if parts is None else parts.unionByName(part)
    for row in parts.groupBy("table", "subject", "file", "size").count().collect():
        out[row.table].setdefault(row.subject, {})[(row.file, int(row["size"]))] = int(row["count"])
    return out


def capture_values(spark: SparkSession, policy: Policy, lake: Lake, subjects: list[str], holds: HoldBook) -> dict[str, list[str]]:
    """subject -> the identifying values the verification scan looks for.

    Candidates: values of the subject's rows that will be erased, in columns of class identifying /
    individual_code / property_damage and the subject key. Dropped: values shorter than
    MIN_VALUE_LENGTH, and any value that also occurs (as a cell or a token of a string cell) in a
    row that stays: another subject's row, or a held row of the same subject. What is left is unique
    to erased rows, so finding it anywhere later is residue.

    Two queries: the candidates come from the subjects' bucket partitions only (a few per subject,
    to the driver: they are this function's answer); then one scan of the rows that stay returns
    which candidates occur there."""
    if not subjects:
        return {}
    erasable_by_table = {name: [s for s in subjects if holds.hold_for(s, name) is None] for name in policy.tables}
    candidates = _candidates(spark, policy, lake, erasable_by_table)
    if not candidates:
        return {}
    blocked = _in_staying_rows(spark, policy, lake, erasable_by_table, sorted({v for _s, v in candidates}))
    out: dict[str, list[str]] = {}
    for subject, value in candidates:
        if value not in blocked:
            out.setdefault(subject, []).append(value)
    return {s: sorted(v) for s, v in out.items()}


def _candidates(spark: SparkSession, policy: Policy, lake: Lake, erasable_by_table: dict[str, list[str]]
                ) -> list[tuple[str, str]]:
    """(subject, value) of the erasable rows' identifying cells, long enough to look for."""
    parts: DataFrame | None = None
    for name, table in policy.tables.items():
        if not erasable_by_table[name]:
            continue
        df = read_current(spark, lake.table_path(table))
        key = table.subject_key
        rows = df.where(of_subjects(key, erasable_by_table[name], table.subject_buckets))
        value_columns = [c for c in table.columns_of(*VALUE_CLASSES) if c in df.columns] + [key]
        part = rows.select(F.col(key).cast("string").alias("subject"),
                           F.explode(F.array(*[F.col(c).cast("string") for c in value_columns])).alias("value"))
        parts = part if parts is None else parts.unionByName(part)
    if parts is None:
        return []
    found = parts.where(F.col("value").isNotNull() & (F.length("value") >= MIN_VALUE_LENGTH)).distinct()
    return [(row.subject, row.value) for row in found.collect()]


def _in_staying_rows(spark: SparkSession, policy: Policy, lake: Lake, erasable_by_table: dict[str, list[str]],
                     values: list[str]) -> set[str]:
    """Which of ``values`` occur as a string cell, or a token of one (``cell_tokens``), in a row
    that stays. With wasure-udf.jar each row is tokenized and looked up in the JVM and only hits
    leave the scan; without it every token is a row joined with the values."""
    with token_hits_udf(spark, values) as hits:
        wanted = None if hits is not None else F.broadcast(spark.createDataFrame([(v,) for v in values], "value string"))
        found: DataFrame | None = None
        for name, table in policy.tables.items():
            df = read_current(spark, lake.table_path(table))
            key = table.subject_key
            if erasable_by_table[name]:                                           # the rows that stay
                df = df.where(F.col(key).isNull() | ~F.col(key).isin(erasable_by_table[name]))
            strings = [f.name for f in df.schema.fields if f.dataType.typeName() == "string" and not f.name.startswith("_")]
            if hits is not None:
                part = df.select(F.explode(hits(F.array(*[F.col(c) for c in strings]))).alias("value"))
            else:
                cells = F.filter(F.array(*[F.col(c) for c in strings]), lambda c: c.isNotNull())
                tokens = F.flatten(F.transform(cells, cell_tokens))
                part = df.select(F.explode(tokens).alias("value")).join(wanted, "value")
            found = part if found is None else found.unionByName(part)
        return {row.value for row in found.distinct().collect()}


# ------------------------------------------------------------------ history of erasure commits

def erasure_commits(spark: SparkSession, path: str) -> list[tuple[int, dict, dict]]:
    """(version, userMetadata, operationMetrics) of the table's erasure commits, from its log."""
    out = []
    for commit in LakeTable(spark, path).commits(containing=JOB):
        meta = commit.metadata()
        if meta.get("job") == JOB:
            out.append((commit.version, meta, commit.operation_metrics))
    return out


def plan_rows(spark: SparkSession, lake: Lake, request_ids: list[str] | None = None) -> list:
    path = lake.state(ROWS_TABLE)
    if not is_delta(path):
        return []
    df = read_current(spark, path)
    if request_ids is not None:
        df = df.where(F.col("request_id").isin(request_ids))
    return df.collect()


@dataclass(frozen=True)
class CommitAuditLake(Lake):
    """The lake as `quarantine.reconcile` sees it for erasure: its per-commit audit goes to
    ``audit/erasure_commits`` so that ``audit/erasure`` stays one row per request (receipts)."""

    def audit(self, name: str) -> str:
        return super().audit(f"{name}_commits")


def pseudonymize_tables(policy: Policy) -> list[str]:
    """Tables whose rows are kept as 仮名加工情報 after closure: retention action ``pseudonymize``."""
    return [n for n, t in policy.tables.items() if keeps_pseudonymized(t)]


def relative_finding(lake: Lake, finding: Finding) -> str:
    path = finding.path
    if lake.is_local and path.startswith("file:"):      # Spark names local files file:/x or file:///x
        path = "/" + path.removeprefix("file:").lstrip("/")
    try:
        shown = relative(path, lake.uri)
    except ValueError:
        shown = path
    return f"{shown} ({finding.kind}, {finding.matches} match(es))"


def all_commits(spark: SparkSession, policy: Policy, lake: Lake) -> dict[str, list[tuple[int, dict, dict]]]:
    return {name: erasure_commits(spark, lake.table_path(table)) for name, table in policy.tables.items()}


def commits_by_request(commits: dict[str, list]) -> dict[str, dict[str, int]]:
    """request id -> {table: version of the erasure commit that removed its rows}."""
    out: dict[str, dict[str, int]] = {}
    for name, table_commits in commits.items():
        for version, meta, _metrics in table_commits:
            for request_id in meta.get("requests", []):
                out.setdefault(request_id, {})[name] = version
    return out


def effective_plan(spark: SparkSession, lake: Lake, commits: dict[str, list], request_ids: list[str]) -> dict[tuple[str, str], dict]:
    """(request id, subject hash) -> {table: plan row} for plans that took effect (committed, or empty)."""
    committed = {meta.get("plan_id") for table_commits in commits.values() for _v, meta, _m in table_commits}
    out: dict[tuple[str, str], dict] = {}
    for row in plan_rows(spark, lake, request_ids):
        if row.empty_plan or row.plan_id in committed:
            out.setdefault((row.request_id, row.subject_hash), {})[row.table] = row
    return out


def quarantined_backups(spark: SparkSession, lake: Lake, request_ids: list[str]) -> list[str]:
    ledger = read_ledger(spark, lake)
    if ledger is None or not request_ids:
        return []
    existing = {d.isoformat() for d in list_backups(lake)}
    days = set()
    for row in ledger.where(F.col("request_id").isin(request_ids)).select("backups").collect():
        days.update(d for d in (row.backups or []) if d in existing)
    return sorted(days)
