"""Smoke test of the local cluster: real NameNode/DataNode and Spark standalone processes, no mocks.

A wasure session (jobs/runtime/spark.py) on spark://127.0.0.1:7077 writes, merges and deletes a Delta
table on hdfs://127.0.0.1:8020; both workers' executors do the work, with the Delta jars and
wasure-udf.jar shipped by ``spark.jars`` alone; the HMAC UDF gives the driver's pseudonyms, for
non-ASCII text too.
"""
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from delta.tables import DeltaTable
from pyspark.sql import functions as F

from anonymizers.pseudonym import keyed_hash, keyed_pseudonym, pseudonym_of
from jobs.lake.table import LakeTable
from cluster import control, layout

ROWS = 1_000


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)


def _hdfs_files(spark, uri: str) -> dict[str, list[str]]:
    """Every file under ``uri`` through Hadoop's FileSystem API (what `hadoop fs -ls -R` reads),
    with the DataNodes that hold its blocks."""
    jvm = spark._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    files = path.getFileSystem(spark._jsc.hadoopConfiguration()).listFiles(path, True)
    found = {}
    while files.hasNext():
        status = files.next()
        found[status.getPath().toString()] = sorted({name for block in status.getBlockLocations()
                                                     for name in block.getNames()})
    return found


def _customers(spark, n: int, partitions: int = 4):
    # spark.range, not a local list: a local relation could be evaluated on the driver alone
    return (spark.range(0, n, numPartitions=partitions)
            .select(F.col("id"), F.concat(F.lit("user"), F.col("id"), F.lit("@example.com")).alias("email"),
                    (F.col("id") % 97).alias("amount")))


def test_every_cluster_process_listens_on_loopback_only(spark):
    report = control.status(layout.Layout.default())
    assert report["ready"], report
    for name, component in report["components"].items():
        assert component["pid"], f"{name} is not running"
        assert component["listening"], f"{name} listens nowhere"
        outside = [a for a in component["listening"] if not a.startswith(f"{layout.HOST}:")]
        assert not outside, f"{name} (with its executors) listens beyond {layout.HOST}: {outside}"


def test_both_workers_run_executors_that_received_the_jars(spark, cluster_env):
    sc = spark.sparkContext
    master = _get_json(f"{cluster_env['WASURE_SPARK_MASTER_UI']}/json/")
    alive = [w for w in master["workers"] if w["state"] == "ALIVE"]
    assert len(alive) == layout.WORKERS
    assert sc.applicationId in {app["id"] for app in master["activeapps"]}
    for worker in alive:
        executors = _get_json(f"{worker['webuiaddress']}/json/")["executors"]
        assert sc.applicationId in {e["appid"] for e in executors}, f"no executor of the app on {worker['id']}"

    def where_am_i(_):
        import os as worker_os
        import time as worker_time

        worker_time.sleep(0.3)   # long enough that one executor cannot take every task
        here = worker_os.getcwd()   # the executor's dir: <work>/worker-N/<app id>/<executor id>
        yield here, sorted(f for f in worker_os.listdir(here) if f.endswith(".jar"))

    seen = dict(sc.parallelize(range(8), 8).mapPartitions(where_am_i).collect())
    work = layout.Layout.default().work
    assert {Path(d).relative_to(work).parts[0] for d in seen} == {f"worker-{n}" for n in range(1, layout.WORKERS + 1)}
    for jars in seen.values():
        assert "wasure-udf.jar" in jars and any(j.startswith("delta-spark_") for j in jars), jars


def test_delta_write_merge_delete_on_hdfs(spark, hdfs_root, cluster_env):
    table = f"{hdfs_root}/raw/customers"
    _customers(spark, ROWS).write.format("delta").save(table)
    back = spark.read.format("delta").load(table)
    assert back.count() == ROWS
    assert back.agg(F.sum("amount")).first()[0] == sum(i % 97 for i in range(ROWS))

    # upsert: ids 990..1009 -> 10 updated, 10 inserted
    changes = _customers(spark, 20).withColumn("id", F.col("id") + 990).withColumn("amount", F.lit(-1))
    (DeltaTable.forPath(spark, table).alias("t")
     .merge(changes.alias("c"), "t.id = c.id")
     .whenMatchedUpdate(set={"amount": "c.amount"})
     .whenNotMatchedInsertAll().execute())
    DeltaTable.forPath(spark, table).delete(F.col("id") % 7 == 0)

    ids = [i for i in range(ROWS + 10) if i % 7]
    final = spark.read.format("delta").load(table)
    assert final.count() == len(ids)
    assert final.filter(F.col("amount") == -1).count() == len([i for i in ids if i >= 990])
    operations = [r["operation"] for r in DeltaTable.forPath(spark, table).history().orderBy("version").collect()]
    assert operations == ["WRITE", "MERGE", "DELETE"]
    # The history jobs read (LakeTable.commits): the log's JSON through Hadoop's FileSystem.
    assert [c.operation for c in LakeTable(spark, table).commits()] == operations

    files = _hdfs_files(spark, table)
    assert f"{table}/_delta_log/00000000000000000000.json" in files
    parquet = [f for f in files if f.endswith(".parquet")]
    assert parquet and all(f.startswith(f"{cluster_env['WASURE_HDFS']}/") for f in files)
    datanode = f"{layout.HOST}:{layout.ports()['datanode_data']}"
    assert all(files[f] == [datanode] for f in parquet), "every block on the cluster's DataNode"
    assert not Path(urlparse(table).path).exists(), "nothing was written to the local disk"

    # the same files, seen by a separate process: `hadoop fs -ls -R` from the cluster's jars
    shell = subprocess.run([sys.executable, "-m", "cluster", "fs", "-ls", "-R", table],
                           cwd=layout.REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert shell.returncode == 0, shell.stderr
    listed = {line.split()[-1] for line in shell.stdout.splitlines() if line.startswith("-")}
    assert listed == set(files)


def test_hmac_udf_runs_on_the_executors(spark, hdfs_root):
    key = os.urandom(32)
    source = f"{hdfs_root}/raw/udf_input"
    _customers(spark, 200).write.format("delta").save(source)
    emails = spark.read.format("delta").load(source)

    jvm_hmac = keyed_hash(spark, key, encoding="hex", engine="jvm")
    hashed = emails.select("email", jvm_hmac(F.col("email")).alias("h")).collect()
    assert len(hashed) == 200
    assert all(row["h"] == pseudonym_of(key, row["email"], normalize=False, encoding="hex") for row in hashed)

    published = keyed_pseudonym(emails, "email", key, key_id="cluster-smoke", engine="jvm")
    plan = published._jdf.queryExecution().toString()
    assert key.hex() not in plan   # the key travels inside the UDF object, not as a literal
    got = dict(published.join(emails.withColumnRenamed("email", "plain"), "id")
               .select("plain", "email").collect())
    assert got == {row["email"]: pseudonym_of(key, row["email"]) for row in hashed}

    # Non-ASCII text is normalized on the executors too (UnicodeText.java, the workers' ICU4J),
    # with no Python worker in the plan, and gives the driver's (Python's) pseudonyms.
    texts = ["ＴＡＲＯ@Example.COM", "山田 太郎\u3000", "ΣΑΣ@Example.jp", "ｶﾞｰﾃﾞﾝ", "\U00031350x"]
    frame = spark.createDataFrame([(i, t) for i, t in enumerate(texts)], "id int, v string").repartition(2)
    normalized = keyed_pseudonym(frame, "v", key, key_id="cluster-smoke", engine="jvm")
    assert "ArrowEvalPython" not in normalized._jdf.queryExecution().executedPlan().toString()
    assert {r["id"]: r["v"] for r in normalized.collect()} == {i: pseudonym_of(key, t) for i, t in enumerate(texts)}
