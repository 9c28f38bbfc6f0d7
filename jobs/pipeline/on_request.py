"""The request-driven steps: account closure / erasure (dags/wasure_account_closure.py), the backup
lifecycle and erasure deadlines (dags/wasure_backup_lifecycle.py), access requests
(dags/wasure_access_request.py). Each validates before any data is touched."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from jobs.runtime.console import CheckFailed, InputError
from jobs.pipeline.common import (CLOSURE_SOURCES, DEFAULT_DEADLINE_WARN_DAYS, DeadlineAlert, _jsonable, _spark, load,
                                  run_date)
from jobs.lake.storage import join


# ------------------------------------------------------------------ closure (erasure on request)

def validate_closure(policy: str | None, lake: str | None, subject_ids: Any, request_id: Any, source: Any,
                     dry_run: Any) -> dict:
    """Check a closure/erasure trigger before any data is touched (no Spark, nothing written).

    subject_ids: a non-empty list of ids matching policy.subject.id_pattern, no duplicates;
    request_id: 1-80 characters [A-Za-z0-9._-] (names the receipt), or empty to derive one from the
    ids (keyed, deterministic); source: one of account_closure, ccpa, appi, gdpr; dry_run: a bool.
    Also checks the lake has every policy table and the keys the erasure needs are available.
    Raises InputError listing every problem (positions, never the ids)."""
    from jobs.erasure import check_request_id, check_subject_ids, default_request_id
    from jobs.lake.layout import is_delta

    problems: list[str] = []
    if not isinstance(subject_ids, (list, tuple)):
        problems.append("subject_ids: must be a list of subject ids")
        subject_ids = []
    elif not subject_ids:
        problems.append("subject_ids: at least one subject id is required")
    if not isinstance(dry_run, bool):
        problems.append("dry_run: must be true or false")
    if source not in CLOSURE_SOURCES:
        problems.append(f"source: must be one of {', '.join(CLOSURE_SOURCES)}")
    if request_id not in (None, "") and not isinstance(request_id, str):
        problems.append("request_id: must be a string")
    try:
        pol, lk = load(policy, lake)
    except InputError as exc:
        raise InputError("; ".join(problems + [str(exc)])) from None
    ids: list[str] = []
    if subject_ids:
        non_strings = [i for i, s in enumerate(subject_ids, 1) if not isinstance(s, str)]
        if non_strings:
            problems.append(f"subject_ids: entries {', '.join(map(str, non_strings[:20]))} are not strings")
        else:
            try:
                ids = check_subject_ids(pol, [(f"subject_ids[{i}]", s) for i, s in enumerate(subject_ids, 1)])
            except InputError as exc:
                problems.append(str(exc))
    if isinstance(request_id, str) and request_id:
        try:
            check_request_id(request_id, "request_id")
        except InputError as exc:
            problems.append(str(exc))
    missing = [n for n, t in pol.tables.items() if not is_delta(lk.table_path(t))]
    if missing:
        problems.append(f"lake {lk.uri}: no table(s) {', '.join(missing)}")
    if problems:
        raise InputError("bad closure request (nothing was touched):\n  " + "\n  ".join(problems))
    from jobs.lake.backup_ledger import ledger_key

    _key_id, key = ledger_key(pol, lk)                     # the erasure cannot run without it
    from jobs.erasure import check_purpose_keys

    check_purpose_keys(pol, lk, [source])
    resolved = request_id or default_request_id(key, ids, source)
    return {"step": "validate", "request_id": resolved, "source": source, "subjects": len(ids), "dry_run": dry_run,
            "policy": pol.source, "lake": lk.uri, "receipt": join(lk.receipts, f"{resolved}.json")}


def _subjects_from_env() -> list[str]:
    raw = os.environ.get("WASURE_ERASE_SUBJECTS", "")
    return [s for s in re.split(r"[\s,]+", raw) if s]


def closure(policy: str | None, lake: str | None, run_date_: Any = None, subject_ids: list[str] | None = None,
            request_id: str | None = None, source: str = "account_closure", dry_run: bool = False) -> dict:
    """Erase the subjects of one closure / erasure request (``jobs.erasure.run``): checks first, then
    the state machine up to where the grace period lets it go; the receipt is written under
    <lake>/receipts/<request id>.json. Also continues every other open request (erasure's resume).
    Subject ids come from the argument or, under spark-submit, from $WASURE_ERASE_SUBJECTS."""
    from jobs.erasure import RequestInput, run

    subject_ids = list(subject_ids) if subject_ids else _subjects_from_env()
    checked = validate_closure(policy, lake, subject_ids, request_id, source, bool(dry_run))
    pol, lk = load(policy, lake)
    day = run_date(run_date_)
    ids = [s.strip() for s in subject_ids]
    report = run(_spark("erasure"), pol, lk, [RequestInput(checked["request_id"], ids, source)], as_of=day, dry_run=bool(dry_run))
    mine = [r for r in report.receipts if r["request_id"] == checked["request_id"]]
    out = {"step": "closure", "request_id": checked["request_id"], "source": source, "dry_run": bool(dry_run),
           "batch_id": report.batch_id, "as_of": day.isoformat(), "subjects": len(ids),
           "waiting": report.waiting, "notes": report.notes,
           "other_requests_advanced": sorted({r["request_id"] for r in report.receipts} - {checked["request_id"]})}
    if dry_run:
        out["plans"] = [{k: p[k] for k in ("request_id", "subjects", "subjects_found", "rows_to_remove", "files",
                                           "backups_holding", "retained_pseudonymized")} | {"held": len(p["held"])}
                        for p in report.plans]
        out["receipt"] = None
    else:
        out.update(receipt_summary(lk, checked["request_id"], mine[0] if mine else None))
    return out


def receipt_summary(lake_or_root, request_id: str, receipt: dict | None = None) -> dict:
    """Receipt path and its non-personal headline (state, deadline, rows removed) for XCom."""
    from jobs.lake.layout import Lake

    lk = lake_or_root if isinstance(lake_or_root, Lake) else Lake.at(lake_or_root)
    path = join(lk.receipts, f"{request_id}.json")
    if receipt is None:
        if not lk.files.is_file(path):
            raise CheckFailed(f"no receipt at {path}: the erasure of request {request_id} did not record one")
        receipt = json.loads(lk.files.read_text(path))
    return {"receipt": path, "state": receipt["state"], "deadline": receipt["deadline"],
            "deadline_met": receipt["deadline_met"], "purge_due": receipt["purge_due"],
            "rows_removed": sum(receipt["rows_removed"].values()),
            "held": sum(len(s["held"]) for s in receipt["subjects"]),
            "subjects_found": sum(1 for s in receipt["subjects"] if s["found"]),
            "last_byte_gone": receipt["last_byte_gone"]}


# ------------------------------------------------------------------ backup lifecycle and deadlines

def expire_backups(policy: str | None, lake: str | None, run_date_: Any = None) -> dict:
    """Delete expired backups (and end the quarantines they held)."""
    from jobs.backup import expire_backups as expire

    pol, lk = load(policy, lake)
    result = expire(_spark("backup-expire"), pol, lk, run_date(run_date_))
    return {"step": "expire_backups", **_jsonable(result)}


def end_quarantines(policy: str | None, lake: str | None, run_date_: Any = None) -> dict:
    """Release deletion-ledger subjects whose last backup is gone (derived from the disk: heals killed runs)."""
    from jobs.lake.backup_ledger import read_ledger, sync_ledger

    _pol, lk = load(policy, lake)
    spark = _spark("backup-quarantine")
    released = sync_ledger(spark, lk)
    ledger = read_ledger(spark, lk)
    counts = {r.status: r["count"] for r in ledger.groupBy("status").count().collect()} if ledger is not None else {}
    return {"step": "end_quarantines", "released_now": released, "ledger": counts}


def advance_erasures(policy: str | None, lake: str | None, run_date_: Any = None) -> dict:
    """Continue every open erasure request: those whose grace has passed are purged, verified
    (scan of every file for their identifying values) and closed with a receipt."""
    from jobs.erasure import STATES, load_states, run

    pol, lk = load(policy, lake)
    day = run_date(run_date_)
    spark = _spark("erasure-resume")
    before = {r.request_id: r.state for r in load_states(spark, lk).values()}
    report = run(spark, pol, lk, [], as_of=day)
    after = {r.request_id: r.state for r in load_states(spark, lk).values()}
    return {"step": "advance_erasures", "as_of": day.isoformat(),
            "closed_now": sorted(i for i, s in after.items() if s == "closed" and before.get(i) != "closed"),
            "open": {i: s for i, s in sorted(after.items()) if s != "closed"},
            "waiting": report.waiting, "receipts": [f"receipts/{r['request_id']}.json" for r in report.receipts],
            "states": {s: sum(1 for v in after.values() if v == s) for s in STATES if any(v == s for v in after.values())}}


def reverify_erasures(policy: str | None, lake: str | None, run_date_: Any = None) -> dict:
    """Re-run the residue scan for every erasure whose grace has passed (state purged or later):
    a restore or a stray copy that brought data back fails this task (files named, never values)."""
    from jobs.erasure import STATES, load_states, verify

    pol, lk = load(policy, lake)
    spark = _spark("verify-erasure")
    done = sorted(r.request_id for r in load_states(spark, lk).values() if r.order >= STATES.index("purged"))
    if not done:
        return {"step": "reverify_erasures", "requests": [], "note": "no erasure past its grace yet: nothing to verify"}
    report = verify(spark, pol, lk, done)
    return {"step": "reverify_erasures", "requests": report.requests, "method": report.method,
            "excluded_backups": report.excluded_backups, "findings": len(report.findings)}


def erasure_deadlines(policy: str | None, lake: str | None, run_date_: Any = None, warn_days: int | None = None) -> dict:
    """Erasure requests not yet physically purged whose due date (received + policy
    defaults.erasure_deadline_days, 45 for CCPA) is within ``warn_days`` days (default
    $WASURE_DEADLINE_WARN_DAYS or 14) or already past. Raises DeadlineAlert listing them."""
    from jobs.erasure import STATES, load_states

    pol, lk = load(policy, lake)
    day = run_date(run_date_)
    if warn_days in (None, ""):
        warn_days = int(os.environ.get("WASURE_DEADLINE_WARN_DAYS", DEFAULT_DEADLINE_WARN_DAYS))
    warn_days = int(warn_days)
    if warn_days < 0:
        raise InputError("warn_days must be >= 0")
    requests = load_states(_spark("erasure-deadlines"), lk).values()
    open_requests = [r for r in requests if r.order < STATES.index("purged")]
    near = sorted(({"request_id": r.request_id, "source": r.source, "state": r.state,
                    "received_at": r.received_at.isoformat(sep=" "), "due": r.deadline.isoformat(),
                    "days_left": (r.deadline - day).days, "extended": "extended" in r.states}
                   for r in open_requests if (r.deadline - day).days <= warn_days), key=lambda x: x["days_left"])
    result = {"step": "erasure_deadlines", "as_of": day.isoformat(), "warn_days": warn_days,
              "deadline_days": pol.defaults.erasure_deadline_days, "open": len(open_requests), "approaching": near}
    if near:
        lines = [f"{n['request_id']} ({n['source']}, state {n['state']}): due {n['due']}"
                 + (" (deadline extended once)" if n["extended"] else "") + ", "
                 + (f"{n['days_left']} day(s) left" if n['days_left'] >= 0 else f"OVERDUE by {-n['days_left']} day(s)")
                 for n in near]
        raise DeadlineAlert(f"{len(near)} erasure request(s) due within {warn_days} day(s) "
                            f"(deadline {pol.defaults.erasure_deadline_days} days from receipt):\n  " + "\n  ".join(lines))
    return result


# ------------------------------------------------------------------ access requests

def exports_dir(lake) -> str:
    """Where access exports go (a local folder: the export is handed to the subject, it is not lake
    data): $WASURE_EXPORTS, else `wasure-exports` beside (never inside) a local lake, else in the
    home folder of the machine running the job."""
    if os.environ.get("WASURE_EXPORTS"):
        return os.environ["WASURE_EXPORTS"]
    return str((lake.root.parent if lake.is_local else Path.home()) / "wasure-exports")


def _access_request(pol, lk, subject_ids: Any, request_id: Any, formats: Any):
    """The trigger's parameters as a checked ``jobs.access.AccessRequest``; InputError listing every
    problem (never the id) when they are not one."""
    from jobs.access import AccessRequest

    ids = subject_ids if isinstance(subject_ids, (list, tuple)) else []
    try:
        if len(ids) != 1 or not isinstance(ids[0], str):
            raise InputError("subject_id: exactly one subject id is required")
        return AccessRequest.checked(pol, lk, ids[0], request_id if isinstance(request_id, str) else "",
                                     exports_dir(lk), list(formats or []), labels=("subject_id", "request_id"))
    except InputError as exc:
        raise InputError(f"bad access request (nothing was touched):\n  {exc}") from None


def validate_access(policy: str | None, lake: str | None, subject_ids: Any, request_id: Any, formats: Any) -> dict:
    """Check an access-request trigger before any data is touched (no Spark, nothing written):
    exactly one subject id matching the policy, a request id, formats among json / csv / html, an
    export folder outside the lake, the ledger key. Raises InputError listing every problem (never the id)."""
    pol, lk = load(policy, lake)
    request = _access_request(pol, lk, subject_ids, request_id, formats)
    return {"step": "validate", "request_id": request.request_id, "formats": list(request.formats),
            "lake": lk.uri, "receipt": join(lk.receipts, f"access-{request.request_id}.json")}


def access(policy: str | None, lake: str | None, run_date_: Any = None, subject_ids: list[str] | None = None,
           request_id: str | None = None, formats: list[str] | None = None) -> dict:
    """Answer one access / portability request (``jobs.access.run``); the export goes to
    ``exports_dir`` outside the lake. Ids come from the argument or $WASURE_ERASE_SUBJECTS."""
    from jobs.access import run

    pol, lk = load(policy, lake)
    request = _access_request(pol, lk, list(subject_ids) if subject_ids else _subjects_from_env(), request_id, formats)
    report = run(_spark("access"), pol, lk, request)
    return {"step": "access", "request_id": report.request_id, "directory": report.directory, "files": report.files,
            "rows_by_table": report.rows, "legal_holds": report.holds, "deadline": report.deadline.isoformat(),
            "receipt": report.receipt, "notes": report.notes}
