"""`wasure demo`: every pipeline step that exists, on a small lake, with a summary at the end."""
from __future__ import annotations

from dataclasses import asdict
from typing import Callable

from jobs.runtime.console import console, human_bytes, step, summary_table
from jobs.generate import GenerateOptions, generate_lake
from jobs.runtime.keys import init_keys, key_file_path
from jobs.lake.layout import Lake, is_delta, table_summary
from jobs.policy import Policy
from jobs.cli.render import print_erasure, print_retention
from jobs.runtime.spark import get_spark


def run_demo(policy: Policy, lake: Lake, subjects: int = 300) -> dict:
    """Every step on the lake (generated first if empty), each reported even when one fails; exit 1
    (CheckFailed) after the summary if any step failed."""
    from jobs import anonymize, statistics

    spark = _prepare(policy, lake, subjects)
    steps: list[tuple[str, Callable[[], dict]]] = [
        ("retention", lambda: _retention_step(spark, policy, lake)),
        ("pseudonymize", lambda: _pseudonymize_step(spark, policy, lake)),
        ("erasure", lambda: _erasure_step(spark, policy, lake)),
        ("anonymize", lambda: anonymize.demo_step(spark, policy, lake)),
        ("statistics", lambda: statistics.demo_step(spark, policy, lake))]
    gates: list[tuple[str, str, str]] = []
    results: dict = {}
    failed = False
    for title, action in steps:
        try:
            with step(title):
                outcome = action()
        except Exception as exc:  # noqa: BLE001 - the demo reports every step, then exits 1
            failed = True
            console.print(f"[red]✗ {title} failed:[/] {type(exc).__name__}: {str(exc)[:500]}")
            gates.append((title, "FAILED", type(exc).__name__))
            continue
        gate = outcome.get("gate", "passed")
        failed = failed or gate != "passed"
        gates.append((title, gate, outcome.get("docs", "")))
        results[title] = outcome
    results["tables"] = {name: table_summary(spark, lake.table_path(t)) for name, t in policy.tables.items()}
    _print_summary(lake, results["tables"], gates)
    if failed:
        from jobs.runtime.console import CheckFailed

        raise CheckFailed("the demo ran every step, and at least one failed (see the gates table)")
    console.print("[green]demo finished[/]: `wasure status` shows the lake; `wasure --help` lists every step.")
    return results


def _prepare(policy: Policy, lake: Lake, subjects: int):
    """Spark, the synthetic lake (unless the lake has one) and the keys; returns the session."""
    console.rule("[bold]wasure demo")
    console.print(f"policy {policy.source} (sha256 {policy.sha256[:12]}…), lake {lake.uri}")
    with step("starting Spark with Delta Lake"):
        spark = get_spark("wasure-demo")
    accounts = lake.table_path(policy.tables[policy.subject.table])
    if is_delta(accounts):
        console.print(f"using the existing lake at {lake.uri}")
    else:
        with step(f"generating a synthetic lake of {subjects} subjects"):
            generate_lake(spark, policy, lake, GenerateOptions(subjects=subjects))
    created = init_keys([p.key_id for p in policy.purposes.values()] + [policy.defaults.ledger_key_id], lake)
    console.print(f"keys (削除情報等) in {key_file_path()}, outside the lake" + (f": created {', '.join(created)}" if created else ""))
    return spark


def _retention_step(spark, policy: Policy, lake: Lake) -> dict:
    from jobs import retention

    dry = retention.run(spark, policy, lake, retention.RetentionRequest(dry_run=True))
    print_retention(dry)
    done = retention.run(spark, policy, lake, retention.RetentionRequest())
    print_retention(done)
    return {"gate": "passed", "docs": done.docs, "report": retention.report_dict(done)}


def _erasure_step(spark, policy: Policy, lake: Lake) -> dict:
    # Two generated subjects close their accounts; the request id is fixed, so a second demo on the
    # same lake finds the request closed or continues it instead of erasing others.
    from jobs import erasure
    from jobs.generate import subject_id

    request = erasure.RequestInput("demo-closure", [subject_id(42), subject_id(43)], "account_closure", None)
    report = erasure.run(spark, policy, lake, [request])
    print_erasure(report)
    states = {r["request_id"]: r["state"] for r in report.receipts}
    return {"gate": "passed", "docs": f"receipt {lake.receipts}/demo-closure.json "
                                      f"(state {states.get('demo-closure', 'closed')})"}


def _pseudonymize_step(spark, policy: Policy, lake: Lake) -> dict:
    from jobs import pseudonymize

    published = pseudonymize.run(spark, policy, lake, pseudonymize.PseudonymizeRequest.checked(policy, lake))
    summary_table("pseudonymized (仮名加工情報)", ["purpose", "table", "status", "rows"],
                  [(t.purpose, t.table, t.status, t.rows) for t in published.tables])
    return {"gate": "passed", "docs": ", ".join(published.docs) or "no table changed",
            "tables": [asdict(t) for t in published.tables]}


def _print_summary(lake: Lake, tables: dict[str, dict], gates: list[tuple[str, str, str]]) -> None:
    summary_table("lake tables (Delta, read back with spark.read.format('delta'))",
                  ["table", "version", "files", "size", "rows"],
                  [(n, i["version"], i["files"], human_bytes(i["bytes"]), i["rows"]) for n, i in tables.items()])
    summary_table("gates", ["step", "result", "Data Docs / detail"], gates)
    console.print(f"Data Docs: {lake.docs}  (`wasure docs` prints the index to open)")
