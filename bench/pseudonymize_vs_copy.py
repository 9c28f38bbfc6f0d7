"""Pseudonymization (rule-31 profile) vs a plain Spark copy of the same table, side by side.

    .venv/bin/python -m bench.pseudonymize_vs_copy --subjects 5000 --events 20

Both sides read the same raw ``network_events`` Delta table and write a new Delta table; the copy
is ``read -> write`` with Delta's defaults, wasure is ``read -> apply_rule31 (keyed HMAC pseudonyms,
drops, generalization, scrubbing) -> write`` as the pseudonymize job writes a published table
(``LakeTable.write_new`` with wasure's table properties: min/max statistics for the table's
non-personal columns only; unpartitioned here, like the copy). Until Session 32 the wasure side
wrote with Delta's defaults, collecting min/max of the four pseudonym columns the job never
collects (~3 s of ~24 s at 10M rows). Alternating order, medians of >= 3 runs after one warm-up of
each; the ratio pseudonymize / copy is the figure (target <= 1.25).

Two reference sides run in the same rounds, to show where the time goes (neither is an output
wasure would publish): ``without_pseudonyms`` is the profile with the pseudonymized columns left
raw (drops and scrubbing only), ``unkeyed_sha2`` replaces the keyed HMAC by Spark's built-in
``sha2(value, 256)``: the same 64-character hex columns, computed in generated code, the floor of
any 256-bit hex pseudonym.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from bench.common import (bench_env, command_line, dir_bytes, init_all_keys, last_stage_id, peak_memory, side_by_side,
                          stage_profile, synthetic_lake, write)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subjects", type=int, default=5000)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--table", default="network_events")
    parser.add_argument("--name", default="pseudonymize_small")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="wasure-bench-pseudo-"))
    bench_env(work)
    from jobs.runtime.keys import load_key
    from jobs.lake.layout import Lake, read_current
    from jobs.policy import default_policy_path, load_policy
    from pyspark.sql import functions as F

    from jobs.lake.table import LakeTable
    from jobs.pseudonymize import apply_rule31, drop_and_scrub, rule31_plan
    from jobs.runtime.spark import get_spark

    policy = load_policy(default_policy_path())
    init_all_keys(policy)
    spark = get_spark("wasure-bench-pseudonymize")
    lake = Lake.at(work / "lake")
    synthetic_lake(spark, policy, lake.root, args.subjects, args.events)
    table = policy.tables[args.table]
    source = lake.table_path(table)
    purpose = "service"
    key_id = policy.purposes[purpose].key_id
    key = load_key(key_id)
    rows = read_current(spark, source).count()
    profiles = {}

    def plain_copy(round_: int):
        out = str(work / "copy")
        shutil.rmtree(out, ignore_errors=True)
        stage0 = last_stage_id(spark)
        read_current(spark, source).write.format("delta").mode("overwrite").save(out)
        if round_ == args.repeats - 1:
            profiles["plain_copy"] = stage_profile(spark, stage0)
        return dir_bytes(out)

    def write_as_wasure(df, out: str) -> None:
        shutil.rmtree(out, ignore_errors=True)
        LakeTable(spark, out).write_new(df, [], stats_columns=table.stats_columns(), published=True)

    def pseudonymize(round_: int):
        out = str(work / "pseudo")
        stage0 = last_stage_id(spark)
        write_as_wasure(apply_rule31(read_current(spark, source), table, key, key_id), out)
        if round_ == args.repeats - 1:
            profiles["pseudonymize"] = stage_profile(spark, stage0)
        return dir_bytes(out)

    plan = rule31_plan(table)

    def without_pseudonyms(_round: int):
        out = str(work / "reference")
        write_as_wasure(drop_and_scrub(read_current(spark, source), plan), out)
        return dir_bytes(out)

    def unkeyed_sha2(_round: int):
        out = str(work / "reference")
        df = drop_and_scrub(read_current(spark, source), plan)
        write_as_wasure(df.withColumns({c: F.sha2(F.col(c).cast("string"), 256) for c in plan.pseudonymize}), out)
        return dir_bytes(out)

    plain_copy(-1), pseudonymize(-1)          # warm-up: JIT, Python workers
    sides = side_by_side({"plain_copy": plain_copy, "pseudonymize": pseudonymize,
                          "without_pseudonyms": without_pseudonyms, "unkeyed_sha2": unkeyed_sha2}, args.repeats)
    copy_t, pseudo_t = sides["plain_copy"], sides["pseudonymize"]
    references = {name: {**{k: v for k, v in sides[name].items() if k != "results"},
                         "output_bytes": sides[name]["results"][-1],
                         "ratio_to_copy": sides[name]["median_s"] / copy_t["median_s"]}
                  for name in ("without_pseudonyms", "unkeyed_sha2")}
    result = {"command": command_line("bench.pseudonymize_vs_copy", argv),
              "parameters": {"subjects": args.subjects, "events_per_subject": args.events, "repeats": args.repeats,
                             "table": args.table, "purpose": purpose},
              "rows": rows, "source_bytes": dir_bytes(source),
              "plain_copy": {k: v for k, v in copy_t.items() if k != "results"},
              "pseudonymize": {k: v for k, v in pseudo_t.items() if k != "results"},
              "output_bytes": {"plain_copy": copy_t["results"][-1], "pseudonymize": pseudo_t["results"][-1]},
              "ratio": pseudo_t["median_s"] / copy_t["median_s"], "target_ratio": 1.25,
              "pseudonymized_columns": plan.pseudonymize, "references": references,
              "profile": profiles, "peak_memory_mib": peak_memory()}
    print(write(args.name, result))
    print(f"rows {rows:,}: copy {copy_t['median_s']:.1f} s, pseudonymize {pseudo_t['median_s']:.1f} s, "
          f"ratio {result['ratio']:.2f}; references: without pseudonyms "
          f"{references['without_pseudonyms']['median_s']:.1f} s, unkeyed sha2 {references['unkeyed_sha2']['median_s']:.1f} s")
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
