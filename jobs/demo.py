"""`wasure demo`: every pipeline step that exists, on a small lake, with a summary at the end."""
from __future__ import annotations

from jobs.console import console, human_bytes, step, summary_table
from jobs.generate import GenerateOptions, generate_lake
from jobs.lake import Lake, is_delta, table_summary
from jobs.policy import Policy
from jobs.runtime import get_spark


def run_demo(policy: Policy, lake: Lake, subjects: int = 300) -> dict:
    console.rule("[bold]wasure demo")
    console.print(f"policy {policy.source} (sha256 {policy.sha256[:12]}…), lake {lake.root}")
    with step("starting Spark with Delta Lake"):
        spark = get_spark("wasure-demo")
    accounts = lake.table_path(policy.tables[policy.subject.table])
    if is_delta(accounts):
        console.print(f"using the existing lake at {lake.root}")
    else:
        with step(f"generating a synthetic lake of {subjects} subjects"):
            generate_lake(spark, policy, lake, GenerateOptions(subjects=subjects))
    results: dict = {"tables": {}}
    for name, table in policy.tables.items():
        results["tables"][name] = table_summary(spark, lake.table_path(table))
    summary_table("lake tables (Delta, read back with spark.read.format('delta'))",
                  ["table", "version", "files", "size", "rows"],
                  [(n, i["version"], i["files"], human_bytes(i["bytes"]), i["rows"]) for n, i in results["tables"].items()])
    console.print("[green]demo finished[/]: `wasure status` shows the lake; `wasure --help` lists every step.")
    return results
