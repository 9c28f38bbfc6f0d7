"""The demo pipeline on its small lake, with queries sized to the lake or compiled as on a large one.

`wasure demo`'s steps (retention dry run + run, pseudonymize, the erasure of two subjects,
anonymize, statistics: ``jobs.cli.demo.run_demo``) on a fresh copy of the generated demo-size lake
(300 subjects x 20 events), in one process and one Spark session, side by side:

- ``sized``: what wasure does (``jobs.runtime.spark.size_queries_to``): below ``SMALL_LAKE_BYTES`` queries
  run interpreted (AQE, whole-stage code generation and the codegen factories off, 2 shuffle
  partitions);
- ``compiled``: the same code with the threshold at 0, i.e. the session's own settings (AQE,
  whole-stage code generation, 8 shuffle partitions), as every lake ran before.

Per round both sides (order alternating), after one untimed warm-up demo. Reports the wall time of
the whole pipeline and of each step (the demo's own step timer) and the Spark jobs it ran; then,
outside the pipeline's time, the erasure of one more subject on the lake the demo left (the issue's
"1 subject on the demo lake" figure).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import re
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import bench_env, command_line, copy_lake, init_all_keys, side_by_side, synthetic_lake, write

EXAMPLE_POLICY = Path(__file__).resolve().parent.parent / "policies" / "example.yaml"
STEP_LINE = re.compile(r"✓ (?P<step>[a-z]+) \((?P<s>[0-9.]+) s\)")
DEMO_STEPS = ["retention", "pseudonymize", "erasure", "anonymize", "statistics"]


def run_demo_once(spark, policy, lake_dir: Path) -> dict:
    """One demo pipeline on ``lake_dir``: its steps' seconds and the Spark jobs it ran."""
    from jobs.cli.demo import run_demo
    from jobs.lake.layout import Lake

    dag = spark.sparkContext._jsc.sc().dagScheduler()
    first_job = int(dag.numTotalJobs())      # job ids are allocated in order (bench/metrics.py)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run_demo(policy, Lake.at(lake_dir))
    steps = {m["step"]: float(m["s"]) for m in STEP_LINE.finditer(out.getvalue()) if m["step"] in DEMO_STEPS}
    missing = [s for s in DEMO_STEPS if s not in steps]
    if missing:
        raise RuntimeError(f"the demo did not finish the step(s) {missing}")
    jobs_run = int(dag.numTotalJobs()) - first_job
    return {"steps_s": steps, "spark_jobs": jobs_run}


def run_erase_one(spark, policy, lake_dir: Path) -> dict:
    """The issue's erasure figure: one more subject's account closure on the lake the demo left,
    timed alone (``bench.erase_one.erase_one``, the same erasure that bench times on fresh copies)."""
    from bench.erase_one import erase_one           # here: bench.erase_one imports this module

    return erase_one(spark, policy, lake_dir, 44)


def report_section(load, produced_by, missing, machine_line) -> list[str]:
    """The docs/performance.md section (bench/report.py passes its helpers)."""
    out = ["## 8. A small lake: `wasure demo`'s pipeline, queries sized to the lake or compiled", "",
           "The demo's steps on a fresh copy of its 300-subject lake per run, one process and one Spark session, "
           "sides alternating per round after an untimed warm-up: `sized` is what wasure does "
           "(`jobs.runtime.spark.size_queries_to`: below `SMALL_LAKE_BYTES` of lake tables, queries run interpreted: AQE, "
           "whole-stage code generation and the codegen factories off, 2 shuffle partitions); `compiled` is the same "
           "code with the session's own settings, as every lake ran before.", ""]
    name = "small_lake_demo"
    r = load(name)
    if r is None:
        return out + [missing(name), ""]
    sized, compiled = r["sides"]["sized"], r["sides"]["compiled"]
    out += ["| side | pipeline (median) | " + " | ".join(DEMO_STEPS) + " | Spark jobs |",
            "|---|---|" + "---|" * len(DEMO_STEPS) + "---|"]
    for label, side in (("sized (interpreted)", sized), ("compiled", compiled)):
        out.append(f"| {label} | **{side['median_s']:.1f} s** | "
                   + " | ".join(f"{side['steps_median_s'][s]:.1f} s" for s in DEMO_STEPS)
                   + f" | {side['spark_jobs_median']:,.0f} |")
    if "erase_one" in r:
        one = r["erase_one"]
        out += ["", "Erasure of one subject (`wasure erase` of one more account closure on the lake the demo left, "
                    "untimed by the pipeline figure; the issue's target is <= 10 s): "
                + "; ".join(f"{label} **{one[side]['median_s']:.1f} s** ({one[side]['spark_jobs_median']:,.0f} Spark jobs, "
                            f"state reached: {', '.join(one[side]['states']) or 'closed'})"
                            for label, side in (("sized", "sized"), ("compiled", "compiled"))) + "."]
    out += ["", f"sized / compiled: **{r['sized_over_compiled']:.2f}**; lake {r['lake_bytes'] / 2**20:.1f} MiB "
                f"({sum(r['rows'].values()):,} rows in {len(r['rows'])} tables), threshold "
                f"{r['small_lake_bytes'] / 2**20:.0f} MiB; warm-up (first demo of the JVM, sized) {r['warmup']['s']:.1f} s; "
                f"runs: sized {', '.join(f'{t:.1f}' for t in sized['runs_s'])} s, "
                f"compiled {', '.join(f'{t:.1f}' for t in compiled['runs_s'])} s.",
            f"- `{name}`: {produced_by(name, r)}; {machine_line(r)}"]
    return out + [""]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subjects", type=int, default=300)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--name", default="small_lake_demo")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="wasure-bench-small-lake-"))
    bench_env(work)
    from jobs.runtime import spark as runtime
    from jobs.lake.layout import Lake
    from jobs.policy import load_policy

    policy = load_policy(str(EXAMPLE_POLICY))
    init_all_keys(policy)
    spark = runtime.get_spark("wasure-bench-small-lake")
    pristine = work / "pristine"
    counts, generate_s = synthetic_lake(spark, policy, pristine, args.subjects, args.events)
    lake_bytes = sum(Lake.at(pristine).files.size(Lake.at(pristine).table_path(t)) for t in policy.tables.values())
    sized_threshold = runtime.SMALL_LAKE_BYTES
    thresholds = {"sized": sized_threshold, "compiled": 0}
    lake_dir = work / "lake"

    def prepare(side: str, _round: int) -> None:
        runtime.SMALL_LAKE_BYTES = thresholds[side]
        copy_lake(pristine, lake_dir)

    prepare("sized", -1)
    start = time.perf_counter()
    warm = run_demo_once(spark, policy, lake_dir)
    warmup = {"side": "sized", "s": time.perf_counter() - start, **warm}
    print(f"warm-up: {warmup['s']:.1f} s", flush=True)

    def side(name: str):
        def run(round_: int) -> dict:
            out = run_demo_once(spark, policy, lake_dir)
            print(f"{name} round {round_}: {sum(out['steps_s'].values()):.1f} s in steps, {out['spark_jobs']} Spark jobs",
                  flush=True)
            return out
        return run

    erase_one: dict[str, list[dict]] = {"sized": [], "compiled": []}

    def erase_one_subject(side_name: str, _round: int) -> None:      # after each timed demo, on its lake
        erase_one[side_name].append(run_erase_one(spark, policy, lake_dir))
        print(f"{side_name} erase one subject: {erase_one[side_name][-1]['s']:.1f} s", flush=True)

    sides = side_by_side({"sized": side("sized"), "compiled": side("compiled")}, repeats=args.repeats,
                         prepare=prepare, reset=erase_one_subject)
    runtime.SMALL_LAKE_BYTES = sized_threshold
    for result in sides.values():
        runs = result["results"]
        result["steps_median_s"] = {s: statistics.median(r["steps_s"][s] for r in runs) for s in DEMO_STEPS}
        result["spark_jobs_median"] = statistics.median(r["spark_jobs"] for r in runs)
    one = {side_name: {"median_s": statistics.median(r["s"] for r in runs), "runs_s": [r["s"] for r in runs],
                       "spark_jobs_median": statistics.median(r["spark_jobs"] for r in runs),
                       "states": sorted({s for r in runs for s in r["states"]})}
           for side_name, runs in erase_one.items()}
    ratio = sides["sized"]["median_s"] / sides["compiled"]["median_s"]
    print(f"sized {sides['sized']['median_s']:.1f} s, compiled {sides['compiled']['median_s']:.1f} s: {ratio:.2f}", flush=True)
    write(args.name, {"command": command_line("bench.small_lake", argv), "subjects": args.subjects,
                      "events_per_subject": args.events, "rows": counts, "lake_bytes": lake_bytes,
                      "small_lake_bytes": sized_threshold, "generate_s": generate_s, "warmup": warmup,
                      "sides": sides, "sized_over_compiled": ratio, "erase_one": one})


if __name__ == "__main__":
    main()
