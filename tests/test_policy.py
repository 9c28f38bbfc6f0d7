"""Policy as code: the example is valid; every bad policy names the exact key path; nothing is written."""
import copy
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from jobs.cli import app
from jobs.policy import PolicyError, check_table_schema, json_schema, load_policy, parse_policy

EXAMPLE = Path(__file__).resolve().parent.parent / "policies" / "example.yaml"
BASE = yaml.safe_load(EXAMPLE.read_text())


def _set(data, path, value):
    keys = path.split(".")
    node = data
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if value is DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


DELETE = object()

# (what to change, new value, the key path the error must name)
BAD_POLICIES = [
    ("version", 2, "version"),
    ("subject.key", DELETE, "subject.key"),
    ("subject.id_pattern", "([", "subject.id_pattern"),
    ("subject.table", "customers", "subject.table"),
    ("subject.closure_column", "deleted_at", "subject.closure_column"),
    ("tables.accounts.columns.email", "secret", "tables.accounts.columns.email"),
    ("tables.accounts.columns.account_id", DELETE, "tables.accounts.subject_key"),
    ("tables.accounts.columns.birth_date", {"class": "quasi_identifier", "hierarchy": "decade"}, "tables.accounts.columns.birth_date.hierarchy"),
    ("tables.accounts.columns.prefecture", "quasi_identifier", "tables.accounts.columns.prefecture.hierarchy"),
    ("tables.accounts.columns.my_number", {"class": "individual_code", "treatment": "pseudonymize"}, "tables.accounts.columns.my_number.treatment"),
    ("tables.network_events.columns.wifi_password", {"class": "property_damage", "treatment": "keep"}, "tables.network_events.columns.wifi_password.treatment"),
    ("tables.network_events.retention.action", "shred", "tables.network_events.retention.action"),
    ("tables.network_events.retention.period_days", -1, "tables.network_events.retention.period_days"),
    ("tables.devices.purposes", ["marketing"], "tables.devices.purposes[0]"),
    ("tables.accounts.path", "../outside", "tables.accounts.path"),
    ("tables.consents.date_column", "signed_at", "tables.consents.date_column"),
    ("tables.devices.columns.model", {"class": "other", "colour": "red"}, "tables.devices.columns.model.colour"),
    ("legal_holds.0.tables", ["payments"], "legal_holds[0].tables[0]"),
    ("legal_holds.0.subjects", ["bob@example.jp"], "legal_holds[0].subjects[0]"),
    ("legal_holds.0.reason", "", "legal_holds[0].reason"),
    ("purposes.analytics.key_id", "svc-2026-11", "purposes.analytics.key_id"),
    ("releases.health_k5.k", 1, "releases.health_k5.k"),
    ("releases.health_k5.quasi_identifiers.birth_date", "decade", "releases.health_k5.quasi_identifiers.birth_date"),
    ("defaults.max_delete_share", 1.5, "defaults.max_delete_share"),
    ("tables.health_measurements.retention.release", DELETE, "tables.health_measurements.retention.release"),
    ("tables.health_measurements.retention.release", "health_k50", "tables.health_measurements.retention.release"),
    ("tables.network_events.retention", {"basis": "business_date", "period_days": 30, "action": "anonymize", "release": "health_k5"},
     "tables.network_events.retention.release"),
    ("tabels", {}, "tabels"),
]


def test_example_policy_is_valid():
    policy = load_policy(EXAMPLE)
    assert policy.subject.key == "account_id"
    assert len(policy.sha256) == 64
    assert "my_number" in policy.tables["accounts"].columns_of(*[c for c in type(policy.tables["accounts"].column("my_number").class_) if c.value == "individual_code"])


@pytest.mark.parametrize("change,value,expected_path", BAD_POLICIES, ids=[b[0] for b in BAD_POLICIES])
def test_bad_policy_names_key_path(tmp_path, change, value, expected_path):
    data = copy.deepcopy(BASE)
    _set(data, change, value)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    with pytest.raises(PolicyError) as info:
        load_policy(bad)
    paths = [path for path, _ in info.value.problems]
    assert expected_path in paths, paths
    assert str(bad) in str(info.value)


def test_yaml_syntax_error_names_the_line(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("version: 1\ntables:\n  accounts: [unclosed\n")
    with pytest.raises(PolicyError) as info:
        load_policy(bad)
    assert info.value.problems[0][0].startswith("line ")


def test_missing_policy_file(tmp_path):
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "nope.yaml")
    assert info.value.problems == [("<file>", "policy file not found")]


def test_unclassified_lake_column_is_an_error():
    policy = parse_policy(copy.deepcopy(BASE))
    with pytest.raises(PolicyError) as info:
        check_table_schema(policy, "accounts", ["account_id", "email", "nickname"])
    assert info.value.problems == [("tables.accounts.columns", "column 'nickname' exists in the lake but is not classified")]


@pytest.mark.parametrize("change,value,expected_path", BAD_POLICIES[:6], ids=[b[0] for b in BAD_POLICIES[:6]])
def test_cli_exit_2_and_nothing_written(tmp_path, change, value, expected_path):
    data = copy.deepcopy(BASE)
    _set(data, change, value)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    lake = tmp_path / "lake"
    result = CliRunner().invoke(app, ["generate", "--policy", str(bad), "--lake", str(lake), "--subjects", "10"])
    assert result.exit_code == 2, result.output
    assert expected_path in result.output
    assert not lake.exists()
    schema = tmp_path / "schema.json"
    result = CliRunner().invoke(app, ["validate-policy", str(bad), "--write-schema", str(schema)])
    assert result.exit_code == 2 and expected_path in result.output
    assert not schema.exists()


def test_json_schema_for_editors(tmp_path):
    schema = json_schema()
    assert schema["title"] == "wasure policy"
    assert "tables" in schema["properties"]
    shipped = Path(__file__).resolve().parent.parent / "policies" / "policy.schema.json"
    import json

    assert json.loads(shipped.read_text()) == json.loads(json.dumps(schema)), "run `make schema` to refresh policies/policy.schema.json"


def test_release_cannot_include_a_linking_code(tmp_path):
    data = copy.deepcopy(BASE)
    data["releases"]["health_k5"]["sensitive"] = ["body_temp_c", "measurement_id"]
    with pytest.raises(PolicyError) as info:
        parse_policy(data)
    assert any("measurement_id" in message and "rule 34" in message for _, message in info.value.problems)


@pytest.mark.parametrize("module, action, options", [
    ("jobs.retention", [], []), ("jobs.pseudonymize", [], []), ("jobs.anonymize", [], ["--release", "health_k5"]),
    ("jobs.statistics", [], []), ("jobs.erasure", ["erase"], ["--subject", "A000000001"]), ("jobs.backup", ["backup"], []),
])
def test_spark_submit_entry_points_exit_2_on_an_invalid_policy(tmp_path, module, action, options):
    """`python -m jobs.X` is what spark-submit runs: an invalid policy is exit 2 with the key path on
    stderr, no traceback, before Spark starts or anything is written."""
    import subprocess
    import sys

    data = copy.deepcopy(BASE)
    _set(data, "defaults.max_delete_share", 7)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    lake = tmp_path / "lake"
    args = [sys.executable, "-m", module, *action, "--policy", str(bad), "--lake", str(lake), *options]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 2, result.stderr
    assert "invalid policy" in result.stderr and "defaults.max_delete_share" in result.stderr
    assert "Traceback" not in result.stderr and not lake.exists()
