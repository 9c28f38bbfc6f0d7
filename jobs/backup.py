"""Backups with a deletion ledger (`wasure backup`, `wasure backup --expire`, `wasure restore`), REQUIREMENTS S3.

    <root>/backups/YYYY-MM-DD/raw/<table>       one Delta table per policy table (current version only)
    <root>/backups/YYYY-MM-DD/_manifest.json    written last: a backup without it is incomplete
    <root>/state/deletion_ledger                 keyed hashes of erased subjects and the backups holding them

Beside this job: jobs/lake/backup_catalog.py (which backups exist), jobs/lake/backup_crypto.py (their
encryption and keys), jobs/lake/backup_ledger.py (the deletion ledger).

A backup is a *read + write* of each table's current version (a deep-clone-like copy), not a copy of
the table directory: the directory also holds superseded Parquet files, deletion vectors and
`_delta_log` history, i.e. rows that were already erased. Written with the lake's layout (region /
subject-bucket partitions) into a temporary directory renamed into place when complete; encrypted
(Parquet modular encryption) under a key of its own kept in the key store outside the lake, the
manifest naming the key id only, and with no min/max statistics in its log (jobs/lake/backup_crypto.py,
docs/backups.md). Every read of a backup sets its key for that read only.

Backups are kept `policy.defaults.backup_retention_days` days (a backup of day D expires on
D + retention days; `backup --expire` destroys the key of every expired backup, then deletes its
files: crypto-shredding). A subject erased while unexpired backups still hold them gets a row in the
deletion ledger (HMAC-SHA256 of the subject id with the ledger key `policy.defaults.ledger_key_id`,
the request id, when, the tables erased and the backups holding them): those backups are
quarantined for that subject. Only `restore` makes a backup's rows readable again, and it re-applies
the whole ledger (plus the subjects of erasure requests still in flight) first: the backup is read
(a backup whose key is gone is refused, exit 2), ledgered subjects are removed (matched by the keyed
hash of each restored row's subject id), the result is written to staging (plain Parquet), gated, and
only then published into raw/ (one Delta transaction per table, never a directory rename). A
subject's quarantine ends when the last backup holding them is gone.
"""
from __future__ import annotations

import datetime as dt
import json
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from anonymizers.frames import local_frame
from jobs.lake.backup_catalog import MANIFEST, backup_dir, expires_on, list_backups, read_manifest
from jobs.lake.backup_crypto import (
    ENCRYPTION, backup_keys, backup_partitions, check_destroyable, create_backup_key, destroy_key, load_backup_key,
    marked_key_id, require_kms, write_backup_table, write_key_marker,
)
from jobs.lake.backup_ledger import hash_column, ledger_key, read_ledger, sync_ledger
from jobs.runtime.console import CheckFailed, InputError
from jobs.lake.holds import HoldBook
from jobs.lake.layout import SUBJECT_BUCKET, Lake, check_lake, is_delta, read_current, read_now, write_policy_table
from jobs.lake.lease import with_lease
from jobs.policy import Policy, Table
from jobs.lake.storage import join
from jobs.lake.table import LakeTable

STATE = "erasure_state"          # written by jobs.erasure; read here for requests in flight
OPEN_STATES = ("received", "retained_copy", "deleted")   # not in the deletion ledger yet


@dataclass(frozen=True)
class BackedUpTable:
    """One table of a backup, as its manifest lists it: its path under raw/, the Delta version
    copied and the rows written."""
    path: str
    source_version: int
    rows: int


@dataclass(frozen=True)
class BackupReport:
    """One day's backup: ``created`` by this run or found complete (``exists``, nothing written),
    when it expires, its key id (None: a backup from before encryption), its tables; ``manifest`` is
    the JSON document at backups/<date>/_manifest.json as written (the other fields are read from it)."""
    status: str
    date: str
    expires: str
    key_id: str | None
    tables: dict[str, BackedUpTable]
    manifest: dict

    @classmethod
    def of(cls, manifest: dict, status: str) -> BackupReport:
        tables = {n: BackedUpTable(t["path"], t["source_version"], t["rows"]) for n, t in manifest["tables"].items()}
        return cls(status, manifest["date"], manifest["expires"], manifest.get("key_id"), tables, manifest)


@dataclass(frozen=True)
class ExpiryReport:
    """What ``expire_backups`` did as of a day (ISO dates): the backups deleted, the keys destroyed
    (crypto-shredding), the backups kept, how many ledger subjects' quarantine ended."""
    as_of: str
    deleted: list[str]
    keys_destroyed: list[str]
    kept: list[str]
    subjects_released: int


@dataclass(frozen=True)
class RestoredTable:
    """One table of a restore: rows in the backup, subjects withheld (ledgered or in flight), rows restored."""
    rows_in_backup: int
    subjects_withheld: int
    rows_restored: int


@dataclass(frozen=True)
class RestoreReport:
    """A restore of backups/<date> into raw/: per table what was withheld and restored, the restore
    gate's Data Docs index (None: no deletion ledger yet, so no gate), how many ledgered subjects
    and subjects of requests in flight were re-applied (counts only, never an id or a hash)."""
    date: str
    tables: dict[str, RestoredTable] = field(default_factory=dict)
    docs: str | None = None
    ledger_subjects: int = 0
    requests_in_flight_subjects: int = 0


@with_lease("backup")
def run_backup(spark: SparkSession, policy: Policy, lake: Lake, day: dt.date | None = None,
               progress: Callable[[str], None] = lambda _m: None) -> BackupReport:
    """Copy the current version of every policy table into backups/<day>/, encrypted under a new
    key of the backup's own (idempotent per day)."""
    day = day or dt.datetime.now(dt.timezone.utc).date()
    check_lake(spark, policy, lake)       # missing tables, schema drift: exit 2 before any write
    files = lake.files
    final = backup_dir(lake, day)
    if files.is_file(join(final, MANIFEST)):
        return BackupReport.of(read_manifest(lake, day), "exists")
    if files.exists(final):
        raise CheckFailed(f"{final} exists but has no {MANIFEST}: an incomplete backup; remove it, then run again")
    require_kms(spark)
    tmp = join(lake.backups, f".tmp-{day.isoformat()}")
    key_id, key = create_backup_key(day, lake)       # a bad key file: exit 2, nothing written
    if files.exists(tmp):                             # a killed earlier attempt: its key goes first
        destroy_key(marked_key_id(tmp), lake)
        files.delete(tmp)
    files.mkdirs(tmp)
    write_key_marker(tmp, key_id)
    target = Lake(tmp)
    tables = {}
    with backup_keys(spark, {key_id: key}, encrypt_with=key_id):
        for name, table in policy.tables.items():
            progress(f"backing up {name}")
            source = LakeTable(spark, lake.table_path(table))
            version = source.version()
            # That version's files: the copy is one consistent version even if a job writes meanwhile.
            laid_out = source.partition_columns(version) == backup_partitions(table)
            write_backup_table(target, table, source.read_now(version).drop(SUBJECT_BUCKET), laid_out=laid_out)
            tables[name] = {"path": table.path, "source_version": version, "rows": written_rows(spark, target.table_path(table))}
    manifest = {"date": day.isoformat(), "taken_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "expires": expires_on(policy, day).isoformat(), "policy_sha256": policy.sha256, "tables": tables,
                "encryption": ENCRYPTION, "key_id": key_id}
    files.write_text(join(tmp, MANIFEST), json.dumps(manifest, indent=2, sort_keys=True))
    files.rename(tmp, final)
    return BackupReport.of(manifest, "created")


def written_rows(spark: SparkSession, path: str) -> int:
    """Rows written by the table's last commit (from its metrics: no scan)."""
    return int(LakeTable(spark, path).last_commit_metrics().get("numOutputRows", 0))


@with_lease("backup expiry")
def expire_backups(spark: SparkSession, policy: Policy, lake: Lake, as_of: dt.date | None = None) -> ExpiryReport:
    """Destroy the key of every backup that has expired, then delete its files; then end the
    quarantine of subjects no backup holds any more."""
    as_of = as_of or dt.datetime.now(dt.timezone.utc).date()
    expired = [d for d in list_backups(lake) if expires_on(policy, d) <= as_of]
    doomed = [(backup_dir(lake, d), read_manifest(lake, d).get("key_id")) for d in expired]
    # Killed backups never became readable.
    doomed += [(stale, marked_key_id(stale)) for stale in lake.files.glob(join(lake.backups, ".tmp-*"))]
    check_destroyable([k for _d, k in doomed if k])           # exit 2 before anything is destroyed
    destroyed = []
    for directory, key_id in doomed:
        # The key first: if the deletion stops half-way, what is left is already unreadable.
        if destroy_key(key_id, lake):
            destroyed.append(key_id)
        lake.files.delete(directory)
    released = sync_ledger(spark, lake)
    return ExpiryReport(as_of.isoformat(), [d.isoformat() for d in expired], destroyed,
                        [d.isoformat() for d in list_backups(lake)], released)


# ------------------------------------------------------------------ restore

def _hashes_to_remove(spark: SparkSession, policy: Policy, lake: Lake) -> tuple[DataFrame | None, list[str]]:
    """(the ledger as (subject_hash, table) rows, or None: a DataFrame, never collected, since it grows
    by one row per erased subject for the lake's lifetime; hashes of requests in flight: open
    requests only, few)."""
    ledger = read_ledger(spark, lake)
    ledgered = None
    if ledger is not None:
        ledgered = (ledger.select("subject_hash", F.explode("tables").alias("table"))
                    .where(F.col("table").isin(list(policy.tables))).distinct())
    in_flight: set[str] = set()
    state_path = lake.state(STATE)
    if is_delta(state_path):
        states = read_now(spark, state_path)
        latest = states.groupBy("request_id").agg(F.max("state_order").alias("order"))
        received = states.where(F.col("state") == "received").select("request_id", "subject_hashes")
        for row in latest.where(F.col("order") < len(OPEN_STATES)).join(received, "request_id").collect():
            in_flight.update(row.subject_hashes or [])
    return ledgered, sorted(in_flight)


@with_lease("restore")
def run_restore(spark: SparkSession, policy: Policy, lake: Lake, day: dt.date, as_of: dt.date | None = None,
                progress: Callable[[str], None] = lambda _m: None) -> RestoreReport:
    """Restore backups/<day> into raw/, re-applying the whole deletion ledger before any table is readable."""

    as_of = as_of or dt.datetime.now(dt.timezone.utc).date()
    if not lake.files.is_file(join(backup_dir(lake, day), MANIFEST)):
        available = ", ".join(d.isoformat() for d in list_backups(lake)) or "none"
        raise InputError(f"no complete backup of {day.isoformat()} under {lake.backups} (available: {available})")
    _key_id, key = ledger_key(policy, lake)                 # exit 2 before any write
    manifest = read_manifest(lake, day)
    missing = [n for n in policy.tables if n not in manifest["tables"]]
    if missing:
        raise InputError(f"the backup of {day.isoformat()} has no table(s) {', '.join(missing)}")
    backup_key_id = manifest.get("key_id")                  # none: a backup from before encryption
    backup_key = {backup_key_id: load_backup_key(day, backup_key_id, lake)} if backup_key_id else {}
    if backup_key:
        require_kms(spark)
    ledgered, in_flight = _hashes_to_remove(spark, policy, lake)
    holds = HoldBook.load(spark, policy, lake, as_of) if in_flight else None
    source = Lake(backup_dir(lake, day))
    staging = Lake(lake.staging("restore", day.isoformat()))
    lake.files.delete(staging.uri)                          # a killed earlier restore's staging
    tables: dict[str, RestoredTable] = {}
    in_flight_hashes = (F.broadcast(local_frame(spark, [(h,) for h in in_flight], "subject_hash string"))
                        if in_flight else None)
    # The backup's key is set for reading only: the staged tables are written as plain Parquet.
    with backup_keys(spark, backup_key) if backup_key else nullcontext():
        for name, table in policy.tables.items():
            progress(f"restoring {name} to staging")
            df = read_current(spark, source.table_path(table))
            withheld = _withheld_subjects(spark, df, name, table.subject_key, key, ledgered, in_flight_hashes, holds)
            count = _stage(spark, df, table, staging, withheld)
            tables[name] = RestoredTable(manifest["tables"][name]["rows"], count,
                                         written_rows(spark, staging.table_path(table)))
    docs = _restore_gate(spark, policy, lake, day, staging, ledgered, key) if ledgered is not None else None
    _publish_into_raw(spark, policy, lake, staging, progress)
    return RestoreReport(day.isoformat(), tables, docs,
                         ledgered.select("subject_hash").distinct().count() if ledgered is not None else 0,
                         len(in_flight))


def _withheld_subjects(spark: SparkSession, df: DataFrame, name: str, key_col: str, key: bytes,
                       ledgered: DataFrame | None, in_flight_hashes: DataFrame | None, holds) -> DataFrame | None:
    """Subject ids (column ``_withheld``) of the table not to restore: every subject the ledger names
    for this table (found by a join in Spark, the plain ids never leave it), plus in-flight
    requests' subjects that no hold keeps (few: decided here)."""
    subjects = (df.select(F.col(key_col).alias("_withheld")).distinct()
                .withColumn("subject_hash", hash_column(F.col("_withheld"), key)))
    withheld = None
    if ledgered is not None:
        withheld = subjects.join(ledgered.where(F.col("table") == name), "subject_hash").select("_withheld")
    if in_flight_hashes is not None:
        matched = subjects.join(in_flight_hashes, "subject_hash").select("_withheld").collect()
        erasable = [(r._withheld,) for r in matched if holds.hold_for(r._withheld, name) is None]
        if erasable:
            extra = local_frame(spark, erasable, "_withheld string")
            withheld = extra if withheld is None else withheld.unionByName(extra)
    return withheld


def _stage(spark: SparkSession, df: DataFrame, table: Table, staging: Lake, withheld: DataFrame | None) -> int:
    """Write the table less the withheld subjects to staging; returns how many subjects were withheld."""
    kept, count = df, 0
    if withheld is not None:
        # Plain ids: kept in executor memory only (never spilled to local disk), dropped after the write.
        withheld = withheld.distinct().persist(StorageLevel.MEMORY_ONLY)
        count = withheld.count()
        kept = df.join(withheld, df[table.subject_key] == withheld["_withheld"], "left_anti")
    write_policy_table(spark, staging, table, kept.drop(SUBJECT_BUCKET))
    if withheld is not None:
        withheld.unpersist()
    return count


def _restore_gate(spark: SparkSession, policy: Policy, lake: Lake, day: dt.date, staging: Lake,
                  ledgered: DataFrame, key: bytes) -> str:
    """Gate (Great Expectations): no staged table holds a ledgered subject, checked again on what was
    written. Returns the Data Docs index; a failure is CheckFailed and nothing reaches raw/."""
    from expectations.custom import ExpectNoErasedSubjects
    from expectations.gates import run_gate

    checks = []
    for name, table in policy.tables.items():
        staged = read_now(spark, staging.table_path(table)).select(hash_column(F.col(table.subject_key), key).alias("subject_hash"))
        ledger = ledgered.where(F.col("table") == name).select("subject_hash")
        checks.append((name, staged, [ExpectNoErasedSubjects(hash_column="subject_hash", ledger=ledger)]))
    run_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    gate = run_gate(f"restore-{day.isoformat()}", checks, join(lake.docs, "restore", f"{day.isoformat()}-{run_id}"))
    if not gate.success:
        raise CheckFailed("restore gate: " + "; ".join(f"{f.table}: {f.message}" for f in gate.failures)
                          + f"; nothing was swapped into raw/ (Data Docs: {gate.docs_index})")
    return gate.docs_index


def _publish_into_raw(spark: SparkSession, policy: Policy, lake: Lake, staging: Lake,
                      progress: Callable[[str], None]) -> None:
    """Replace each raw table with its staged (ledger-applied, gated) rows in ONE Delta transaction
    per table (CREATE OR REPLACE): a reader sees the old table or the restored one, never a missing
    or half-moved directory, on any file system (a directory rename is not atomic on object stores,
    and a swap killed half-way left raw/ without the table). Same layout and properties as
    ``write_policy_table``: region / subject-bucket partitions, one file per partition, personal
    columns kept out of the statistics, deletion vectors kept (a raw table, not a published one).
    The replaced version's data files are deleted right after (``LakeTable.publish``)."""
    for name, table in policy.tables.items():
        progress(f"publishing {name} into raw/")
        partition_by = [table.region_column, SUBJECT_BUCKET]
        staged = LakeTable(spark, staging.table_path(table)).read_now()
        laid_out = staged.repartition(*[F.col(c) for c in partition_by])
        LakeTable(spark, lake.table_path(table)).publish(laid_out, partition_by, table.stats_columns(), published=False)
    lake.files.delete(staging.uri)
