"""Run every bench at one size, then regenerate docs/performance.md and its plots.

    make bench        # = .venv/bin/python -m bench.run --size small  (~50 min on 2 cores: small_lake_demo ~24, tables_scaling_small ~14)
    make bench-full   # = .venv/bin/python -m bench.run --size full   (hours on 2 cores)
    make bench-cluster  # = .venv/bin/python -m bench.run --size cluster (the local cluster beside local[2])
    .venv/bin/python -m bench.run --only erasure_1M kanonymity_1M   # chosen configurations
    .venv/bin/python -m bench.run --report-only                      # only the doc, from bench/results

Each configuration runs as its own process (its own Spark session, started and stopped), one after
the other: never two Spark processes at once. On a shared box also serialize with other Spark
users: ``flock /tmp/wasure-spark.lock make bench``. A configuration that fails is reported and the
next one still runs; the doc then shows what exists in bench/results/.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from bench.common import RESULTS

# name -> (size, module, arguments); the name is also the result file bench/results/<name>.json
CONFIGS: dict[str, tuple[str, str, list[str]]] = {
    # ---- small: `make bench`
    "erasure_small": ("small", "bench.erasure_vs_overwrite", ["--subjects", "5000", "--events", "20", "--erase", "100",
                                                                  "--no-warmup"]),
    "pseudonymize_small": ("small", "bench.pseudonymize_vs_copy", ["--subjects", "5000", "--events", "20"]),
    "kanonymity_small": ("small", "bench.kanonymity", ["--rows", "100000", "--k", "5", "50", "--adult"]),
    "purge_small": ("small", "bench.purge", ["--subjects", "5000", "--events", "20"]),
    # `wasure demo`'s pipeline on its 300-subject lake: queries sized to the lake vs compiled.
    "small_lake_demo": ("small", "bench.small_lake", ["--subjects", "300", "--events", "20"]),
    # The whole nightly on the same small data over 9 and 18 tables: per-table cost per step and the
    # overhead counts (jobs, commits, log loads, GE validations; bench/metrics.py).
    "tables_scaling_small": ("small", "bench.tables_scaling", ["--tables", "9", "18", "--threads", "1", "4"]),
    # What every gate costs besides its queries: Data Docs with shared compiled templates vs GE's views (~2 min).
    "gate_docs": ("small", "bench.gate_docs", ["--checks", "1", "9"]),
    # ---- full: `make bench-full`
    # The nightly at 1,000 subjects measures fixed costs (~4 min per round, 3 rounds): not one of
    # the figures, and half of the small run's time, so it runs with the full sizes.
    "nightly_small": ("full", "bench.nightly", ["--subjects", "1000", "--events", "100"]),
    "erasure_1M": ("full", "bench.erasure_vs_overwrite", ["--subjects", "50000", "--events", "20", "--erase", "1", "100", "1000"]),
    # At 10M no untimed warm-up (the median of 3 takes care of the first run): one erasure + one
    # whole-lake rewrite take ~4 min per round here.
    "erasure_10M": ("full", "bench.erasure_vs_overwrite", ["--subjects", "100000", "--events", "100",
                                                             "--erase", "1", "100", "1000", "--no-warmup"]),
    "pseudonymize_full": ("full", "bench.pseudonymize_vs_copy", ["--subjects", "100000", "--events", "100"]),
    "kanonymity_1M": ("full", "bench.kanonymity", ["--rows", "1000000", "--k", "5", "50"]),
    "kanonymity_10M": ("full", "bench.kanonymity", ["--rows", "10000000", "--k", "5", "50"]),
    "purge_full": ("full", "bench.purge", ["--subjects", "100000", "--events", "100"]),
    "nightly_full": ("full", "bench.nightly", ["--subjects", "100000", "--events", "100"]),
    # The sizes: 9, 36 and 144 tables (~50 min in all on 2 cores; the 144-table nightly alone 37 min).
    "tables_scaling": ("full", "bench.tables_scaling", ["--tables", "9", "36", "144"]),
    # ---- cluster: `make bench-cluster` (starts the local cluster if it is down, stops it after)
    # k-anonymity on 10M rows and erasure of 100 subjects of the 10M-event lake on the 2-worker
    # cluster with the lake on HDFS, beside local[2] on the local disk (~35 min on 2 cores).
    "cluster_10M": ("cluster", "bench.cluster_vs_local", ["--rows", "10000000", "--subjects", "100000",
                                                          "--events", "100", "--erase", "100"]),
}


def command_for(name: str) -> str:
    _size, module, args = CONFIGS[name]
    return " ".join([".venv/bin/python -m", module, *args, "--name", name])


def make_target(name: str) -> str:
    return {"small": "make bench", "full": "make bench-full", "cluster": "make bench-cluster"}[CONFIGS[name][0]]


def run_one(name: str) -> int:
    _size, module, args = CONFIGS[name]
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    print(f"== {name}: {command_for(name)}  (log {log.relative_to(RESULTS.parent.parent)})", flush=True)
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", module, *args, "--name", name], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, cwd=RESULTS.parent.parent)
        for line in proc.stdout:
            out.write(line)
            if not line.startswith(("WARNING", "Using Spark", "Setting default", "To adjust", "26/", "25/", "\t")) \
                    and "WARN" not in line[:40]:
                print("   " + line.rstrip(), flush=True)
        code = proc.wait()
    print(f"== {name}: exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
    return code


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=["small", "full", "cluster"], default="small")
    parser.add_argument("--only", nargs="+", choices=sorted(CONFIGS), help="run these configurations only")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    failed = []
    start = time.perf_counter()
    if not args.report_only:
        names = args.only or [n for n, (size, _m, _a) in CONFIGS.items() if size == args.size]
        for name in names:
            if run_one(name) != 0:
                failed.append(name)
    from bench import report

    print(report.build())
    if not args.report_only:
        print(f"== {len(names)} configuration(s) in {time.perf_counter() - start:.0f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)} (see bench/results/logs/)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
