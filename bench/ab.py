"""Two versions of the code side by side in one run: the same bench, alternately on each.

    flock /tmp/wasure-spark.lock .venv/bin/python -m bench.ab --base f5b155c --rounds 2 --name cuts \\
        -- bench.tables_scaling --tables 9 --threads 4 --no-warmup

``--base`` is a commit (checked out in a temporary git worktree); ``--head`` is a commit too, or
``.`` (default) for this working tree as it is, uncommitted changes included. Rounds alternate
which side goes first (base, head, head, base, ...): a drift of the box over the run, and whatever
the first run of a pair leaves behind for the second, reach both sides alike. Each run is the
bench's own program in the side's directory (its code, this repo's .venv and jars, and this repo's
cache of generated lakes: a side that generated its lake in the bench's own process would run its
steps on a warmed-up JVM, the other side on a cold one), writing its usual JSON there (with
``--head-bench`` the base runs the head's bench/ too: a bench written after the base); this script
gathers them into ``bench/results/<name>.json``: every run's figures and, for benches that report ``by_size`` (tables_scaling), the per-step medians per side:
seconds, Spark jobs, Delta commits and log loads, GE validations.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import REPO, command_line, write

FIELDS = ("s", "jobs", "commits", "log_loads", "validations")


def _worktree(rev: str, parent: Path, bench_from: Path | None = None) -> Path:
    """A detached checkout of ``rev`` that uses this repo's .venv and fetched jars (and, with
    ``bench_from``, that checkout's bench/ instead of its own)."""
    path = parent / f"wt-{rev}"
    subprocess.run(["git", "worktree", "add", "--detach", "-f", str(path), rev], cwd=REPO, check=True,
                   capture_output=True, text=True)
    (path / ".venv").symlink_to(REPO / ".venv")
    cache = path / "jars" / "cache"
    if cache.exists() or cache.is_symlink():
        shutil.rmtree(cache, ignore_errors=True)
    cache.symlink_to(REPO / "jars" / "cache")
    if bench_from is not None:
        shutil.rmtree(path / "bench", ignore_errors=True)
        shutil.copytree(bench_from / "bench", path / "bench", ignore=shutil.ignore_patterns("results", ".lakes", "__pycache__"))
    return path


def _run(side_dir: Path, module: str, args: list[str], name: str) -> dict:
    """The bench in ``side_dir`` (its own code first on the path, also for Spark's Python workers)."""
    # Both sides copy their lakes from one cache (bench.common.LAKE_CACHE, keyed by the generator's
    # source): a side generates (and so warms its JVM) only when its lake is not cached yet, i.e. in
    # its first round if the two sides' generators differ.
    env = {**os.environ, "PYTHONPATH": str(side_dir),
           "WASURE_BENCH_LAKE_CACHE": os.environ.get("WASURE_BENCH_LAKE_CACHE", str(REPO / "bench" / ".lakes"))}
    command = [str(REPO / ".venv" / "bin" / "python"), "-m", module, *args, "--name", name]
    subprocess.run(command, cwd=side_dir, env=env, check=True)
    results = side_dir / "bench" / "results"
    payload = json.loads((results / f"{name}.json").read_text())
    for left in results.glob(f"{name}*.json"):          # gathered into this bench's own JSON
        left.unlink()
    return payload


def step_medians(runs: list[dict]) -> dict:
    """{size: {step: {field: median over the side's runs}}} for benches with ``by_size``."""
    sizes = sorted({size for run in runs for size in run.get("by_size", {})}, key=int)
    out = {}
    for size in sizes:
        steps = runs[0]["by_size"][size]["steps"]
        out[size] = {"total_s": statistics.median(r["by_size"][size]["total_s"] for r in runs)}
        for step in steps:
            out[size][step] = {f: statistics.median(r["by_size"][size]["steps"][step][f] for r in runs)
                               for f in FIELDS if f in steps[step]}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the commit to compare against")
    parser.add_argument("--head", default=".", help="a commit, or '.' for this working tree (default)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--name", default="ab")
    parser.add_argument("--head-bench", action="store_true",
                        help="run the head's bench/ on both sides: the base's product code measured by the same "
                             "measuring code (a bench newer than the base)")
    parser.add_argument("bench", nargs=argparse.REMAINDER, help="-- <bench module> <its arguments>")
    args = parser.parse_args(argv)
    bench = args.bench[1:] if args.bench[:1] == ["--"] else args.bench
    if not bench or not bench[0].startswith("bench."):
        parser.error("name the bench after --, e.g. -- bench.tables_scaling --tables 9")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    module, bench_args = bench[0], bench[1:]

    work = Path(tempfile.mkdtemp(prefix="wasure-bench-ab-"))
    head = REPO if args.head == "." else _worktree(args.head, work)
    sides = {"base": _worktree(args.base, work, bench_from=head if args.head_bench else None), "head": head}
    runs: dict[str, list[dict]] = {"base": [], "head": []}
    try:
        for r in range(args.rounds):
            # One round in two starts with head: a single round is base-first (the order says so).
            for side in (("base", "head") if r % 2 == 0 else ("head", "base")):
                side_dir = sides[side]
                print(f"ab: round {r + 1}/{args.rounds}, {side}", flush=True)
                runs[side].append(_run(side_dir, module, bench_args, f"{args.name}_{side}_{r}"))
    finally:
        for side_dir in sides.values():
            if side_dir != REPO:
                subprocess.run(["git", "worktree", "remove", "--force", str(side_dir)], cwd=REPO, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    revs = {"base": args.base, "head": "working tree" if args.head == "." else args.head}
    payload = {"command": command_line("bench.ab", argv),
               "parameters": {"bench": module, "arguments": bench_args, "rounds": args.rounds, "sides": revs,
                              "bench_code": "the head's, on both sides" if args.head_bench else "each side's own",
                              "order": "base first in even rounds, head first in odd ones (ABBA)"},
               "medians": {side: step_medians(rs) for side, rs in runs.items() if rs and "by_size" in rs[0]},
               "runs": runs}
    print(f"results: {write(args.name, payload)}")


if __name__ == "__main__":
    main(sys.argv[1:])
