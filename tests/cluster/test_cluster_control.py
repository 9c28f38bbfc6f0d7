"""`python -m cluster` against the running cluster: `up` is idempotent, a taken port is refused
before anything is written, `status` tells a stopped cluster from a ready one."""
import json
import os
import subprocess
import sys

from cluster import layout


def _cluster(*args: str, run_dir=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if run_dir is not None:
        env["WASURE_CLUSTER_DIR"] = str(run_dir)
    return subprocess.run([sys.executable, "-m", "cluster", *args], cwd=layout.REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _pids(run_dir=None) -> dict:
    report = json.loads(_cluster("status", "--json", run_dir=run_dir).stdout)
    return {name: c["pid"] for name, c in report["components"].items()}


def test_up_on_a_running_cluster_changes_nothing(cluster_env):
    before = _pids()
    again = _cluster("up")
    assert again.returncode == 0, again.stderr
    assert "already up" in again.stdout and cluster_env["WASURE_HDFS"] in again.stdout
    assert _pids() == before and all(before.values())


def test_up_refuses_a_port_another_process_holds(cluster_env, tmp_path):
    # a second cluster in another run dir: every port is the running cluster's
    other = tmp_path / "other-cluster"
    refused = _cluster("up", run_dir=other)
    port = layout.ports()["namenode_rpc"]
    assert refused.returncode == 1
    assert f"127.0.0.1:{port} (namenode_rpc, needed by namenode) is already in use by pid" in refused.stderr
    assert "WASURE_CLUSTER_NAMENODE_RPC_PORT" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (other / "pids").exists() and not (other / "data").exists() and not (other / "env").exists()


def test_status_of_a_cluster_that_is_not_running(cluster_env, tmp_path):
    stopped = _cluster("status", "--json", run_dir=tmp_path / "never-started")
    assert stopped.returncode == 1
    report = json.loads(stopped.stdout)
    assert not any(c["pid"] for c in report["components"].values()) and report["ready"] is False
    assert _cluster("status", "--quiet").returncode == 0
