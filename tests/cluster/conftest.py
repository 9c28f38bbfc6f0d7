"""Fixtures of the cluster tests: the local cluster that `make cluster-up` started (cluster/,
docs/cluster.md) and one SparkSession on it, built by jobs/runtime/spark.py like every wasure session.

These tests need real processes; they fail (never skip) when the cluster is not up. `make test`
leaves this folder out; `make test-cluster` starts the cluster, runs it, stops the cluster.
"""
import os
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))   # the `cluster` package (python -m cluster) lives at the repo root

from cluster import control, layout  # noqa: E402

EXECUTOR_WAIT_SECONDS = 90


@pytest.fixture(scope="session")
def cluster_env():
    """The URIs of the running cluster (.cluster/env), after checking that it is ready."""
    lay = layout.Layout.default()
    report = control.status(lay)
    if not report["ready"] or not lay.env_file.exists():
        pytest.fail(f"the local cluster is not up ({lay.root}): run `make cluster-up` or `make test-cluster`; "
                    f"status: hdfs={report['hdfs']} spark={report['spark']}")
    return layout.read_env(lay)


@pytest.fixture(scope="session")
def spark(cluster_env):
    """wasure's session (jobs.runtime.spark.get_spark) on the standalone master, once both executors are up."""
    names = ("WASURE_SPARK_MASTER", "WASURE_SPARK_CONF")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: cluster_env[name] for name in names})
    from jobs.runtime.spark import get_spark

    session = get_spark("wasure-cluster-tests")
    if session.sparkContext.master != cluster_env["WASURE_SPARK_MASTER"]:
        pytest.fail(f"a {session.sparkContext.master} session already runs in this process: "
                    "run tests/cluster in a pytest process of its own (make test-cluster)")
    deadline = time.monotonic() + EXECUTOR_WAIT_SECONDS
    # driver + one executor per worker; tasks scheduled before both register would all go to one
    while session.sparkContext._jsc.sc().getExecutorMemoryStatus().size() < 1 + layout.WORKERS:
        if time.monotonic() > deadline:
            pytest.fail(f"{layout.WORKERS} executors did not register within {EXECUTOR_WAIT_SECONDS} s")
        time.sleep(0.5)
    yield session
    session.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def hdfs_root(spark, cluster_env):
    """A fresh directory on the cluster's HDFS for this run, deleted afterwards."""
    root = f"{cluster_env['WASURE_HDFS']}/wasure-tests/{uuid.uuid4().hex[:12]}"
    yield root
    path = spark._jvm.org.apache.hadoop.fs.Path(root)
    path.getFileSystem(spark._jsc.hadoopConfiguration()).delete(path, True)
