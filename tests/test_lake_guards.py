"""Guards every job runs before its first write: the lake's schema against the policy (drift), and
the lake lease that keeps a physical purge (VACUUM 0 h) and another writing job apart."""
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from jobs.lake.layout import SchemaDrift, read_current
from jobs.lake.lease import LakeBusy, holder, lake_lease
from jobs.policy import parse_policy

from conftest import EXAMPLE_POLICY

ROOT = Path(__file__).resolve().parent.parent


def _write_policy(tmp_path: Path, data: dict) -> str:
    import shutil

    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    if not (tmp_path / "hierarchies").exists():
        shutil.copytree(Path(EXAMPLE_POLICY).parent / "hierarchies", tmp_path / "hierarchies")
    return str(path)


# ------------------------------------------------------------------ schema drift

def test_an_unclassified_column_stops_pseudonymize_before_anything_is_published(spark, lake_copy, keys_env, tmp_path):
    from jobs.cli import app

    spark.sql(f"ALTER TABLE delta.`{lake_copy.root / 'raw' / 'accounts'}` ADD COLUMNS (nickname STRING)")
    versions = sorted(p.name for p in (lake_copy.root / "raw" / "accounts" / "_delta_log").glob("*.json"))
    policy_file = _write_policy(tmp_path, yaml.safe_load(open(EXAMPLE_POLICY)))
    result = CliRunner().invoke(app, ["pseudonymize", "--policy", policy_file, "--lake", str(lake_copy.root)])
    assert result.exit_code == 2, result.output
    assert "accounts.nickname" in " ".join(result.output.split())
    assert not (lake_copy.root / "pseudonymized").exists()
    assert not (lake_copy.root / "staging").exists()
    assert sorted(p.name for p in (lake_copy.root / "raw" / "accounts" / "_delta_log").glob("*.json")) == versions


@pytest.mark.parametrize("job", ["retention", "erasure", "backup", "anonymize", "statistics"])
def test_every_job_refuses_a_lake_that_drifted_from_the_policy(spark, generated_lake, keys_env, job):
    """A classified column missing from the lake (the policy names one the table lacks) is exit 2
    naming table.column, from every job, before its first write."""
    from jobs import anonymize, backup, erasure, retention, statistics

    data = yaml.safe_load(open(EXAMPLE_POLICY))
    data["tables"]["accounts"]["columns"]["middle_name"] = "identifying"
    policy = parse_policy(data, "drift.yaml")
    runs = {
        "retention": lambda: retention.run(spark, policy, generated_lake, retention.RetentionRequest(dt.date(2026, 11, 22))),
        "erasure": lambda: erasure.run(spark, policy, generated_lake, [erasure.RequestInput("drift-1", ["A000000100"], "gdpr")]),
        "backup": lambda: backup.run_backup(spark, policy, generated_lake, dt.date(2026, 11, 22)),
        "anonymize": lambda: anonymize.run(spark, policy, generated_lake, anonymize.ReleaseRequest("health_k5")),
        "statistics": lambda: statistics.run(spark, policy, generated_lake, statistics.StatisticsRequest.checked(policy)),
    }
    before = sorted(str(p.relative_to(generated_lake.root)) for p in generated_lake.root.rglob("*") if p.name != "_wasure_lease")
    with pytest.raises(SchemaDrift) as info:
        runs[job]()
    assert "accounts.middle_name" in str(info.value)
    after = sorted(str(p.relative_to(generated_lake.root)) for p in generated_lake.root.rglob("*") if p.name != "_wasure_lease")
    assert after == before


def test_the_schema_check_reads_the_checksum_file_not_the_table(spark, tmp_path):
    """The columns every job checks against the policy come from the latest checksum file: no Spark
    job (a plain read of 40 files lists them in one) and Delta's column order; after ALTER TABLE the
    new column is there; without the checksum file, a read answers."""
    from jobs.lake.table import LakeTable

    table = LakeTable(spark, str(tmp_path / "raw" / "t"))
    rows = spark.range(400).selectExpr("CAST(id AS STRING) AS account_id", "id % 2 AS flag", "'JP' AS region")
    table.write_new(rows.repartition(40), ["region"], stats_columns=[])
    spark.sql(f"DELETE FROM delta.`{table.uri}` WHERE account_id = '7'")
    dag = spark.sparkContext._jsc.sc().dagScheduler()
    jobs = dag.numTotalJobs()
    columns = table.columns()
    assert dag.numTotalJobs() == jobs
    assert columns == ["account_id", "flag", "region"] == spark.read.format("delta").load(table.uri).columns
    spark.sql(f"ALTER TABLE delta.`{table.uri}` ADD COLUMNS (nickname STRING)")
    assert table.columns() == ["account_id", "flag", "region", "nickname"]
    (tmp_path / "raw" / "t" / "_delta_log" / f"{table.version():020d}.crc").unlink()
    assert table.columns() == ["account_id", "flag", "region", "nickname"]


# ------------------------------------------------------------------ the lake lease

HOLD = """
import sys, time
from jobs.lake.lease import lake_lease
with lake_lease(sys.argv[1], "physical purge"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(root: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root), str(seconds)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_waits_for_the_lease_then_runs(tmp_path):
    proc = _holder(tmp_path, 2.0)
    messages: list[str] = []
    start = time.monotonic()
    with lake_lease(tmp_path, "erasure", messages.append, wait_seconds=60):
        waited = time.monotonic() - start
        assert holder(tmp_path)["job"] == "erasure" and holder(tmp_path)["pid"] == os.getpid()
    proc.wait(10)
    assert waited >= 1.0
    assert messages and "physical purge" in messages[0] and str(proc.pid) in messages[0]


def test_a_busy_lake_is_exit_2_naming_the_holder_and_a_killed_holder_frees_it(tmp_path):
    proc = _holder(tmp_path, 60.0)
    try:
        with pytest.raises(LakeBusy) as info:
            with lake_lease(tmp_path, "erasure", wait_seconds=0.5):
                pass
        assert "physical purge" in str(info.value) and str(proc.pid) in str(info.value)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    with lake_lease(tmp_path, "erasure", wait_seconds=5):      # the kernel released it with the process
        with lake_lease(tmp_path, "physical purge", wait_seconds=0):   # re-entrant in one process
            pass


def test_purge_and_closure_in_two_processes_lose_nothing(spark, keys_env, tmp_path):
    """A closure (its own purge: REORG + VACUUM 0 h) in a process of its own (`wasure erase`), and the nightly's
    retention with its physical purge here, on one lake at the same time: they run one after the
    other, every table reads in full afterwards, and each job's commits form one block. The e2e cut
    (three tables, 60 subjects): the lease, not the data, is under test."""
    from delta.tables import DeltaTable

    from jobs import retention
    from jobs.lake.layout import Lake
    from tests.e2e import write_e2e_policy, write_small_lake

    write_e2e_policy(tmp_path)
    data = yaml.safe_load((tmp_path / "policy.yaml").read_text())
    data["defaults"]["grace_days"] = 0
    data["defaults"]["max_delete_share"] = 1.0
    policy_file = _write_policy(tmp_path, data)
    policy = parse_policy(data, policy_file)
    lake = Lake.at(tmp_path / "lake")
    write_small_lake(spark, policy, lake)
    accounts = read_current(spark, lake.table_path(policy.tables["accounts"]))
    subject = accounts.where("status = 'open'").orderBy("account_id").first().account_id   # retention keeps it
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "WASURE_SPARK_UI": "0"}
    closure = subprocess.Popen([sys.executable, "-m", "jobs.cli", "erase", "--policy", policy_file, "--lake",
                                str(lake.root), "--subject", subject, "--source", "gdpr", "--request-id", "lease-1",
                                "--as-of", "2026-11-22"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    retention.run(spark, policy, lake, retention.RetentionRequest(dt.date(2026, 11, 22), force=True))
    out, err = closure.communicate(timeout=900)
    assert closure.returncode == 0, err[-2000:]
    blocks = []
    for name, table in policy.tables.items():
        path = lake.table_path(table)
        read_current(spark, path).write.format("noop").mode("overwrite").save()     # every referenced file exists
        history = DeltaTable.forPath(spark, path).history().where("userMetadata IS NOT NULL").collect()
        for row in history:
            job = "erasure" if '"job": "erasure"' in row.userMetadata else "retention"
            blocks.append((row.timestamp, job))
    jobs_in_time_order = [job for _t, job in sorted(blocks)]
    changes = sum(1 for a, b in zip(jobs_in_time_order, jobs_in_time_order[1:]) if a != b)
    assert set(jobs_in_time_order) == {"erasure", "retention"} and changes == 1, jobs_in_time_order
    accounts = read_current(spark, lake.table_path(policy.tables["accounts"]))
    assert accounts.where(accounts.account_id == subject).count() == 0
