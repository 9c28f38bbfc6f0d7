"""Erasure on a generated lake with real Spark + Delta.

One module fixture does the expensive work once and records what happened; the tests assert on it:
a backup taken before the erasure; five requests (a closure batch of 100 of the 400 subjects, a CCPA
request, a subject under a policy legal hold, one under a register hold on one table, an unknown
id) erased in ONE batch whose run is killed right after every state and re-run (plus residue planted
before the verification: the run fails, names the file, and continues once it is gone); then a
restore of the old backup (the deletion ledger is re-applied), `wasure verify-erasure` clean and
with planted residue, and the backup's expiry. Bad ids are checked through the CLI (exit 2, nothing
written)."""
import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from pyspark.sql import functions as F
from typer.testing import CliRunner

from jobs import backup as backups
from jobs.lake import backup_ledger
from jobs import erasure
from jobs.lake.layout import Lake, read_current
from jobs.policy import parse_policy
from jobs.lake.residue import identifier_values, scan_for_values

from conftest import EXAMPLE_POLICY

AS_OF = dt.date(2026, 11, 22)
BACKUP_DAY = dt.date(2026, 11, 20)
HELD = "A000000007"            # policy hold LH-2026-001 (every table)
PARTLY_HELD = "A000000328"     # register hold LH-328 on support_tickets only (generated lake, seed 42)
UNKNOWN = "A000999999"         # valid format, not in the lake
CCPA = "A000000050"
BATCH = [f"A{i:09d}" for i in range(100, 200)]          # 100 of the 400 subjects
ERASED = BATCH + [CCPA, PARTLY_HELD]
IDENTIFYING = ["email", "phone", "my_number", "card_number", "passport_no", "licence_no"]
PLANTED = "raw/accounts/region=JP/subject_bucket=9/part-00000-restored-from-tape.snappy.parquet"


def _policy_data() -> dict:
    data = yaml.safe_load(open(EXAMPLE_POLICY))
    data["defaults"]["grace_days"] = 0          # purge at once
    return data


@pytest.fixture(scope="module")
def keys_env(tmp_path_factory):
    from jobs.runtime.keys import init_keys

    path = tmp_path_factory.mktemp("keys") / "keys.json"
    old = os.environ.get("WASURE_KEYS")
    os.environ["WASURE_KEYS"] = str(path)
    policy = parse_policy(_policy_data())
    init_keys([p.key_id for p in policy.purposes.values()] + [policy.defaults.ledger_key_id])
    yield path
    if old is None:
        os.environ.pop("WASURE_KEYS")
    else:
        os.environ["WASURE_KEYS"] = old


class Killed(Exception):
    pass


def _log_files(table_path: str) -> dict[str, bool]:
    """Replay the JSON commits: current data files (relative) -> whether they carry a deletion vector."""
    files: dict[str, bool] = {}
    for commit in sorted(Path(table_path, "_delta_log").glob("*.json")):
        actions = [json.loads(line) for line in commit.read_text().splitlines()]
        for action in actions:           # a commit's removes apply before its adds (a file given a DV is both)
            if "remove" in action:
                files.pop(action["remove"]["path"], None)
        for action in actions:
            if "add" in action:
                files[action["add"]["path"]] = action["add"].get("deletionVector") is not None
    return files


def _commit_actions(table_path: str, version: int) -> list[dict]:
    text = Path(table_path, "_delta_log", f"{version:020d}.json").read_text()
    return [json.loads(line) for line in text.splitlines()]


def _plant(generated_root: Path, lake: Lake, spark) -> None:
    """Copy the generated lake's accounts file that holds the CCPA subject back under raw/."""
    original = spark.read.format("delta").load(str(generated_root / "raw" / "accounts"))
    source = original.where(F.col("account_id") == CCPA).select(F.col("_metadata.file_path").alias("f")).first().f
    target = lake.root / PLANTED
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source.removeprefix("file:"), target)


def _cli_args(lake: Lake) -> list[str]:
    policy_file = lake.root.parent / "policy.yaml"
    if not policy_file.exists():
        policy_file.write_text(yaml.safe_dump(_policy_data(), allow_unicode=True))
        shutil.copytree(Path(EXAMPLE_POLICY).parent / "hierarchies", policy_file.parent / "hierarchies")
    return ["--policy", str(policy_file), "--lake", str(lake.root)]


@pytest.fixture(scope="module")
def erased(spark, generated_lake, keys_env, tmp_path_factory):
    from jobs.cli import app

    policy = parse_policy(_policy_data(), "test-policy.yaml")
    lake = Lake.at(tmp_path_factory.mktemp("erasure") / "lake")
    shutil.copytree(generated_lake.root, lake.root)
    state: dict = {"policy": policy, "lake": lake, "generated_root": generated_lake.root}
    accounts = read_current(spark, lake.table_path(policy.tables["accounts"]))
    state["values_dir"] = str(lake.root.parent / "erased_identifiers")            # outside the lake
    identifier_values(accounts.where(F.col("account_id").isin(ERASED)), IDENTIFYING).write.parquet(state["values_dir"])
    state["held_values_dir"] = str(lake.root.parent / "held_identifiers")
    identifier_values(accounts.where(F.col("account_id") == HELD), IDENTIFYING).write.parquet(state["held_values_dir"])

    # Before: the files holding an erased subject, every data file, data bytes, rows.
    holding = {n: set() for n in policy.tables}
    for name, table in policy.tables.items():
        df = read_current(spark, lake.table_path(table)).where(F.col("account_id").isin(ERASED))
        for row in df.select(F.col("_metadata.file_path").alias("f")).distinct().collect():
            holding[name].add(row.f.rsplit(f"/{table.path}/", 1)[1])
    state["files_holding"] = holding
    state["files_before"] = {n: _log_files(lake.table_path(t)) for n, t in policy.tables.items()}
    state["lake_bytes"] = sum(p.stat().st_size for p in (lake.root / "raw").rglob("*.parquet") if "_delta_log" not in p.parts)
    state["counts_before"] = {n: read_current(spark, lake.table_path(t)).count() for n, t in policy.tables.items()}

    # A backup taken BEFORE the erasure holds every subject.
    backups.run_backup(spark, policy, lake, BACKUP_DAY)
    state["backup_rows"] = backups.read_manifest(lake, BACKUP_DAY)["tables"]

    erasure.submit_requests(spark, lake, [("closure-100", s, dt.datetime(2026, 11, 20, 9, 30), "account_closure") for s in BATCH] + [
        ("ccpa-1", CCPA, dt.datetime(2026, 11, 21), "ccpa"),
        ("gdpr-held", HELD, dt.datetime(2026, 11, 21), "gdpr"),
        ("gdpr-partly-held", PARTLY_HELD, dt.datetime(2026, 11, 21), "gdpr"),
        ("appi-unknown", UNKNOWN, dt.datetime(2026, 11, 21), "appi"),
    ])
    requests = erasure.requests_from_inbox(spark, policy, lake)
    state["versions_before"] = {n: erasure.table_version(spark, lake.table_path(t)) for n, t in policy.tables.items()}
    state["dry"] = erasure.run(spark, policy, lake, requests, as_of=AS_OF, dry_run=True)
    state["versions_after_dry"] = {n: erasure.table_version(spark, lake.table_path(t)) for n, t in policy.tables.items()}
    state["state_after_dry"] = Path(lake.state(erasure.STATE_TABLE)).exists()

    # Kill the run right after each state is committed; every re-run continues where it stopped.
    seen: list[str] = []
    state["after_kill"] = {}
    for stop in erasure.STATES[:-1]:
        def hook(reached, _ids, stop=stop):
            seen.append(reached)
            if reached == stop:
                raise Killed(stop)
        with pytest.raises(Killed):
            # The first run reads the inbox; later runs get no input and continue the open requests.
            erasure.run(spark, policy, lake, requests if stop == "received" else [], as_of=AS_OF, on_state=hook)
        state["after_kill"][stop] = {r.request_id: r.state for r in erasure.load_states(spark, lake).values()}
        if stop == "purged":
            # Residue planted before the verification: `wasure verify-erasure` (exact scan_for_values
            # of the values in the request's vault) fails naming the file; the run goes on once it is gone.
            _plant(generated_lake.root, lake, spark)
            state["verify_planted"] = CliRunner().invoke(app, ["verify-erasure", "--request-id", "ccpa-1", *_cli_args(lake)])
            state["after_failed_verification"] = {r.request_id: r.state for r in erasure.load_states(spark, lake).values()}
            (lake.root / PLANTED).unlink()
    state["final"] = erasure.run(spark, policy, lake, [], as_of=AS_OF, on_state=lambda s, _i: seen.append(s))
    state["seen"] = seen
    state["again"] = erasure.run(spark, policy, lake, requests, as_of=AS_OF)   # the same input once more
    state["receipts"] = {p.stem: json.loads(p.read_text()) for p in (lake.root / "receipts").glob("*.json")}
    state["files_after"] = {n: _log_files(lake.table_path(t)) for n, t in policy.tables.items()}
    state["counts_after"] = {n: read_current(spark, lake.table_path(t)).count() for n, t in policy.tables.items()}
    state["commits"] = {n: erasure.erasure_commits(spark, lake.table_path(t)) for n, t in policy.tables.items()}
    return state


@pytest.fixture(scope="module")
def after(spark, erased):
    """Then: restore the pre-erasure backup, verify-erasure (clean, then planted residue), expire the backup."""
    from jobs.cli import app

    policy, lake = erased["policy"], erased["lake"]
    out: dict = {"restore": backups.run_restore(spark, policy, lake, BACKUP_DAY, as_of=AS_OF)}
    counts = {}
    for name, table in policy.tables.items():
        df = read_current(spark, lake.table_path(table)).where(F.col("account_id").isin(ERASED + [HELD]))
        rows = {r.account_id: r["count"] for r in df.groupBy("account_id").count().collect()}
        counts[name] = {"erased": sum(rows.get(s, 0) for s in BATCH + [CCPA]),
                        "held": rows.get(HELD, 0), "partly_held": rows.get(PARTLY_HELD, 0)}
    out["counts"] = counts
    out["verify_ok"] = CliRunner().invoke(app, ["verify-erasure", *_cli_args(lake)])   # closed: keyed-hash scan
    _plant(erased["generated_root"], lake, spark)
    _key_id, key = backup_ledger.ledger_key(policy, lake)
    hashes = read_current(spark, lake.state(erasure.VALUES_TABLE)).where(F.col("request_id") == "ccpa-1")
    out["hash_findings"] = erasure.scan_for_hashes(spark, str(lake.root / "raw" / "accounts"), hashes, key)
    (lake.root / PLANTED).unlink()
    out["expire"] = backups.expire_backups(spark, policy, lake, BACKUP_DAY + dt.timedelta(days=35))
    out["ledger"] = {r.status: r["count"] for r in read_current(spark, backup_ledger.ledger_path(lake)).groupBy("status").count().collect()}
    return out


# ------------------------------------------------------------------ the state machine

def test_dry_run_writes_nothing(erased):
    assert erased["versions_after_dry"] == erased["versions_before"]
    assert not erased["state_after_dry"]
    plans = {p["request_id"]: p for p in erased["dry"].plans}
    assert plans["closure-100"]["subjects_found"] == 100 and plans["closure-100"]["rows_to_remove"]["accounts"] == 100
    assert plans["gdpr-held"]["rows_to_remove"] == {} and plans["appi-unknown"]["subjects_found"] == 0
    assert plans["closure-100"]["backups_holding"] == [BACKUP_DAY.isoformat()]


def test_killed_after_every_state_finishes_with_no_double_effect(spark, erased):
    policy, lake = erased["policy"], erased["lake"]
    for stop in erasure.STATES[:-1]:
        assert set(erased["after_kill"][stop].values()) == {stop}, stop     # each run stopped exactly there
    expected = list(erasure.STATES)
    assert erased["seen"] == expected                          # every state reached once, in order
    states = read_current(spark, lake.state(erasure.STATE_TABLE))
    assert states.groupBy("request_id", "state").count().where(F.col("count") > 1).count() == 0
    assert {r.request_id: r.state for r in erasure.load_states(spark, lake).values()} == dict.fromkeys(
        ["closure-100", "ccpa-1", "gdpr-held", "gdpr-partly-held", "appi-unknown"], "closed")
    # ONE erasure DELETE per table for the whole batch, whatever the kills.
    for name, commits in erased["commits"].items():
        removed = erased["counts_before"][name] - erased["counts_after"][name]
        assert len(commits) == (1 if removed else 0), name
        if commits:
            assert set(commits[0][1]["requests"]) == {"closure-100", "ccpa-1", "gdpr-held", "gdpr-partly-held", "appi-unknown"}
    assert erased["commits"]["third_party_provisions"] == []                # statutory record keeping
    assert len([c for c in erased["commits"].values() if c]) >= 6
    ledger = read_current(spark, backup_ledger.ledger_path(lake))
    assert ledger.count() == ledger.select("subject_hash", "request_id").distinct().count() == len(ERASED)
    audit = read_current(spark, lake.audit("erasure"))
    assert audit.count() == 5 and audit.select("request_id").distinct().count() == 5
    per_table_audit = read_current(spark, lake.audit("erasure_commits"))
    assert per_table_audit.count() == sum(1 for c in erased["commits"].values() if c)
    retained = read_current(spark, str(lake.root / "pseudonymized" / "service" / "retained" / "accounts"))
    assert retained.count() == 100                                          # closures only, no duplicate
    assert "my_number" not in retained.columns and "card_number" not in retained.columns
    assert not list((lake.root / "state" / "erasure_vault").glob("*.bin"))  # vaults destroyed
    assert erased["again"].receipts == [] and len(erased["again"].notes) == 5   # already closed: nothing done
    assert read_current(spark, lake.state(erasure.REQUESTS_TABLE)).count() == 0  # inbox emptied


def test_verify_erasure_names_the_file_with_planted_residue(erased):
    bad = erased["verify_planted"]
    assert bad.exit_code == 1, bad.output
    output = bad.output.replace("\n", "")
    assert PLANTED in output and "values not shown" in output
    assert CCPA not in output and "@" not in output                        # paths, never values
    assert set(erased["after_failed_verification"].values()) == {"purged"}  # a scan changes nothing


def test_subjects_are_gone_from_every_table_except_held_data(spark, erased):
    policy, lake = erased["policy"], erased["lake"]
    for name, table in policy.tables.items():
        left = read_current(spark, lake.table_path(table)).where(F.col("account_id").isin(BATCH + [CCPA])).count()
        if name == "third_party_provisions":
            assert left > 0                                                 # kept by its own retention
        else:
            assert left == 0, name
    accounts = read_current(spark, lake.table_path(policy.tables["accounts"]))
    assert accounts.where(F.col("account_id") == HELD).count() == 1
    assert accounts.where(F.col("account_id") == PARTLY_HELD).count() == 0
    holds = read_current(spark, lake.table_path(policy.tables["legal_holds"]))
    assert holds.where(F.col("account_id") == PARTLY_HELD).count() == 1     # the hold itself stays
    tickets = read_current(spark, lake.table_path(policy.tables["support_tickets"]))
    subject = erased["receipts"]["gdpr-partly-held"]["subjects"][0]
    assert subject["rows_removed"]["accounts"] == 1 and {h["table"] for h in subject["held"]} >= {"legal_holds"}
    assert tickets.where(F.col("account_id") == PARTLY_HELD).count() == sum(
        h["rows_kept"] for h in subject["held"] if h["table"] == "support_tickets")
    # Nobody else lost a row: removed rows per table = the receipts' counts.
    receipts = erased["receipts"].values()
    for name in policy.tables:
        counted = sum(s["rows_removed"].get(name, 0) for r in receipts for s in r["subjects"])
        assert erased["counts_before"][name] - erased["counts_after"][name] == counted, name


def test_legal_hold_blocks_erasure_and_the_receipt_says_why(erased):
    subject = erased["receipts"]["gdpr-held"]["subjects"][0]
    assert subject["found"] and subject["rows_removed"] == {}
    assert {h["hold_id"] for h in subject["held"]} == {"LH-2026-001"}
    assert {h["reason"] for h in subject["held"]} == {"Billing dispute under litigation (case 2026-W-0142)"}
    assert {h["table"] for h in subject["held"]} >= {"accounts", "network_events"}
    assert subject["backups_holding"] == []                                 # nothing erased: no quarantine


def test_unknown_subject_gets_a_receipt_that_nothing_was_found(erased):
    receipt = erased["receipts"]["appi-unknown"]
    subject = receipt["subjects"][0]
    assert subject["found"] is False and subject["in_subject_table"] is False
    assert subject["message"] == "no data found for this subject in the lake"
    assert receipt["rows_removed"] == {} and receipt["state"] == "closed"


def test_receipt_says_what_was_removed_and_when_the_last_byte_goes(erased):
    receipt = erased["receipts"]["ccpa-1"]
    assert receipt["source"] == "ccpa" and receipt["state"] == "closed"
    assert receipt["deadline"] == "2027-01-05"                              # received 2026-11-21 + 45 days
    assert receipt["deadline_met"] is True and receipt["purged_on"] == AS_OF.isoformat()
    subject = receipt["subjects"][0]
    assert len(subject["subject_hash"]) == 64 and subject["rows_removed"]["accounts"] == 1
    assert subject["backups_holding"] == [{"date": "2026-11-20", "expires": "2026-12-25", "still_exists": True}]
    assert subject["last_byte_gone"] == "2026-12-25"
    assert {"accounts", "network_events"} <= set(receipt["table_versions"])
    assert receipt["verification"]["values_checked"] >= 5
    closure = erased["receipts"]["closure-100"]
    assert closure["rows_removed"]["accounts"] == 100
    assert closure["retained_pseudonymized"] == ["pseudonymized/service/retained/accounts"]
    assert len({s["subject_hash"] for s in closure["subjects"]}) == 100


def test_receipts_audit_and_state_hold_no_personal_values(spark, erased):
    lake = erased["lake"]
    values = spark.read.parquet(erased["values_dir"]).unionByName(spark.read.parquet(erased["held_values_dir"]))
    values = values.unionByName(spark.createDataFrame([(s,) for s in ERASED + [HELD, UNKNOWN]], "value string"))
    assert values.count() > 500
    for area in ("receipts", "audit", "state"):
        assert scan_for_values(spark, str(lake.root / area), values) == [], area


def test_a_batch_of_100_touches_only_the_files_that_hold_them(erased):
    """Every file the batch's DELETE marked or replaced held an erased subject; no other file changed
    (not even by the physical purge); the DELETEs wrote deletion vectors, a small share of the lake."""
    policy, lake = erased["policy"], erased["lake"]
    written = 0
    for name, table in policy.tables.items():
        before, holding = erased["files_before"][name], erased["files_holding"][name]
        untouched = set(before) - holding
        assert all(f in erased["files_after"][name] and not erased["files_after"][name][f] for f in untouched), name
        for version, meta, _metrics in erased["commits"][name]:
            # Tables are erased concurrently, each in its own session: each commit carries its own plan.
            assert meta["table"] == name and meta["rows_before"] == erased["counts_before"][name], name
            actions = _commit_actions(lake.table_path(table), version)
            touched = {a["remove"]["path"] for a in actions if "remove" in a}
            assert touched and touched <= holding, name
            assert meta["files"] == len(touched), name
            for add in (a["add"] for a in actions if "add" in a):
                if add["path"] in before:                                   # same file, rows marked deleted
                    written += add["deletionVector"]["sizeInBytes"]
                else:                                                       # a rewritten file
                    written += add["size"]
    share = written / erased["lake_bytes"]
    print(f"\nerasing 102 of 400 subjects: the DELETEs wrote {written} bytes = {share:.3%} of {erased['lake_bytes']} data bytes")
    assert 0 < share < 0.02


# ------------------------------------------------------------------ backups, restore, verify-erasure

def test_restore_reapplies_the_deletion_ledger(erased, after):
    restored = after["restore"]
    assert restored.tables["accounts"].subjects_withheld == len(ERASED)
    assert restored.tables["accounts"].rows_restored == erased["backup_rows"]["accounts"]["rows"] - len(ERASED)
    counts = after["counts"]
    for name in ("accounts", "devices", "network_events", "health_measurements", "support_tickets", "consents"):
        assert counts[name]["erased"] == 0, name
    assert counts["third_party_provisions"]["erased"] > 0                  # statutory rows were kept, so restored
    assert counts["accounts"]["held"] == 1 and counts["network_events"]["held"] > 0   # held, never ledgered
    assert counts["accounts"]["partly_held"] == 0 and counts["legal_holds"]["partly_held"] == 1
    kept = erased["receipts"]["gdpr-partly-held"]["subjects"][0]["held"]
    assert counts["support_tickets"]["partly_held"] == sum(h["rows_kept"] for h in kept if h["table"] == "support_tickets")
    assert not Path(erased["lake"].staging("restore")).exists() or not any(Path(erased["lake"].staging("restore")).iterdir())
    assert Path(restored.docs).is_file()          # the restore gate's Data Docs (ExpectNoErasedSubjects)


def test_verify_erasure_after_closure_uses_keyed_hashes(after):
    assert after["verify_ok"].exit_code == 0, after["verify_ok"].output
    assert "no residue" in after["verify_ok"].output and "keyed-hash scan" in after["verify_ok"].output
    assert [f.path.rsplit("/raw/accounts/", 1)[1] for f in after["hash_findings"]] == [PLANTED.removeprefix("raw/accounts/")]


def test_backup_expiry_ends_the_quarantine(after):
    assert after["expire"].deleted == [BACKUP_DAY.isoformat()]
    assert after["expire"].subjects_released == len(ERASED)
    assert after["ledger"] == {"released": len(ERASED)}


# ------------------------------------------------------------------ bad input

def _snapshot(root: Path) -> dict:
    """Every file and its mtime, less the lake lease (jobs/lake/lease.py: a lock, not data)."""
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.name != "_wasure_lease"}


@pytest.mark.parametrize("ids_file, where", [
    ("A000000001\nA000000002\nnot-an-id\n", "--file line 3"),
    ("A000000001\n\nA000000002\n", "--file line 2"),
    ("A000000001\nA000000002\nA000000001\n", "--file line 3: duplicate of --file line 1"),
])
def test_bad_ids_exit_2_naming_the_position_and_write_nothing(lake_copy, tmp_path, ids_file, where):
    from jobs.cli import app

    ids = tmp_path / "ids.txt"
    ids.write_text(ids_file)
    before = _snapshot(lake_copy.root)
    result = CliRunner().invoke(app, ["erase", "--file", str(ids), "--lake", str(lake_copy.root), "--policy", EXAMPLE_POLICY])
    assert result.exit_code == 2, result.output
    assert where in result.output.replace("\n", " ") and "Nothing was written" in result.output
    assert "not-an-id" not in result.output and "A000000001" not in result.output
    assert _snapshot(lake_copy.root) == before


def test_a_resumed_request_without_its_purpose_key_stops_before_any_write(spark, lake_copy, keys_env, tmp_path,
                                                                          monkeypatch):
    """An account closure killed after `received` keeps 仮名加工情報 when it resumes: without the
    purpose's key the resumed run fails at once, before it writes anything for the new request
    that came with it (a GDPR request, which needs no purpose key itself)."""
    from jobs.runtime.console import InputError

    policy = parse_policy(_policy_data())

    def stop_after_received(reached, _ids):
        if reached == "received":
            raise Killed(reached)

    with pytest.raises(Killed):
        erasure.run(spark, policy, lake_copy, [erasure.RequestInput("closure-resumed", ["A000000060"], source="account_closure")],
                    as_of=AS_OF, on_state=stop_after_received)
    keys = json.loads(Path(keys_env).read_text())
    service_key = policy.purposes["service"].key_id
    del keys["keys"][service_key]
    without = tmp_path / "keys-without-service.json"
    without.write_text(json.dumps(keys))
    without.chmod(0o600)
    monkeypatch.setenv("WASURE_KEYS", str(without))
    before = _snapshot(lake_copy.root)
    with pytest.raises(InputError, match=service_key):
        erasure.run(spark, policy, lake_copy, [erasure.RequestInput("gdpr-new", ["A000000061"], source="gdpr")], as_of=AS_OF)
    assert _snapshot(lake_copy.root) == before
    states = erasure.load_states(spark, lake_copy)
    assert states["closure-resumed"].state == "received" and "gdpr-new" not in states


def test_restore_withholds_in_flight_subjects_unless_held(spark, lake_copy, keys_env):
    """A request killed after `received` is not in the ledger yet: a restore still withholds its
    subjects, except one a legal hold keeps (as the erasure itself would keep it)."""
    policy = parse_policy(_policy_data())
    backups.run_backup(spark, policy, lake_copy, BACKUP_DAY)
    gone = "A000000071"

    def stop_after_received(reached, _ids):
        if reached == "received":
            raise Killed(reached)

    with pytest.raises(Killed):
        erasure.run(spark, policy, lake_copy, [erasure.RequestInput("gdpr-in-flight", [gone, HELD], source="gdpr")],
                    as_of=AS_OF, on_state=stop_after_received)
    report = backups.run_restore(spark, policy, lake_copy, BACKUP_DAY, AS_OF)
    assert report.requests_in_flight_subjects == 2 and report.ledger_subjects == 0
    assert report.tables["accounts"].subjects_withheld == 1
    accounts = read_current(spark, lake_copy.table_path(policy.tables["accounts"]))
    assert accounts.where(F.col("account_id") == gone).count() == 0
    assert accounts.where(F.col("account_id") == HELD).count() == 1
    events = read_current(spark, lake_copy.table_path(policy.tables["network_events"]))
    assert events.where(F.col("account_id") == gone).count() == 0 and events.where(F.col("account_id") == HELD).count() > 0


def test_bad_subject_option_exit_2(lake_copy):
    from jobs.cli import app

    before = _snapshot(lake_copy.root)
    result = CliRunner().invoke(app, ["erase", "--subject", "A000000001", "--subject", "a00000000x", "--source", "ccpa",
                                      "--lake", str(lake_copy.root), "--policy", EXAMPLE_POLICY])
    assert result.exit_code == 2 and "--subject #2" in result.output and "a00000000x" not in result.output
    result = CliRunner().invoke(app, ["erase", "--subject", "A000000001", "--source", "fax",
                                      "--lake", str(lake_copy.root), "--policy", EXAMPLE_POLICY])
    assert result.exit_code == 2 and "--source" in result.output
    assert _snapshot(lake_copy.root) == before


def test_nightly_gate_catches_an_erased_subject_brought_back(spark, erased, after, tmp_path):
    from jobs.runtime.console import CheckFailed
    from jobs.pipeline import gates

    policy = erased["policy"]
    lake = Lake.at(tmp_path / "lake")
    shutil.copytree(erased["lake"].root, lake.root)
    policy_file = _cli_args(erased["lake"])[1]
    table = policy.tables["accounts"]

    def erased_subject_failures() -> list[str]:
        try:
            gates(policy_file, str(lake.root), AS_OF)
            return []
        except CheckFailed as failed:          # retention findings may be there too: this lake skipped retention
            return [line for line in str(failed).splitlines() if "erased subject" in line]

    assert erased_subject_failures() == []
    # A restore done around the ledger: the CCPA subject's account row is written back.
    original = read_current(spark, str(erased["generated_root"] / table.path)).where(F.col("account_id") == CCPA)
    original.write.format("delta").mode("append").save(lake.table_path(table))
    found = erased_subject_failures()
    assert len(found) == 1 and "1 row of 1 erased subject" in found[0], found
    assert CCPA not in found[0]


def test_cell_tokens_are_the_cell_and_its_split_tokens(spark):
    """The scans' shortcut (a cell of token characters is its own only token) gives exactly the
    cell plus the regex split's tokens: full-width forms, separators, empty and null cells."""
    from jobs.lake.residue import FULL_WIDTH, HALF_WIDTH, TOKEN_SPLIT, cell_tokens

    cells = ["taro.yamada+x@example.jp", "ＴＡＲＯ＠ｅｘａｍｐｌｅ．ｊｐ", "０９０－１２３４－５６７８", "090-1234-5678",
             "山田 太郎 090-1234", "a,b;c", "ssid home 5G", "", " ", "ＡＢＣ１２３", "x＠y.jp", None]
    df = spark.createDataFrame([(c,) for c in cells], "cell string")
    split = F.array_union(F.array("cell"), F.split(F.translate("cell", FULL_WIDTH, HALF_WIDTH), TOKEN_SPLIT))
    rows = df.select("cell", cell_tokens(F.col("cell")).alias("new"), split.alias("old")).collect()
    assert len(rows) == len(cells)
    for row in rows:
        assert (row.new is None) == (row.old is None) == (row.cell is None), row.cell
        assert sorted(row.new or []) == sorted(row.old or []), row.cell
