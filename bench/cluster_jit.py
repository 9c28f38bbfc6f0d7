"""JIT tiers and the class archive of a spark-submitted step on the local cluster, side by side in one run (docs/performance.md).

    make cluster-up
    .venv/bin/python -m bench.cluster_jit --step retention --plan C1,C1+archive,C1,C1+archive --name cluster_archive
    make cluster-down

What the cluster test's DAG does for each step (tests/cluster/test_cluster_pipeline.py): one
``spark-submit jobs/pipeline/submit.py STEP`` application per step, with the cluster's client confs
(``cluster.layout.client_spark_confs``) on the command line. The lake is the test's: the e2e policy
cut (4 tables), 80 subjects x 4 events, generated once on HDFS by a local Spark session that then
exits, and copied there once per run (every run starts from the same files). The runs alternate
between the two sides named in ``--plan``:

- ``tiered``: the JVM's default (C1, then C2 for hot methods), in the driver and the executors;
- ``C1``: ``-XX:TieredStopAtLevel=1`` in both (what ``client_spark_confs`` set in sessions 17-22);
- ``C1+archive``: that, and the JVMs map the class archive ``make jars`` built
  (``jobs.runtime.class_archive``; what ``client_spark_confs`` sets since session 23).

Per run: wall time of the application, and CPU seconds of its driver and executor JVMs per thread
kind (compiler threads, task threads, GC), sampled from /proc every 2 s.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bench.common import REPO, cmdline, command_line, copy_tree, write
from jobs.runtime import class_archive

SIDES = {"tiered": "", "C1": "-XX:TieredStopAtLevel=1", "C1+archive": "-XX:TieredStopAtLevel=1 {archive}"}
_ROLES = (("CoarseGrainedExecutorBackend", "executor"), ("deploy.SparkSubmit", "driver"))


def _role(pid: str) -> str | None:
    cmd = cmdline(pid)
    return next((role for marker, role in _ROLES if marker in cmd), None)


class JvmCpu:
    """CPU seconds per (role, thread kind) of the JVMs started after it (last sample of each thread)."""

    def __init__(self):
        self.before = {pid for pid in os.listdir("/proc") if pid.isdigit()}
        self.threads: dict[tuple[str, str, str], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        while not self._stop.wait(2.0):
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or pid in self.before or not (role := _role(pid)):
                    continue
                for tid in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else []:
                    try:
                        kind = re.sub(r"[-\d#]+$", "", Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip())
                        fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
                    except OSError:
                        continue
                    self.threads[(role, kind, tid)] = (int(fields[11]) + int(fields[12])) / tick

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        by_kind: collections.Counter = collections.Counter()
        for (role, kind, _tid), seconds in self.threads.items():
            by_kind[f"{role}: {kind}"] += seconds
        jit = sum(s for k, s in by_kind.items() if "CompilerThre" in k)
        return {"cpu_s": round(sum(by_kind.values()), 1), "jit_cpu_s": round(jit, 1),
                "by_thread_kind": {k: round(s, 1) for k, s in by_kind.most_common(12)}}


def prepare(work: Path, runs: int) -> dict:
    """The e2e lake on HDFS and one copy per run, written by a local Spark session in a child process
    (``--prepare``), which exits before the first application is submitted."""
    env = {k: v for k, v in os.environ.items() if k not in ("WASURE_SPARK_MASTER", "WASURE_SPARK_CONF")}
    subprocess.run([sys.executable, "-m", "bench.cluster_jit", "--prepare", str(work), "--runs", str(runs)],
                   cwd=REPO, env=env, check=True)
    return json.loads((work / "prepared.json").read_text())


def _prepare_here(work: Path, runs: int) -> None:
    from cluster import layout
    from jobs.lake.layout import Lake
    from jobs.runtime.spark import get_spark
    from tests.e2e import E2E_TABLES, keys_file, write_e2e_policy, write_small_lake

    env = layout.read_env(layout.Layout.default())
    policy = write_e2e_policy(work, (*E2E_TABLES, "health_measurements"), releases=("health_k5",),
                              statistics=("network_usage",))
    with keys_file(policy, work / "keys.json"):
        spark = get_spark("bench-cluster-jit-prepare")
        base = f"{env['WASURE_HDFS']}/wasure-bench/{uuid.uuid4().hex[:8]}"
        write_small_lake(spark, policy, Lake(f"{base}/lake0"), subjects=80, events_per_subject=4)
        for number in range(1, runs + 1):
            copy_tree(spark, f"{base}/lake0", f"{base}/lake{number}")
    (work / "prepared.json").write_text(json.dumps({"policy": str(policy.source), "base": base, "env": env}))


def submit(prepared: dict, work: Path, step: str, lake: str, java_options: str) -> dict:
    from cluster import layout
    from jobs.runtime.spark import cached_delta_jars

    confs = {"spark.jars": ",".join(cached_delta_jars()), **layout.client_spark_confs(),
             "spark.driver.extraJavaOptions": java_options, "spark.executor.extraJavaOptions": java_options,
             "spark.app.name": f"wasure-{step}"}
    command = ["spark-submit", "--master", prepared["env"]["WASURE_SPARK_MASTER"]]
    for key, value in confs.items():
        command += ["--conf", f"{key}={value}"]
    command += [str(REPO / "jobs" / "pipeline" / "submit.py"), step, "--policy", prepared["policy"], "--lake", lake,
                "--date", "2026-11-22", "--options", "{}"]
    env = {k: v for k, v in os.environ.items() if k not in ("WASURE_SPARK_MASTER", "WASURE_SPARK_CONF")}
    env.update(WASURE_KEYS=str(work / "keys.json"), PYSPARK_PYTHON=sys.executable,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cpu = JvmCpu()
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"spark-submit {step} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return {"s": round(seconds, 1), **cpu.stop()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--step", default="retention")
    parser.add_argument("--plan", default="C1,C1+archive,C1,C1+archive", help="sides in run order, comma-separated")
    parser.add_argument("--name", default="cluster_jit")
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)     # the child process of prepare()
    parser.add_argument("--runs", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    if args.prepare:
        _prepare_here(args.prepare, args.runs)
        return 0
    plan = args.plan.split(",")
    unknown = sorted(set(plan) - set(SIDES))
    if unknown:
        parser.error(f"unknown side(s) {unknown}: choose from {sorted(SIDES)}")
    work = Path(tempfile.mkdtemp(prefix="wasure-bench-jit-"))
    prepared = prepare(work, len(plan))
    runs = []
    for number, side in enumerate(plan, 1):
        options = SIDES[side].format(archive=class_archive.java_options())
        if "{archive}" in SIDES[side] and not class_archive.archive_path():
            raise SystemExit("side C1+archive: no class archive (make jars builds it)")
        result = submit(prepared, work, args.step, f"{prepared['base']}/lake{number}", options)
        runs.append({"side": side, **result})
        print(f"{side:7s} {args.step}: {result['s']:6.1f} s, JVM CPU {result['cpu_s']} s (JIT {result['jit_cpu_s']} s)",
              flush=True)
    sides = {side: {"runs_s": [r["s"] for r in runs if r["side"] == side]} for side in dict.fromkeys(plan)}
    write(args.name, {"command": command_line("bench.cluster_jit", argv), "parameters": vars(args),
                      "lake": "tests.e2e cut: 4 tables, 80 subjects x 4 events, on the local HDFS",
                      "sides": sides, "runs": runs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
