"""The nightly run end to end, step by step, as the ``wasure_nightly`` Airflow DAG runs it.

    .venv/bin/python -m bench.nightly --subjects 5000 --events 20

A synthetic lake (``generate_lake``) is generated once and copied fresh for every round (untimed;
the steps are idempotent per day, so a second run on the same lake would skip its work). Each
round calls ``jobs.pipeline.run_step`` for the DAG's steps in the DAG's order -- backup, retention,
pseudonymize, anonymize, statistics, gates, publish, physical_purge -- in one process (Airflow's
embedded mode, one Spark session), with the run date today. Medians per step over >= 3 rounds.
A step that fails is recorded with its error and the next step still runs (Airflow would stop).
Every step runs inside an ``OverheadCounter`` step (bench/metrics.py): Spark jobs, stages and tasks,
Delta commits, Delta log loads and snapshots, GE validations, per step and per table; the result
keeps them per round (``rounds[i].steps[step].counts``) and the last round's with the per-table
detail (``counts``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import (bench_env, command_line, dir_bytes, init_all_keys, last_stage_id, peak_memory, stage_profile,
                          summarize, synthetic_lake, write)
from bench.metrics import OverheadCounter, compact, totals, with_bench_spark_conf

STEPS = ["backup", "retention", "pseudonymize", "anonymize", "statistics", "gates", "publish", "physical_purge"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subjects", type=int, default=5000)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--name", default="nightly_small")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=STEPS,
                        help="run only these steps, in the DAG's order (e.g. pseudonymize: one step's A/B at 10M)")
    parser.add_argument("--from-log", default=None,
                        help="rebuild the result of an interrupted run from its log (the 'round N step: T s status' "
                             "lines of the completed rounds); marked interrupted, no Spark started")
    args = parser.parse_args(argv)
    if args.from_log:
        return from_log(args, argv)
    steps_run = [s for s in STEPS if s in args.steps]

    work = Path(tempfile.mkdtemp(prefix="wasure-bench-nightly-"))
    bench_env(work)
    with_bench_spark_conf(work)
    from jobs import pipeline
    from jobs.lake.layout import Lake
    from jobs.policy import default_policy_path, load_policy
    from jobs.runtime.spark import get_spark

    policy_path = str(default_policy_path())
    policy = load_policy(policy_path)
    init_all_keys(policy)
    spark = get_spark("wasure-bench-nightly")
    pristine = Lake.at(work / "pristine")
    counts, generate_s = synthetic_lake(spark, policy, pristine.root, args.subjects, args.events)
    run_date = dt.datetime.now(dt.timezone.utc).date().isoformat()

    rounds, profiles, counts_last = [], {}, {}
    aliases = {name: r.table for name, r in policy.releases.items()}
    aliases.update({name: st.table for name, st in policy.statistics.items()})
    for round_ in range(args.repeats):
        root = work / f"lake_{round_}"
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(pristine.root, root)
        steps = {}
        start = time.perf_counter()
        counter = OverheadCounter(spark, root, {n: t.path for n, t in policy.tables.items()}, aliases=aliases)
        counter.install()
        for step in steps_run:
            stage0 = last_stage_id(spark)
            with counter.step(step):
                try:
                    pipeline.run_step(step, policy_path, str(root), run_date)
                    status, detail = "ok", None
                except pipeline.StepUnavailable as exc:
                    status, detail = "unavailable", str(exc)[:300]
                except Exception as exc:  # noqa: BLE001 - recorded, the next step still runs
                    status, detail = "failed", f"{type(exc).__name__}: {str(exc)[:300]}"
            # wall time as before (the counter's listing and status-store reads are not in it)
            counted = counter.results[step]
            steps[step] = {"s": counted["s"], "status": status, "detail": detail, "counts": compact(counted)}
            if round_ == args.repeats - 1:
                profiles[step] = stage_profile(spark, stage0, top=4)
                counts_last[step] = counted
            print(f"round {round_} {step}: {steps[step]['s']:.1f} s {status} {detail or ''} | jobs {counted['jobs']}, "
                  f"stages {counted['stages']}, commits {counted.get('commits')}, log loads {counted.get('log_loads')}, "
                  f"GE validations {counted['validations']}", flush=True)
        counter.close()
        # the steps' own time: the counting between steps (lake listing, status-store reads) is left out
        total = sum(v["s"] for v in steps.values())
        rounds.append({"total_s": total, "round_wall_s": time.perf_counter() - start, "steps": steps,
                       "counts_total": totals({s: v["counts"] for s, v in steps.items()})})
        shutil.rmtree(root, ignore_errors=True)
        write(args.name + "_partial", {"command": command_line("bench.nightly", argv), "rounds": rounds,
                                       "interrupted_if_final_missing": True})

    per_step = {s: {**summarize([r["steps"][s]["s"] for r in rounds]),
                    "status": sorted({r["steps"][s]["status"] for r in rounds}),
                    "detail": next((r["steps"][s]["detail"] for r in rounds if r["steps"][s]["detail"]), None)}
                for s in steps_run}
    payload = {"command": command_line("bench.nightly", argv),
               "parameters": {"subjects": args.subjects, "events_per_subject": args.events, "repeats": args.repeats,
                              "run_date": run_date, "steps": steps_run, "mode": "embedded (one process, one Spark session)"},
               "rows_by_table": counts, "event_rows": counts.get("network_events"), "lake_bytes": dir_bytes(pristine.root),
               "generate_s": generate_s, "total": summarize([r["total_s"] for r in rounds]), "steps": per_step,
               "rounds": rounds, "target_total_s": 600, "profile": profiles, "counts": counts_last,
               "counts_total": totals(counts_last), "peak_memory_mib": peak_memory()}
    print(write(args.name, payload))
    print(f"nightly: {payload['total']['median_s']:.0f} s total; "
          + ", ".join(f"{s} {v['median_s']:.0f} s" for s, v in per_step.items()))
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)


def from_log(args, argv) -> None:
    import re

    rounds: dict[int, dict] = {}
    for line in Path(args.from_log).read_text().splitlines():
        m = re.match(r"\s*round (\d+) (\w+): ([0-9.]+) s (\w+)", line)
        if m:
            rounds.setdefault(int(m[1]), {})[m[2]] = {"s": float(m[3]), "status": m[4], "detail": None}
    complete = [r for _n, r in sorted(rounds.items()) if all(s in r for s in STEPS)]
    per_step = {s: {**summarize([r[s]["s"] for r in complete]), "status": sorted({r[s]["status"] for r in complete}),
                    "detail": None} for s in STEPS}
    totals = [sum(r[s]["s"] for s in STEPS) for r in complete]
    log = Path(args.from_log).read_text()
    m = re.search(r"bench\.nightly (.*?) +\(log", log)
    payload = {"command": ".venv/bin/python -m bench.nightly " + (m[1] if m else "") + "  (interrupted; rebuilt with "
               + command_line("bench.nightly", argv) + ")",
               "interrupted": True, "rounds_completed": len(complete),
               "parameters": {"subjects": args.subjects, "events_per_subject": args.events, "steps": STEPS,
                              "mode": "embedded (one process, one Spark session)"},
               "event_rows": args.subjects * args.events, "lake_bytes": None, "total": summarize(totals),
               "steps": per_step, "rounds": [{"total_s": t, "steps": r} for t, r in zip(totals, complete)],
               "target_total_s": 600, "profile": {}, "peak_memory_mib": None}
    print(write(args.name, payload))


if __name__ == "__main__":
    main()
