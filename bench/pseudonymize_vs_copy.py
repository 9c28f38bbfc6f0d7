"""`wasure pseudonymize` vs a plain Spark copy of the same table (read + write Delta), side by side.

    python -m bench.pseudonymize_vs_copy --subjects 20000 --events 20

Both sides read the same raw network_events table and write a Delta table; the ratio
pseudonymize / copy is what docs/performance.md reports (target <= 1.25).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from bench.common import peak_rss_mib, timed, write


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subjects", type=int, default=20000)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import os

    from anonymizers.pseudonym import keyed_pseudonym  # noqa: F401 - imported for the job
    from jobs.generate import GenerateOptions, generate_lake
    from jobs.keys import init_keys
    from jobs.lake import Lake, read_current
    from jobs.policy import default_policy_path, load_policy
    from jobs.pseudonymize import apply_rule31
    from jobs.runtime import get_spark

    work = Path(tempfile.mkdtemp(prefix="wasure-bench-"))
    os.environ.setdefault("WASURE_KEYS", str(work / "keys.json"))
    policy = load_policy(default_policy_path())
    init_keys([policy.purposes["service"].key_id])
    spark = get_spark("wasure-bench")
    lake = Lake.at(work / "lake")
    generate_lake(spark, policy, lake, GenerateOptions(subjects=args.subjects, events_per_subject=args.events))
    table = policy.tables["network_events"]
    source = lake.table_path(table)
    from jobs.keys import load_key

    key = load_key(policy.purposes["service"].key_id)
    rows = read_current(spark, source).count()

    def plain_copy():
        out = str(work / "copy")
        shutil.rmtree(out, ignore_errors=True)
        read_current(spark, source).write.format("delta").mode("overwrite").save(out)

    def pseudonymize():
        out = str(work / "pseudo")
        shutil.rmtree(out, ignore_errors=True)
        apply_rule31(read_current(spark, source), table, key, policy.purposes["service"].key_id) \
            .write.format("delta").mode("overwrite").save(out)

    plain_copy(), pseudonymize()          # warm-up: JIT, Python workers
    copy_t = timed(plain_copy, args.repeats)
    pseudo_t = timed(pseudonymize, args.repeats)
    result = {"command": "python -m bench.pseudonymize_vs_copy " + " ".join(argv or []),
              "rows": rows, "table": "network_events", "plain_copy": copy_t, "pseudonymize": pseudo_t,
              "ratio": pseudo_t["median_s"] / copy_t["median_s"], "peak_rss_mib": peak_rss_mib(), "target_ratio": 1.25}
    print(write("pseudonymize_vs_copy", result))
    print(f"rows {rows:,}: copy {copy_t['median_s']:.1f} s, pseudonymize {pseudo_t['median_s']:.1f} s, ratio {result['ratio']:.2f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
