"""A gate's fixed cost: Data Docs views with shared compiled templates, or GE's own views.

    .venv/bin/python -m bench.gate_docs                      # 1 and 9 checks per gate, 5 rounds

``expectations.gates.run_gate`` on small Spark DataFrames (one check per table: two GE built-in
column expectations and wasure's forbidden-column check), side by side in one process and one
Spark session, order alternating per round after one untimed warm-up of each side:

- ``shared``: what wasure does (``gates.SITE_VIEWS``: the views of ``expectations.doc_views`` share
  compiled Jinja templates across gates);
- ``ge_views``: the same gate with GE's default views (a new Jinja environment per view, every
  template compiled again in every gate), as every gate ran before.

Reported per side: the whole ``run_gate`` and its Data Docs part (``gates._build_docs``: storing the
scrubbed results, rendering the site, shipping its assets) in seconds, and the Jinja templates
compiled per gate. The data is tiny on purpose: what is measured is what every gate costs
whatever its tables hold.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import bench_env, command_line, side_by_side, write

SIDES = ("shared", "ge_views")


def report_section(load, produced_by, missing, machine_line) -> list[str]:
    """The docs/performance.md section (bench/report.py passes its helpers)."""
    out = ["## 9. A gate's fixed cost: Data Docs templates compiled once per process", "",
           "`expectations.gates.run_gate` on tiny Spark DataFrames, one check per table, side by side in one process "
           "(order alternating per round, after an untimed warm-up of each side): `shared` is what wasure does "
           "(`expectations.doc_views`: GE's page and index views with one Jinja bytecode cache for the process); "
           "`ge_views` is GE's default views, which build a Jinja environment per view and so compile every page "
           "template again in every gate.", ""]
    name = "gate_docs"
    r = load(name)
    if r is None:
        return out + [missing(name), ""]
    out += ["| checks per gate | side | run_gate (median) | of it Data Docs (median) | templates compiled per gate |",
            "|---|---|---|---|---|"]
    for checks, sides in r["by_checks"].items():
        for side in SIDES:
            v = sides[side]
            out.append(f"| {checks} | {side} | **{v['median_s']:.2f} s** | {v['docs_median_s']:.2f} s | "
                       f"{v['compiled_median']:.0f} |")
    out += ["", f"- `{name}`: {produced_by(name, r)}; {machine_line(r)}"]
    return out + [""]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checks", type=int, nargs="+", default=[1, 9], help="checks (tables) per gate")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--name", default="gate_docs")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="wasure-bench-gate-docs-"))
    bench_env(work)
    import great_expectations as gx
    import jinja2

    from expectations import gates
    from expectations.custom import ExpectNoForbiddenColumns
    from jobs.runtime.spark import get_spark

    spark = get_spark("wasure-bench-gate-docs")
    df = spark.createDataFrame([(i, f"v{i}") for i in range(20)], "id int, name string").persist()
    df.count()
    views = {"shared": gates.SITE_VIEWS, "ge_views": {}}
    compiled: list[str] = []
    original_compile = jinja2.Environment.compile
    original_docs = gates._build_docs

    def counting_compile(self, source, name=None, *rest, **kwargs):
        compiled.append(name)
        return original_compile(self, source, name, *rest, **kwargs)

    docs_s: list[float] = []

    def timed_docs(context, docs_path):
        start = time.perf_counter()
        try:
            return original_docs(context, docs_path)
        finally:
            docs_s.append(time.perf_counter() - start)

    jinja2.Environment.compile = counting_compile
    gates._build_docs = timed_docs

    def gate(side: str, checks: int, label: str) -> dict:
        gates.SITE_VIEWS = views[side]
        compiled.clear()
        docs_s.clear()
        suite = [gx.expectations.ExpectColumnValuesToNotBeNull(column="id"),
                 gx.expectations.ExpectColumnValuesToBeBetween(column="id", min_value=0, max_value=100),
                 ExpectNoForbiddenColumns(forbidden_columns={"email": "identifying"})]
        result = gates.run_gate(f"bench-{side}", [(f"table_{i:03d}", df, suite) for i in range(checks)],
                                str(work / "docs" / label))
        assert result.success, result.report()
        return {"docs_s": docs_s[0], "compiled": len(compiled)}

    by_checks = {}
    try:
        for checks in args.checks:
            for side in SIDES:                               # untimed warm-up of each side
                gate(side, checks, f"warmup-{checks}-{side}")
            sides = side_by_side({side: (lambda r, side=side, checks=checks: gate(side, checks, f"{checks}-{side}-{r}"))
                                  for side in SIDES}, repeats=args.repeats)
            by_checks[str(checks)] = {
                side: {"median_s": v["median_s"], "runs_s": v["runs_s"],
                       "docs_median_s": statistics.median(x["docs_s"] for x in v["results"]),
                       "compiled_median": statistics.median(x["compiled"] for x in v["results"])}
                for side, v in sides.items()}
            print(checks, {s: (round(v["median_s"], 2), round(v["docs_median_s"], 2), v["compiled_median"])
                           for s, v in by_checks[str(checks)].items()}, flush=True)
    finally:
        jinja2.Environment.compile = original_compile
        gates._build_docs = original_docs
        gates.SITE_VIEWS = views["shared"]
    path = write(args.name, {"command": command_line("bench.gate_docs", argv), "repeats": args.repeats,
                             "by_checks": by_checks})
    print(path)


if __name__ == "__main__":
    main()
