"""Physical purge: time of ``REORG TABLE ... APPLY (PURGE)`` and ``VACUUM ... RETAIN 0 HOURS`` per GB.

    .venv/bin/python -m bench.purge --subjects 5000 --events 20

The statements are those of ``jobs.lake.quarantine.physical_purge`` (REORG, then VACUUM with the
retention check lifted for the call). Per round (>= 3): a fresh copy of the generated
``network_events`` table (untimed), a logical delete of ``--share`` of the subjects through
``jobs.lake.quarantine.delete_keys`` (retention's MERGE; deletion vectors, untimed),
then REORG and VACUUM, timed separately. Reported per GB of the table and per GB rewritten.
With ``--whole``, ``LakeTable.purge()`` instead, timed as one (what the jobs call: since Session 35
it deletes the superseded files itself where the checksum file lists the table's files): then a
run's ``reorg_s`` is 0 and its ``vacuum_s`` is the whole purge, as the summaries ``reorg`` /
``vacuum`` are; ``total`` is the figure to read. Each run also counts the Spark jobs and Delta
commits of the purge.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import (bench_env, command_line, dir_bytes, files_of, last_stage_id, new_bytes, peak_memory,
                          stage_profile, summarize, synthetic_lake, write)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subjects", type=int, default=5000)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--share", type=float, default=0.01, help="share of subjects deleted before the purge")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--table", default="network_events")
    parser.add_argument("--name", default="purge_small")
    parser.add_argument("--whole", action="store_true",
                        help="time LakeTable.purge() as the jobs call it (reported as the total; REORG 0)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="wasure-bench-purge-"))
    bench_env(work)
    from pyspark.sql import functions as F

    from jobs.lake.layout import Lake, read_current, subject_bucket
    from jobs.policy import default_policy_path, load_policy
    from jobs.lake.quarantine import delete_keys
    from jobs.lake.table import LakeTable
    from jobs.runtime.spark import get_spark

    policy = load_policy(default_policy_path())
    spark = get_spark("wasure-bench-purge")
    dag = spark.sparkContext._jsc.sc().dagScheduler()
    lake = Lake.at(work / "lake")
    synthetic_lake(spark, policy, lake.root, args.subjects, args.events)
    table = policy.tables[args.table]
    source = Path(lake.table_path(table))
    rows = read_current(spark, str(source)).count()

    reorg_t, vacuum_t, runs, profile = [], [], [], {}
    for round_ in range(-1, args.repeats):                    # round -1: warm-up, not reported
        path = work / f"purge_{round_ + 1}"
        shutil.rmtree(path, ignore_errors=True)
        shutil.copytree(source, path)
        table_bytes = int(spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first().sizeInBytes)
        keys = (read_current(spark, str(path)).select(F.col(table.subject_key).alias("subject")).distinct()
                .where(F.pmod(F.xxhash64("subject", F.lit(round_)), F.lit(10_000)) < int(args.share * 10_000))
                .withColumn("bucket", subject_bucket(F.col("subject"), table.subject_buckets))
                .withColumn("all_rows", F.lit(True)))
        delete_keys(spark, str(path), table.subject_key, keys, None, None)
        deleted = int(spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first().operationMetrics.get("numTargetRowsDeleted", 0))
        before = files_of(path)
        stage0, jobs0, version0 = last_stage_id(spark), dag.numTotalJobs(), LakeTable(spark, str(path)).version()
        t0 = time.perf_counter()
        if args.whole:            # the job's own call: its rewrite and its deletion of superseded files
            LakeTable(spark, str(path)).purge()
            t1 = t0
        else:
            spark.sql(f"REORG TABLE delta.`{path}` APPLY (PURGE)")
            t1 = time.perf_counter()
            spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
            try:
                spark.sql(f"VACUUM delta.`{path}` RETAIN 0 HOURS")
            finally:
                spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "true")
        t2 = time.perf_counter()
        spark_jobs, commits = dag.numTotalJobs() - jobs0, LakeTable(spark, str(path)).version() - version0
        after = files_of(path)
        rewritten = new_bytes(before, after)
        removed = sum(size for name, size in before.items() if name not in after)
        if round_ < 0:
            shutil.rmtree(path, ignore_errors=True)
            continue
        if round_ == args.repeats - 1:
            profile = stage_profile(spark, stage0)
        reorg_t.append(t1 - t0)
        vacuum_t.append(t2 - t1)
        runs.append({"table_bytes": table_bytes, "rows_deleted": deleted, "bytes_rewritten": rewritten,
                     "bytes_vacuumed": removed, "files_before": len(before), "files_after": len(after),
                     "reorg_s": t1 - t0, "vacuum_s": t2 - t1, "spark_jobs": spark_jobs, "commits": commits})
        shutil.rmtree(path, ignore_errors=True)

    gb = runs[0]["table_bytes"] / 1e9
    rewritten_gb = sorted(r["bytes_rewritten"] for r in runs)[len(runs) // 2] / 1e9
    reorg, vacuum = summarize(reorg_t), summarize(vacuum_t)
    total = summarize([a + b for a, b in zip(reorg_t, vacuum_t)])
    payload = {"command": command_line("bench.purge", argv),
               "parameters": {"subjects": args.subjects, "events_per_subject": args.events, "share": args.share,
                              "repeats": args.repeats, "table": args.table},
               "rows": rows, "table_bytes": runs[0]["table_bytes"], "reorg": reorg, "vacuum": vacuum, "total": total,
               "seconds_per_table_gb": total["median_s"] / gb if gb else None,
               "seconds_per_rewritten_gb": total["median_s"] / rewritten_gb if rewritten_gb else None,
               "runs": runs, "profile": profile, "peak_memory_mib": peak_memory(),
               "source_bytes_on_disk": dir_bytes(source)}
    print(write(args.name, payload))
    parts = (f"LakeTable.purge() {total['median_s']:.1f} s" if args.whole
             else f"REORG {reorg['median_s']:.1f} s, VACUUM {vacuum['median_s']:.1f} s")
    print(f"{rows:,} rows, {gb * 1000:.1f} MB: {parts}, {payload['seconds_per_table_gb']:.0f} s per table GB")
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
