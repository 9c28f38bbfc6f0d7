"""`wasure erase`: one run over new and open requests, the dry run, and the spark-submit entry point."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Callable, Iterable

from pyspark.sql import SparkSession

from jobs.lake.backup_catalog import unexpired_backups
from jobs.lake.backup_ledger import ledger_key, subject_hash, subjects_in_backups
from jobs.runtime.console import InputError
from jobs.lake.holds import HoldBook
from jobs.erasure.intake import RequestInput, check_request_id, check_source
from jobs.erasure.model import KEEPS_PSEUDONYMIZED, STATES, ErasureReport, Request, load_states, now_utc
from jobs.erasure.plan import pseudonymize_tables, table_hits
from jobs.erasure.receipts import build_receipts
from jobs.erasure.steps import Batch
from jobs.erasure.vault import destroy_vault, read_vault
from jobs.lake.layout import Lake, check_lake
from jobs.lake.lease import with_lease
from jobs.lake.lineage import copy_key_ids, derived_copies, retained_purpose
from jobs.policy import Policy

# ------------------------------------------------------------------ run

def needed_purposes(policy: Policy, lake: Lake, sources: Iterable[str]) -> list[str]:
    """The purposes whose keys a batch of these sources needs: every purpose with a derived copy
    in the lake (the subjects' rows there are found by their pseudonyms) and, for requests that keep
    仮名加工情報, the purposes that pseudonymize the retained rows."""
    sources = list(sources)
    if not sources:
        return []
    purposes = {copy.purpose for copy in derived_copies(policy, lake) if copy.purpose in policy.purposes}
    if any(s in KEEPS_PSEUDONYMIZED for s in sources):
        purposes |= {retained_purpose(policy.tables[t]) for t in pseudonymize_tables(policy)}
    return sorted(purposes)


def check_purpose_keys(policy: Policy, lake: Lake, sources: Iterable[str]) -> dict[str, tuple[str, bytes]]:
    """The purpose keys of ``needed_purposes``: a missing key is exit 2 before any write."""
    from jobs.runtime.keys import load_purpose_keys

    return load_purpose_keys(policy, needed_purposes(policy, lake, sources), lake)


def copy_keys(spark: SparkSession, policy: Policy, lake: Lake) -> tuple[list, dict[str, list[bytes]]]:
    """The derived copies and, per copy, the keys of the key ids its rows carry (a rotated key's
    too): a key that is gone is exit 2 before any write (its copy could not be searched)."""
    from jobs.runtime.keys import load_key

    copies = derived_copies(policy, lake)
    ids = copy_key_ids(spark, lake, copies) if copies else {}
    keys = {key_id: load_key(key_id, lake) for key_id in sorted({k for found in ids.values() for k in found})}
    return copies, {relative: [keys[k] for k in found] for relative, found in ids.items()}


def new_request(policy: Policy, key: bytes, given: RequestInput, now: dt.datetime) -> Request:
    received = given.received_at or now
    return Request(given.request_id, given.source, received,
                   received.date() + dt.timedelta(days=policy.defaults.erasure_deadline_days),
                   [subject_hash(key, s) for s in given.subjects], subjects=list(given.subjects))


@with_lease("erasure")
def run(spark: SparkSession, policy: Policy, lake: Lake, requests: list[RequestInput] | None = None, *,
        as_of: dt.date | None = None, dry_run: bool = False, resume: bool = True,
        progress: Callable[[str], None] = lambda _m: None,
        on_state: Callable[[str, list[str]], None] = lambda _s, _ids: None) -> ErasureReport:
    """Erase the given requests' subjects; with ``resume`` also continue every open request.

    ``on_state(state, request_ids)`` is called after each transition is committed (tests kill runs there)."""
    requests = list(requests or [])
    today = dt.datetime.now(dt.timezone.utc).date()
    as_of = as_of or today
    now = now_utc() if as_of == today else dt.datetime.combine(as_of, dt.time())
    key_id, key = ledger_key(policy, lake)                 # exit 2 before any write
    check_lake(spark, policy, lake)       # missing tables, schema drift: exit 2 before any write
    for given in requests:
        check_request_id(given.request_id)
        check_source(given.source)
    ids = [g.request_id for g in requests]
    if len(set(ids)) != len(ids):
        raise InputError("the same request id was given twice")
    check_purpose_keys(policy, lake, [g.source for g in requests])
    known = load_states(spark, lake)
    batch_id = f"era-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    report = ErasureReport(batch_id, as_of, dry_run)
    new, batch = sort_requests(policy, key, requests, known, now, report)
    if dry_run:
        report.plans = dry_run_plans(spark, policy, lake, new + batch, as_of, key)
        return report
    if resume:
        for request in known.values():
            if request.state != "closed" and request.request_id not in ids:
                batch.append(request)
    for request in batch:                                   # plain ids and values of resumed requests
        vault = read_vault(lake, key, request.request_id)
        if vault is None:
            report.notes.append(f"request {request.request_id} cannot continue: its vault is missing")
            continue
        request.subjects, request.values = vault["subjects"], vault["values"]
        request.pseudonyms = [tuple(p) for p in vault.get("pseudonyms", [])]
    batch = [r for r in batch if r.subjects or not r.subject_hashes]
    # Every open request needs the purpose keys: its rows in derived copies are found, and verified
    # gone, by its pseudonyms (and closures keep theirs under the retained purpose).
    purpose_keys = check_purpose_keys(policy, lake, [r.source for r in batch + new])
    copies = copy_keys(spark, policy, lake) if batch or new else ([], {})
    # Closed requests whose vault survived a kill between `closed` and its destruction.
    for request in known.values():
        if request.state == "closed":
            destroy_vault(lake, request.request_id)
    if not batch and not new:
        if not report.notes:
            report.notes.append("no open erasure request: nothing to do")
        return report
    work = Batch(spark, policy, lake, as_of, key_id, key, batch_id, progress, on_state, purpose_keys, copies)
    if new:
        work.receive(new)
    everyone = batch + new
    advance(work, everyone, report)
    still_open = [r for r in everyone if r.state != "closed"]
    if still_open:
        report.receipts += build_receipts(spark, policy, lake, still_open, as_of, table_commits=work.all_commits())
    return report


def sort_requests(policy: Policy, key: bytes, requests: list[RequestInput], known: dict[str, Request],
                  now: dt.datetime, report: ErasureReport) -> tuple[list[Request], list[Request]]:
    """(new requests, open ones given again). A known request id given for other subjects is exit 2;
    a closed one is a note pointing at its receipt."""
    new: list[Request] = []
    batch: list[Request] = []
    for given in requests:
        request = new_request(policy, key, given, now)
        existing = known.get(given.request_id)
        if existing is None:
            new.append(request)
            continue
        if sorted(existing.subject_hashes) != sorted(request.subject_hashes):
            raise InputError(f"request {given.request_id} was received earlier for other subject(s); use a new --request-id")
        existing.subjects = list(given.subjects)
        if existing.state == "closed":
            report.notes.append(f"request {given.request_id} is already closed (receipt receipts/{given.request_id}.json)")
            continue
        batch.append(existing)
    return new, batch


def advance(work: Batch, requests: list[Request], report: ErasureReport) -> None:
    """Each request as far as it may go now, state by state (STATES), all requests of a state at once."""
    steps = [("retained_copy", work.retain), ("deleted", work.delete), ("backups_quarantined", work.quarantine_backups)]
    for state, action in steps:
        todo = [r for r in requests if r.order == STATES.index(state) - 1]
        if todo:
            action(todo)
    todo = [r for r in requests if r.state == "backups_quarantined"]
    if todo:
        work.purge(todo, report)
    todo = [r for r in requests if r.state == "purged"]
    if todo:
        work.verify(todo)
    todo = [r for r in requests if r.state == "verified"]
    if todo:
        work.close(todo, report)


def dry_run_plans(spark: SparkSession, policy: Policy, lake: Lake, requests: list[Request], as_of: dt.date, key: bytes) -> list[dict]:
    """What a run would remove, keep (and why) and find in backups, per request; nothing is written."""
    holds = HoldBook.load(spark, policy, lake, as_of)
    subjects = sorted({s for r in requests for s in r.subjects})
    hits = table_hits(spark, lake, policy, list(policy.tables), subjects)
    holding = subjects_in_backups(spark, policy, lake, subjects, unexpired_backups(policy, lake, as_of))
    plans = []
    for r in requests:
        rows, held, files = {}, [], set()
        for name in policy.tables:
            for s in r.subjects:
                n = sum(hits[name].get(s, {}).values())
                if not n:
                    continue
                hold = holds.hold_for(s, name)
                if hold:
                    held.append({"table": name, "hold_id": hold.hold_id, "reason": hold.reason, "rows_kept": n})
                else:
                    rows[name] = rows.get(name, 0) + n
                    files.update((name, f) for f in hits[name][s])
        plans.append({"request_id": r.request_id, "source": r.source, "state": r.state, "subjects": len(r.subjects),
                      "subjects_found": sum(1 for s in r.subjects if any(hits[t].get(s) for t in policy.tables)),
                      "rows_to_remove": rows, "held": held, "files": len(files), "bytes": sum(f[1][1] for f in files),
                      "backups_holding": sorted({d for s in r.subjects for d in holding.get(s, [])}),
                      "retained_pseudonymized": pseudonymize_tables(policy) if r.source in KEEPS_PSEUDONYMIZED else []})
    return plans
