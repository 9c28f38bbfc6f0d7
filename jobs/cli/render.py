"""Readable summaries of job reports (retention, erasure), shared by the CLI commands and the demo.
Counts, table names, ids and dates only: a report holds no personal value, and neither does this."""
from __future__ import annotations

from jobs.runtime.console import console, human_bytes, summary_table


def print_retention(report) -> None:
    title = f"retention {'DRY RUN ' if report.dry_run else ''}as of {report.as_of} (policy sha256 {report.policy_sha256[:12]}…)"
    rows = []
    for plan in report.plans:
        result = report.results.get(plan.table, {})
        holds = ", ".join(f"{h}: {n}" for h, n in sorted(plan.held_by.items())) or "-"
        reasons = ", ".join(f"{r}: {n}" for r, n in sorted(plan.reasons.items())) or "-"
        rows.append((plan.table, plan.action, plan.rows_before, plan.to_remove, reasons, holds,
                     f"{plan.files} / {human_bytes(plan.bytes)}", result.get("purge_due", "")))
    summary_table(title, ["table", "action", "rows", "remove", "why (rows)", "held by (rows)", "files / bytes touched", "purge due"], rows)
    if report.policy_changes:
        console.print("policy changes since the last run:\n  " + "\n  ".join(report.policy_changes))
    for table, result in sorted(report.results.items()):
        retired = result.get("anonymized")
        if retired:
            console.print(f"{table}: expired rows kept as 匿名加工情報 "
                          + (f"anonymized/{retired['release']} ({retired['rows']} rows, Data Docs {retired['docs']})"
                             if retired["release"] else f"— {retired['note']}"))
    if report.docs:
        console.print(f"retention gate passed; Data Docs: {report.docs}")
    for purged in report.purged:
        console.print(f"physically purged {purged['table']} (superseded files up to version {purged['up_to_version']})")
    console.print(f"run id {report.run_id}" + ("  [yellow]nothing was changed (dry run)[/]" if report.dry_run else ""))


def print_erasure(report) -> None:
    if report.dry_run:
        summary_table(f"erasure DRY RUN as of {report.as_of}", ["request", "source", "subjects", "found", "rows to remove",
                                                                "held (table: hold)", "files", "backups holding", "keeps 仮名加工情報"],
                      [(p["request_id"], p["source"], p["subjects"], p["subjects_found"],
                        ", ".join(f"{t}: {n}" for t, n in p["rows_to_remove"].items()) or "-",
                        ", ".join(f"{h['table']}: {h['hold_id']}" for h in p["held"]) or "-", p["files"],
                        ", ".join(p["backups_holding"]) or "-", ", ".join(p["retained_pseudonymized"]) or "-")
                       for p in report.plans])
        console.print("[yellow]nothing was changed (dry run)[/]")
    else:
        rows = []
        for r in report.receipts:
            held = sorted({f"{h['table']}: {h['hold_id']}" for s in r["subjects"] for h in s["held"]})
            backups = sorted({f"{b['date']} (expires {b['expires']})" for s in r["subjects"] for b in s["backups_holding"]})
            rows.append((r["request_id"], r["source"], r["state"], len(r["subjects"]), sum(1 for s in r["subjects"] if s["found"]),
                         sum(r["rows_removed"].values()), ", ".join(held) or "-", ", ".join(backups) or "-",
                         r["last_byte_gone"] or "-", r["deadline"], {True: "yes", False: "NO", None: "pending"}[r["deadline_met"]]))
        summary_table(f"erasure as of {report.as_of} (batch {report.batch_id})",
                      ["request", "source", "state", "subjects", "found", "rows removed", "held", "backups holding",
                       "last byte gone", "deadline", "met"], rows)
        for request_id, why in report.waiting.items():
            console.print(f"{request_id}: {why}")
        if report.receipts:
            console.print("receipts: " + ", ".join(f"receipts/{r['request_id']}.json" for r in report.receipts))
    for note in report.notes:
        console.print(note)
