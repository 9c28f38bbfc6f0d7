"""The state machine's steps for one batch (received -> retained_copy -> deleted -> backups_quarantined -> purged -> verified -> closed)."""
from __future__ import annotations

import datetime as dt
import uuid
from concurrent.futures import ThreadPoolExecutor

from pyspark.sql import functions as F

from anonymizers.frames import local_frame
from anonymizers.pseudonym import pseudonym_forms
from jobs.lake.backup_catalog import expires_on, unexpired_backups
from jobs.lake.backup_crypto import reading_backups
from jobs.lake.backup_ledger import add_to_ledger, subject_hash, subjects_in_backups
from jobs.runtime.console import CheckFailed
from jobs.lake.holds import HoldBook
from jobs.erasure.model import (
    AUDIT_SCHEMA, CONCURRENT_ERASES, JOB, KEEPS_PSEUDONYMIZED, REQUESTS_TABLE, ROWS_SCHEMA, ROWS_TABLE, TOKEN,
    VALUES_SCHEMA, VALUES_TABLE, ErasureReport, Request, append_states, now_utc,
)
from jobs.erasure.plan import (
    CommitAuditLake, SubjectRows, capture_values, commits_by_request, effective_plan, erasure_commits, plan_rows,
    pseudonymize_tables, quarantined_backups, relative_finding, scan_subject_rows, subjects_frame, table_hits,
)
from jobs.erasure.receipts import audit_row, build_receipts
from jobs.erasure.vault import destroy_vault, value_hash, write_vault
from jobs.lake.buckets import bucket_of
from jobs.lake.layout import SUBJECT_BUCKET, append_rows, create_table, is_delta, purge_superseded, read_now, table_version
from jobs.lake.table import LakeTable
from jobs.lake.lineage import RETAINED, DerivedCopy, keeps_pseudonymized, retained_purpose
from jobs.lake.quarantine import commit_metadata, physical_purge, reconcile
from jobs.runtime.spark import new_session
from jobs.lake.residue import EXCLUDE_SEPARATOR, Finding, scan_for_values

# ------------------------------------------------------------------ the job

class Batch:
    """One run: the requests, the keys, the holds, and the per-step actions."""

    def __init__(self, spark, policy, lake, as_of, key_id, key, batch_id, progress, on_state, purpose_keys, copies):
        self.spark, self.policy, self.lake, self.as_of = spark, policy, lake, as_of
        self.key_id, self.key, self.batch_id = key_id, key, batch_id
        self.purpose_keys: dict[str, tuple[str, bytes]] = purpose_keys      # current keys of the purposes
        self.copies: list[DerivedCopy] = copies[0]                            # jobs.lake.lineage, found at the start
        self.copy_keys: dict[str, list[bytes]] = copies[1]                    # copy -> keys of its rows' key ids
        self.progress, self.on_state = progress, on_state
        self._holds: HoldBook | None = None
        self._commits: dict[str, list] = {}
        self._subject_rows: SubjectRows | None = None     # receive's scan, reused by delete while current

    def commits(self, table: str) -> list[tuple[int, dict, dict]]:
        """The table's erasure commits (cached for the run; dropped when this run commits to it)."""
        if table not in self._commits:
            self._commits[table] = erasure_commits(self.spark, self.lake.table_path(self.policy.tables[table]))
        return self._commits[table]

    def all_commits(self) -> dict[str, list[tuple[int, dict, dict]]]:
        return {name: self.commits(name) for name in self.policy.tables}

    @property
    def holds(self) -> HoldBook:
        if self._holds is None:
            self._holds = HoldBook.load(self.spark, self.policy, self.lake, self.as_of)
        return self._holds

    def _purpose_tables(self, purpose: str) -> list[str]:
        tables = {n for n, t in self.policy.tables.items()
                  if purpose in t.purposes or (keeps_pseudonymized(t) and retained_purpose(t) == purpose)}
        return sorted(tables | {c.table for c in self.copies if c.purpose == purpose})

    def _purpose_keys(self, purpose: str) -> list[bytes]:
        """The purpose's current key and every key a copy of it was written with (rotations)."""
        keys = [self.purpose_keys[purpose][1]] if purpose in self.purpose_keys else []
        keys += [k for c in self.copies if c.purpose == purpose for k in self.copy_keys.get(c.relative, [])]
        return list(dict.fromkeys(keys))

    def pseudonym_values(self, request: Request) -> list[tuple[str, str | None]]:
        """(pseudonym, exclude) of each subject under each purpose's keys: what a derived copy
        calls the subject. The pseudonym may stay only where the erasure keeps the subject's rows:
        a closure's retained 仮名加工情報 (S5), and the copies (retained ones included) of tables a
        legal hold or statutory record keeping keeps (their staging / quarantine copies too)."""
        out = []
        purposes = sorted(set(self.purpose_keys) | {c.purpose for c in self.copies})
        for purpose in purposes:
            tables = self._purpose_tables(purpose)
            keeps = [n for n in tables if keeps_pseudonymized(self.policy.tables[n]) and retained_purpose(self.policy.tables[n]) == purpose]
            kept_root = [f"pseudonymized/{purpose}/{RETAINED}"] if request.source in KEEPS_PSEUDONYMIZED and keeps else []
            for s in request.subjects:
                held_tables = [n for n in tables if self.holds.hold_for(s, n)]
                if len(held_tables) == len(tables):
                    continue                  # every copy keeps the subject: nothing to look for
                held = [f"pseudonymized/{purpose}/{n}" for n in held_tables]
                held += [f"pseudonymized/{purpose}/{RETAINED}/{n}" for n in held_tables if n in keeps]
                allowed = sorted(kept_root + held)
                for key in self._purpose_keys(purpose):
                    out += [(p, EXCLUDE_SEPARATOR.join(allowed) if allowed else None) for p in pseudonym_forms(key, s)]
        return sorted(set(out), key=lambda p: (p[0], p[1] or ""))

    def _advance(self, state: str, requests: list[Request], details: dict[str, dict] | None = None) -> None:
        if not requests:
            return
        append_states(self.spark, self.lake, state, requests, self.batch_id, self.as_of, details)
        self.on_state(state, [r.request_id for r in requests])

    # -- received
    def receive(self, requests: list[Request]) -> None:
        self.progress("capturing identifying values for verification")
        subjects = sorted({s for r in requests for s in r.subjects})
        self._subject_rows = scan_subject_rows(self.spark, self.policy, self.lake, list(self.policy.tables), subjects)
        values = capture_values(self.spark, self.policy, self.lake, subjects, self.holds, self._subject_rows)
        hashed = []
        details = {}
        for r in requests:
            r.values = sorted({v for s in r.subjects for v in values.get(s, [])})
            r.pseudonyms = self.pseudonym_values(r)
            write_vault(self.lake, self.key, r.request_id, {"subjects": r.subjects, "values": r.values,
                                                            "pseudonyms": [list(p) for p in r.pseudonyms]})
            hashed += [(r.request_id, value_hash(self.key, v), None) for v in r.values if TOKEN.fullmatch(v)]
            hashed += [(r.request_id, value_hash(self.key, p), exclude) for p, exclude in r.pseudonyms]
            details[r.request_id] = {"subjects": len(r.subjects), "values_for_verification": len(r.values),
                                     "pseudonyms_for_verification": len(r.pseudonyms)}
        if hashed:
            df = local_frame(self.spark, hashed, VALUES_SCHEMA)
            path = self.lake.state(VALUES_TABLE)
            create_table(self.spark, path, df, [])
            if "exclude" not in LakeTable(self.spark, path).columns():    # a table from before the column
                self.spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS (exclude STRING)")
            LakeTable(self.spark, path).insert_new(df, "t.request_id = s.request_id AND t.value_hash = s.value_hash "
                                                       "AND t.exclude <=> s.exclude", sole_inserter=True)   # the erasure lease
        self._advance("received", requests, details)

    # -- retained_copy
    def retain(self, requests: list[Request]) -> None:
        from jobs.pseudonymize import retain_pseudonymized

        keeping = [r for r in requests if r.source in KEEPS_PSEUDONYMIZED]
        details = {r.request_id: {"tables": []} for r in requests}
        for name in pseudonymize_tables(self.policy):
            subjects = sorted({s for r in keeping for s in r.subjects if self.holds.hold_for(s, name) is None})
            if not subjects:
                continue
            self.progress(f"keeping 仮名加工情報 of {name}")
            table = self.policy.tables[name]
            keys = subjects_frame(self.spark, subjects, table.subject_buckets).withColumn("all_rows", F.lit(True))
            retain_pseudonymized(self.spark, self.policy, self.lake, name, keys, None)
            for r in keeping:
                details[r.request_id]["tables"].append(name)
        for r in requests:
            if r.source not in KEEPS_PSEUDONYMIZED:
                details[r.request_id]["why_none"] = f"source {r.source}: pseudonymized data is erased too"
        self._advance("retained_copy", requests, details)

    # -- deleted
    def delete(self, requests: list[Request]) -> None:
        empty_done: dict[str, set[str]] = {}
        for row in plan_rows(self.spark, self.lake, [r.request_id for r in requests]):
            if row.empty_plan:
                empty_done.setdefault(row.table, set()).add(row.request_id)
        todo: dict[str, list[Request]] = {}
        for name, table in self.policy.tables.items():
            covered = set(empty_done.get(name, set()))
            for _version, meta, _metrics in self.commits(name):
                covered.update(meta.get("requests", []))
            pending = [r for r in requests if r.request_id not in covered]
            if pending:                       # else done by an earlier (killed) run
                todo[name] = pending
        subjects = sorted({s for pending in todo.values() for r in pending for s in r.subjects})
        scanned = self._subject_rows
        if scanned is not None and scanned.still_answers(self.spark, self.lake, self.policy, list(todo), subjects):
            hits = scanned.files                # received in this run, no table changed since
        else:
            self.progress("finding the subjects' rows and files")
            hits = table_hits(self.spark, self.lake, self.policy, list(todo), subjects)
        # Every table's plan is written BEFORE the first DELETE, in one commit; a plan counts only
        # once its DELETE committed (its plan_id is in the commit metadata) or if it had nothing to do.
        plans, rows = self.plan_deletes(todo, hits)
        if rows:
            append_rows(self.spark, self.lake.state(ROWS_TABLE), local_frame(self.spark, rows, ROWS_SCHEMA))

        def erase(name: str, plan_id: str, erasable: list[str]) -> None:
            # Its own session: the commit metadata is a session setting, and tables commit concurrently.
            session = new_session(self.spark)
            table = self.policy.tables[name]
            path = self.lake.table_path(table)
            files = {f for s in erasable for f in hits[name][s]}
            held_rows = sum(row[6] for row in rows if row[3] == name)
            due = self.as_of + dt.timedelta(days=self.policy.grace_days(name))
            metadata = {"job": JOB, "run_id": self.batch_id, "plan_id": plan_id, "table": name, "action": "erase",
                        "requests": sorted(r.request_id for r in todo[name]), "subjects": len(erasable),
                        "as_of": self.as_of.isoformat(), "policy_sha256": self.policy.sha256,
                        "rows_before": LakeTable(session, path).row_count(), "rows_held": held_rows,
                        "files": len(files), "bytes": sum(size for _f, size in files),
                        "version_before": table_version(session, path), "purge_due": due.isoformat()}
            buckets = sorted({bucket_of(s, table.subject_buckets) for s in erasable})
            with commit_metadata(session, metadata):
                LakeTable(session, path).delete_values(table.subject_key, erasable, {SUBJECT_BUCKET: buckets})

        # One DELETE per table and per derived copy that may hold a subject, a few at once in one pool:
        # most of a small DELETE is driver-side planning and commit work that overlaps well. A
        # failure stops the state here; a re-run skips the tables whose commit carries their
        # plan_id, and finds nothing left in the copies.
        work = [(name, plan_id, erasable) for name, (plan_id, erasable) in plans.items() if erasable]
        copies = self.derived_work(requests)
        if work:
            self.progress(f"erasing from {', '.join(name for name, _p, _e in work)} ({CONCURRENT_ERASES} at a time)")
        if copies:
            self.progress(f"erasing from {len(copies)} derived cop{'y' if len(copies) == 1 else 'ies'} (仮名加工情報)")
        derived = {r.request_id: {"derived_copies": []} for r in requests}
        try:
            with ThreadPoolExecutor(max_workers=CONCURRENT_ERASES, thread_name_prefix="erase") as pool:
                tables = [pool.submit(erase, *item) for item in work]
                removed = [pool.submit(self.erase_copy, *item) for item in copies]
                for future in tables:
                    future.result()
                for (copy, _pseudonyms, ids), future in zip(copies, removed):
                    rows = future.result()
                    for request_id in ids:
                        derived[request_id]["derived_copies"].append({"copy": copy.relative, "batch_rows_removed": rows})
        finally:
            for name, _plan_id, _erasable in work:
                self._commits.pop(name, None)
        inbox = self.lake.state(REQUESTS_TABLE)
        if is_delta(inbox):
            ids = ", ".join(f"'{r.request_id}'" for r in requests)   # request ids are checked: [A-Za-z0-9._-]
            LakeTable(self.spark, inbox).delete_where(f"request_id IN ({ids})")
        self._advance("deleted", requests, derived)

    def plan_deletes(self, todo: dict[str, list[Request]], hits: dict) -> tuple[dict[str, tuple[str, list[str]]], list[tuple]]:
        """Per table (plan id, subjects to erase), and the plan rows: per request, subject and table the
        rows to remove or, under a hold, kept and why (subjects as hashes only)."""
        plans, planned_at = {}, now_utc()
        rows = []
        for name, pending in todo.items():
            plan_id = uuid.uuid4().hex
            names = sorted({s for r in pending for s in r.subjects})
            erasable = [s for s in names if hits[name].get(s) and self.holds.hold_for(s, name) is None]
            plans[name] = (plan_id, erasable)
            for r in pending:
                for s in r.subjects:
                    hold = self.holds.hold_for(s, name)
                    n = sum(hits[name].get(s, {}).values())
                    rows.append((plan_id, self.batch_id, r.request_id, name, subject_hash(self.key, s),
                                 0 if hold else n, n if hold else 0, hold.hold_id if hold else None,
                                 hold.reason if hold else None, hold.until if hold else None, not erasable, planned_at))
        return plans, rows

    def derived_work(self, requests: list[Request]) -> list[tuple[DerivedCopy, list[str], list[str]]]:
        """Where the subjects' rows in derived copies (jobs.lake.lineage) can be: per copy the
        pseudonyms of the subjects it may hold (under each key its rows carry) and the requests
        they come from. A closure keeps its retained copies (S5); a held subject is not looked for."""
        work: list[tuple[DerivedCopy, list[str], list[str]]] = []
        for copy in self.copies:
            keys = self.copy_keys.get(copy.relative, [])          # no key id: an empty copy
            targets, ids = set(), []
            for r in requests:
                if copy.retained and r.source in KEEPS_PSEUDONYMIZED:
                    continue                      # S5: what the closure keeps
                mine = {p for s in r.subjects if self.holds.hold_for(s, copy.table) is None
                        for key in keys for p in pseudonym_forms(key, s)}
                if mine:
                    targets |= mine
                    ids.append(r.request_id)
            if targets:
                work.append((copy, sorted(targets), ids))
        return work

    def erase_copy(self, copy: DerivedCopy, pseudonyms: list[str], ids: list[str]) -> int:
        """One derived copy's DELETE by the pseudonyms, in its own session (per-thread commit
        metadata). Idempotent: a re-run after a kill finds nothing left and records the same copy,
        whose files the purge step then rewrites."""
        session = new_session(self.spark)
        path = self.lake.path(copy.relative)
        metadata = {"job": f"{JOB}_derived", "run_id": self.batch_id, "copy": copy.relative,
                    "requests": sorted(ids), "subjects": len(pseudonyms), "policy_sha256": self.policy.sha256}
        with commit_metadata(session, metadata):
            return LakeTable(session, path).delete_values(copy.subject_column, pseudonyms)

    # -- backups_quarantined
    def quarantine_backups(self, requests: list[Request]) -> None:
        days = unexpired_backups(self.policy, self.lake, self.as_of)
        subjects = sorted({s for r in requests for s in r.subjects})
        self.progress(f"looking for the subjects in {len(days)} unexpired backup(s)")
        holding = subjects_in_backups(self.spark, self.policy, self.lake, subjects, days)
        plan = effective_plan(self.spark, self.lake, self.all_commits(), [r.request_id for r in requests])
        erased_at = now_utc()
        rows, details = [], {}
        for r in requests:
            held_backups: set[str] = set()
            for s in r.subjects:
                h = subject_hash(self.key, s)
                entries = plan.get((r.request_id, h), {})
                removed = sum(e.rows_removed for e in entries.values())
                tables = sorted(t for t in self.policy.tables if not (entries.get(t) and entries[t].hold_id))
                backups = holding.get(s, [])
                held_backups.update(backups)
                if tables and (removed or backups):
                    until = max(expires_on(self.policy, dt.date.fromisoformat(d)) for d in backups) if backups else None
                    rows.append((h, r.request_id, erased_at, tables, backups, until,
                                 "quarantined" if backups else "released", None if backups else erased_at, self.key_id))
            details[r.request_id] = {"backups": sorted(held_backups)}
        add_to_ledger(self.spark, self.lake, rows)
        self._advance("backups_quarantined", requests, details)

    # -- purged
    def purge(self, requests: list[Request], report: ErasureReport) -> list[Request]:
        self.progress("physical purge of files past their grace (REORG ... APPLY (PURGE), superseded files deleted)")
        reconcile(self.spark, self.policy, CommitAuditLake(self.lake.uri), job=JOB, current_run=self.batch_id)
        physical_purge(self.spark, self.policy, self.lake, self.as_of)
        statuses = {(r.table, r.version): (r.status, r.purge_due)
                    for r in read_now(self.spark, self.lake.state("quarantine_ledger")).where(F.col("job") == JOB)
                    .select("table", "version", "status", "purge_due").collect()} if is_delta(self.lake.state("quarantine_ledger")) else {}
        commits = commits_by_request(self.all_commits())
        done, details = [], {}
        for r in requests:
            mine = commits.get(r.request_id, {})
            pending = {t: statuses.get((t, v), ("pending", None)) for t, v in mine.items()}
            not_yet = {t: s for t, s in pending.items() if s[0] != "purged"}
            if not_yet:
                due = max((s[1] for s in not_yet.values() if s[1] is not None), default=None)
                report.waiting[r.request_id] = f"waiting for the physical purge (due {due})"
                continue
            deleted = r.states.get("deleted", {})
            copies = sorted({c["copy"] for c in deleted.get("detail", {}).get("derived_copies", [])})
            if copies and not mine:        # only derived rows: their grace counts from the delete
                due = dt.date.fromisoformat(str(deleted["as_of"])[:10]) + dt.timedelta(days=self.policy.defaults.grace_days)
                if self.as_of < due:
                    report.waiting[r.request_id] = f"waiting for the physical purge (due {due})"
                    continue
            done.append(r)
            details[r.request_id] = {"purged_on": self.as_of.isoformat(), "tables": sorted(mine), "derived_copies": copies}
        if done:
            inbox = self.lake.state(REQUESTS_TABLE)
            if is_delta(inbox):
                purge_superseded(self.spark, inbox)
            # The derived copies' superseded files go with the raw tables' (same grace).
            for relative in sorted({c for r in done for c in details[r.request_id]["derived_copies"]}):
                path = self.lake.path(relative)
                if is_delta(path):
                    self.progress(f"physical purge of {relative}")
                    purge_superseded(self.spark, path)
        self._advance("purged", done, details)
        return done

    # -- verified
    def verify(self, requests: list[Request]) -> None:
        # The pairs fixed at `received` (vault): holds or keys that change later must not move the goal.
        pairs = {r.request_id: [tuple(p) for p in r.pseudonyms] or self.pseudonym_values(r) for r in requests}
        values = {(v, None) for r in requests for v in r.values} | {p for found in pairs.values() for p in found}
        excluded = quarantined_backups(self.spark, self.lake, [r.request_id for r in requests])
        findings: list[Finding] = []
        if values:
            self.progress(f"scanning every file under the lake for {len(values)} identifying value(s) and pseudonym(s)")
            frame = local_frame(self.spark, sorted(values, key=lambda v: (v[0], v[1] or "")), "value string, exclude string")
            with reading_backups(self.spark, self.lake):     # encrypted backups: keys for this read only
                findings = scan_for_values(self.spark, self.lake.uri, frame,
                                           exclude=tuple(f"backups/{d}" for d in excluded))
        if findings:
            raise CheckFailed("erasure verification found residue of the batch's identifying values in "
                              f"{len(findings)} file(s) (values not shown):\n  " + "\n  ".join(relative_finding(self.lake, f) for f in findings))
        details = {r.request_id: {"values_checked": len(r.values), "pseudonyms_checked": len(set(pairs[r.request_id])),
                                  "backups_excluded": excluded} for r in requests}
        self._advance("verified", requests, details)

    # -- closed
    def close(self, requests: list[Request], report: ErasureReport) -> None:
        receipts = build_receipts(self.spark, self.policy, self.lake, requests, self.as_of, closing=True,
                                  table_commits=self.all_commits())
        audit_path = self.lake.audit(JOB)
        known = set()
        if is_delta(audit_path):
            ids = [rc["request_id"] for rc in receipts]
            known = {row.request_id for row in read_now(self.spark, audit_path)
                     .where(F.col("request_id").isin(ids)).select("request_id").collect()}
        rows = [audit_row(rc, self.batch_id) for rc in receipts if rc["request_id"] not in known]
        if rows:
            append_rows(self.spark, audit_path, local_frame(self.spark, rows, AUDIT_SCHEMA))
        self._advance("closed", requests)
        for r in requests:
            destroy_vault(self.lake, r.request_id)
        report.receipts += receipts
