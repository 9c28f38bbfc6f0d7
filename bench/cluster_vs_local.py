"""k-anonymity and erasure on the local cluster beside local[2], in one run (docs/performance.md).

    make bench-cluster     # = .venv/bin/python -m bench.run --only cluster_10M (starts the cluster if down)
    .venv/bin/python -m bench.cluster_vs_local --rows 100000 --subjects 2000 --events 20 --name cluster_small

Two sides, each in a process of its own, one after the other (never two Spark applications at once
on the 2-core box), same code and same data:
- ``local``: Spark ``local[2]`` in the bench process, the lake on the local disk.
- ``cluster``: the Spark standalone master with two one-core workers and the lake on HDFS, all on
  127.0.0.1 (``make cluster-up``, docs/cluster.md). The driver is the bench process (client mode).
Workloads, each timed once per side (10M rows take minutes; the two sides are the comparison):
- k-anonymity: Mondrian (k) over ``--rows`` synthetic Adult-like rows (bench.kanonymity), read from
  and written to the side's lake.
- erasure: ``--erase`` subjects of the generated ``--subjects`` x ``--events`` lake
  (bench/.lakes cache; copied to HDFS untimed for the cluster side), the whole request through
  ``jobs.erasure.run`` (delete, backups quarantined, receipt).
The result has each side's seconds and completed Spark stages per workload and the ratio
cluster / local. Executors get ``--executor-memory`` each; local[2] shares its 8 GiB driver heap.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import (REPO, START, bench_env, command_line, copy_tree, init_all_keys, last_stage_id, peak_memory,
                          stage_profile, synthetic_lake, write)

SIDES = ("local", "cluster")
EXECUTOR_WAIT_SECONDS = 120


def _cluster_layout():
    sys.path.insert(0, str(REPO))
    from cluster import control, layout

    return control, layout, layout.Layout.default()


def _session_env(side: str, work: Path, executor_memory: str) -> str:
    """Point jobs.runtime.spark at the side's master; returns the lake root URI of the side."""
    if side == "local":
        os.environ["WASURE_SPARK_MASTER"] = "local[2]"
        os.environ.pop("WASURE_SPARK_CONF", None)
        return str(work / "lakes")
    _control, layout, lay = _cluster_layout()
    env = layout.read_env(lay)
    confs = {**layout.client_spark_confs(), "spark.executor.memory": executor_memory}
    conf_file = work / "spark-cluster.conf"
    conf_file.write_text("".join(f"{k} {v}\n" for k, v in confs.items()))
    os.environ.update({"WASURE_SPARK_MASTER": env["WASURE_SPARK_MASTER"], "WASURE_SPARK_CONF": str(conf_file)})
    return f"{env['WASURE_HDFS']}/wasure-bench/{uuid.uuid4().hex[:10]}"


def _wait_for_executors(spark, wanted: int) -> None:
    deadline = time.monotonic() + EXECUTOR_WAIT_SECONDS
    while spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() < 1 + wanted:
        if time.monotonic() > deadline:
            raise SystemExit(f"{wanted} executors did not register within {EXECUTOR_WAIT_SECONDS} s")
        time.sleep(0.5)


def _timed(spark, fn) -> dict:
    stage0 = last_stage_id(spark)
    start = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - start
    profile = stage_profile(spark, stage0, top=3)
    return {"seconds": round(seconds, 2), "stages": profile.get("stages"), "tasks": profile.get("tasks"),
            "executor_run_s": profile.get("executor_run_s"), "value": value}


def run_side(args) -> dict:
    """One side: both workloads in this process's one Spark session."""
    work = Path(tempfile.mkdtemp(prefix=f"wasure-bench-{args.side}-"))
    bench_env(work)
    root = _session_env(args.side, work, args.executor_memory)
    from pyspark.sql import functions as F

    from anonymizers.mondrian import mondrian_anonymize
    from bench.kanonymity import SYNTH_QIS, synthetic_hierarchies, synthetic_table
    from jobs import erasure
    from jobs.lake.layout import Lake, read_current
    from jobs.policy import default_policy_path, load_policy
    from jobs.runtime.spark import get_spark
    from jobs.lake.storage import files_for

    spark = get_spark(f"wasure-bench-{args.side}")
    if args.side == "cluster":
        _wait_for_executors(spark, 2)
    out: dict = {"side": args.side, "master": spark.sparkContext.master, "lake_root": root.split("/wasure-bench/")[0],
                 "code": START}                  # each side is its own process: the code it ran
    try:
        # k-anonymity: source written untimed, then Mondrian from the side's lake to the side's lake.
        source, release = f"{root}/synthetic", f"{root}/release"
        synthetic_table(spark, args.rows).write.format("delta").save(source)
        hierarchies = synthetic_hierarchies()

        def anonymize() -> int:
            df = spark.read.format("delta").load(source)
            mondrian_anonymize(df, SYNTH_QIS, hierarchies, args.k).write.format("delta").mode("overwrite").save(release)
            return int(spark.sql(f"DESCRIBE DETAIL delta.`{release}`").first().numFiles)

        result = _timed(spark, anonymize)
        result["released_rows"] = read_current(spark, release).count()
        out["kanonymity"] = {**result, "rows": args.rows, "k": args.k, "output_files": result.pop("value")}
        print(f"[{args.side}] k-anonymity {args.rows:,} rows k={args.k}: {result['seconds']:.1f} s", flush=True)

        # erasure: the generated lake (cached locally), on the side's file system.
        policy = load_policy(default_policy_path())
        init_all_keys(policy)
        generated = work / "generated"
        counts, _generate_s = synthetic_lake(spark, policy, generated, args.subjects, args.events)
        if args.side == "cluster":
            copy_tree(spark, f"file://{generated}", f"{root}/lake")
            lake = Lake(f"{root}/lake")
        else:
            lake = Lake(str(generated))
        accounts = read_current(spark, lake.table_path(policy.tables[policy.subject.table]))
        key = policy.subject.key
        if "legal_holds" in policy.tables:
            held = read_current(spark, lake.table_path(policy.tables["legal_holds"]))
            accounts = accounts.join(held.select(F.col(policy.tables["legal_holds"].subject_key).alias(key)), key, "left_anti")
        # The same subjects on both sides: a hash order of the accounts, the first n.
        subjects = [r[key] for r in accounts.select(key).orderBy(F.xxhash64(key, F.lit(11))).limit(args.erase).collect()]
        request = erasure.RequestInput(f"bench-cluster-{args.side}", subjects, source="gdpr")

        def erase() -> dict:
            report = erasure.run(spark, policy, lake, [request], as_of=dt.date.today(), resume=False)
            receipt = report.receipts[0] if report.receipts else {}
            return {"rows_removed": sum((receipt.get("rows_removed") or {}).values()), "state": receipt.get("state")}

        result = _timed(spark, erase)
        out["erasure"] = {**result, **result.pop("value"), "subjects": args.subjects, "events_per_subject": args.events,
                          "event_rows": counts.get("network_events"), "subjects_erased": len(subjects)}
        print(f"[{args.side}] erasure of {len(subjects)} subjects ({counts.get('network_events', 0):,} event rows): "
              f"{result['seconds']:.1f} s", flush=True)
        out["peak_memory_mib"] = peak_memory()
    finally:
        files_for(root, spark).delete(root)
        spark.stop()
    return out


def run_both(args, argv) -> Path:
    control, _layout, lay = _cluster_layout()
    started_here = not control.status(lay)["ready"]
    if started_here:
        print("starting the local cluster (make cluster-up)", flush=True)
        control.up(lay)
    sides = {}
    try:
        for side in SIDES:
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as part:
                pass
            command = [sys.executable, "-m", "bench.cluster_vs_local", "--side", side, "--part", part.name,
                       "--rows", str(args.rows), "--k", str(args.k), "--subjects", str(args.subjects),
                       "--events", str(args.events), "--erase", str(args.erase), "--executor-memory", args.executor_memory]
            print(f"== side {side}", flush=True)
            subprocess.run(command, check=True, cwd=REPO)
            sides[side] = json.loads(Path(part.name).read_text())
            os.unlink(part.name)
    finally:
        if started_here:
            control.down(lay)
    ratios = {w: round(sides["cluster"][w]["seconds"] / sides["local"][w]["seconds"], 2) for w in ("kanonymity", "erasure")}
    same = {"released_rows": sides["cluster"]["kanonymity"]["released_rows"] == sides["local"]["kanonymity"]["released_rows"],
            "rows_removed": sides["cluster"]["erasure"]["rows_removed"] == sides["local"]["erasure"]["rows_removed"]}
    payload = {"command": command_line("bench.cluster_vs_local", argv),
               "parameters": {"rows": args.rows, "k": args.k, "subjects": args.subjects, "events_per_subject": args.events,
                              "erase": args.erase, "executor_memory": args.executor_memory, "repeats": 1,
                              "cluster": "Spark standalone, 2 workers x 1 core, lake on HDFS (1 DataNode), all on 127.0.0.1",
                              "local": "local[2], lake on the local disk"},
               "sides": sides, "ratio_cluster_over_local": ratios, "same_results": same}
    for workload, ratio in ratios.items():
        print(f"{workload}: local {sides['local'][workload]['seconds']:.1f} s, cluster "
              f"{sides['cluster'][workload]['seconds']:.1f} s, ratio {ratio:.2f}", flush=True)
    return write(args.name, payload)


def report_section(load, produced_by, missing, machine_line) -> list[str]:
    """The docs/performance.md section (bench/report.py passes its helpers)."""
    out = ["## 7. The local cluster beside local[2] (k-anonymity and erasure at 10M rows)", "",
           "Spark standalone with two one-core workers and the lake on HDFS (one DataNode), all on this 2-core box, "
           "against Spark `local[2]` with the lake on the local disk: the same code and data, one run per side "
           "(sides in turn, never at once). On one machine the cluster adds what a real one adds (task "
           "serialization to other JVMs, shuffle over the network stack, HDFS block writes) and none of the extra "
           "cores, so the ratio is the price of distribution, not a speed-up forecast.", ""]
    name = "cluster_10M"
    r = load(name)
    if r is None:
        return out + [missing(name), ""]
    local, cluster = r["sides"]["local"], r["sides"]["cluster"]
    out += ["| workload | local[2], local disk | cluster, HDFS | cluster / local | stages (local / cluster) |",
            "|---|---|---|---|---|"]
    k = local["kanonymity"]
    e = local["erasure"]
    labels = {"kanonymity": f"k-anonymity, {k['rows']:,} rows, k={k['k']}",
              "erasure": f"erasure of {e['subjects_erased']} subjects, {e['event_rows']:,} event rows"}
    for workload, label in labels.items():
        a, b = local[workload], cluster[workload]
        out.append(f"| {label} | {a['seconds']:.1f} s | {b['seconds']:.1f} s | "
                   f"**{r['ratio_cluster_over_local'][workload]:.2f}** | {a['stages']} / {b['stages']} |")
    same = r["same_results"]
    out += ["", f"Same results on both sides: released rows {'equal' if same['released_rows'] else 'DIFFERENT'}, "
                f"erased rows {'equal' if same['rows_removed'] else 'DIFFERENT'}.",
            f"- `{name}`: {produced_by(name, r)}; {machine_line(r)}"]
    return out + [""]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="k-anonymity input rows")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=100, help="network events per subject")
    parser.add_argument("--erase", type=int, default=100, help="subjects in the erasure request")
    parser.add_argument("--executor-memory", default="3g")
    parser.add_argument("--name", default="cluster_10M")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--part", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        Path(args.part).write_text(json.dumps(run_side(args), default=str))
    else:
        print(run_both(args, argv))


if __name__ == "__main__":
    main()
