"""The nightly, closure and backup-lifecycle DAGs on the real cluster, against the embedded run.

Cluster run: Airflow's ``dag.test()`` in cluster mode, so every step is a SparkSubmitOperator that
submits jobs/pipeline/submit.py to spark://127.0.0.1:7077 (the `spark_default` connection), with the lake on
hdfs://127.0.0.1:8020. Embedded run: the same nightly DAG in embedded mode (Spark local, in this
process) on a byte-for-byte copy of the same generated lake on the local disk. Checked: the same row
counts, pseudonyms, release classes and statistics; the gates' Data Docs on HDFS; a closure of one
subject through the cluster leaves it in no current raw or pseudonymized table on HDFS, and after the
grace the backup lifecycle's erasure step on the cluster purges it from every file on HDFS (the
superseded ones included) and closes the request.

Runs in a pytest process of its own (make test-cluster): the cluster has two one-core workers and an
application takes both, so no other session may hold them while the DAGs submit theirs.
"""
import datetime as dt
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

_HOME = tempfile.mkdtemp(prefix="wasure-airflow-cluster-")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["WASURE_AIRFLOW_RETRIES"] = "0"

from cluster import layout  # noqa: E402
from tests.e2e import E2E_TABLES, REPO, keys_file, write_e2e_policy, write_small_lake  # noqa: E402

os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
pytestmark = pytest.mark.timeout(3600)

RUN_DAY = dt.date(2026, 11, 22)
TABLES = (*E2E_TABLES, "health_measurements")
NIGHTLY_TASKS = ["backup", "retention", "pseudonymize", "anonymize", "statistics", "gates", "publish", "physical_purge"]


def _dagbag(mode: str):
    from airflow.dag_processing.dagbag import DagBag

    os.environ["WASURE_AIRFLOW_MODE"] = mode
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag.dags


def _run(dag, conf: dict, hour: int, day: dt.date = RUN_DAY) -> tuple[dict, str]:
    run = dag.test(logical_date=dt.datetime.combine(day, dt.time(hour), tzinfo=dt.timezone.utc), run_conf=conf)
    states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in run.get_task_instances()}
    return states, str(getattr(run.state, "value", run.state))


@pytest.fixture(scope="module")
def setup(cluster_env, tmp_path_factory):
    """Policy, keys, one local Spark session, the lake generated on HDFS and copied to local disk."""
    from airflow.utils import db

    from jobs.lake.layout import Lake
    from jobs.runtime.spark import cached_delta_jars, get_spark

    db.initdb()
    work = tmp_path_factory.mktemp("cluster-pipeline")
    policy = write_e2e_policy(work, TABLES, releases=("health_k5",), statistics=("network_usage",))
    with keys_file(policy, work / "keys.json"):
        for name in ("WASURE_SPARK_MASTER", "WASURE_SPARK_CONF"):
            os.environ.pop(name, None)                  # this process: Spark local (the embedded run)
        spark = get_spark("wasure-cluster-pipeline")
        hdfs = Lake(f"{cluster_env['WASURE_HDFS']}/wasure-it/{uuid.uuid4().hex[:8]}/lake")
        write_small_lake(spark, policy, hdfs, subjects=80, events_per_subject=4)
        local = Lake(str(work / "lake"))
        jvm, conf = spark._jvm, spark._jsc.hadoopConfiguration()
        source, target = jvm.org.apache.hadoop.fs.Path(hdfs.uri), jvm.org.apache.hadoop.fs.Path(local.uri)
        assert jvm.org.apache.hadoop.fs.FileUtil.copy(source.getFileSystem(conf), source, target.getFileSystem(conf),
                                                      target, False, conf)
        # What a deployment sets once: the connection, the jars, the cluster's client confs.
        os.environ.update({
            "AIRFLOW_CONN_SPARK_DEFAULT": cluster_env["WASURE_SPARK_MASTER"],
            "AIRFLOW_VAR_WASURE_SPARK_CONF": json.dumps({"spark.jars": ",".join(cached_delta_jars()),
                                                         **layout.client_spark_confs()}),
            "WASURE_SPARK_PACKAGES": "",                 # the jars above: no Maven at run time
            "PYSPARK_PYTHON": sys.executable,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",   # spark-submit
        })
        yield {"spark": spark, "policy": policy, "hdfs": hdfs, "local": local}


@pytest.fixture(scope="module")
def nightly(setup):
    policy, conf = setup["policy"], {"policy": setup["policy"].source, "as_of": RUN_DAY.isoformat()}
    cluster = _run(_dagbag("cluster")["wasure_nightly"], {**conf, "lake": setup["hdfs"].uri}, hour=1)
    embedded = _run(_dagbag("embedded")["wasure_nightly"], {**conf, "lake": setup["local"].uri}, hour=2)
    assert policy.releases and policy.statistics
    return {"cluster": cluster, "embedded": embedded}


def _datasets(setup, lake) -> dict[str, str]:
    """Every Delta table of the lake: raw, pseudonymized, anonymized, statistics (relative path -> URI)."""
    from jobs.lake.layout import is_delta
    from jobs.lake.storage import join, relative

    files = lake.files
    found = {}
    for pattern in (("raw", "*"), ("pseudonymized", "*", "*"), ("anonymized", "*", "*"), ("statistics", "*", "*")):
        for uri in files.glob(join(lake.uri, *pattern)):
            if is_delta(uri):
                found[relative(uri, lake.uri)] = uri
    return found


def test_nightly_on_the_cluster_matches_the_embedded_run(nightly, setup):
    from jobs.lake.layout import read_current

    assert nightly["cluster"] == ({name: "success" for name in NIGHTLY_TASKS}, "success"), nightly["cluster"]
    assert nightly["embedded"] == ({name: "success" for name in NIGHTLY_TASKS}, "success"), nightly["embedded"]
    spark = setup["spark"]
    on_hdfs, on_disk = _datasets(setup, setup["hdfs"]), _datasets(setup, setup["local"])
    assert set(on_hdfs) == set(on_disk)
    kinds = {path.split("/")[0] for path in on_hdfs}
    assert kinds == {"raw", "pseudonymized", "anonymized", "statistics"}, kinds
    for path in sorted(on_hdfs):
        a, b = read_current(spark, on_hdfs[path]), read_current(spark, on_disk[path])
        assert sorted(a.columns) == sorted(b.columns), path
        b = b.select(*a.columns)
        rows = a.count()
        # The same rows (pseudonyms, release classes, statistics cells), as multisets.
        assert rows == b.count() and a.exceptAll(b).count() == 0 and b.exceptAll(a).count() == 0, path
        assert rows > 0 or path.startswith("statistics"), path


def test_gate_data_docs_are_written_to_the_lake_uri(nightly, setup):
    hdfs = setup["hdfs"]
    index = f"{hdfs.docs}/gates/nightly-{RUN_DAY.isoformat()}/index.html"
    assert index.startswith("hdfs://") and hdfs.files.is_file(index)
    assert "validations" in hdfs.files.read_text(index)
    assert hdfs.files.glob(f"{hdfs.docs}/pseudonymize/*/service/index.html")
    manifest = json.loads(hdfs.files.read_text(hdfs.state("published") + f"/{RUN_DAY.isoformat()}.json"))
    assert manifest["gate_docs"] == f"docs/gates/nightly-{RUN_DAY.isoformat()}/index.html" and manifest["datasets"]


@pytest.fixture(scope="module")
def erased(nightly, setup):
    """One subject closed through the cluster (the closure DAG in cluster mode)."""
    from pyspark.sql import functions as F

    from jobs.lake.layout import read_current

    spark, policy, hdfs = setup["spark"], setup["policy"], setup["hdfs"]
    accounts = read_current(spark, hdfs.table_path(policy.tables["accounts"]))
    subject = accounts.where(F.col("account_id") != "A000000007").orderBy("account_id").first().account_id
    closure = _run(_dagbag("cluster")["wasure_account_closure"],
                   {"subject_ids": [subject], "request_id": "cluster-closure-1", "source": "account_closure",
                    "dry_run": False, "policy": policy.source, "lake": hdfs.uri}, hour=3)
    receipt = json.loads(hdfs.files.read_text(f"{hdfs.receipts}/cluster-closure-1.json"))
    return {"subject": subject, "closure": closure, "receipt": receipt}


def test_closure_on_the_cluster_erases_the_subject_on_hdfs(erased, setup):
    from pyspark.sql import functions as F

    from anonymizers.pseudonym import pseudonym_forms
    from jobs.runtime.keys import load_purpose_keys
    from jobs.lake.layout import read_current

    states, run_state = erased["closure"]
    assert run_state == "success" and set(states.values()) == {"success"}, states
    assert erased["receipt"]["state"] == "backups_quarantined"          # the physical purge waits for the grace
    assert sum(erased["receipt"]["rows_removed"].values()) > 0
    spark, policy, hdfs, subject = setup["spark"], setup["policy"], setup["hdfs"], erased["subject"]
    pseudonyms = pseudonym_forms(load_purpose_keys(policy, ["service"], hdfs)["service"][1], subject)
    for path, uri in _datasets(setup, hdfs).items():
        current = read_current(spark, uri)
        if "account_id" not in current.columns:
            continue
        if path.startswith("raw"):
            assert current.where(F.col("account_id") == subject).count() == 0, path
        elif path.startswith("pseudonymized"):
            assert current.where(F.col("account_id").isin(list(pseudonyms))).count() == 0, path
    assert subject not in json.dumps(erased["receipt"])


@pytest.fixture(scope="module")
def purged(erased, setup):
    """After the grace: the backup lifecycle's erasure step (purge, verify, close) on the cluster."""
    policy, hdfs = setup["policy"], setup["hdfs"]
    step = _dagbag("cluster")["wasure_backup_lifecycle"].partial_subset(["advance_erasures"], include_upstream=False)
    day = RUN_DAY + dt.timedelta(days=max(policy.grace_days(name) for name in policy.tables) + 1)
    run = _run(step, {"policy": policy.source, "lake": hdfs.uri}, hour=4, day=day)
    receipt = json.loads(hdfs.files.read_text(f"{hdfs.receipts}/cluster-closure-1.json"))
    return {"run": run, "receipt": receipt}


def test_after_the_grace_no_file_on_hdfs_holds_the_subject(purged, erased, setup):
    from pyspark.sql import functions as F

    from anonymizers.pseudonym import pseudonym_forms
    from jobs.runtime.keys import load_purpose_keys

    assert purged["run"] == ({"advance_erasures": "success"}, "success"), purged["run"]
    assert purged["receipt"]["state"] == "closed" and purged["receipt"]["purged_on"], purged["receipt"]
    spark, policy, hdfs, subject = setup["spark"], setup["policy"], setup["hdfs"], erased["subject"]
    pseudonyms = list(pseudonym_forms(load_purpose_keys(policy, ["service"], hdfs)["service"][1], subject))
    scanned = 0
    for path, uri in _datasets(setup, hdfs).items():
        if not path.startswith(("raw", "pseudonymized")):
            continue
        # Every data file under the table, read as plain Parquet: deletion vectors and the Delta log
        # do not hide a row here, and files no version references any more are read too.
        files = (spark.read.option("recursiveFileLookup", "true").option("pathGlobFilter", "part-*.parquet")
                 .parquet(uri))
        if "account_id" not in files.columns:
            continue
        wanted = [subject] if path.startswith("raw") else pseudonyms
        assert files.where(F.col("account_id").isin(wanted)).count() == 0, path
        scanned += 1
    assert scanned >= 4


def test_the_lease_on_hdfs_shuts_out_a_second_job_but_not_a_dead_one(setup, monkeypatch):
    from jobs.lake.lease import LakeBusy, RemoteLease, holder, lake_lease

    hdfs = setup["hdfs"]
    with lake_lease(hdfs.uri, "retention"):
        assert holder(hdfs.uri)["job"] == "retention"
        with pytest.raises(LakeBusy, match=r"busy: retention \(pid"):
            RemoteLease(hdfs.uri, "erasure").acquire(lambda _m: None, 0.5)
    assert holder(hdfs.uri) is None                          # released: the lease file is gone
    assert RemoteLease(hdfs.uri, "killed job")._try_create()  # a job killed while holding it: no heartbeat
    monkeypatch.setenv("WASURE_LEASE_STALE", "1")
    told = []
    with lake_lease(hdfs.uri, "retention", told.append, wait_seconds=10):
        assert holder(hdfs.uri)["job"] == "retention"
    assert any("stopped heart-beating" in m for m in told)


def test_an_unreachable_or_missing_lake_is_exit_2_naming_the_uri(setup, cluster_env):
    import subprocess

    env = {**os.environ, "WASURE_SPARK_UI": "0"}
    for lake, message in ((f"{cluster_env['WASURE_HDFS']}/no-such-lake", "does not exist"),
                          ("hdfs://127.0.0.1:1/lake", "cannot be reached")):
        run = subprocess.run([sys.executable, "-m", "jobs.cli", "status", "--policy", setup["policy"].source, "--lake", lake],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 2, run.stderr[-2000:]
        assert lake in run.stdout + run.stderr and message in run.stdout + run.stderr
