"""The same small data spread over N tables, whole nightly: what one more table costs per step.

    .venv/bin/python -m bench.tables_scaling --tables 9 18          # quick (bench.run: tables_scaling_small)
    .venv/bin/python -m bench.tables_scaling --tables 9 36 144      # the issue's sizes (tables_scaling)

A small lake is generated once from the example policy (``--subjects 50 --events 20`` by default,
cached under bench/.lakes/ like every bench lake). For N tables (a multiple of 9) the bench writes a
policy that is the example policy with each of its 9 tables cloned N/9 times: copy 1 keeps its name
and path (so the subject register and the legal holds still name existing tables), copy k >= 2 is
``<table>_<kkk>`` at ``raw/<table>_<kkk>`` with the same columns, classes, purposes and retention;
a release or a statistic built from a table is cloned with it (``health_k5_002`` from
``health_measurements_002``, ``network_usage_002`` from ``network_events_002``: the validator wants a
release per anonymize-on-expiry table, and the nightly builds every release and statistic), so every
step's per-table work grows with N (policies/hierarchies is copied next to the generated policy, as
the validator requires). The lake
for N is the generated lake with every table directory copied to each clone's path (a Delta log
holds relative paths, so a directory copy is a valid table). Every table has the same small data,
so what grows with N is the per-table work, not the bytes.

For each N (smallest first) the nightly runs once on its own fresh lake: ``jobs.pipeline.run_step``
for the DAG's steps in the DAG's order (``bench.nightly.STEPS``), run date today, one process and
one Spark session (Airflow's embedded mode), every step inside an ``OverheadCounter`` step
(bench/metrics.py: Spark jobs, stages, tasks, Delta commits, Delta log loads and snapshots, GE
validations, per step and per table). Before the first N, one untimed warm-up nightly at the
smallest N (JIT, first Delta/GE use; its figures are kept under ``warmup``) unless --no-warmup.
The slope per step is the least-squares fit of the step's seconds (and counts) over N:
seconds per table per step. ``--repeats R`` runs R nightlies per N (the fit uses every run).
"""
from __future__ import annotations

import argparse
import copy
import os
import datetime as dt
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import REPO, bench_env, command_line, dir_bytes, init_all_keys, peak_memory, synthetic_lake, write
from bench.metrics import OverheadCounter, compact, totals, with_bench_spark_conf
from bench.nightly import STEPS

EXAMPLE_POLICY = REPO / "policies" / "example.yaml"
# The counts fitted against N besides seconds.
FIT_FIELDS = ("s", "jobs", "stages", "tasks", "commits", "log_loads", "snapshots", "validations", "ge_s")


def clone_name(name: str, copy_number: int) -> str:
    return name if copy_number == 1 else f"{name}_{copy_number:03d}"


def scaled_policy(n_tables: int, folder: Path, example: Path = EXAMPLE_POLICY) -> tuple[Path, dict[str, tuple[str, str]]]:
    """Write ``folder/policy.yaml`` with the example's tables cloned to ``n_tables`` tables (and its
    tree hierarchy files next to it). Returns (policy path, {table: (base table, path)})."""
    data = yaml.safe_load(example.read_text())
    base = data["tables"]
    if n_tables % len(base) or n_tables < len(base):
        raise SystemExit(f"--tables: every size must be a multiple of {len(base)} (the example policy's tables), got {n_tables}")
    tables, origin = {}, {}
    releases, stats = dict(data.get("releases") or {}), dict(data.get("statistics") or {})
    for k in range(1, n_tables // len(base) + 1):
        for name, spec in base.items():
            new = clone_name(name, k)
            spec = copy.deepcopy(spec)
            spec["path"] = spec["path"] if k == 1 else f"{spec['path']}_{k:03d}"
            retention = spec.get("retention") or {}
            if k > 1 and retention.get("release"):       # a release is built from one table: clone it too
                release = copy.deepcopy(data["releases"][retention["release"]])
                release["table"] = new
                retention["release"] = clone_name(retention["release"], k)
                releases[retention["release"]] = release
            tables[new] = spec
            origin[new] = (name, spec["path"])
        if k > 1:
            for stat, spec in (data.get("statistics") or {}).items():
                stats[clone_name(stat, k)] = {**copy.deepcopy(spec), "table": clone_name(spec["table"], k)}
    data["tables"] = tables
    if releases:
        data["releases"] = releases
    if stats:
        data["statistics"] = stats
    data["name"] = f"{data['name']}-{n_tables}-tables"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    hierarchies = example.parent / "hierarchies"
    if hierarchies.is_dir():
        shutil.copytree(hierarchies, folder / "hierarchies", dirs_exist_ok=True)
    return path, origin


def scaled_lake(pristine: Path, target: Path, origin: dict[str, tuple[str, str]], base_paths: dict[str, str]) -> None:
    """The generated lake, then every clone's directory copied from its base table's."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(pristine, target)
    for name, (base, path) in origin.items():
        if name != base:
            shutil.copytree(pristine / base_paths[base], target / path)


def fit(points: list[tuple[float, float]]) -> dict:
    """Least squares y = intercept + slope * x."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    if len(set(xs)) < 2:
        return {"slope": None, "intercept": None, "points": len(points)}
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in points)
    return {"slope": slope, "intercept": intercept, "r2": (1 - ss_res / ss_tot) if ss_tot else None, "points": len(points)}


def per_table_summary(result: dict, bases: dict[str, str]) -> dict:
    """Median per policy table of one step's per-table figures (tables the step touched), by base table."""
    rows = result.get("per_table", {})
    out = {}
    for field in ("s", "jobs", "stages", "commits", "snapshots", "validations"):
        values = [v[field] for v in rows.values()]
        out[f"median_{field}"] = statistics.median(values) if values else None
    by_base: dict[str, list[dict]] = {}
    for name, v in rows.items():
        by_base.setdefault(bases.get(name, name), []).append(v)
    out["tables_touched"] = len(rows)
    out["by_base_table"] = {b: {f: round(statistics.median(x[f] for x in vs), 3)
                                for f in ("s", "jobs", "stages", "commits", "snapshots", "validations")}
                            for b, vs in sorted(by_base.items())}
    return out


def counter_names(policy) -> tuple[dict[str, str], dict[str, str]]:
    """({table: path}, {release or statistic: its table}) for an OverheadCounter."""
    aliases = {name: r.table for name, r in policy.releases.items()}
    aliases.update({name: st.table for name, st in policy.statistics.items()})
    return {name: t.path for name, t in policy.tables.items()}, aliases


def run_nightly(spark, policy, policy_path: str, lake_root: Path, run_date: str, label: str) -> dict:
    from jobs import pipeline

    steps = {}
    start = time.perf_counter()
    tables, aliases = counter_names(policy)
    with OverheadCounter(spark, lake_root, tables, aliases=aliases) as counter:
        for step in STEPS:
            status, detail = "ok", None
            with counter.step(step):
                try:
                    pipeline.run_step(step, policy_path, str(lake_root), run_date)
                except pipeline.StepUnavailable as exc:
                    status, detail = "unavailable", str(exc)[:300]
                except Exception as exc:  # noqa: BLE001 - recorded, the next step still runs
                    status, detail = "failed", f"{type(exc).__name__}: {str(exc)[:300]}"
            result = counter.results[step]
            result.update(status=status, detail=detail)
            steps[step] = result
            print(f"{label} {step}: {result['s']:.1f} s {status} {detail or ''} | jobs {result['jobs']} "
                  f"(in group {result['jobs_in_group']}), stages {result['stages']}, commits {result.get('commits')}, "
                  f"log loads {result.get('log_loads')}, snapshots {result.get('snapshots')}, "
                  f"GE validations {result['validations']}", flush=True)
        notes = list(counter.notes)
    # total = the steps' own time (the counting between steps is left out; round_wall_s has it)
    return {"total_s": sum(v["s"] for v in steps.values()), "round_wall_s": time.perf_counter() - start,
            "steps": steps, "notes": notes}


def summarize(runs: list[dict], sizes: list[int]) -> dict:
    """Slopes over the sizes and medians per size of one set of runs (one WASURE_TABLE_THREADS value)."""
    slopes = {}
    for step in STEPS + ["nightly"]:
        slopes[step] = {}
        for field in FIT_FIELDS:
            pts = []
            for run in runs:
                value = run["totals"].get(field) if step == "nightly" else run["steps"][step].get(field)
                if isinstance(value, (int, float)):
                    pts.append((run["tables"], float(value)))
            slopes[step][field] = fit(pts)
    by_size = {}
    for n in sizes:
        rs = [r for r in runs if r["tables"] == n]
        by_size[str(n)] = {"total_s": statistics.median(r["total_s"] for r in rs),
                           "steps": {s: {f: statistics.median(r["steps"][s][f] for r in rs)
                                         for f in rs[0]["steps"][s] if isinstance(rs[0]["steps"][s][f], (int, float))
                                         and not isinstance(rs[0]["steps"][s][f], bool)}
                                     for s in STEPS},
                           "status": {s: sorted({r["steps"][s]["status"] for r in rs}) for s in STEPS}}
    return {"slopes": slopes, "by_size": by_size}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tables", type=int, nargs="+", default=[9, 18],
                        help="numbers of tables (multiples of 9); the issue's sizes are 9 36 144")
    parser.add_argument("--subjects", type=int, default=50)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1, help="nightlies per size (default 1: the fit is over sizes)")
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--name", default="tables_scaling_small")
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="WASURE_TABLE_THREADS values run side by side, interleaved per size "
                             "(default: the engine's default only); the last one is the headline")
    args = parser.parse_args(argv)
    sizes = sorted(set(args.tables))

    work = Path(tempfile.mkdtemp(prefix="wasure-bench-tables-"))
    bench_env(work)
    with_bench_spark_conf(work)
    from jobs.policy import load_policy
    from jobs.runtime.spark import get_spark

    base_policy = load_policy(str(EXAMPLE_POLICY))
    base_paths = {name: t.path for name, t in base_policy.tables.items()}
    policies = {}
    for n in sizes:                                  # every policy is checked before Spark starts
        path, origin = scaled_policy(n, work / f"policy_{n}")
        policies[n] = (str(path), origin, load_policy(str(path)))
    init_all_keys(base_policy)
    spark = get_spark("wasure-bench-tables-scaling")
    pristine = work / "pristine"
    counts, generate_s = synthetic_lake(spark, base_policy, pristine, args.subjects, args.events)
    run_date = dt.datetime.now(dt.timezone.utc).date().isoformat()

    def one_run(n: int, label: str) -> dict:
        path, origin, policy = policies[n]
        root = work / f"lake_{n}"
        scaled_lake(pristine, root, origin, base_paths)
        lake_bytes = dir_bytes(root)
        out = run_nightly(spark, policy, path, root, run_date, label)
        out["lake_bytes"] = lake_bytes
        shutil.rmtree(root, ignore_errors=True)
        return out

    warmup = None
    if not args.no_warmup:
        warm = one_run(sizes[0], f"warm-up {sizes[0]} tables")
        warmup = {"tables": sizes[0], "total_s": warm["total_s"],
                  "steps": {s: {"s": v["s"], "jobs": v["jobs"], "status": v["status"]} for s, v in warm["steps"].items()}}
    from jobs.runtime.concurrency import table_threads

    thread_counts = args.threads or [table_threads()]
    runs = []
    for n, r, threads in [(n, r, t) for n in sizes for r in range(args.repeats) for t in thread_counts]:
        os.environ["WASURE_TABLE_THREADS"] = str(threads)
        out = one_run(n, f"{n} tables round {r} threads {threads}")
        bases = {name: base for name, (base, _p) in policies[n][1].items()}
        runs.append({"tables": n, "round": r, "threads": threads, "total_s": out["total_s"], "lake_bytes": out["lake_bytes"],
                     "notes": out["notes"], "totals": totals(out["steps"]),
                     "steps": {s: {**compact(v), "per_table_summary": per_table_summary(v, bases),
                                   "per_table": v.get("per_table", {})}
                               for s, v in out["steps"].items()}})
        write(args.name + "_partial", {"command": command_line("bench.tables_scaling", argv), "runs": runs})

    by_threads = {str(t): summarize([x for x in runs if x["threads"] == t], sizes) for t in thread_counts}
    slopes, by_size = by_threads[str(thread_counts[-1])]["slopes"], by_threads[str(thread_counts[-1])]["by_size"]
    payload = {"command": command_line("bench.tables_scaling", argv),
               "parameters": {"tables": sizes, "subjects": args.subjects, "events_per_subject": args.events,
                              "repeats": args.repeats, "warmup": not args.no_warmup, "run_date": run_date,
                              "threads": thread_counts,
                              "steps": STEPS, "mode": "embedded (one process, one Spark session)",
                              "policy": "policies/example.yaml with each table cloned N/9 times"},
               "rows_by_base_table": counts, "generate_s": generate_s, "by_size": by_size, "slopes": slopes,
               "by_threads": by_threads,
               "warmup": warmup, "runs": runs, "peak_memory_mib": peak_memory()}
    print(write(args.name, payload))
    (Path(__file__).resolve().parent / "results" / f"{args.name}_partial.json").unlink(missing_ok=True)
    for step in STEPS + ["nightly"]:
        f = slopes[step]["s"]
        if f["slope"] is not None:
            print(f"{step}: {f['slope']:.2f} s per table (+ {f['intercept']:.1f} s); jobs per table "
                  f"{slopes[step]['jobs']['slope']:.1f}, commits per table {slopes[step]['commits']['slope']:.2f}")
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
