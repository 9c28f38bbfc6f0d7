"""Planning (counts, files; nothing written) and the history of erasure commits that makes every step re-runnable."""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from anonymizers.frames import local_frame
from jobs.lake.backup_catalog import list_backups
from jobs.lake.backup_ledger import read_ledger
from jobs.lake.holds import HoldBook
from jobs.erasure.model import JOB, MIN_VALUE_LENGTH, ROWS_TABLE, VALUE_CLASSES
from jobs.lake.layout import Lake, is_delta, of_subjects, read_now, subject_bucket, table_version
from jobs.lake.table import LakeTable
from jobs.lake.lineage import keeps_pseudonymized
from jobs.policy import Policy
from jobs.lake.storage import relative
from jobs.lake.residue import Finding, cell_tokens
from jobs.lake.value_sets import token_hits_udf
from jobs.runtime.concurrency import for_each_table

# ------------------------------------------------------------------ planning (counts, files; nothing written)

def subjects_frame(spark: SparkSession, subjects: list[str], buckets: int) -> DataFrame:
    return (local_frame(spark, [(s,) for s in subjects], "subject string")
            .withColumn("bucket", subject_bucket(F.col("subject"), buckets)))


@dataclass(frozen=True)
class SubjectRows:
    """What one scan of the subjects' bucket partitions found in each table: the files holding each
    subject's rows (with their row counts) and the identifying values of those rows, and the table
    versions it read. The erasure scans once when it receives a request and deletes from the same
    answer, unless a table committed since (``still_answers``)."""
    subjects: frozenset[str]
    versions: dict[str, int] | None                      # None: a table committed during the scan
    files: dict[str, dict[str, dict[tuple[str, int], int]]]   # table -> subject -> {(file, size): rows}
    values: dict[str, dict[str, set[str]]]               # table -> subject -> values (long enough to look for)

    def still_answers(self, spark: SparkSession, lake: Lake, policy: Policy, tables: list[str], subjects: list[str]) -> bool:
        """Whether this scan is also the answer now: it covered these tables and subjects, and no
        table has a newer version than it read (one ``_delta_log`` listing per table, no Spark job)."""
        if self.versions is None or not set(subjects) <= self.subjects or not set(tables) <= set(self.versions):
            return False
        return _versions(spark, lake, policy, tables) == {name: self.versions[name] for name in tables}


def _versions(spark: SparkSession, lake: Lake, policy: Policy, tables: list[str]) -> dict[str, int]:
    return {name: table_version(spark, lake.table_path(policy.tables[name])) for name in tables}


def scan_subject_rows(spark: SparkSession, policy: Policy, lake: Lake, tables: list[str], subjects: list[str]) -> SubjectRows:
    """``SubjectRows`` of the current versions: per table one query that reads only the subjects'
    bucket partitions (``of_subjects``) and returns one row per subject and file, a few tables at
    once (``for_each_table``: each is mostly the driver planning a Delta read). What the value
    capture and the DELETE plans both need, where each used to read every table itself (each read
    of a Delta table plans with two or three Spark jobs of its own: bench/analysis.md, Session 25).
    Values are the subject's cells in columns of class identifying / individual_code /
    property_damage and the subject key, at least MIN_VALUE_LENGTH long."""
    files: dict[str, dict[str, dict[tuple[str, int], int]]] = {name: {} for name in tables}
    values: dict[str, dict[str, set[str]]] = {name: {} for name in tables}
    if not subjects or not tables:
        return SubjectRows(frozenset(subjects), {}, files, values)
    before = _versions(spark, lake, policy, tables)

    def rows_of(name: str) -> list:
        table = policy.tables[name]
        df = read_now(spark, lake.table_path(table))
        key = table.subject_key
        value_columns = [c for c in table.columns_of(*VALUE_CLASSES) if c in df.columns] + [key]
        cells = F.array(*[F.col(c).cast("string") for c in value_columns])
        return (df.where(of_subjects(key, subjects, table.subject_buckets))
                .select(F.col(key).cast("string").alias("subject"), F.col("_metadata.file_path").alias("file"),
                        F.col("_metadata.file_size").alias("size"),
                        F.filter(cells, lambda v: v.isNotNull() & (F.length(v) >= MIN_VALUE_LENGTH)).alias("values"))
                .groupBy("subject", "file", "size")
                .agg(F.count(F.lit(1)).alias("rows"), F.array_distinct(F.flatten(F.collect_list("values"))).alias("values"))
                .collect())

    for name, found in zip(tables, for_each_table(tables, rows_of)):
        for row in found:
            files[name].setdefault(row.subject, {})[(row.file, int(row["size"]))] = int(row["rows"])
            values[name].setdefault(row.subject, set()).update(row["values"])
    after = _versions(spark, lake, policy, tables)
    return SubjectRows(frozenset(subjects), before if after == before else None, files, values)


def table_hits(spark: SparkSession, lake: Lake, policy: Policy, tables: list[str], subjects: list[str]
               ) -> dict[str, dict[str, dict[tuple[str, int], int]]]:
    """table -> subject -> {(file path, file size): rows} in the current versions (``scan_subject_rows``)."""
    return scan_subject_rows(spark, policy, lake, tables, subjects).files


def capture_values(spark: SparkSession, policy: Policy, lake: Lake, subjects: list[str], holds: HoldBook,
                   scan: SubjectRows | None = None) -> dict[str, list[str]]:
    """subject -> the identifying values the verification scan looks for.

    Candidates (``candidates``): values of the subject's rows that will be erased, in columns of class
    identifying / individual_code / property_damage and the subject key, at least MIN_VALUE_LENGTH
    long. Dropped: any value that also occurs (as a cell or a token of a string cell) in a row that
    stays: another subject's row, or a held row of the same subject. What is left is unique to
    erased rows, so finding it anywhere later is residue.

    Two passes: the candidates come from the subjects' bucket partitions only (``scan``, the
    erasure's one ``scan_subject_rows``, or a new one); then a scan of the rows that stay returns
    which candidates occur there."""
    if not subjects:
        return {}
    erasable_by_table = {name: [s for s in subjects if holds.hold_for(s, name) is None] for name in policy.tables}
    if scan is None or not set(subjects) <= scan.subjects or not set(policy.tables) <= set(scan.values):
        scan = scan_subject_rows(spark, policy, lake, list(policy.tables), subjects)
    found = candidates(scan, erasable_by_table)
    if not found:
        return {}
    blocked = _in_staying_rows(spark, policy, lake, erasable_by_table, sorted({v for _s, v in found}))
    out: dict[str, list[str]] = {}
    for subject, value in found:
        if value not in blocked:
            out.setdefault(subject, []).append(value)
    return {s: sorted(v) for s, v in out.items()}


def candidates(scan: SubjectRows, erasable_by_table: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(subject, value) of the erasable rows' identifying cells, long enough to look for."""
    return sorted({(subject, value) for name, subjects in erasable_by_table.items() for subject in subjects
                   for value in scan.values.get(name, {}).get(subject, ())})


def _in_staying_rows(spark: SparkSession, policy: Policy, lake: Lake, erasable_by_table: dict[str, list[str]],
                     values: list[str]) -> set[str]:
    """Which of ``values`` occur as a string cell, or a token of one (``cell_tokens``), in a row
    that stays. With wasure-udf.jar each row is tokenized and looked up in the JVM and only hits
    leave the scan; without it every token is a row joined with the values. One query per table,
    a few at once (``for_each_table``): a small table's query is mostly the driver planning its
    Delta read, which overlaps another table's."""
    with token_hits_udf(spark, values) as hits:
        wanted = None if hits is not None else F.broadcast(local_frame(spark, [(v,) for v in values], "value string"))

        def found_in(name: str) -> set[str]:
            table = policy.tables[name]
            df = read_now(spark, lake.table_path(table))
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
            return {row.value for row in part.distinct().collect()}

        return set().union(*for_each_table(list(policy.tables), found_in))


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
    df = read_now(spark, path)
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
