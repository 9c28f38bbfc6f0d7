"""One subject's erasure on the lake `wasure demo` leaves: the issue's "1 subject on the demo lake" figure, alone.

    flock /tmp/wasure-spark.lock .venv/bin/python -m bench.erase_one [--repeats 3]
    flock /tmp/wasure-spark.lock .venv/bin/python -m bench.ab --base <rev> --head-bench --rounds 2 \\
        --name erase_one_ab -- bench.erase_one

The demo lake (300 subjects x 20 events, ``bench.small_lake``'s) gets the demo pipeline once (which
also warms the JVM up), then each repeat erases one more subject (an account closure,
``jobs.erasure.run`` as ``wasure erase`` runs it) on a fresh copy of the lake the demo left.
Reports per repeat the wall time, the Spark jobs, and when each state was committed (seconds from
the start: where the time goes). ``bench.small_lake`` measures the same erasure after every timed
demo; this bench measures only it, in a few minutes, so that two versions fit side by side
(``bench.ab --head-bench``: this file measures the base's code too).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import bench_env, command_line, copy_lake, init_all_keys, synthetic_lake, write
from bench.small_lake import EXAMPLE_POLICY, run_demo_once


def erase_one(spark, policy, lake_dir: Path, subject: int) -> dict:
    """One account closure of ``subject_id(subject)`` (``resume=False``: no open request of the lake
    is continued): seconds, Spark jobs, when each state committed, and the states its receipts reached."""
    from jobs import erasure
    from jobs.generate import subject_id
    from jobs.lake.layout import Lake

    dag = spark.sparkContext._jsc.sc().dagScheduler()
    first_job = int(dag.numTotalJobs())
    states: dict[str, float] = {}
    start = time.perf_counter()
    request = erasure.RequestInput("bench-erase-one", [subject_id(subject)], "account_closure", None)
    report = erasure.run(spark, policy, Lake.at(lake_dir), [request], resume=False,
                         on_state=lambda state, _ids: states.setdefault(state, round(time.perf_counter() - start, 2)))
    return {"s": time.perf_counter() - start, "spark_jobs": int(dag.numTotalJobs()) - first_job, "states_at_s": states,
            "states": sorted({r["state"] for r in report.receipts})}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=300)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--subject", type=int, default=44, help="the subject erased (subject_id(N), as bench.small_lake)")
    parser.add_argument("--name", default="erase_one")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="wasure-bench-erase-one-"))
    bench_env(work)
    from jobs.policy import load_policy
    from jobs.runtime import spark as runtime

    policy = load_policy(str(EXAMPLE_POLICY))
    init_all_keys(policy)
    spark = runtime.get_spark("wasure-bench-erase-one")
    synthetic_lake(spark, policy, work / "pristine", args.subjects, args.events)
    after_demo = work / "after_demo"
    copy_lake(work / "pristine", after_demo)
    start = time.perf_counter()
    demo = run_demo_once(spark, policy, after_demo)
    demo_s = time.perf_counter() - start
    print(f"the demo (warm-up): {demo_s:.1f} s, {demo['spark_jobs']} Spark jobs", flush=True)
    runs = []
    for repeat in range(args.repeats):
        lake_dir = copy_lake(after_demo, work / f"lake{repeat}")       # a new path: no Delta log cached for it
        runs.append(erase_one(spark, policy, lake_dir, args.subject))
        print(f"repeat {repeat + 1}: {runs[-1]['s']:.1f} s, {runs[-1]['spark_jobs']} Spark jobs, states at {runs[-1]['states_at_s']}",
              flush=True)
    median = statistics.median(r["s"] for r in runs)
    print(f"median {median:.1f} s", flush=True)
    write(args.name, {"command": command_line("bench.erase_one", argv), "subjects": args.subjects,
                      "events_per_subject": args.events, "demo_warmup": {"s": demo_s, **demo},
                      "median_s": median, "spark_jobs_median": statistics.median(r["spark_jobs"] for r in runs),
                      "runs": runs})


if __name__ == "__main__":
    main()
