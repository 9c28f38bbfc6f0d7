"""Encryption at rest of backups: Parquet modular encryption, one key per backup, crypto-shredding.

Every backup (jobs/backup.py) is written with Spark's built-in Parquet modular encryption:
parquet-java's ``PropertiesDrivenCryptoFactory`` encrypts each data file's footer and every column
(AES-GCM) under data keys wrapped with the backup's own master key (``parquet.encryption.uniform.key``).
The master key is a key of the key store (jobs/runtime/keys.py: the 0600 key file outside the lake), created
by `wasure backup` under a new id ``backup-YYYY-MM-DD-<8 hex>`` (random: two lakes sharing a key
file, or a day backed up again after its expiry, never share a key); the manifest records the id
only. Parquet asks a KMS client for master keys: wasure's (``wasure.udf.BackupKeyKms``, in
jars/udf/wasure/udf/BackupKeyKms.java, built by `make jars`) reads them from a Hadoop property.

Delta does not hand a DataFrame writer's options to the Parquet writer (delta-io/delta#6195: no
official modular encryption support), so the properties go on the session's Hadoop configuration,
only for the block that writes or reads a backup (``backup_keys``), and are removed in ``finally``
together with parquet's cached keys for that block's access token. Jobs hold the lake lease
(jobs/lake/lease.py), so no other write of this lake runs meanwhile. A read block sets no encryption
key: what it writes (restore's staging tables) is plain Parquet. The key never enters a plan (no
Column literal), the SQL conf, the lake or any output; Delta's log of a backup holds no min/max
statistics (``delta.dataSkippingNumIndexedCols=0``), only row counts and partition values
(region, subject bucket).

`wasure backup --expire` destroys a backup's key first, then its files (crypto-shredding: a copy of
its bytes left anywhere, a snapshot or a replica, is unreadable). A killed backup's temporary
directory names its key in ``_key_id`` so a re-run or the expiry destroys that key too. docs/backups.md.
"""
from __future__ import annotations

import datetime as dt
import secrets
import uuid
from contextlib import contextmanager
from typing import Iterable, Iterator

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.lake.backup_catalog import list_backups, read_manifest
from jobs.runtime.console import InputError
from jobs.runtime.keys import create_key, delete_key, env_key_name, load_key
from jobs.lake.layout import SUBJECT_BUCKET, Lake, subject_bucket, write_new_table
from jobs.policy import Table
from jobs.lake.storage import files_for, join

CRYPTO_FACTORY = "org.apache.parquet.crypto.keytools.PropertiesDrivenCryptoFactory"
KMS_CLASS = "wasure.udf.BackupKeyKms"
KEYS_PROPERTY = "wasure.backup.master.keys"        # BackupKeyKms.KEYS_PROPERTY
UNIFORM_KEY_PROPERTY = "parquet.encryption.uniform.key"
KEY_ID_FILE = "_key_id"                             # in a backup's directory: the id only, never the key
ENCRYPTION = "parquet-modular-encryption/AES_GCM_V1/uniform-key"


def new_key_id(day: dt.date) -> str:
    return f"backup-{day.isoformat()}-{secrets.token_hex(4)}"


def create_backup_key(day: dt.date, lake: Lake) -> tuple[str, bytes]:
    """(key id, key) of a new backup: a new key in the key file (bad key file: exit 2, nothing written)."""
    key_id = new_key_id(day)
    return key_id, create_key(key_id, lake)


def load_backup_key(day: dt.date, key_id: str, lake: Lake) -> bytes:
    """A backup's key; a missing one is bad input (exit 2) naming the backup and the key id."""
    try:
        return load_key(key_id, lake)
    except InputError as missing:
        raise InputError(f"the backup of {day.isoformat()} cannot be read: its key {key_id!r} is not usable ({missing}). "
                         "A key destroyed by `wasure backup --expire` cannot come back: that backup is crypto-shredded. "
                         "Nothing was written") from None


def write_key_marker(directory: str, key_id: str) -> None:
    """Name the key in a backup's (temporary) directory, a URI: the id only, never the key."""
    files_for(directory).write_text(join(directory, KEY_ID_FILE), key_id + "\n")


def marked_key_id(directory: str) -> str | None:
    marker, files = join(directory, KEY_ID_FILE), files_for(directory)
    if not files.is_file(marker):
        return None
    return files.read_text(marker).strip() or None


def check_destroyable(key_ids: list[str]) -> None:
    """Keys given by environment variables live in a secrets backend wasure cannot change: refuse
    the expiry before anything is destroyed, naming them."""
    held = [f"{k} ({env_key_name(k)})" for k in key_ids if env_key_name(k)]
    if held:
        raise InputError("backup key(s) given by environment variables cannot be destroyed by wasure: " + ", ".join(held)
                         + "; delete them in the secrets backend and unset the variables, then run again. Nothing was deleted")


def destroy_key(key_id: str | None, lake: Lake) -> bool:
    """Crypto-shred: remove the key from the key file (True if it was there)."""
    return delete_key(key_id, lake) if key_id else False


def require_kms(spark: SparkSession) -> None:
    """The KMS client class must be on Spark's classpath (`make jars`) before a backup is written or read."""
    from jobs.runtime.spark import jvm_class

    if jvm_class(spark, KMS_CLASS) is None:
        raise InputError(f"backups are encrypted (Parquet modular encryption) and need {KMS_CLASS} on Spark's classpath: "
                         "run `make jars` (on a cluster, add jars/cache/wasure-udf.jar to --jars). Nothing was written")


def _properties(keys: dict[str, bytes], encrypt_with: str | None, token: str) -> dict[str, str | None]:
    import base64

    return {
        "parquet.crypto.factory.class": CRYPTO_FACTORY,
        "parquet.encryption.kms.client.class": KMS_CLASS,
        KEYS_PROPERTY: ",".join(f"{k}:{base64.b64encode(v).decode()}" for k, v in sorted(keys.items())),
        # A token per block: parquet caches KMS clients and wrapped keys per token; a new one never
        # finds another block's keys, and its entries are dropped when the block ends.
        "parquet.encryption.key.access.token": token,
        "parquet.encryption.cache.lifetime.seconds": "60",
        "parquet.encryption.plaintext.footer": "false",
        "parquet.encryption.key.material.store.internally": "true",   # no key material files beside the data
        UNIFORM_KEY_PROPERTY: encrypt_with,                            # None: this block writes plain Parquet
    }


@contextmanager
def backup_keys(spark: SparkSession, keys: dict[str, bytes], encrypt_with: str | None = None) -> Iterator[None]:
    """Within the block, Spark reads Parquet files encrypted under ``keys`` (key id -> key) and, with
    ``encrypt_with``, encrypts every Parquet file it writes under that key. Plain files stay readable.
    Afterwards the configuration is as before and parquet's key caches of the block are empty."""
    if encrypt_with is not None and encrypt_with not in keys:
        raise ValueError(f"encrypt_with {encrypt_with!r} is not one of the given keys")
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    token = f"wasure-backup-{uuid.uuid4().hex}"
    wanted = _properties(keys, encrypt_with, token)
    before = {name: conf.get(name) for name in wanted}
    try:
        for name, value in wanted.items():
            if value is None:
                conf.unset(name)
            else:
                conf.set(name, value)
        yield
    finally:
        for name, value in before.items():
            if value is None:
                conf.unset(name)
            else:
                conf.set(name, value)
        spark._jvm.org.apache.parquet.crypto.keytools.KeyToolkit.removeCacheEntriesForToken(token)


def backup_partitions(table: Table) -> list[str]:
    """How a backup of ``table`` is partitioned: as the lake lays a policy table out."""
    return [table.region_column, SUBJECT_BUCKET]


def write_backup_table(target: Lake, table: Table, df: DataFrame, laid_out: bool = False) -> None:
    """The lake's layout (region / subject-bucket partitions), but no min/max statistics at all: a
    backup's log must not hold a value its encrypted files hide.

    ``laid_out``: ``df`` is read from a table partitioned the same way (``backup_partitions``), so
    the rows of each of its files belong to one backup partition already: they are written as read,
    file for file, without a shuffle of every row (10M events: 17 -> 12.5 s per backup,
    bench/analysis.md "Session 37"). Otherwise the rows are shuffled into one file per partition."""
    df = df.withColumn(SUBJECT_BUCKET, subject_bucket(F.col(table.subject_key), table.subject_buckets))
    partition_by = backup_partitions(table)
    if not laid_out:
        df = df.repartition(*[F.col(c) for c in partition_by])
    write_new_table(target.table_path(table), df, partition_by, stats_columns=[])


@contextmanager
def reading_backups(spark: SparkSession, lake: Lake, days: Iterable[dt.date] | None = None) -> Iterator[None]:
    """Within the block, Spark can read the given backups: their keys are loaded (a missing key:
    exit 2 naming the backup and the key id) and set for reads only. ``None``: every backup under
    the lake, the files of killed attempts included (the verification scans read them all)."""
    keys = {}
    for day in list_backups(lake) if days is None else days:
        key_id = read_manifest(lake, day).get("key_id")
        if key_id:                         # backups written before encryption have none
            keys[key_id] = load_backup_key(day, key_id, lake)
    if days is None and lake.files.is_dir(lake.backups):
        for stale in lake.files.glob(join(lake.backups, ".tmp-*")):
            key_id = marked_key_id(stale)
            try:
                if key_id:
                    keys[key_id] = load_key(key_id, lake)
            except InputError:
                pass                       # killed before its key existed: it wrote no data file
    if not keys:
        yield
        return
    require_kms(spark)
    with backup_keys(spark, keys):
        yield
