"""Receipts and the per-request audit row, rebuilt from what is persisted: no personal value."""
from __future__ import annotations

import datetime as dt
import json

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.lake.backup_catalog import expires_on, list_backups
from jobs.lake.backup_ledger import read_ledger
from jobs.erasure.model import EXTENDED, Request, now_utc
from jobs.erasure.plan import all_commits, effective_plan
from jobs.lake.layout import Lake
from jobs.lake.lineage import RETAINED, retained_purpose
from jobs.policy import Policy
from jobs.lake.storage import join

# ------------------------------------------------------------------ receipts and audit

def build_receipts(spark: SparkSession, policy: Policy, lake: Lake, requests: list[Request], as_of: dt.date,
                   closing: bool = False, table_commits: dict[str, list] | None = None) -> list[dict]:
    """Receipt per request, rebuilt from what is persisted (state, plans, commits, ledger): no personal value."""
    ids = [r.request_id for r in requests]
    table_commits = table_commits if table_commits is not None else all_commits(spark, policy, lake)
    plan = effective_plan(spark, lake, table_commits, ids)
    commits = {name: {v: m for v, m, _x in found} for name, found in table_commits.items()}
    ledger_rows: dict[tuple[str, str], object] = {}
    ledger = read_ledger(spark, lake)
    if ledger is not None:
        for row in ledger.where(F.col("request_id").isin(ids)).collect():
            ledger_rows[(row.request_id, row.subject_hash)] = row
    existing = {d.isoformat() for d in list_backups(lake)}
    receipts = []
    for r in requests:
        table_versions, purge_due = _erasure_commits_of(r, commits)
        purged = r.states.get("purged")
        purged_on = dt.date.fromisoformat(str(purged["as_of"])) if purged else None
        subjects = [_subject_entry(policy, plan.get((r.request_id, h), {}), h, ledger_rows.get((r.request_id, h)),
                                   existing, purged_on or purge_due) for h in r.subject_hashes]
        totals: dict[str, int] = {}
        for subject in subjects:
            for t, n in subject["rows_removed"].items():
                totals[t] = totals.get(t, 0) + n
        gone = [dt.date.fromisoformat(s["last_byte_gone"]) for s in subjects if s["last_byte_gone"]]
        last_gone_all = max(gone) if gone else None
        retained = r.states.get("retained_copy", {}).get("detail", {}).get("tables", [])
        met = None
        if purged_on is not None:
            met = purged_on <= r.deadline
        elif as_of > r.deadline:
            met = False
        receipt = {
            "request_id": r.request_id,
            "source": r.source,
            "received_at": r.received_at.isoformat(sep=" "),
            "deadline": r.deadline.isoformat(),
            "deadline_extension": (r.states.get(EXTENDED) or {}).get("detail"),
            "deadline_basis": f"received + defaults.erasure_deadline_days ({policy.defaults.erasure_deadline_days} days; "
                              "CCPA: 45 days), met when the lake's last copy is physically purged",
            "deadline_met": met,
            "state": "closed" if closing else r.state,
            "states": {s: str(v["at"]) for s, v in r.states.items()} | ({"closed": str(now_utc())} if closing else {}),
            "subject_id_hash": f"HMAC-SHA256 with key {policy.defaults.ledger_key_id}",
            "subjects": subjects,
            "rows_removed": dict(sorted(totals.items())),
            "table_versions": table_versions,
            "retained_pseudonymized": [f"pseudonymized/{retained_purpose(policy.tables[t])}/{RETAINED}/{t}" for t in retained],
            "derived_copies_erased": r.states.get("deleted", {}).get("detail", {}).get("derived_copies", []),
            "scope": "every raw table of the policy, every copy derived from them (仮名加工情報 under pseudonymized/, "
                     "staging/ and quarantine/, see jobs/lake/lineage.py) and the backups holding the subject",
            "purge_due": purge_due.isoformat() if purge_due else None,
            "purged_on": purged_on.isoformat() if purged_on else None,
            "verification": r.states.get("verified", {}).get("detail") or None,
            "last_byte_gone": last_gone_all.isoformat() if last_gone_all else None,
            "policy_sha256": policy.sha256,
        }
        # Replaced atomically (a reader sees the old receipt or the new one), receipts/ created on first use.
        lake.files.write_text(join(lake.receipts, f"{r.request_id}.json"),
                              json.dumps(receipt, indent=2, ensure_ascii=False, sort_keys=False))
        receipts.append(receipt)
    return receipts


def _erasure_commits_of(request: Request, commits: dict[str, dict[int, dict]]) -> tuple[dict, dt.date | None]:
    """The request's erasure commit per table (versions before and of it, purge due) and the latest purge due."""
    table_versions, purge_due = {}, None
    for name, by_version in commits.items():
        for version, meta in by_version.items():
            if request.request_id in meta.get("requests", []):
                table_versions[name] = {"before": meta["version_before"], "erasure_commit": version, "purge_due": meta["purge_due"]}
                due = dt.date.fromisoformat(meta["purge_due"])
                purge_due = max(purge_due, due) if purge_due else due
    return table_versions, purge_due


def _subject_entry(policy: Policy, entries: dict, subject_hash: str, ledger_row, existing: set[str],
                   rows_gone_on: dt.date | None) -> dict:
    """One subject of a receipt: rows removed and held per table, the backups still holding it, and
    the day its last byte is gone (its rows' purge, or the last of those backups' expiry)."""
    removed = {t: int(e.rows_removed) for t, e in sorted(entries.items()) if e.rows_removed}
    held = [{"table": t, "hold_id": e.hold_id, "reason": e.hold_reason,
             "until": e.hold_until.isoformat() if e.hold_until else None, "rows_kept": int(e.rows_held)}
            for t, e in sorted(entries.items()) if e.hold_id and e.rows_held]
    backups = [{"date": d, "expires": expires_on(policy, dt.date.fromisoformat(d)).isoformat(),
                "still_exists": d in existing} for d in (ledger_row.backups if ledger_row else [])]
    ends = [rows_gone_on] if removed else []
    ends = [e for e in ends + [dt.date.fromisoformat(b["expires"]) for b in backups] if e is not None]
    last_gone = max(ends) if ends else None
    found = bool(entries) and any((e.rows_removed or e.rows_held) for e in entries.values())
    subject_table = entries.get(policy.subject.table)
    return {
        "subject_hash": subject_hash,
        "found": found,
        "in_subject_table": bool(subject_table and (subject_table.rows_removed or subject_table.rows_held)),
        "message": None if found else "no data found for this subject in the lake",
        "rows_removed": removed,
        "held": held,
        "backups_holding": backups,
        "last_byte_gone": last_gone.isoformat() if last_gone else None,
    }


def audit_row(receipt: dict, batch_id: str) -> tuple:
    held = [{"table": h["table"], "hold_id": h["hold_id"], "reason": h["reason"]} for s in receipt["subjects"] for h in s["held"]]
    backups = sorted({b["date"] for s in receipt["subjects"] for b in s["backups_holding"]})
    return (receipt["request_id"], receipt["source"], dt.datetime.fromisoformat(receipt["received_at"]),
            dt.date.fromisoformat(receipt["deadline"]), now_utc(), [s["subject_hash"] for s in receipt["subjects"]],
            len(receipt["subjects"]), sum(1 for s in receipt["subjects"] if s["found"]),
            sum(receipt["rows_removed"].values()), json.dumps(receipt["rows_removed"], sort_keys=True),
            json.dumps(held, sort_keys=True, ensure_ascii=False), backups,
            dt.date.fromisoformat(receipt["purged_on"]) if receipt["purged_on"] else None,
            dt.date.fromisoformat(receipt["last_byte_gone"]) if receipt["last_byte_gone"] else None,
            receipt["deadline_met"], receipt["policy_sha256"], batch_id, f"receipts/{receipt['request_id']}.json")
