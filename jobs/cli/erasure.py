"""CLI commands of the erasure and backup jobs: `wasure erase`, `verify-erasure`, `backup`, `restore`.

Imported by jobs/cli/__init__.py at its bottom; the commands register on the same Typer app.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Optional

import typer

from jobs.cli.common import LakeOpt, PolicyOpt, app, date_option, handles_errors, lake_from_option, policy_from_option
from jobs.runtime.console import InputError, console, step, summary_table
from jobs.cli.render import print_erasure


@app.command()
@handles_errors
def erase(
    subject: Optional[list[str]] = typer.Option(None, "--subject", "-s", help="Subject id to erase (repeatable)."),
    file: Optional[Path] = typer.Option(None, "--file", "-f", help="File of subject ids, one per line."),
    from_requests: bool = typer.Option(False, "--from-requests", help="Take requests from <lake>/state/erasure_requests."),
    request_id: Optional[str] = typer.Option(None, "--request-id", help="Request id (default: derived from the ids); names the receipt."),
    source: str = typer.Option("account_closure", "--source", help="account_closure, ccpa, appi or gdpr."),
    received_at: Optional[str] = typer.Option(None, "--received-at", help="When the request was received (default: now)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Change nothing; show what would be removed, held and quarantined."),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="Business date of the run (YYYY-MM-DD, default today UTC)."),
    extend: Optional[str] = typer.Option(None, "--extend", help="Extend this CCPA request's deadline by 45 days, once "
                                         "(needs --reason; nothing else is done)."),
    reason: Optional[str] = typer.Option(None, "--reason", help="Why the request is extended (told to the consumer; no personal data)."),
    policy: Optional[Path] = PolicyOpt,
    lake: Optional[str] = LakeOpt,
):
    """Erase subjects from every table, quarantine them in backups, purge, verify, and write receipts.

    Every run also continues every open request (a killed run finishes on the next one; requests
    wait for the physical purge until their grace period ends). Subject ids are checked before
    anything is written and never echoed. Examples: `wasure erase --subject A000000042 --source ccpa`,
    `wasure erase --file closures.txt --request-id closure-2026-11-22`, `wasure erase --from-requests`,
    `wasure erase` (only continue open requests), `wasure erase --extend ccpa-7 --reason "..."` (the one
    45-day CCPA extension).
    """
    from jobs.erasure import prepare_requests, run
    from jobs.runtime.spark import get_spark

    loaded, where, day = policy_from_option(policy), lake_from_option(lake), date_option(as_of, "--as-of")
    if extend is not None:
        _extend(loaded, where, extend, reason, day, given=bool(subject or file or from_requests or request_id or dry_run))
        return
    if reason is not None:
        raise InputError("--reason goes with --extend REQUEST")
    holder: dict = {}

    def spark():
        if "spark" not in holder:
            with step("starting Spark"):
                holder["spark"] = get_spark("wasure-erasure")
        return holder["spark"]

    requests = prepare_requests(loaded, where, subjects=subject, file=file, from_requests=from_requests,
                                request_id=request_id, source=source, received_at=received_at, spark=spark)
    with console.status("erasure") as status:
        report = run(spark(), loaded, where, requests, as_of=day, dry_run=dry_run, progress=lambda m: status.update(m))
    print_erasure(report)


def _extend(loaded, where, request_id: str, reason: Optional[str], day: Optional[dt.date], given: bool) -> None:
    from jobs.erasure.deadlines import check_reason, extend
    from jobs.erasure import check_request_id
    from jobs.runtime.spark import get_spark

    if given:
        raise InputError("--extend only extends a deadline: give no --subject, --file, --from-requests, --request-id or --dry-run")
    check_request_id(request_id, "--extend")
    check_reason(reason)
    with step("starting Spark"):
        spark = get_spark("wasure-erasure")
    done = extend(spark, loaded, where, request_id, reason, today=day)
    summary_table("deadline extended", ["request", "original deadline", "new deadline", "by", "reason"],
                  [(done["request_id"], done["original_deadline"], done["new_deadline"], done["by"], done["reason"])])


@app.command()
@handles_errors
def access(
    subject: str = typer.Option(..., "--subject", "-s", help="The subject (account) id whose data is exported."),
    request_id: str = typer.Option(..., "--request-id", help="Names the export folder and the receipt (receipts/access-REQUEST_ID.json)."),
    fmt: Optional[list[str]] = typer.Option(None, "--format", help="json, csv or html (repeatable; default all three)."),
    out: Path = typer.Option(Path("exports"), "--out", help="Folder OUTSIDE the lake; the export goes to OUT/REQUEST_ID/."),
    received_at: Optional[str] = typer.Option(None, "--received-at", help="When the request was received (default: now)."),
    policy: Optional[Path] = PolicyOpt,
    lake: Optional[str] = LakeOpt,
):
    """Answer an access / portability request: every row of one subject in every raw table.

    Writes export.json (+ export.schema.json), one CSV per table and index.html to OUT/REQUEST_ID/,
    outside the lake. 仮名加工情報, anonymized releases and statistics are left out, with the reason in
    the export. The lake keeps only counts (receipt, state, audit). Example:
    `wasure access --subject A000000042 --request-id access-2026-12-02 --out /secure/exports`
    """
    from jobs.access import AccessRequest, run
    from jobs.erasure import parse_received_at
    from jobs.runtime.spark import get_spark

    loaded, where = policy_from_option(policy), lake_from_option(lake)
    request = AccessRequest.checked(loaded, where, subject, request_id, out, fmt, parse_received_at(received_at))
    with step("starting Spark"):
        spark = get_spark("wasure-access")
    with console.status("access export") as status:
        report = run(spark, loaded, where, request, progress=lambda m: status.update(m))
    summary_table(f"access request {report.request_id} (deadline {report.deadline})", ["table", "rows"],
                  sorted(report.rows.items()))
    for note in report.notes:
        console.print(f"[yellow]{note}[/]")
    console.print(f"export: {report.directory} ({', '.join(report.files)}); legal holds listed: {report.holds}; "
                  f"receipt: {report.receipt}")


@app.command("verify-erasure")
@handles_errors
def verify_erasure(
    request_id: Optional[list[str]] = typer.Option(None, "--request-id", help="Only these requests (repeatable; default: every purged one)."),
    policy: Optional[Path] = PolicyOpt,
    lake: Optional[str] = LakeOpt,
):
    """Scan every file under the lake (except backups quarantined for the subjects) for erased values.

    Exit 1 naming the files (never the values) if any residue is found. Example:
    `wasure verify-erasure --request-id closure-2026-11-22`
    """
    from jobs.lake.backup_ledger import ledger_key
    from jobs.erasure import check_request_id, verify
    from jobs.runtime.spark import get_spark

    loaded, where = policy_from_option(policy), lake_from_option(lake)
    for value in request_id or []:
        check_request_id(value)
    ledger_key(loaded, where)
    with step("starting Spark"):
        spark = get_spark("wasure-verify-erasure")
    with console.status("scanning") as status:
        report = verify(spark, loaded, where, request_id or None, progress=lambda m: status.update(m))
    summary_table("erasure verification", ["request", "method"], sorted(report.method.items()))
    if report.excluded_backups:
        console.print("quarantined backups not scanned: " + ", ".join(report.excluded_backups))
    console.print(f"[green]no residue[/] of {len(report.requests)} request(s)")


@app.command()
@handles_errors
def backup(
    date: Optional[str] = typer.Option(None, "--date", help="Backup date (default today UTC); with --expire, the day to expire as of."),
    expire: bool = typer.Option(False, "--expire", help="Delete expired backups and end quarantines no backup needs."),
    policy: Optional[Path] = PolicyOpt,
    lake: Optional[str] = LakeOpt,
):
    """Copy the current version of every table to backups/YYYY-MM-DD/, or expire old backups.

    Backups are kept defaults.backup_retention_days days. Examples: `wasure backup`,
    `wasure backup --expire`.
    """
    from jobs.backup import expire_backups, run_backup
    from jobs.runtime.spark import get_spark

    loaded, where, day = policy_from_option(policy), lake_from_option(lake), date_option(date, "--date")
    with step("starting Spark"):
        spark = get_spark("wasure-backup")
    if expire:
        expired = expire_backups(spark, loaded, where, day)
        console.print(f"expired backups deleted: {', '.join(expired.deleted) or 'none'}; kept: {', '.join(expired.kept) or 'none'}; "
                      f"subjects whose quarantine ended: {expired.subjects_released}")
        return
    with console.status("backup") as status:
        done = run_backup(spark, loaded, where, day, progress=lambda m: status.update(m))
    summary_table(f"backup {done.date} ({done.status}, expires {done.expires})", ["table", "source version", "rows"],
                  [(n, t.source_version, t.rows) for n, t in done.tables.items()])


@app.command()
@handles_errors
def restore(
    date: str = typer.Argument(..., help="Date of the backup to restore (YYYY-MM-DD)."),
    policy: Optional[Path] = PolicyOpt,
    lake: Optional[str] = LakeOpt,
):
    """Restore backups/DATE into raw/, re-applying the deletion ledger before any table is readable.

    Example: `wasure restore 2026-11-01`
    """
    from jobs.lake.backup_ledger import ledger_key
    from jobs.backup import run_restore
    from jobs.runtime.spark import get_spark

    loaded, where, day = policy_from_option(policy), lake_from_option(lake), date_option(date, "DATE")
    ledger_key(loaded, where)
    with step("starting Spark"):
        spark = get_spark("wasure-restore")
    with console.status("restore") as status:
        report = run_restore(spark, loaded, where, day, progress=lambda m: status.update(m))
    summary_table(f"restored backup {report.date} (deletion ledger re-applied)", ["table", "rows in backup", "subjects withheld", "rows restored"],
                  [(n, t.rows_in_backup, t.subjects_withheld, t.rows_restored) for n, t in report.tables.items()])
