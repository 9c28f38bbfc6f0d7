"""Erasure of N subjects: `erasure.run` vs the Gobblin-style whole-table rewrite, side by side.

    .venv/bin/python -m bench.erasure_vs_overwrite --subjects 5000 --events 20 --erase 1 100

One synthetic lake (``generate_lake``: every policy table; ``network_events`` holds
subjects x events rows). For each batch size and each round (>= 3), the same fresh random subjects
(no legal hold) are erased twice, in alternating order:

* **wasure**: ``jobs.erasure.run`` with one request (source ``gdpr``: erase everywhere, no retained
  仮名加工情報), ``resume=False``, as of today: received -> deleted -> backups_quarantined; the
  physical purge is not due (grace) and is measured by ``bench.purge``. Phase times come from the
  job's own ``progress``/``on_state`` callbacks.
* **baseline** (Gobblin's purger): for every policy table
  ``INSERT OVERWRITE delta.`t` SELECT * FROM delta.`t` LEFT ANTI JOIN subjects`` -- the whole
  table is read and rewritten.

Bytes rewritten = size of the files that did not exist before the run (Parquet and deletion-vector
files of the policy tables; ``_delta_log`` excluded), over the lake's bytes (current versions of the
policy tables). Every timed run gets its own fresh copy of the generated lake (untimed; the copy is
removed afterwards), so both sides always start from the same files with no Delta log state cached
from an earlier run. (Until session 5 the tables were RESTOREd between runs: nine untimed RESTOREs
per run were half of `make bench`'s erasure time.)
"""
from __future__ import annotations

import argparse
import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import (bench_env, command_line, copy_lake, files_of, init_all_keys, last_stage_id, new_bytes,
                          peak_memory, side_by_side, stage_profile, synthetic_lake, write)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subjects", type=int, default=5000)
    parser.add_argument("--events", type=int, default=20, help="network events per subject")
    parser.add_argument("--erase", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--name", default="erasure_small")
    parser.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True,
                        help="one untimed erasure before each batch size (--no-warmup: rely on the median)")
    parser.add_argument("--work", default=None, help="work directory (default: a temporary one, removed)")
    args = parser.parse_args(argv)

    work = Path(args.work or tempfile.mkdtemp(prefix="wasure-bench-erasure-"))
    work.mkdir(parents=True, exist_ok=True)
    bench_env(work)
    from pyspark.sql import functions as F

    from jobs import erasure
    from jobs.lake.layout import Lake, read_current
    from jobs.policy import default_policy_path, load_policy
    from jobs.runtime.spark import get_spark

    policy = load_policy(default_policy_path())
    init_all_keys(policy)
    spark = get_spark("wasure-bench-erasure")
    generated = Lake.at(work / "lake")          # never written to: every run erases from a copy of it
    counts, generate_s = synthetic_lake(spark, policy, generated.root, args.subjects, args.events)
    tables = {name: generated.table_path(t) for name, t in policy.tables.items()}
    lake_bytes = {name: int(spark.sql(f"DESCRIBE DETAIL delta.`{p}`").first().sizeInBytes) for name, p in tables.items()}
    total_lake_bytes = sum(lake_bytes.values())
    print(f"lake: {counts.get('network_events', 0):,} event rows, {sum(counts.values()):,} rows, "
          f"{total_lake_bytes / 2**20:.1f} MiB in {generate_s:.0f} s", flush=True)

    subject_key = policy.subject.key
    accounts = read_current(spark, tables[policy.subject.table]).select(F.col(subject_key).alias("s"))
    if "legal_holds" in tables:
        held = read_current(spark, tables["legal_holds"]).select(F.col(policy.tables["legal_holds"].subject_key).alias("s"))
        accounts = accounts.join(held, "s", "left_anti")

    def pick(n: int, seed: int) -> list[str]:
        # n random subjects: a hash sort of the accounts table (subjects x 1 row), n rows collected
        return [r.s for r in accounts.orderBy(F.xxhash64("s", F.lit(seed))).limit(n).collect()]

    # The lake the next timed run works on: a fresh copy of the generated one, at a new path.
    current: dict = {}

    def fresh_copy(side: str, round_: int) -> None:
        copy = Lake.at(copy_lake(generated.root, work / f"run-{side}-{round_}"))
        current.update(lake=copy, tables={name: copy.table_path(t) for name, t in policy.tables.items()})

    def drop_copy(_side: str, _round: int) -> None:
        shutil.rmtree(current["lake"].root, ignore_errors=True)

    def snapshot() -> dict[str, dict[str, int]]:
        return {name: files_of(path) for name, path in current["tables"].items()}

    results = []
    as_of = dt.datetime.now(dt.timezone.utc).date()
    for n in args.erase:
        batches = [pick(n, 1000 * n + r) for r in range(args.repeats)]
        profiles: dict[str, dict] = {}

        def wasure_side(round_: int) -> dict:
            before = snapshot()
            stage0 = last_stage_id(spark)
            marks: list[tuple[float, str]] = [(time.perf_counter(), "start")]
            request = erasure.RequestInput(f"bench-{n}-{round_}-{int(time.time())}", batches[round_], source="gdpr")
            report = erasure.run(spark, policy, current["lake"], [request], as_of=as_of, resume=False,
                                 progress=lambda m: marks.append((time.perf_counter(), m)),
                                 on_state=lambda s, _ids: marks.append((time.perf_counter(), f"state:{s}")))
            marks.append((time.perf_counter(), "end"))
            after = snapshot()
            phases, last = {}, marks[0][0]
            for t, label in marks[1:]:
                if label.startswith("state:") or label == "end":
                    phases[label.removeprefix("state:")] = round(t - last, 2)
                    last = t
            written = sum(new_bytes(before[k], after[k]) for k in tables)
            if round_ == args.repeats - 1:
                profiles["wasure"] = stage_profile(spark, stage0)
            receipt = report.receipts[0] if report.receipts else {}
            return {"bytes_written": written, "phases_s": phases, "progress": [m for _t, m in marks[1:-1]],
                    "rows_removed": receipt.get("rows_removed") if isinstance(receipt, dict) else None}

        def baseline_side(round_: int) -> dict:
            before = snapshot()
            stage0 = last_stage_id(spark)
            spark.createDataFrame([(s,) for s in batches[round_]], "subject string").createOrReplaceTempView("bench_erase")
            removed = 0
            for name, path in current["tables"].items():
                key = policy.tables[name].subject_key
                rows_before = read_current(spark, path).count() if round_ == 0 else None
                spark.sql(f"INSERT OVERWRITE delta.`{path}` SELECT t.* FROM delta.`{path}` t "
                          f"LEFT ANTI JOIN bench_erase s ON t.`{key}` = s.subject")
                if rows_before is not None:
                    removed += rows_before - read_current(spark, path).count()
            after = snapshot()
            if round_ == args.repeats - 1:
                profiles["baseline"] = stage_profile(spark, stage0)
            return {"bytes_written": sum(new_bytes(before[k], after[k]) for k in tables),
                    "rows_removed": removed if round_ == 0 else None}

        if args.warmup:  # untimed: JIT, Python workers, on another batch
            warm = pick(n, 7)
            fresh_copy("warmup", 0)
            erasure.run(spark, policy, current["lake"],
                        [erasure.RequestInput(f"bench-warm-{n}-{int(time.time())}", warm, source="gdpr")],
                        as_of=as_of, resume=False)
            drop_copy("warmup", 0)
        sides = side_by_side({"wasure": wasure_side, "baseline": baseline_side}, args.repeats,
                             prepare=fresh_copy, reset=drop_copy)
        w, b = sides["wasure"], sides["baseline"]
        w_bytes = sorted(x["bytes_written"] for x in w["results"])[len(w["results"]) // 2]
        b_bytes = sorted(x["bytes_written"] for x in b["results"])[len(b["results"]) // 2]
        phase_names = list(w["results"][0]["phases_s"])
        phases = {p: sorted(x["phases_s"].get(p, 0) for x in w["results"])[len(w["results"]) // 2] for p in phase_names}
        entry = {"subjects_erased": n, "wasure": {k: v for k, v in w.items() if k != "results"},
                 "baseline": {k: v for k, v in b.items() if k != "results"},
                 "wasure_phases_median_s": phases, "wasure_runs": w["results"], "baseline_runs": b["results"],
                 "time_ratio": w["median_s"] / b["median_s"],
                 "wasure_bytes_written": w_bytes, "baseline_bytes_written": b_bytes,
                 "wasure_bytes_share": w_bytes / total_lake_bytes, "baseline_bytes_share": b_bytes / total_lake_bytes,
                 "profile": profiles}
        results.append(entry)
        print(f"erase {n}: wasure {w['median_s']:.1f} s ({entry['wasure_bytes_share']:.2%} of bytes), baseline "
              f"{b['median_s']:.1f} s ({entry['baseline_bytes_share']:.0%}), ratio {entry['time_ratio']:.2f}; "
              f"phases {phases}", flush=True)

    payload = {"command": command_line("bench.erasure_vs_overwrite", argv),
               "parameters": {"subjects": args.subjects, "events_per_subject": args.events, "erase": args.erase,
                              "repeats": args.repeats, "warmup": args.warmup, "source": "gdpr", "policy": str(default_policy_path())},
               "event_rows": counts.get("network_events"), "rows_by_table": counts, "lake_bytes": total_lake_bytes,
               "lake_bytes_by_table": lake_bytes, "generate_s": generate_s,
               "targets": {"time_ratio_max": 0.1, "bytes_share_max": 0.02, "at": "100 subjects of 10M event rows"},
               "results": results, "peak_memory_mib": peak_memory()}
    print(write(args.name, payload))
    spark.stop()
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
