"""Retention enforcement (`wasure retention`): remove what has expired, then purge it physically.

Per table, a row has expired when (REQUIREMENTS S1/S10/S11):
- its business date is older than the table's retention period (basis business_date);
- its subject's account was closed longer ago than the period (basis account_closure);
- its subject is a minor without guardian consent (every table except record-keeping registers);
- its subject withdrew consent for every consent-based purpose the table serves (idem).
Rows under an active legal hold (policy holds and the legal_holds register; per subject and/or
table) are kept and counted per hold (S13).

Each table changes in ONE Delta transaction (a MERGE ... WHEN MATCHED THEN DELETE keyed on the
subject and its bucket, so only the files that hold expired subjects are touched). The commit
carries the run's bookkeeping (no personal value) in its userMetadata, so the audit rows and the
quarantine ledger can always be rebuilt from the table history: a run killed between any two steps
finishes correctly when run again (jobs/lake/quarantine.py). After the grace period, the physical purge
rewrites the files with deleted rows and deletes the superseded ones.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import asdict, dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.runtime.console import CheckFailed, InputError
from jobs.runtime.concurrency import for_each_table
from jobs.lake.layout import SUBJECT_BUCKET, Lake, check_lake, read_now, rows_of_keys, table_version
from jobs.lake.lease import with_lease
from jobs.lake.lineage import retained_purpose
from jobs.lake.quarantine import commit_metadata, delete_keys, physical_purge, reconcile
from jobs.lake.table import LakeTable
from jobs.policy import Policy
from jobs.lake.storage import join
from jobs.lake.subjects import Registers
from jobs.runtime.keys import load_purpose_keys

JOB = "retention"
AVAILABLE_ACTIONS = {"delete", "pseudonymize", "anonymize"}


@dataclass(frozen=True)
class RetentionRequest:
    """A run as asked: business date (default today UTC), dry run, --force past max_delete_share, purge
    after the deletes (the pipeline purges in a step of its own). Nothing in it can contradict the policy."""
    as_of: dt.date | None = None
    dry_run: bool = False
    force: bool = False
    purge: bool = True


@dataclass
class TablePlan:
    table: str
    action: str
    rows_before: int = 0
    to_remove: int = 0
    held: int = 0
    held_by: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    files: int = 0
    bytes: int = 0
    table_level_hold: str | None = None
    version: int | None = None          # the table version the plan classified (read before its rows)

    @property
    def share(self) -> float:
        return self.to_remove / self.rows_before if self.rows_before else 0.0


@dataclass
class RetentionReport:
    run_id: str
    as_of: dt.date
    policy_sha256: str
    dry_run: bool
    plans: list[TablePlan]
    policy_changes: list[str]
    results: dict[str, dict] = field(default_factory=dict)
    purged: list[dict] = field(default_factory=list)
    docs: str | None = None     # Data Docs index of the run's gate


# ------------------------------------------------------------------ finding expired rows

def flag_rows(spark: SparkSession, policy: Policy, lake: Lake, table_name: str, as_of: dt.date,
              registers: Registers | None = None) -> DataFrame:
    """Every row of the table with `_wasure_rule`: why it has expired (business_date,
    account_closure, minor_without_consent, consent_withdrawn) or null. Holds are NOT applied here."""
    registers = registers or Registers(spark, policy, lake)
    table = policy.tables[table_name]
    key = table.subject_key
    df = read_now(spark, lake.table_path(table))      # used at once: the plan checkpoints it, the recount counts it
    retention = table.retention
    date_expired = F.lit(False)
    subject_rules: list[DataFrame] = []
    if retention is not None:
        cutoff = as_of - dt.timedelta(days=retention.period_days)
        if retention.basis == "business_date":
            date_expired = F.col(table.date_column) < F.lit(cutoff)
        else:
            subject_rules.append(registers.closed_before(cutoff).withColumn("rule", F.lit("account_closure")))
    if not table.record_keeping:
        subject_rules.append(registers.minors_without_guardian_consent(as_of).withColumn("rule", F.lit("minor_without_consent")))
        consent_purposes = sorted({p for p in table.purposes if policy.purposes[p].requires_consent})
        if consent_purposes and len(consent_purposes) == len(set(table.purposes)):
            subject_rules.append(registers.withdrawn_all(consent_purposes).withColumn("rule", F.lit("consent_withdrawn")))
    subject_rule = F.lit(None).cast("string")
    if subject_rules:
        flags = subject_rules[0]
        for rule in subject_rules[1:]:
            flags = flags.unionByName(rule)
        flags = flags.groupBy("subject").agg(F.min("rule").alias("_subject_rule"))
        df = df.join(flags, df[key] == flags["subject"], "left").drop("subject")
        subject_rule = F.col("_subject_rule")
    return (df.withColumn("_wasure_rule", F.coalesce(subject_rule, F.when(date_expired, F.lit("business_date"))))
              .drop("_subject_rule"))


def _with_holds(expired: DataFrame, holds: DataFrame, key: str) -> DataFrame:
    """Add `_wasure_hold` (the first hold id that covers the row, or null)."""
    per_subject = holds.where(F.col("subject").isNotNull()).groupBy("subject").agg(F.min("hold_id").alias("_wasure_hold"))
    return expired.join(per_subject, expired[key] == per_subject["subject"], "left").drop("subject")


def _rows_with_status(spark: SparkSession, policy: Policy, lake: Lake, table_name: str, as_of: dt.date,
                      registers: Registers) -> tuple[DataFrame, str | None]:
    """Every row of the table with `_wasure_rule` (null = not expired) and `_wasure_hold`."""
    table = policy.tables[table_name]
    holds = registers.holds_for(table_name, as_of)
    whole_table = registers.table_level_hold(table_name, as_of)
    df = flag_rows(spark, policy, lake, table_name, as_of, registers)
    if whole_table:
        df = df.withColumn("_wasure_hold", F.lit(whole_table))
    else:
        df = _with_holds(df, holds, table.subject_key)
    return df, whole_table


def plan_table(spark: SparkSession, policy: Policy, lake: Lake, table_name: str, as_of: dt.date,
               registers: Registers) -> tuple[TablePlan, DataFrame]:
    """What a run would do to one table, and the (subject, bucket, all_rows) keys it would delete.

    One pass over the table, held in memory: its rows grouped by (rule, hold, file), removable rows
    also by subject and bucket. The plan's per-file summary (the only thing that reaches the driver)
    and the keys both come from it, so the keys are fixed before the first write: deleting accounts
    must not change what devices lose.
    """
    table = policy.tables[table_name]
    plan = TablePlan(table=table_name, action=table.retention.action if table.retention else "delete",
                     version=table_version(spark, lake.table_path(table)))
    df, plan.table_level_hold = _rows_with_status(spark, policy, lake, table_name, as_of, registers)
    removable = F.col("_wasure_rule").isNotNull() & F.col("_wasure_hold").isNull()
    groups = (df.groupBy("_wasure_rule", "_wasure_hold", F.col("_metadata.file_path").alias("file"),
                         F.col("_metadata.file_size").alias("size"),
                         F.when(removable, F.col(table.subject_key)).alias("subject"),
                         F.when(removable, F.col(SUBJECT_BUCKET)).alias("bucket"))
              .count().localCheckpoint(eager=True))
    summary = groups.groupBy("_wasure_rule", "_wasure_hold", "file", "size").agg(F.sum("count").alias("count")).collect()
    files: dict[str, int] = {}
    for row in summary:
        plan.rows_before += row["count"]
        if row["_wasure_rule"] is None:
            continue
        if row["_wasure_hold"] is None:
            plan.to_remove += row["count"]
            plan.reasons[row["_wasure_rule"]] = plan.reasons.get(row["_wasure_rule"], 0) + row["count"]
            files[row.file] = row.size
        else:
            plan.held += row["count"]
            plan.held_by[row["_wasure_hold"]] = plan.held_by.get(row["_wasure_hold"], 0) + row["count"]
    plan.files, plan.bytes = len(files), sum(files.values())
    keys = (groups.where(removable).groupBy("subject", "bucket")
            .agg(F.max(F.col("_wasure_rule") != "business_date").alias("all_rows")))
    return plan, keys


def remaining_expired(spark: SparkSession, policy: Policy, lake: Lake, table_name: str, as_of: dt.date,
                      registers: Registers) -> int:
    """Rows past retention that no hold covers (0 after a complete run)."""
    df, _ = _rows_with_status(spark, policy, lake, table_name, as_of, registers)
    return df.where(F.col("_wasure_rule").isNotNull() & F.col("_wasure_hold").isNull()).count()


# ------------------------------------------------------------------ applying a plan

def _pseudonymize_before_delete(spark, policy, lake, table_name, keys, cutoff):
    from jobs.pseudonymize import retain_pseudonymized

    retain_pseudonymized(spark, policy, lake, table_name, keys, cutoff)


def retired_release_name(release: str, as_of: dt.date) -> str:
    return f"{release}_retired_{as_of:%Y%m%d}"


def _anonymize_before_delete(spark, policy, lake, table_name, keys, as_of, cutoff, registers, progress) -> dict:
    """Action anonymize: the expired rows live on only as 匿名加工情報 built with the policy's release
    (its QIs, k, l, rare-value coding and gate), published as anonymized/<release>_retired_<date>/.
    A failed gate raises before the delete: nothing is removed that was meant to be kept.
    Rows of minors without guardian consent are only deleted (as are restricted subjects' and, for a
    consent purpose, withdrawn subjects': the release job leaves those out). Fewer expired rows than
    k cannot form one k-anonymous class: they are deleted, nothing is published."""
    from jobs import anonymize

    table = policy.tables[table_name]
    release_name = table.retention.release
    release = policy.releases[release_name]
    expired = rows_of_keys(read_now(spark, lake.table_path(table)), table, keys, cutoff).drop(SUBJECT_BUCKET)
    minors = registers.minors_without_guardian_consent(as_of)
    expired = expired.join(minors, expired[table.subject_key] == minors["subject"], "left_anti")
    eligible = expired.where(F.col(table.region_column) == release.region) if release.region else expired
    if eligible.count() < release.k:
        return {"release": None, "rows": 0, "note": f"fewer than k = {release.k} expired rows: deleted, none published"}
    progress(f"anonymizing the expired rows of {table_name} ({release_name})")
    request = anonymize.ReleaseRequest(release_name, as_of, rows=expired, output=retired_release_name(release_name, as_of))
    result = anonymize.run(spark, policy, lake, request, progress)
    return {"release": result.release, "rows": result.rows, "suppressed": result.suppressed, "docs": result.docs}


# ------------------------------------------------------------------ policy snapshots

def _flatten(value, prefix="") -> dict[str, str]:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: json.dumps(value, default=str, ensure_ascii=False)}


def _without_hold_subjects(policy: dict) -> dict:
    """The policy as snapshotted under the lake: a legal hold's subject ids become their number. An
    id kept there would outlive the subject's erasure (and the residue scan would find it)."""
    holds = [{**hold, "subjects": f"{len(hold['subjects'])} subject(s)"}
             if isinstance(hold, dict) and isinstance(hold.get("subjects"), list) else hold
             for hold in policy.get("legal_holds") or []]
    return {**policy, "legal_holds": holds} if "legal_holds" in policy else policy


def policy_changes(lake: Lake, policy: Policy) -> list[str]:
    """Key paths changed since the policy of the last run (snapshots under state/policies)."""
    files, snapshots = lake.files, lake.state("policies")
    files.mkdirs(snapshots)
    for snapshot in files.glob(join(snapshots, "*.json")):   # written before hold ids were left out: rewrite
        try:
            earlier = json.loads(files.read_text(snapshot))
        except (OSError, ValueError):           # not one of ours: the change report names no keys
            continue
        if isinstance(earlier, dict) and _without_hold_subjects(earlier) != earlier:
            files.write_text(snapshot, json.dumps(_without_hold_subjects(earlier), ensure_ascii=False, sort_keys=True))
    current = _without_hold_subjects(policy.model_dump(mode="json", by_alias=True))
    last_file = join(snapshots, "last.txt")
    files.write_text(join(snapshots, f"{policy.sha256}.json"), json.dumps(current, ensure_ascii=False, sort_keys=True))
    if not files.exists(last_file):
        files.write_text(last_file, policy.sha256)
        return ["first run: no earlier policy"]
    last_sha = files.read_text(last_file).strip()
    files.write_text(last_file, policy.sha256)
    if last_sha == policy.sha256:
        return []
    before = _flatten(_without_hold_subjects(json.loads(files.read_text(join(snapshots, f"{last_sha}.json")))))
    after = _flatten(current)
    changes = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            # Hold subjects are ids: name the path, not the values.
            shown = "" if key.startswith("legal_holds") else f": {before.get(key, '-')} -> {after.get(key, '-')}"
            changes.append(f"{key}{shown}")
    return changes


# ------------------------------------------------------------------ the job

def _check_keep_actions(policy: Policy, lake: Lake, plans: list[TablePlan]) -> None:
    """What the pseudonymize / anonymize actions need before their table's delete (the purpose's key,
    the release's hierarchy files), checked for every table before the first table's delete."""
    from jobs.anonymize import check_release

    purposes = {retained_purpose(policy.tables[p.table]) for p in plans if p.action == "pseudonymize"}
    for plan in plans:
        if plan.action == "anonymize":
            check_release(policy, policy.tables[plan.table].retention.release)
    if purposes:
        load_purpose_keys(policy, sorted(purposes), lake)


def _apply_plan(spark: SparkSession, policy: Policy, lake: Lake, plan: TablePlan, keys: DataFrame, run_id: str,
                as_of: dt.date, registers: Registers, progress) -> tuple[dict, tuple | None]:
    """One table's planned removal: its keep-as action first, then ONE delete commit with the run's
    commit metadata. Returns the table's result, and for a table with nothing to remove the audit
    row saying so (the caller writes them all in one append: a commit per table cost ~0.3 s each)."""
    table = policy.tables[plan.table]
    path = lake.table_path(table)
    before_version = table_version(spark, path)
    due = as_of + dt.timedelta(days=policy.grace_days(plan.table))
    cutoff = (as_of - dt.timedelta(days=table.retention.period_days)
              if table.retention and table.retention.basis == "business_date" else None)
    retired, unchanged = None, None
    if plan.to_remove:
        progress(f"{plan.action} {plan.table}")
        if plan.action == "pseudonymize":
            _pseudonymize_before_delete(spark, policy, lake, plan.table, keys, cutoff)
        elif plan.action == "anonymize":
            retired = _anonymize_before_delete(spark, policy, lake, plan.table, keys, as_of, cutoff, registers, progress)
        metadata = {"job": JOB, "run_id": run_id, "table": plan.table, "action": plan.action,
                    "as_of": as_of.isoformat(), "policy_sha256": policy.sha256, "rows_before": plan.rows_before,
                    "rows_held": plan.held, "files": plan.files, "bytes": plan.bytes,
                    "version_before": before_version, "purge_due": due.isoformat()}
        with commit_metadata(spark, metadata):
            delete_keys(spark, path, table.subject_key, keys, table.date_column if cutoff else None, cutoff,
                        registers.held_subjects(plan.table, as_of), plan.version)      # the holds as planned
    else:
        unchanged = (run_id, dt.datetime.now(dt.timezone.utc).replace(tzinfo=None), as_of, policy.sha256, plan.table,
                     plan.action, plan.rows_before, 0, plan.held, plan.rows_before, 0, 0, before_version, before_version,
                     None, False)
    after_version = table_version(spark, path)
    # An unchanged version is the planned snapshot: its count is the plan's (no second scan).
    after = LakeTable(spark, path).row_count() if after_version != before_version else plan.rows_before
    return {"rows_after": after, "version_before": before_version, "anonymized": retired,
            "version_after": after_version, "purge_due": due if plan.to_remove else None}, unchanged


@with_lease("retention")
def run(spark: SparkSession, policy: Policy, lake: Lake, request: RetentionRequest,
        progress=lambda _msg: None) -> RetentionReport:
    as_of, dry_run = request.as_of or dt.datetime.now(dt.timezone.utc).date(), request.dry_run
    run_id = f"ret-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    check_lake(spark, policy, lake)       # missing tables, schema drift: exit 2 before any write
    registers = Registers(spark, policy, lake)

    def plan_one(name: str) -> tuple[TablePlan, DataFrame]:
        progress(f"planning {name}")
        return plan_table(spark, policy, lake, name, as_of, registers)   # keys held in memory: fixed

    plans = for_each_table(list(policy.tables), plan_one)       # read-only: several tables at once
    report = RetentionReport(run_id, as_of, policy.sha256, dry_run, [p for p, _ in plans], [])
    # Everything is checked before the first write (the policy snapshot included).
    for plan, _ in plans:
        if plan.to_remove and plan.action not in AVAILABLE_ACTIONS:
            raise InputError(f"tables.{plan.table}.retention.action: {plan.action!r} is not available yet")
    too_much = [p for p, _ in plans if p.share > policy.defaults.max_delete_share]
    if too_much and not request.force and not dry_run:
        names = ", ".join(f"{p.table} ({p.share:.0%})" for p in too_much)
        raise CheckFailed(f"refusing to remove more than {policy.defaults.max_delete_share:.0%} of a table in one run: "
                          f"{names}; check the policy, then re-run with --force. Nothing was written.")
    if dry_run:
        return report
    _check_keep_actions(policy, lake, [p for p, _ in plans if p.to_remove])
    report.policy_changes = policy_changes(lake, policy)
    # The subject table goes last: other tables' closure rules read closure dates from it, so a run
    # stopped half-way must not have removed them yet (the next run plans the rest again).
    unchanged = []
    for plan, keys in sorted(plans, key=lambda p: p[0].table == policy.subject.table):
        report.results[plan.table], row = _apply_plan(spark, policy, lake, plan, keys, run_id, as_of, registers, progress)
        if row:
            unchanged.append(row)
    # The audit rows of the deletes (rebuilt from the tables' history) and of the tables with nothing
    # to remove, in one append.
    reconcile(spark, policy, lake, current_run=run_id, more_audit_rows=unchanged)
    _gate(spark, policy, lake, report, registers, progress)
    if request.purge:
        progress("physical purge of files past their grace")
        report.purged = physical_purge(spark, policy, lake, as_of)
    return report


def gate_checks(spark: SparkSession, policy: Policy, lake: Lake, as_of: dt.date, registers: Registers) -> list:
    """The Great Expectations retention suite of every table, built from the policy: no row older
    than the business-date cutoff unless its subject is held (tables under a whole-table hold and
    tables retained by account closure have no date check; the consistency check below covers them)."""
    from expectations.suites import retention_suite

    checks = []
    for name, table in policy.tables.items():
        retention = table.retention
        if retention is None or retention.basis != "business_date" or registers.table_level_hold(name, as_of):
            continue
        holds = registers.held_subjects(name, as_of)
        suite = retention_suite(table.date_column, as_of - dt.timedelta(days=retention.period_days),
                                subject_column=table.subject_key, held_subjects=holds, held_subject_column="subject")
        checks.append((name, read_now(spark, lake.table_path(table)), suite))
    return checks


def _gate(spark: SparkSession, policy: Policy, lake: Lake, report: RetentionReport, registers: Registers,
          progress=lambda _msg: None) -> None:
    """After the deletes: the GE retention suite passes on every table (Data Docs under the lake's
    docs), no row past retention remains except held ones, and before - removed = after per table."""
    from expectations.gates import run_gate

    progress("retention gate (Great Expectations)")
    gate = run_gate(f"retention-{report.run_id}", gate_checks(spark, policy, lake, report.as_of, registers),
                    join(lake.docs, "retention", report.run_id))
    report.docs = gate.docs_index
    problems = [f"{f.expectation} on {f.table}.{f.column or '*'}: {f.message}" for f in gate.failures]
    # A table with nothing to remove and no commit since its plan is still the snapshot the plan
    # classified: its remaining count is the plan's (0), no second classification of it.
    recount = [plan for plan in report.plans
               if plan.to_remove or report.results[plan.table]["version_after"] != report.results[plan.table]["version_before"]]
    recounted = dict(zip([plan.table for plan in recount], for_each_table(
        recount, lambda plan: remaining_expired(spark, policy, lake, plan.table, report.as_of, registers))))
    for plan in report.plans:
        remaining = recounted.get(plan.table, plan.to_remove)
        if remaining:
            problems.append(f"{plan.table}: {remaining} row(s) past retention remain")
        if plan.rows_before - plan.to_remove != report.results[plan.table]["rows_after"]:
            problems.append(f"{plan.table}: rows before ({plan.rows_before}) - removed ({plan.to_remove}) "
                            f"!= rows after ({report.results[plan.table]['rows_after']})")
    if problems:
        raise CheckFailed(f"retention gate failed (Data Docs: {gate.docs_index}): " + "; ".join(problems))


def report_dict(report: RetentionReport) -> dict:
    return {"run_id": report.run_id, "as_of": report.as_of.isoformat(), "policy_sha256": report.policy_sha256,
            "dry_run": report.dry_run, "policy_changes": report.policy_changes,
            "tables": [asdict(p) for p in report.plans], "results": report.results, "purged": report.purged,
            "docs": report.docs}
