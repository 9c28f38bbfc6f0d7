"""Where a step's Spark jobs come from: the nightly on tables_scaling's lake, every job counted at the
lines of wasure's code whose call into the JVM started it.

    flock /tmp/wasure-spark.lock .venv/bin/python -m bench.job_sites --tables 9 [--erase 2]

bench/metrics.py counts each step's jobs; this names the lines that ask for them (the census behind
Session 20's cuts in bench/analysis.md). Every py4j call from Python is wrapped: the DAG scheduler's
job counter is read before and after it, and a call that started jobs adds them to the innermost
frames of wasure's own code on the stack (jobs/, expectations/, anonymizers/), with the JVM method
called (``collectToPython``, ``persist``, ``execute`` of a MERGE, ...). Tables run one at a time
(WASURE_TABLE_THREADS=1), so no other thread's jobs land in a call's count. A measuring tool: the
wrapper adds two JVM calls to every call, so its seconds are not the step's (bench.tables_scaling
times the steps). Results: bench/results/<name>.json, per step the sites, most jobs first. With
``--erase N``, an account closure of N subjects (``jobs.erasure.run``, as ``wasure erase`` runs it)
follows the nightly and is counted as the step ``erasure``. Each site also gets the seconds the driver
waited in its JVM calls (``seconds_by_site``; calls under 5 ms that started no job are left out).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Callable

from bench.common import REPO, bench_env, command_line, init_all_keys, synthetic_lake, write
from bench.metrics import with_bench_spark_conf
from bench.nightly import STEPS
from bench.tables_scaling import EXAMPLE_POLICY, scaled_lake, scaled_policy

OWN_CODE = tuple(str(REPO / folder) + os.sep for folder in ("jobs", "expectations", "anonymizers"))


def call_site(depth: int = 3) -> str:
    """The innermost ``depth`` frames of wasure's code on this thread's stack, innermost first."""
    frames = [f for f in traceback.extract_stack() if f.filename.startswith(OWN_CODE)][-depth:]
    return " <- ".join(f"{Path(f.filename).relative_to(REPO)}:{f.lineno} {f.name}" for f in reversed(frames)) or "(outside)"


# A JVM call shorter than this that started no job is not attributed (naming its site walks the stack).
TIMED_CALL_S = 0.005


def count_jobs_by_site(spark) -> tuple[Counter, Counter, Callable[[], None]]:
    """Wrap every py4j call: (a Counter {(JVM method, call site): jobs started}, a Counter {(JVM method,
    call site): seconds the driver waited in such calls}, a function that unwraps). Seconds are wall
    time of the Python thread making the call: planning, Delta's log work and the jobs themselves."""
    import py4j.java_gateway as gateway

    dag = spark.sparkContext._jsc.sc().dagScheduler()
    original = gateway.JavaMember.__call__
    inside = threading.local()
    sites: Counter = Counter()
    seconds: Counter = Counter()

    def jobs_so_far() -> int:
        inside.active = True              # the counter's own JVM call is not counted
        try:
            return int(dag.numTotalJobs())
        finally:
            inside.active = False

    def counted(member, *args):
        if getattr(inside, "active", False):
            return original(member, *args)
        before, start = jobs_so_far(), time.perf_counter()
        try:
            return original(member, *args)
        finally:
            waited = time.perf_counter() - start
            started = jobs_so_far() - before
            if started > 0 or waited >= TIMED_CALL_S:
                site = (member.name, call_site())
                if started:
                    sites[site] += started
                seconds[site] += waited

    gateway.JavaMember.__call__ = counted
    return sites, seconds, lambda: setattr(gateway.JavaMember, "__call__", original)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tables", type=int, default=9, help="a multiple of 9 (bench.tables_scaling's clones)")
    parser.add_argument("--subjects", type=int, default=50)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--erase", type=int, default=0, metavar="N",
                        help="then erase N subjects (an account closure) and count its jobs too")
    parser.add_argument("--top", type=int, default=20, help="sites printed per step (the JSON keeps every one)")
    parser.add_argument("--name", default="job_sites")
    args = parser.parse_args(argv)
    os.environ["WASURE_TABLE_THREADS"] = "1"

    work = Path(tempfile.mkdtemp(prefix="wasure-bench-job-sites-"))
    bench_env(work)
    with_bench_spark_conf(work)
    from jobs import pipeline
    from jobs.policy import load_policy
    from jobs.runtime.spark import get_spark

    base_policy = load_policy(str(EXAMPLE_POLICY))
    policy_path, origin = scaled_policy(args.tables, work / "policy")
    load_policy(str(policy_path))                     # checked before Spark starts
    init_all_keys(base_policy)
    spark = get_spark("wasure-bench-job-sites")
    synthetic_lake(spark, base_policy, work / "pristine", args.subjects, args.events)
    lake = work / "lake"
    scaled_lake(work / "pristine", lake, origin, {name: t.path for name, t in base_policy.tables.items()})
    run_date = dt.datetime.now(dt.timezone.utc).date().isoformat()

    def erase() -> None:
        from jobs import erasure
        from jobs.generate.draw import subject_id
        from jobs.lake.layout import Lake

        request = erasure.RequestInput("bench-job-sites", [subject_id(i) for i in range(1, args.erase + 1)],
                                       "account_closure", None)
        erasure.run(spark, load_policy(str(policy_path)), Lake.at(lake), [request], resume=False)

    work_steps = {step: lambda step=step: pipeline.run_step(step, str(policy_path), str(lake), run_date) for step in STEPS}
    if args.erase:
        work_steps["erasure"] = erase
    sites, seconds, unwrap = count_jobs_by_site(spark)
    steps = {}
    try:
        for step, run in work_steps.items():
            sites.clear()
            seconds.clear()
            start = time.perf_counter()
            run()
            ranked = [{"jobs": n, "method": method, "site": site} for (method, site), n in sites.most_common()]
            timed = [{"s": round(s, 2), "jobs": sites[key], "method": key[0], "site": key[1]}
                     for key, s in seconds.most_common() if s >= 0.05]
            steps[step] = {"s_with_wrapper": round(time.perf_counter() - start, 1), "jobs": sum(sites.values()),
                           "s_in_jvm_calls": round(sum(seconds.values()), 1), "sites": ranked, "seconds_by_site": timed}
            print(f"{step}: {steps[step]['jobs']} Spark jobs, {steps[step]['s_in_jvm_calls']} s in JVM calls "
                  f"of {steps[step]['s_with_wrapper']} s", flush=True)
            for entry in ranked[:args.top]:
                print(f"  {entry['jobs']:4d}  {entry['method']:<16} {entry['site']}", flush=True)
            print("  by seconds:", flush=True)
            for entry in timed[:args.top]:
                print(f"  {entry['s']:6.2f} s {entry['jobs']:4d}  {entry['method']:<16} {entry['site']}", flush=True)
    finally:
        unwrap()
    path = write(args.name, {"command": command_line("bench.job_sites", argv),
                             "parameters": {"tables": args.tables, "subjects": args.subjects, "events": args.events,
                                            "table_threads": 1, "erased_subjects": args.erase},
                             "steps": steps})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
