"""仮名加工情報 job on a generated lake: rule-31 profile, per-purpose keys, exclusions, rotation,
incremental runs, keys kept apart, gate that quarantines a leaking table, scrubber recall."""
import base64
import copy
import json
import os

import pytest
import yaml
from pyspark.sql import functions as F
from typer.testing import CliRunner

from jobs.cli import app
from jobs.runtime.console import CheckFailed
from jobs.lake.layout import read_current
from jobs.policy import ColumnClass, parse_policy
from jobs.pseudonymize import (RAW_SUBJECT, PseudonymizeRequest, one_pseudonym_per_subject, rule31_plan, run,
                               subject_counts)
from jobs.lake.residue import scan_for_values

from conftest import EXAMPLE_POLICY

BASE = yaml.safe_load(open(EXAMPLE_POLICY))


@pytest.fixture(scope="module")
def published(spark, generated_lake, keys_env, tmp_path_factory):
    import shutil

    from jobs.lake.layout import Lake

    policy = parse_policy(copy.deepcopy(BASE), "test-policy.yaml")
    lake = Lake.at(tmp_path_factory.mktemp("pseudo") / "lake")
    shutil.copytree(generated_lake.root, lake.root)
    first = run(spark, policy, lake, PseudonymizeRequest.checked(policy, lake))
    second = run(spark, policy, lake, PseudonymizeRequest.checked(policy, lake))
    return {"policy": policy, "lake": lake, "first": first, "second": second}


def _out(spark, published, purpose, table):
    return read_current(spark, published["lake"].pseudonymized(purpose, table))


def test_profile_drops_every_individual_code_and_property_damage_column(spark, published):
    policy = published["policy"]
    for name, table in policy.tables.items():
        for purpose in table.purposes:
            columns = set(_out(spark, published, purpose, name).columns)
            assert RAW_SUBJECT not in columns, (purpose, name)      # the staged rows' own column stays in memory
            for column in table.columns_of(ColumnClass.individual_code, ColumnClass.property_damage):
                assert column not in columns, (purpose, name, column)
    assert set(rule31_plan(policy.tables["accounts"]).drop) >= {"my_number", "passport_no", "licence_no", "card_number", "address_line"}
    accounts = _out(spark, published, "service", "accounts")
    assert accounts.where(F.col("email").contains("@")).count() == 0
    assert accounts.select("pseudonym_key_id").distinct().first()[0] == policy.purposes["service"].key_id


def test_joins_within_a_purpose_and_not_across(spark, published):
    accounts = _out(spark, published, "service", "accounts")
    devices = _out(spark, published, "service", "devices")
    assert devices.join(accounts, "account_id").count() == devices.count() > 0
    analytics = _out(spark, published, "analytics", "accounts")
    assert accounts.select("account_id").join(analytics.select("account_id"), "account_id").count() == 0
    assert accounts.select("email").join(analytics.select("email"), "email").count() == 0


def test_restricted_and_withdrawn_subjects_are_excluded(spark, published, generated_lake, policy):
    raw = read_current(spark, generated_lake.table_path(policy.tables["accounts"]))
    restrictions = read_current(spark, generated_lake.table_path(policy.tables["restrictions"]))
    consents = read_current(spark, generated_lake.table_path(policy.tables["consents"]))
    excluded = (restrictions.where(F.col("scope").isin("all_processing", "analytics")).select("account_id")
                .union(consents.where((F.col("purpose") == "analytics") & (F.col("status") == "withdrawn")).select("account_id"))
                .distinct().count())
    assert excluded > 0
    assert _out(spark, published, "analytics", "accounts").count() == raw.count() - excluded
    service_excluded = restrictions.where(F.col("scope") == "all_processing").select("account_id").distinct().count()
    assert _out(spark, published, "service", "accounts").count() == raw.count() - service_excluded


def test_published_tables_are_created_in_one_commit_with_personal_columns_out_of_statistics(spark, published):
    policy, lake = published["policy"], published["lake"]
    for name, table in policy.tables.items():
        if "service" not in table.purposes:
            continue
        path = lake.pseudonymized("service", name)
        detail = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()
        assert detail.partitionColumns == [table.region_column]
        assert detail.properties["delta.enableDeletionVectors"] == "false"   # readable by delta-rs (docs/reading.md)
        indexed = detail.properties.get("delta.dataSkippingStatsColumns", "").replace("`", "").split(",")
        assert set(indexed) - {""} <= set(table.stats_columns()), name
        assert not set(indexed) & set(rule31_plan(table).pseudonymize), name
        # write_new_table: schema, properties and rows in one commit (no empty first version).
        history = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").collect()
        assert [h.version for h in history] == [0], name
        assert history[0].operationMetrics["numOutputRows"] != "0", name


def test_second_run_is_incremental(published):
    assert all(t.status == "published" for t in published["first"].tables)
    assert all(t.status == "unchanged" for t in published["second"].tables)
    assert published["first"].docs and all(os.path.exists(d) for d in published["first"].docs)


def test_keys_never_reach_the_lake(spark, published, keys_env):
    keys = json.loads(open(keys_env).read())["keys"]
    material = [(v,) for v in keys.values()] + [(base64.b64decode(v).hex(),) for v in keys.values()]
    values = spark.createDataFrame(material, ["value"])
    assert scan_for_values(spark, str(published["lake"].root), values) == []
    assert str(published["lake"].root) not in str(keys_env)


def test_key_rotation_repseudonymizes_the_purpose(spark, published, keys_env):
    from jobs.runtime.keys import init_keys

    data = copy.deepcopy(BASE)
    data["purposes"]["service"]["key_id"] = "svc-2026-12"
    policy = parse_policy(data, "rotated.yaml")
    init_keys(["svc-2026-12"])
    before = {r.account_id for r in _out(spark, published, "service", "accounts").select("account_id").collect()}
    result = run(spark, policy, published["lake"], PseudonymizeRequest.checked(policy, published["lake"], ["service"]))
    assert all(t.status == "published" for t in result.tables)
    rotated = _out(spark, published, "service", "accounts")
    assert {r.pseudonym_key_id for r in rotated.select("pseudonym_key_id").distinct().collect()} == {"svc-2026-12"}
    assert before.isdisjoint({r.account_id for r in rotated.select("account_id").collect()})
    assert _out(spark, published, "service", "devices").join(rotated, "account_id").count() > 0


def test_scrubber_recall_on_generated_tickets(spark, published, generated_lake, policy):
    from anonymizers.scrub import scrub

    raw = read_current(spark, generated_lake.table_path(policy.tables["support_tickets"]))
    accounts = read_current(spark, generated_lake.table_path(policy.tables["accounts"]))
    # ticket_id is pseudonymized in the published table: measure the same operator on the raw rows.
    scrubbed = scrub(raw.select("ticket_id", F.col("body").alias("scrubbed")), ["scrubbed"])
    published_bodies = _out(spark, published, "service", "support_tickets").select(F.col("body").alias("scrubbed"))
    assert published_bodies.join(scrubbed.select("scrubbed"), "scrubbed").count() > 0
    planted = raw.join(accounts.select("account_id", "email", "phone", "card_number", "my_number"), "account_id")
    fullwidth_phone = F.translate(F.col("phone"), "0123456789-+", "０１２３４５６７８９－＋")
    spaced_card = F.regexp_replace(F.col("card_number"), "(\\d{4})(?!$)", "$1 ")
    has = lambda text: (text.contains(F.col("email")) | text.contains(F.col("phone")) | text.contains(fullwidth_phone)  # noqa: E731
                        | text.contains(F.col("card_number")) | text.contains(spaced_card) | text.contains(F.col("my_number")))
    planted = planted.where(has(F.col("body"))).join(scrubbed, "ticket_id")
    total = planted.count()
    missed = planted.where(has(F.col("scrubbed"))).count()
    assert total >= 30
    assert 1 - missed / total >= 0.99


def test_gate_quarantines_a_leaking_table(spark, lake_copy, keys_env):
    """A column classified 'other' that copies the subject id must be caught and not published."""
    path = lake_copy.table_path(parse_policy(copy.deepcopy(BASE)).tables["support_tickets"])
    tickets = read_current(spark, path).withColumn("agent_note", F.col("account_id"))
    tickets.write.format("delta").mode("overwrite").option("mergeSchema", "true").save(path)
    data = copy.deepcopy(BASE)
    data["tables"]["support_tickets"]["columns"]["agent_note"] = "other"
    policy = parse_policy(data, "leaky.yaml")
    with pytest.raises(CheckFailed, match="support_tickets"):
        run(spark, policy, lake_copy, PseudonymizeRequest.checked(policy, lake_copy, ["service"]))
    assert not os.path.exists(lake_copy.pseudonymized("service", "support_tickets"))
    assert os.path.exists(lake_copy.pseudonymized("service", "accounts"))
    quarantined = list((lake_copy.root / "quarantine" / "pseudonymized" / "service" / "support_tickets").iterdir())
    assert quarantined
    assert RAW_SUBJECT not in read_current(spark, str(quarantined[0])).columns


def test_one_pseudonym_per_subject_catches_a_collision_naming_counts_only(spark):
    """Two subjects under one pseudonym (a collision) fail the check; counted from the staged rows,
    which keep each subject's key beside its pseudonym, so the check reads no source again."""
    table = parse_policy(copy.deepcopy(BASE)).tables["devices"]
    staged = spark.createDataFrame([("A000000001", "p1"), ("A000000002", "p1"), ("A000000002", "p1")],
                                   f"{RAW_SUBJECT} string, account_id string")
    counts = subject_counts(table, staged)
    assert (counts.subjects, counts.pseudonyms, counts.rows) == (2, 1, 3)
    problem = one_pseudonym_per_subject(table, counts)
    assert problem == "1 distinct pseudonyms for 2 distinct subjects in column account_id"
    assert one_pseudonym_per_subject(table, subject_counts(table, staged.where(F.col(RAW_SUBJECT) == "A000000002"))) is None


def test_missing_or_short_key_exits_2_and_writes_nothing(tmp_path, generated_lake, monkeypatch):
    monkeypatch.setenv("WASURE_KEYS", str(tmp_path / "no-keys.json"))
    lake = tmp_path / "lake"
    result = CliRunner().invoke(app, ["pseudonymize", "--lake", str(generated_lake.root)])
    assert result.exit_code == 2 and "svc-2026-11" in result.output and "not found" in result.output
    monkeypatch.setenv("WASURE_KEY_SVC_2026_11", base64.b64encode(b"short-key").decode())
    result = CliRunner().invoke(app, ["pseudonymize", "--purpose", "service", "--lake", str(lake)])
    assert result.exit_code == 2 and "at least 32" in result.output
    assert "short-key" not in result.output
    assert not lake.exists() and not (generated_lake.root / "pseudonymized").exists()


def test_unknown_purpose_exits_2_naming_it(tmp_path, generated_lake, keys_env):
    result = CliRunner().invoke(app, ["pseudonymize", "--purpose", "servcie", "--lake", str(generated_lake.root)])
    assert result.exit_code == 2, result.output
    assert "unknown purpose(s): servcie" in result.output and "service" in result.output
    assert not (generated_lake.root / "pseudonymized" / "servcie").exists()


def test_key_file_under_the_lake_is_refused(tmp_path, generated_lake, monkeypatch):
    monkeypatch.setenv("WASURE_KEYS", str(generated_lake.root / "keys.json"))
    result = CliRunner().invoke(app, ["keys", "init", "--lake", str(generated_lake.root)])
    assert result.exit_code == 2 and "under the lake root" in result.output
    assert not (generated_lake.root / "keys.json").exists()


def test_published_tickets_hold_no_name_or_address_their_author_quoted(spark, published, generated_lake, policy):
    """The detectors cannot recognize a name; the join with the author's own values removes it
    (anonymizers.scrub_own.scrub_own_values, wired in drop_and_scrub)."""
    raw = read_current(spark, generated_lake.table_path(policy.tables["support_tickets"]))
    accounts = read_current(spark, generated_lake.table_path(policy.tables["accounts"]))
    own = raw.join(accounts.select("account_id", "name_kanji", "address_line"), "account_id")
    quoted = own.where(F.col("body").contains(F.col("name_kanji")) | F.col("body").contains(F.col("address_line")))
    values = {v for r in quoted.select("name_kanji", "address_line").collect() for v in r if v}
    assert quoted.count() >= 10                       # the generator quotes them
    bodies = [r.body for r in _out(spark, published, "service", "support_tickets").select("body").collect()]
    leaked = [v for v in values if any(v in (b or "") for b in bodies)]
    assert leaked == [], f"{len(leaked)} own value(s) left in published tickets"


def test_gate_digests_are_built_once_per_table_and_fail_closed_on_other_lengths(spark, generated_lake, policy, keys_env,
                                                                                tmp_path):
    """The unkeyed digests of a table's identifiers are built once for every purpose's gate, for
    the length of the pseudonyms the job writes (22); an output whose pseudonyms have another digest
    length (here a 64-hex unkeyed sha256 in place of the subject's) is not called clean: the gate
    fails on that column, counting its rows as unchecked."""
    from expectations.gates import run_gate
    from jobs.pseudonymize import _Run, _Staged, gate_checks
    from jobs.runtime.keys import load_purpose_keys

    keys = load_purpose_keys(policy, ["service"], generated_lake)
    table = policy.tables["devices"]
    work = _Run(spark, policy, generated_lake, lambda _msg: None)
    try:
        shared = work.digests_of("devices", table)
        assert shared.lengths == (22,) and work.digests_of("devices", table) is shared
        prints = work.prints_of("devices", table)
        assert prints.lengths and work.prints_of("devices", table) is prints
        service = work.stage(("devices", table, {}, "service", keys["service"][1], keys["service"][0]))
        identifiers = work.identifiers_of("devices", table)
        clean = run_gate("test-digests", [("devices", service.output, gate_checks(policy, "devices", identifiers,
                                                                                 service.output, shared, prints))],
                         str(tmp_path / "clean"))
        assert not clean.failures
        rows = service.rows.withColumn(table.subject_key, F.sha2(F.col(RAW_SUBJECT), 256))
        leaked = _Staged("devices", table, {}, rows, None)
        gate = run_gate("test-digests", [("devices", leaked.output, gate_checks(policy, "devices", identifiers,
                                                                               leaked.output, shared, prints))],
                        str(tmp_path / "leaked"))
        assert [(f.expectation, f.column) for f in gate.failures] == [("ExpectPseudonymsNotUnkeyedHashes", table.subject_key)]
        assert "unchecked" in gate.failures[0].message
        # The raw subject key in place of its pseudonyms: the shared prints catch it.
        copied = _Staged("devices", table, {}, service.rows.withColumn(table.subject_key, F.col(RAW_SUBJECT)), None)
        gate = run_gate("test-digests", [("devices", copied.output, gate_checks(policy, "devices", identifiers,
                                                                               copied.output, shared, prints))],
                        str(tmp_path / "copied"))
        assert ("ExpectNoSourceValuesInColumns", table.subject_key) in [(f.expectation, f.column) for f in gate.failures]
    finally:
        work.release()
