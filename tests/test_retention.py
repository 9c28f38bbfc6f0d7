"""Retention on a generated lake with real Delta: every rule, holds, dry run, safety, no-op rerun,
kill-and-rerun, audit without personal values, and no residue after the physical purge."""
import copy
import datetime as dt
import shutil

import pytest
import yaml
from pyspark.sql import functions as F

from jobs.runtime.console import CheckFailed, InputError
from jobs.lake.layout import Lake, read_current
from jobs.policy import parse_policy
from jobs.lake.layout import table_version
from jobs.retention import RetentionRequest, run
from jobs.lake.residue import identifier_values, scan_for_values

from conftest import EXAMPLE_POLICY

AS_OF = dt.date(2026, 11, 22)
IDENTIFIERS = ["email", "phone", "my_number", "card_number", "passport_no", "licence_no"]


def _policy(**defaults):
    data = yaml.safe_load(open(EXAMPLE_POLICY))
    data["defaults"].update(defaults)
    return parse_policy(data, EXAMPLE_POLICY)     # its path: hierarchy files resolve next to it


def _versions(spark, policy, lake):
    return {n: table_version(spark, lake.table_path(t)) for n, t in policy.tables.items()}


def _counts(spark, policy, lake):
    return {n: read_current(spark, lake.table_path(t)).count() for n, t in policy.tables.items()}


def _recounting(job):
    """job()'s result and the tables whose expired rows its gate counted again after the deletes."""
    import jobs.retention as retention

    counted, real = [], retention.remaining_expired

    def counting(spark, policy, lake, table_name, *rest):
        counted.append(table_name)
        return real(spark, policy, lake, table_name, *rest)

    retention.remaining_expired = counting
    try:
        return job(), sorted(counted)
    finally:
        retention.remaining_expired = real


@pytest.fixture(scope="module")
def retention_run(spark, generated_lake, keys_env, tmp_path_factory):
    """Dry run, then a real run with grace 0 (purge at once), then the same run again."""
    policy = _policy(grace_days=0)
    lake = Lake.at(tmp_path_factory.mktemp("retention") / "lake")
    shutil.copytree(generated_lake.root, lake.root)
    accounts = read_current(spark, lake.table_path(policy.tables["accounts"]))
    age = F.floor(F.months_between(F.lit(AS_OF), F.col("birth_date")) / 12)
    minors = accounts.where((age < 18) & ~F.coalesce(F.col("guardian_consent"), F.lit(False)) & (F.col("account_id") != "A000000007"))
    held_ids = {r.account_id for r in read_current(spark, lake.table_path(policy.tables["legal_holds"])).collect()}
    minors = minors.where(~F.col("account_id").isin(list(held_ids)))
    residue_dir = str(lake.root.parent / "expired_identifiers")        # outside the lake
    identifier_values(minors, IDENTIFIERS).write.parquet(residue_dir)
    state = {"policy": policy, "lake": lake, "residue_dir": residue_dir, "minor_ids": [r.account_id for r in minors.collect()]}
    state["versions_before"] = _versions(spark, policy, lake)
    state["counts_before"] = _counts(spark, policy, lake)
    state["dry"] = run(spark, policy, lake, RetentionRequest(AS_OF, dry_run=True))
    state["versions_after_dry"] = _versions(spark, policy, lake)
    state["report"], state["recounted"] = _recounting(lambda: run(spark, policy, lake, RetentionRequest(AS_OF)))
    state["counts_after"] = _counts(spark, policy, lake)
    state["versions_after"] = _versions(spark, policy, lake)
    state["audit_version_after"] = table_version(spark, lake.audit("retention"))
    state["second"], state["recounted_second"] = _recounting(lambda: run(spark, policy, lake, RetentionRequest(AS_OF)))
    state["versions_after_second"] = _versions(spark, policy, lake)
    state["audit_version_after_second"] = table_version(spark, lake.audit("retention"))
    return state


def test_dry_run_changes_nothing_and_reports_blast_radius(retention_run):
    assert retention_run["versions_after_dry"] == retention_run["versions_before"]
    plans = {p.table: p for p in retention_run["dry"].plans}
    events = plans["network_events"]
    assert events.to_remove > 0 and events.files > 0 and events.bytes > 0
    assert "business_date" in events.reasons
    assert plans["accounts"].reasons.get("account_closure", 0) > 0
    assert plans["health_measurements"].reasons.get("consent_withdrawn", 0) > 0
    assert any(p.reasons.get("minor_without_consent") for p in plans.values())
    # Record-keeping registers are never touched by subject-level rules.
    assert plans["consents"].to_remove == 0
    assert sum(p.held for p in plans.values()) > 0
    assert "LH-2026-001" in plans["network_events"].held_by


def test_run_removes_exactly_the_plan(retention_run):
    before, after = retention_run["counts_before"], retention_run["counts_after"]
    for plan in retention_run["report"].plans:
        assert after[plan.table] == before[plan.table] - plan.to_remove, plan.table
    assert retention_run["report"].plans[0].to_remove > 0


def test_each_rule_is_enforced(spark, retention_run):
    policy, lake = retention_run["policy"], retention_run["lake"]
    held = {"A000000007"} | {r.account_id for r in read_current(spark, lake.table_path(policy.tables["legal_holds"])).collect()}
    events = read_current(spark, lake.table_path(policy.tables["network_events"])).where(~F.col("account_id").isin(list(held)))
    cutoff = AS_OF - dt.timedelta(days=540)
    assert events.where(F.col("event_ts") < F.lit(cutoff)).count() == 0                      # business date
    accounts = read_current(spark, lake.table_path(policy.tables["accounts"]))
    closed_long_ago = accounts.where(F.col("closed_at") < F.lit(AS_OF - dt.timedelta(days=30))).where(~F.col("account_id").isin(list(held)))
    assert closed_long_ago.count() == 0                                                         # account closure
    minors = retention_run["minor_ids"]
    assert minors
    for table in ("accounts", "devices", "network_events", "health_measurements", "support_tickets"):
        df = read_current(spark, lake.table_path(policy.tables[table]))
        assert df.where(F.col("account_id").isin(minors)).count() == 0, table                 # minors
    consents = read_current(spark, lake.table_path(policy.tables["consents"]))
    assert consents.where(F.col("account_id").isin(minors)).count() > 0                        # registers kept
    withdrawn = [r.account_id for r in consents.where((F.col("purpose") == "research") & (F.col("status") == "withdrawn")).collect()]
    health = read_current(spark, lake.table_path(policy.tables["health_measurements"]))
    assert health.where(F.col("account_id").isin([w for w in withdrawn if w not in held])).count() == 0  # withdrawn consent
    analytics_withdrawn = [r.account_id for r in consents.where((F.col("purpose") == "analytics") & (F.col("status") == "withdrawn")).collect()]
    assert events.where(F.col("account_id").isin(analytics_withdrawn)).count() > 0             # service purpose remains


def test_legal_hold_keeps_rows_and_says_why(spark, retention_run):
    policy, lake = retention_run["policy"], retention_run["lake"]
    events = read_current(spark, lake.table_path(policy.tables["network_events"]))
    cutoff = AS_OF - dt.timedelta(days=540)
    kept = events.where((F.col("account_id") == "A000000007") & (F.col("event_ts") < F.lit(cutoff))).count()
    assert kept == retention_run["dry"].plans[2].held_by["LH-2026-001"]
    assert kept > 0


def test_region_stays_in_place(spark, retention_run):
    policy, lake = retention_run["policy"], retention_run["lake"]
    for name, table in policy.tables.items():
        df = read_current(spark, lake.table_path(table)).withColumn("file", F.col("_metadata.file_path"))
        wrong = df.where(~F.col("file").contains(F.concat(F.lit("/region="), F.col("region"), F.lit("/")))).count()
        assert wrong == 0, name
    retained = read_current(spark, str(lake.root / "pseudonymized" / "service" / "retained" / "accounts"))
    assert retained.count() == retention_run["report"].plans[0].to_remove
    assert "email" not in retained.columns or retained.where(F.col("email").contains("@")).count() == 0
    assert "my_number" not in retained.columns and "card_number" not in retained.columns


def test_second_run_is_a_no_op(retention_run):
    assert all(p.to_remove == 0 for p in retention_run["second"].plans)
    assert retention_run["versions_after_second"] == retention_run["versions_after"]


def test_the_gate_recounts_only_tables_a_run_changed(retention_run):
    """After the deletes the gate counts expired rows again in every table the run removed rows from;
    a table with nothing to remove and no commit since its plan keeps the plan's count (0)."""
    first = retention_run["report"]
    changed = sorted(p.table for p in first.plans
                     if p.to_remove or first.results[p.table]["version_after"] != first.results[p.table]["version_before"])
    assert changed and retention_run["recounted"] == changed
    assert len(changed) < len(first.plans)                  # some tables had nothing to remove
    assert retention_run["recounted_second"] == []          # the second run removed nothing anywhere


def test_a_run_that_removes_nothing_writes_its_audit_rows_in_one_commit(spark, retention_run):
    """The second run removes nothing: a row per table in the audit, all in one append (a table
    with nothing to remove used to commit its own row: 9 commits here)."""
    lake, second = retention_run["lake"], retention_run["second"]
    assert retention_run["audit_version_after_second"] == retention_run["audit_version_after"] + 1
    rows = read_current(spark, lake.audit("retention")).where(F.col("run_id") == second.run_id).collect()
    assert sorted(r.table for r in rows) == sorted(retention_run["policy"].tables)
    assert all(r.rows_removed == 0 and r.version_after == r.version_before and not r.recovered for r in rows)


def test_audit_rows_and_ledger_hold_no_personal_values(spark, retention_run):
    lake = retention_run["lake"]
    audit = read_current(spark, lake.audit("retention"))
    run_rows = audit.where(F.col("run_id") == retention_run["report"].run_id).collect()
    assert {r.table for r in run_rows} == set(retention_run["policy"].tables)
    events_row = next(r for r in run_rows if r.table == "network_events")
    assert events_row.rows_removed == retention_run["report"].plans[2].to_remove
    assert events_row.version_after > events_row.version_before
    assert events_row.policy_sha256 == retention_run["policy"].sha256
    values = spark.read.parquet(retention_run["residue_dir"])
    findings = scan_for_values(spark, str(lake.root / "audit"), values) + scan_for_values(spark, str(lake.root / "state"), values)
    assert findings == []
    ledger = read_current(spark, lake.state("quarantine_ledger"))
    assert ledger.where(F.col("status") == "purged").count() >= 1


def test_no_residue_after_physical_purge(spark, retention_run):
    """No Parquet file, deletion vector or _delta_log file under raw/ holds an expired subject's identifiers."""
    lake = retention_run["lake"]
    values = spark.read.parquet(retention_run["residue_dir"])
    assert values.count() > 10
    assert scan_for_values(spark, str(lake.root / "raw"), values) == []
    # The scan can fail: the untouched copy of the lake still holds them.


def _dated(policy, name: str) -> bool:
    retention = policy.tables[name].retention
    return retention is not None and retention.basis == "business_date"


# The limits (KEYS_IN_A_DELETE, SUBJECTS_IN_A_SET) that make each larger form of a retention delete the path.
DELETE_FORMS = {"complement": (0, 20_000), "merge": (0, 0)}


@pytest.mark.parametrize("form", sorted(DELETE_FORMS))
def test_every_form_of_the_delete_removes_what_the_run_removed(spark, retention_run, generated_lake, keys_env,
                                                               tmp_path, monkeypatch, form):
    """The run above deleted by value sets (up to KEYS_IN_A_DELETE keys: the keys' subjects in UDFs).
    Past that many keys a business-date table's delete names the subjects it keeps (the held ones:
    LH-2026-001 and the register hold network_events rows) and those whose every row goes: the
    complement; with larger sets, or on a closure-basis table, the MERGE with the keys frame. Each
    form, applied to the plan of every table it serves (the complement: business-date tables) on a
    fresh copy, leaves the rows the run left, in one commit per table whose record (its predicate)
    names no subject. The complement needs the table still at the version its plan read: given
    another, the MERGE is the path."""
    import json

    import jobs.lake.quarantine as quarantine
    from jobs.lake.subjects import Registers
    from jobs.lake.table import LakeTable
    from jobs.retention import plan_table

    policy, lake = retention_run["policy"], retention_run["lake"]
    copy_ = Lake.at(tmp_path / "lake")
    shutil.copytree(generated_lake.root, copy_.root)
    monkeypatch.setattr(quarantine, "KEYS_IN_A_DELETE", DELETE_FORMS[form][0])
    monkeypatch.setattr(quarantine, "SUBJECTS_IN_A_SET", DELETE_FORMS[form][1])
    registers = Registers(spark, policy, copy_)
    # Tables the run removed rows from (the others stay as they are); the complement's: business-date ones.
    removed = [p.table for p in retention_run["report"].plans if p.to_remove and (form == "merge" or _dated(policy, p.table))]
    plans = {name: plan_table(spark, policy, copy_, name, AS_OF, registers) for name in removed}  # all first
    assert plans["network_events"][0].held > 0
    def commit_info(where: Lake, table, version: int) -> list[str]:
        log = (where.root / table.path / "_delta_log" / f"{version:020d}.json").read_text()
        return [json.dumps(json.loads(line)["commitInfo"]) for line in log.splitlines() if '"commitInfo"' in line]

    operations, expected, records = {}, {}, []
    for name in removed:
        table = policy.tables[name]
        plan, keys = plans[name]
        assert plan.to_remove, name
        dated = _dated(policy, name)
        # A table no longer at the version its plan read may hold rows the keys do not know: MERGE.
        stale = form == "complement" and name == "health_measurements"
        expected[name] = "DELETE" if form == "complement" and not stale else "MERGE"
        held = registers.held_subjects(name, AS_OF)
        assert plan.version == LakeTable(spark, copy_.table_path(table)).version(), name
        quarantine.delete_keys(spark, copy_.table_path(table), table.subject_key, keys, table.date_column if dated else None,
                               AS_OF - dt.timedelta(days=table.retention.period_days) if dated else None, held,
                               plan.version - 1 if stale else plan.version)
        commit = LakeTable(spark, copy_.table_path(table)).commits()[-1]
        operations[name] = commit.operation
        assert commit.rows_deleted == plan.to_remove, name
        records += commit_info(copy_, table, commit.version)
    assert operations == expected and {"network_events", "health_measurements"} <= set(expected)

    def fingerprint(df):             # the rows as a multiset: their count and the sum of their hashes
        return df.agg(F.count(F.lit(1)), F.sum(F.xxhash64(*sorted(df.columns)).cast("decimal(38,0)"))).first()

    ran = set()
    for name in removed:
        table = policy.tables[name]
        ours, theirs = read_current(spark, copy_.table_path(table)), read_current(spark, lake.table_path(table))
        assert fingerprint(ours) == fingerprint(theirs), name
        for commit in LakeTable(spark, lake.table_path(table)).commits("retention"):
            if commit.metadata().get("job") == "retention" and commit.rows_deleted:
                ran.add(commit.operation)
                records += commit_info(lake, table, commit.version)
    assert ran == {"DELETE"}                                         # the run: value sets
    assert len(retention_run["minor_ids"]) > 3 and records
    assert not [s for s in retention_run["minor_ids"] + ["A000000007"] if any(s in record for record in records)]


def test_a_delete_by_the_complement_needs_a_text_subject_key(spark, tmp_path, monkeypatch):
    """A subject key that is not text keeps the MERGE: the complement's sets compare text, where the
    plan's join with the holds compares in the key's type (a hold on "07" covers the key 7)."""
    import jobs.lake.quarantine as quarantine
    from jobs.lake.table import LakeTable

    path = str(tmp_path / "events")
    rows = spark.createDataFrame([(7, dt.date(2020, 1, 1), 0), (8, dt.date(2020, 1, 1), 0), (9, dt.date(2026, 1, 1), 0)],
                                 "account_id bigint, day date, subject_bucket int")
    table = LakeTable(spark, path).write_new(rows, ["subject_bucket"])
    keys = spark.createDataFrame([(8, 0, False)], "subject bigint, bucket int, all_rows boolean")   # 7 is held
    held = spark.createDataFrame([("07",)], "subject string")
    monkeypatch.setattr(quarantine, "KEYS_IN_A_DELETE", 0)
    quarantine.delete_keys(spark, path, "account_id", keys, "day", dt.date(2025, 1, 1), held, table.version())
    assert table.commits()[-1].operation == "MERGE"
    assert sorted(r.account_id for r in table.read().collect()) == [7, 9]


def test_residue_scan_finds_planted_residue(spark, retention_run, generated_lake):
    values = spark.read.parquet(retention_run["residue_dir"])
    findings = scan_for_values(spark, str(generated_lake.root / "raw" / "accounts"), values)
    assert findings and all(f.kind == "parquet" for f in findings)


def test_safety_limit_refuses_and_writes_nothing(spark, lake_copy, keys_env):
    policy = _policy(max_delete_share=0.01)
    before = _versions(spark, policy, lake_copy)
    with pytest.raises(CheckFailed, match="refusing to remove more than 1%"):
        run(spark, policy, lake_copy, RetentionRequest(AS_OF))
    assert _versions(spark, policy, lake_copy) == before


def test_a_plan_holds_its_keys_from_its_one_pass_over_the_table(spark, lake_copy, keys_env):
    """The keys a plan deletes by come from the same pass as its counts and are held in memory: a
    write to the table afterwards (another table's delete, a concurrent job) does not change them."""
    from jobs.lake.subjects import Registers
    from jobs.lake.table import LakeTable
    from jobs.retention import plan_table

    policy = _policy()
    plan, keys = plan_table(spark, policy, lake_copy, "network_events", AS_OF, Registers(spark, policy, lake_copy))
    planned = keys.count()
    assert plan.to_remove > 0 and planned > 0
    LakeTable(spark, lake_copy.table_path(policy.tables["network_events"])).delete_where("true")
    assert read_current(spark, lake_copy.table_path(policy.tables["network_events"])).count() == 0
    assert keys.count() == planned


def test_a_missing_key_fails_before_the_first_delete(spark, lake_copy, tmp_path, monkeypatch):
    """accounts (action pseudonymize, key of purpose service) last: without its key no table loses a
    row and no policy snapshot is written, though the other tables come first."""
    data = yaml.safe_load(open(EXAMPLE_POLICY))
    data["tables"]["accounts"] = data["tables"].pop("accounts")
    policy = parse_policy(data, EXAMPLE_POLICY)
    assert list(policy.tables)[-1] == "accounts"
    monkeypatch.setenv("WASURE_KEYS", str(tmp_path / "no-keys.json"))
    snapshots = lake_copy.root / "state" / "policies"
    before, snapshots_before = _versions(spark, policy, lake_copy), sorted(snapshots.glob("*")) if snapshots.exists() else []
    with pytest.raises(InputError, match="svc-2026-11"):
        run(spark, policy, lake_copy, RetentionRequest(AS_OF))
    assert _versions(spark, policy, lake_copy) == before
    assert (sorted(snapshots.glob("*")) if snapshots.exists() else []) == snapshots_before


def test_policy_snapshots_under_the_lake_hold_no_hold_subject_ids(retention_run):
    policy, lake = retention_run["policy"], retention_run["lake"]
    held = [s for hold in policy.legal_holds for s in hold.subjects]
    assert held == ["A000000007"]
    snapshots = list((lake.root / "state" / "policies").glob("*.json"))
    assert snapshots
    for snapshot in snapshots:
        text = snapshot.read_text()
        assert "LH-2026-001" in text and "1 subject(s)" in text
        assert not any(s in text for s in held)


def test_killed_run_finishes_when_run_again(spark, lake_copy, keys_env):
    policy = _policy(grace_days=7)
    before = _counts(spark, policy, lake_copy)

    class Killed(Exception):
        pass

    def kill_at_events(message):
        if message.startswith("delete network_events"):
            raise Killed()

    with pytest.raises(Killed):
        run(spark, policy, lake_copy, RetentionRequest(AS_OF), progress=kill_at_events)
    after_kill = _counts(spark, policy, lake_copy)
    assert after_kill["devices"] < before["devices"] and after_kill["network_events"] == before["network_events"]
    # The subject table goes last: its closure dates are still there for the re-run.
    assert after_kill["accounts"] == before["accounts"]
    report = run(spark, policy, lake_copy, RetentionRequest(AS_OF))
    plans = {p.table: p for p in report.plans}
    assert plans["devices"].to_remove == 0                     # devices were done by the killed run
    assert plans["accounts"].to_remove > 0
    dry = run(spark, policy, lake_copy, RetentionRequest(AS_OF, dry_run=True))
    assert all(p.to_remove == 0 for p in dry.plans)
    audit = read_current(spark, lake_copy.audit("retention"))
    recovered = audit.where(F.col("recovered")).select("table").distinct().collect()
    assert {"devices"} <= {r.table for r in recovered}
    ledger = read_current(spark, lake_copy.state("quarantine_ledger"))
    assert ledger.where(F.col("status") == "pending").select("table").distinct().count() >= 3
    assert ledger.where(F.col("purge_due") == F.lit(AS_OF + dt.timedelta(days=7))).count() == ledger.count()


def test_gate_is_a_great_expectations_suite_that_catches_expired_rows(spark, retention_run, generated_lake, tmp_path):
    from pathlib import Path

    from expectations.gates import run_gate
    from jobs.retention import gate_checks
    from jobs.lake.subjects import Registers

    assert Path(retention_run["report"].docs).is_file()       # Data Docs of the run's gate
    policy = retention_run["policy"]
    # The untouched lake still holds expired rows: the same suite fails on it, naming table and column.
    checks = gate_checks(spark, policy, generated_lake, AS_OF, Registers(spark, policy, generated_lake))
    gate = run_gate("retention-untouched", checks, str(tmp_path / "docs"))
    assert not gate.success
    failed = {(f.expectation, f.table, f.column) for f in gate.failures}
    assert ("ExpectNoRowsPastRetention", "network_events", "event_ts") in failed, failed
    assert all("@" not in f.message for f in gate.failures)


def test_expired_health_rows_live_on_only_as_a_k_anonymous_release(spark, retention_run):
    import json
    from pathlib import Path

    from anonymizers.privacy_models import check_k_anonymity

    retired = retention_run["report"].results["health_measurements"]["anonymized"]
    assert retired["release"] == "health_k5_retired_20261122" and retired["rows"] > 0, retired
    lake = retention_run["lake"]
    data = read_current(spark, lake.anonymized(retired["release"]))
    qis = ["age", "gender", "prefecture", "measured_at_month"]
    assert set(data.columns) == set(qis) | {"body_temp_c"}          # no id, no linking code
    assert check_k_anonymity(data, qis, 5) == (True, 0)
    assert data.count() == retired["rows"]
    manifest = json.loads((Path(lake.anonymized(retired["release"])).parent / "manifest.json").read_text())
    assert manifest["source_table"] == "health_measurements" and "匿名加工情報" in manifest["statement_ja"]
    assert Path(retired["docs"]).is_file()
    assert retention_run["second"].results["health_measurements"]["anonymized"] is None   # nothing expired: no new release
