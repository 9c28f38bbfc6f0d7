"""Encrypted backups (jobs/lake/backup_crypto.py, docs/backups.md) on a copy of the generated lake, real Spark + Delta.

One module fixture takes a backup after an attempt killed half-way; the tests read its files with
pyarrow (refused: encrypted) and as bytes (no personal value of the lake anywhere, log and manifest
included), read it through Spark only inside ``reading_backups``, check the key stays out of the
lake, the plans and the Spark configuration, restore it (the same rows as the lake, written as plain
Parquet), and expire it through the CLI: the key is destroyed first, and a restore is refused with
exit 2 naming the backup and the key id, nothing written.
"""
import base64
import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F
from typer.testing import CliRunner

from jobs import backup as backups
from jobs.lake import backup_crypto, backup_ledger
from jobs.runtime.console import InputError
from jobs.runtime.keys import create_key, delete_key, init_keys, load_key
from jobs.lake.layout import Lake, read_current
from jobs.policy import ColumnClass

from conftest import EXAMPLE_POLICY

DAY = dt.date(2026, 11, 20)
OTHER_DAY = dt.date(2026, 11, 21)
# Values that identify (numbers-only quasi-identifiers and measurements would match log noise).
PERSONAL = (ColumnClass.identifying, ColumnClass.individual_code, ColumnClass.property_damage,
            ColumnClass.linking_code, ColumnClass.free_text)


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def key_file(tmp_path_factory, policy):
    path = tmp_path_factory.mktemp("backup-keys") / "keys.json"
    old = os.environ.get("WASURE_KEYS")
    os.environ["WASURE_KEYS"] = str(path)
    init_keys([p.key_id for p in policy.purposes.values()] + [policy.defaults.ledger_key_id])
    yield path
    if old is None:
        os.environ.pop("WASURE_KEYS", None)
    else:
        os.environ["WASURE_KEYS"] = old


def _key_ids(key_file: Path) -> set[str]:
    return set(json.loads(key_file.read_text())["keys"])


def _snapshot(root: Path) -> dict:
    """Every file and its mtime, less the lake lease (jobs/lake/lease.py: a lock, not data)."""
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.name != "_wasure_lease"}


@pytest.fixture(scope="module")
def backed_up(spark, policy, generated_lake, key_file, tmp_path_factory):
    lake = Lake.at(tmp_path_factory.mktemp("encrypted") / "lake")
    shutil.copytree(generated_lake.root, lake.root)
    state: dict = {"lake": lake}
    # A backup killed after its first table: the next run destroys that attempt's key, then starts over.
    real_write, written = backup_crypto.write_backup_table, []

    def write_then_die(target, table, df, **layout):
        if written:
            raise Killed(table.path)
        real_write(target, table, df, **layout)
        written.append(table.path)

    backups.write_backup_table = write_then_die
    try:
        with pytest.raises(Killed):
            backups.run_backup(spark, policy, lake, DAY)
    finally:
        backups.write_backup_table = real_write
    state["killed_key_id"] = backup_crypto.marked_key_id(str(lake.root / "backups" / f".tmp-{DAY.isoformat()}"))
    state["keys_after_kill"] = _key_ids(key_file)
    state["backup"] = backups.run_backup(spark, policy, lake, DAY)
    state["key_id"] = state["backup"].key_id
    state["key"] = load_key(state["key_id"])
    state["keys_after_backup"] = _key_ids(key_file)
    return state


def _personal_values(spark, policy, lake: Lake) -> set[str]:
    """Every distinct value (6 characters or more) of every personal column of every table."""
    values: set[str] = set()
    for table in policy.tables.values():
        df = read_current(spark, lake.table_path(table))
        columns = [c for c in table.columns_of(*PERSONAL) if c in df.columns]
        for column in columns:
            part = df.select(F.col(column).cast("string").alias("v")).where(F.length("v") >= 6).distinct()
            values.update(r.v for r in part.collect())
    return values


def _files_holding(root: Path, values: set[str]) -> dict[str, int]:
    found = {}
    for path in (p for p in root.rglob("*") if p.is_file()):
        blob = path.read_bytes()
        hits = sum(1 for v in values if v.encode("utf-8") in blob)
        if hits:
            found[str(path.relative_to(root))] = hits
    return found


# ------------------------------------------------------------------ at rest

def test_backup_parquet_files_cannot_be_read_without_the_key(backed_up, policy):
    root = Path(backups.backup_dir(backed_up["lake"], DAY))
    data = [p for p in (root / "raw").rglob("*.parquet")]
    assert len(data) >= len(policy.tables)
    for path in data:
        head, tail = path.read_bytes()[:4], path.read_bytes()[-4:]
        assert head == tail == b"PARE", path                 # Parquet with an encrypted footer
        with pytest.raises(OSError):
            pq.read_table(path)
    assert backed_up["backup"].manifest["encryption"] == backup_crypto.ENCRYPTION
    assert backed_up["key_id"].startswith(f"backup-{DAY.isoformat()}-")


def test_no_personal_value_in_any_backup_file(spark, policy, backed_up, generated_lake, tmp_path):
    values = _personal_values(spark, policy, generated_lake)
    assert len(values) > 1000
    root = Path(backups.backup_dir(backed_up["lake"], DAY))
    assert _files_holding(root, values) == {}               # data files, _delta_log (JSON, .crc), manifest
    for commit in root.rglob("_delta_log/*.json"):
        for action in map(json.loads, commit.read_text().splitlines()):
            if "add" in action:
                assert set(json.loads(action["add"]["stats"])) <= {"numRecords", "tightBounds"}, commit
    # The scan does find the values once the backup is decrypted and written out as plain Parquet.
    plain = tmp_path / "decrypted"
    with backup_crypto.reading_backups(spark, backed_up["lake"], [DAY]):
        accounts = read_current(spark, Lake(root).table_path(policy.tables["accounts"]))
        accounts.write.option("compression", "none").parquet(str(plain))
    assert sum(_files_holding(plain, values).values()) > 100


def test_the_key_is_outside_the_lake_and_a_killed_attempts_key_is_destroyed(backed_up, key_file):
    key = backed_up["key"]
    forms = [key, base64.b64encode(key), key.hex().encode()]
    for path in (p for p in backed_up["lake"].root.rglob("*") if p.is_file()):
        blob = path.read_bytes()
        assert not any(f in blob for f in forms), path
    killed = backed_up["killed_key_id"]
    assert killed and killed in backed_up["keys_after_kill"]
    assert killed not in backed_up["keys_after_backup"] and backed_up["key_id"] in backed_up["keys_after_backup"]
    assert not (backed_up["lake"].root / "backups" / f".tmp-{DAY.isoformat()}").exists()
    assert (key_file.stat().st_mode & 0o777) == 0o600


# ------------------------------------------------------------------ reading with the key

def _conf_values(spark) -> dict:
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    names = ["parquet.crypto.factory.class", backup_crypto.KEYS_PROPERTY, backup_crypto.UNIFORM_KEY_PROPERTY,
             "parquet.encryption.kms.client.class"]
    return {n: conf.get(n) for n in names}


def test_spark_reads_a_backup_only_inside_reading_backups(spark, policy, backed_up, generated_lake, capsys):
    table = policy.tables["accounts"]
    path = Lake(backups.backup_dir(backed_up["lake"], DAY)).table_path(table)
    with pytest.raises(Exception, match="FAILED_READ_FILE|encrypted"):
        read_current(spark, path).select(table.subject_key).collect()
    forms = [base64.b64encode(backed_up["key"]).decode(), backed_up["key"].hex()]
    with backup_crypto.reading_backups(spark, backed_up["lake"], [DAY]):
        restored = read_current(spark, path)
        source = read_current(spark, generated_lake.table_path(table))
        assert restored.count() == source.count() and restored.exceptAll(source).count() == 0
        restored.explain(mode="extended")
        plans = capsys.readouterr().out + restored._jdf.queryExecution().toString()
        assert not any(f in plans for f in forms)
        assert not any(f in json.dumps(dict(spark.conf.getAll)) for f in forms)
    assert set(_conf_values(spark).values()) == {None}       # nothing left in the session's Hadoop conf
    with pytest.raises(Exception, match="FAILED_READ_FILE|encrypted"):
        read_current(spark, path).select(table.subject_key).collect()


def test_the_value_scan_reads_encrypted_backups_inside_reading_backups(spark, policy, backed_up, generated_lake):
    """The erasure's verification scans read every Parquet file under the lake, other backups
    included: with the backups' keys set (reading_backups) they find values in them as before."""
    from jobs.lake.residue import identifier_values, scan_for_values

    accounts = read_current(spark, generated_lake.table_path(policy.tables["accounts"]))
    values = identifier_values(accounts.orderBy("account_id").limit(5), ["email"])
    root = str(backups.backup_dir(backed_up["lake"], DAY))
    with pytest.raises(Exception, match="FAILED_READ_FILE|encrypted"):
        scan_for_values(spark, root, values)
    with backup_crypto.reading_backups(spark, backed_up["lake"]):
        findings = scan_for_values(spark, root, values)
    assert findings and {f.kind for f in findings} == {"parquet"}
    assert all("/raw/accounts/" in f.path for f in findings)


def test_tables_written_after_a_backup_are_plain_parquet(spark, backed_up, tmp_path):
    target = str(tmp_path / "after")
    spark.createDataFrame([("A000000001", "JP")], "account_id string, region string").write.format("delta").save(target)
    files = list(Path(target).rglob("*.parquet"))
    assert files and sum(pq.read_table(f).num_rows for f in files) == 1          # plain Parquet


def test_every_read_of_a_backup_without_its_key_is_refused_naming_it(spark, policy, backed_up):
    """The erasure's search of backups (subjects_in_backups) loads every backup's key first: a backup
    whose key is not in the key store is exit 2 naming its date and key id, before any Spark job."""
    lake, day = backed_up["lake"], dt.date(2026, 11, 19)
    lost = backup_crypto.new_key_id(day)
    shutil.copytree(backups.backup_dir(lake, DAY), backups.backup_dir(lake, day))
    manifest = backups.read_manifest(lake, day) | {"date": day.isoformat(), "key_id": lost}
    (Path(backups.backup_dir(lake, day)) / backups.MANIFEST).write_text(json.dumps(manifest))
    try:
        with pytest.raises(InputError, match=f"backup of {day.isoformat()}.*{lost}"):
            backup_ledger.subjects_in_backups(spark, policy, lake, ["A000000001"], [DAY, day])
        found = backup_ledger.subjects_in_backups(spark, policy, lake, ["A000000001", "A000999999"], [DAY])
        assert found == {"A000000001": [DAY.isoformat()]}
    finally:
        shutil.rmtree(backups.backup_dir(lake, day))
    assert set(_conf_values(spark).values()) == {None}


def test_a_table_laid_out_as_its_backup_is_copied_file_for_file_without_a_shuffle(spark, policy, lake_copy, key_file,
                                                                                   monkeypatch):
    """A table partitioned by (region, subject bucket) is written as read: no shuffle of its rows, as
    many files as the lake's table has. One partitioned otherwise (here: devices rewritten without
    partitions, in 3 files) is shuffled into the backup's layout, one file per partition."""
    from jobs.lake.table import LakeTable

    devices = lake_copy.table_path(policy.tables["devices"])
    rows = read_current(spark, devices).drop("subject_bucket").localCheckpoint()
    rows.repartition(3).write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(devices)
    assert LakeTable(spark, devices).partition_columns() == []
    plans, real = {}, backup_crypto.write_new_table

    def recording_plans(path, df, partition_by, **kwargs):
        plans[path.rstrip("/").rsplit("/raw/", 1)[1]] = df._jdf.queryExecution().executedPlan().toString()
        real(path, df, partition_by, **kwargs)

    monkeypatch.setattr(backup_crypto, "write_new_table", recording_plans)
    report = backups.run_backup(spark, policy, lake_copy, DAY)
    backup = Lake(backups.backup_dir(lake_copy, DAY))
    for name, table in policy.tables.items():
        shuffled = "Exchange hashpartitioning" in plans[table.path.removeprefix("raw/")]
        assert shuffled == (name == "devices"), name
        copy, source = LakeTable(spark, backup.table_path(table)), LakeTable(spark, lake_copy.table_path(table))
        assert copy.partition_columns() == ["region", "subject_bucket"], name
        assert int(report.manifest["tables"][name]["rows"]) == source.row_count(), name
        per_partition = {}
        for path in Path(backup.table_path(table).removeprefix("file:")).rglob("*.parquet"):
            per_partition[path.parent] = per_partition.get(path.parent, 0) + 1
        if name == "devices":
            assert set(per_partition.values()) == {1}, per_partition
        else:
            assert sum(per_partition.values()) == copy.checksum()["numFiles"] == source.checksum()["numFiles"], name


# ------------------------------------------------------------------ restore and expiry (CLI)

def test_restore_gives_the_lake_rows_back_as_plain_parquet(spark, policy, backed_up, generated_lake):
    report = backups.run_restore(spark, policy, backed_up["lake"], DAY, as_of=DAY)
    for name, table in policy.tables.items():
        restored = read_current(spark, backed_up["lake"].table_path(table))
        source = read_current(spark, generated_lake.table_path(table))
        assert report.tables[name].rows_restored == source.count() == restored.count(), name
        assert restored.exceptAll(source).count() == 0, name
    files = list((backed_up["lake"].root / "raw").rglob("*.parquet"))
    assert files and all(f.read_bytes()[:4] == b"PAR1" for f in files)
    assert set(_conf_values(spark).values()) == {None}


def test_expiry_destroys_the_key_first_then_restore_exits_2(spark, policy, backed_up, key_file, monkeypatch):
    from jobs.cli import app

    lake, key_id = backed_up["lake"], backed_up["key_id"]
    args = ["--policy", EXAMPLE_POLICY, "--lake", str(lake.root)]
    expiry = (backups.expires_on(policy, DAY)).isoformat()
    # Killed while deleting the files: the key is already gone, what is left cannot be read.
    from jobs.lake.storage import LocalFiles

    real_delete = LocalFiles.delete

    def killed_delete(self, uri):
        if str(uri).startswith(lake.backups + "/"):
            raise Killed(str(uri))
        real_delete(self, uri)

    monkeypatch.setattr(LocalFiles, "delete", killed_delete)
    with pytest.raises(Killed):
        backups.expire_backups(spark, policy, lake, backups.expires_on(policy, DAY))
    monkeypatch.setattr(LocalFiles, "delete", real_delete)
    assert key_id not in _key_ids(key_file) and (Path(backups.backup_dir(lake, DAY)) / backups.MANIFEST).is_file()
    before = _snapshot(lake.root)
    result = CliRunner().invoke(app, ["restore", DAY.isoformat(), *args])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert DAY.isoformat() in text and key_id in text and "Nothing was written" in text
    assert _snapshot(lake.root) == before
    # The expiry run again: the files go too; a restore is still exit 2.
    result = CliRunner().invoke(app, ["backup", "--expire", "--date", expiry, *args])
    assert result.exit_code == 0, result.output
    assert not Path(backups.backup_dir(lake, DAY)).exists() and key_id not in _key_ids(key_file)
    result = CliRunner().invoke(app, ["restore", DAY.isoformat(), *args])
    assert result.exit_code == 2 and DAY.isoformat() in " ".join(result.output.split())


def test_expiry_refuses_a_backup_key_held_in_the_environment(spark, policy, backed_up, monkeypatch):
    lake = backed_up["lake"]
    day_dir = Path(backups.backup_dir(lake, OTHER_DAY))
    day_dir.mkdir(parents=True)
    key_id = backup_crypto.new_key_id(OTHER_DAY)
    (day_dir / backups.MANIFEST).write_text(json.dumps({"date": OTHER_DAY.isoformat(), "key_id": key_id, "tables": {}}))
    env = "WASURE_KEY_" + "".join(c if c.isalnum() else "_" for c in key_id).upper()
    monkeypatch.setenv(env, base64.b64encode(os.urandom(32)).decode())
    before = _snapshot(lake.root)
    try:
        with pytest.raises(InputError, match=env):
            backups.expire_backups(spark, policy, lake, backups.expires_on(policy, OTHER_DAY))
        assert _snapshot(lake.root) == before
    finally:
        shutil.rmtree(day_dir)


# ------------------------------------------------------------------ the key store

def test_backup_keys_are_created_once_and_destroyed_in_the_key_file(key_file, tmp_path):
    key_id = backup_crypto.new_key_id(DAY)
    key = create_key(key_id)
    assert len(key) == 32 and load_key(key_id) == key
    with pytest.raises(InputError, match="exists already"):
        create_key(key_id)
    assert delete_key(key_id) is True and delete_key(key_id) is False
    with pytest.raises(InputError, match=key_id):
        load_key(key_id)
    assert (key_file.stat().st_mode & 0o777) == 0o600
