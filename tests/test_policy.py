"""Policy as code: the example is valid; every bad policy names the exact key path; nothing is written."""
import copy
import shutil
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


class _Delete:
    def __repr__(self) -> str:      # a stable test id
        return "DELETE"


DELETE = _Delete()


def _write(directory: Path, data, name: str = "bad.yaml") -> Path:
    """The policy next to a copy of the example's hierarchy files (relative paths resolve next to it)."""
    if not (directory / "hierarchies").exists():
        shutil.copytree(EXAMPLE.parent / "hierarchies", directory / "hierarchies")
    path = directory / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return path


def _changed(*changes) -> dict:
    data = copy.deepcopy(BASE)
    for change, value in changes:
        _set(data, change, value)
    return data

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
    bad = _write(tmp_path, _changed((change, value)))
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
    bad = _write(tmp_path, _changed((change, value)))
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


@pytest.mark.parametrize("step", ["retention", "pseudonymize", "anonymize", "statistics", "closure", "backup"])
def test_spark_submit_entry_point_exits_2_on_an_invalid_policy(tmp_path, step):
    """`jobs/pipeline/submit.py STEP` is what spark-submit runs (the DAGs in cluster mode): an invalid policy
    is exit 2 with the key path on stderr, no traceback, before Spark starts or anything is written."""
    import os
    import subprocess
    import sys

    data = copy.deepcopy(BASE)
    _set(data, "defaults.max_delete_share", 7)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    lake = tmp_path / "lake"
    repo = Path(__file__).resolve().parent.parent
    args = [sys.executable, str(repo / "jobs" / "pipeline" / "submit.py"), step, "--policy", str(bad), "--lake", str(lake)]
    env = {**os.environ, "WASURE_ERASE_SUBJECTS": "A000000001"}          # the closure's ids, as the DAG passes them
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=repo, env=env)
    assert result.returncode == 2, result.stderr
    assert "invalid policy" in result.stderr and "defaults.max_delete_share" in result.stderr
    assert "Traceback" not in result.stderr and not lake.exists()


# --- Bounds and checks (docs/policy.md): each rule, its key path, exit 2 through the CLI ----------

# (what to change, new value, the key path the error must name); every one of these was accepted before.
NEW_RULES = [
    # sane ranges
    ("tables.network_events.retention.period_days", 36501, "tables.network_events.retention.period_days"),
    ("tables.network_events.retention.grace_days", 3651, "tables.network_events.retention.grace_days"),
    ("defaults.grace_days", 3651, "defaults.grace_days"),
    ("defaults.backup_retention_days", 3651, "defaults.backup_retention_days"),
    ("defaults.erasure_deadline_days", 91, "defaults.erasure_deadline_days"),
    ("releases.health_k5.k", 1001, "releases.health_k5.k"),
    ("releases.health_k5.l", 1001, "releases.health_k5.l"),
    ("statistics.network_usage.k", 1001, "statistics.network_usage.k"),
    ("hierarchies.age.width", 151, "hierarchies.age.width"),
    ("hierarchies.age.top", 200, "hierarchies.age.top"),
    # rare values: sensitive attributes only, well-formed bounds
    ("releases.health_k5.rare_values", {"birth_date": [0, 90]}, "releases.health_k5.rare_values.birth_date"),
    ("releases.health_k5.rare_values", {"body_temp_c": [38.5, 35.5]}, "releases.health_k5.rare_values.body_temp_c"),
    ("releases.health_k5.rare_values", {"body_temp_c": [36.6, 36.6]}, "releases.health_k5.rare_values.body_temp_c"),
    ("releases.health_k5.rare_values", {"body_temp_c": [35.5]}, "releases.health_k5.rare_values.body_temp_c"),
    ("releases.health_k5.rare_values", {"body_temp_c": ["35.5", 38.5]}, "releases.health_k5.rare_values.body_temp_c"),
    ("releases.health_k5.rare_values", {"body_temp_c": [True, 38.5]}, "releases.health_k5.rare_values.body_temp_c"),
    ("releases.health_k5.rare_values", {"body_temp_c": [None, None]}, "releases.health_k5.rare_values.body_temp_c"),
    ("releases.health_k5.rare_values", {"body_temp_c": [float("nan"), 38.5]}, "releases.health_k5.rare_values.body_temp_c"),
    # closure dates must outlive every table retained by account closure
    ("tables.devices.retention.period_days", 31, "tables.devices.retention.period_days"),
    ("tables.accounts.retention", {"basis": "business_date", "period_days": 3650, "action": "delete"}, "tables.accounts.retention.basis"),
    # a consent-based purpose needs the consent register
    ("subject.consents_table", DELETE, "purposes.research.requires_consent"),
    # hierarchy files
    ("hierarchies.gender.file", DELETE, "hierarchies.gender.file"),
    ("hierarchies.age.file", "hierarchies/gender.csv", "hierarchies.age.file"),
    ("hierarchies.gender.file", "hierarchies/genders.csv", "hierarchies.gender.file"),
    ("hierarchies.gender.file", "hierarchies", "hierarchies.gender.file"),
]
NEW_RULE_IDS = [f"{change}={value!r}" for change, value, _ in NEW_RULES]


@pytest.mark.parametrize("change,value,expected_path", NEW_RULES, ids=NEW_RULE_IDS)
def test_new_rule_exits_2_naming_the_key_path(tmp_path, change, value, expected_path):
    bad = _write(tmp_path, _changed((change, value)))
    with pytest.raises(PolicyError) as info:
        load_policy(bad)
    assert expected_path in [path for path, _ in info.value.problems], info.value.problems
    result = CliRunner().invoke(app, ["validate-policy", str(bad)])
    assert result.exit_code == 2, result.output
    assert "invalid policy" in result.output and f"  {expected_path}:" in result.output


def test_example_policy_validates_through_the_cli():
    result = CliRunner().invoke(app, ["validate-policy", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_bounds_at_their_limits_are_valid(tmp_path):
    good = _write(tmp_path, _changed(
        ("tables.network_events.retention.period_days", 36500), ("tables.network_events.retention.grace_days", 3650),
        ("defaults.grace_days", 0), ("defaults.backup_retention_days", 3650), ("defaults.erasure_deadline_days", 90),
        ("releases.health_k5.k", 1000), ("releases.health_k5.l", 1), ("statistics.network_usage.k", 1000),
        ("releases.health_k5.rare_values", {"body_temp_c": [35, None]}), ("hierarchies.age.top", 150),
    ))
    policy = load_policy(good)
    assert policy.releases["health_k5"].rare_values == {"body_temp_c": (35.0, None)}
    assert policy.tables["network_events"].retention.period_days == 36500


def test_rare_values_are_for_the_release_s_sensitive_attributes_only(tmp_path):
    """weight_kg is sensitive in its table but not an attribute of the release: nothing would code it."""
    bad = _write(tmp_path, _changed(("releases.health_k5.rare_values", {"weight_kg": [40, 150], "gender": [0, 1]})))
    with pytest.raises(PolicyError) as info:
        load_policy(bad)
    problems = dict(info.value.problems)
    assert "not a sensitive attribute of the release (sensitive: body_temp_c)" in problems["releases.health_k5.rare_values.weight_kg"]
    assert "is a quasi-identifier" in problems["releases.health_k5.rare_values.gender"]
    assert "hierarchy" in problems["releases.health_k5.rare_values.gender"]


def test_malformed_rare_bounds_say_what_is_expected(tmp_path):
    bad = _write(tmp_path, _changed(("releases.health_k5.rare_values", {"body_temp_c": [38.5, 35.5]})))
    result = CliRunner().invoke(app, ["validate-policy", str(bad)])
    assert result.exit_code == 2
    assert "low (38.5) must be below high (35.5)" in " ".join(result.output.split())


def test_closure_periods_no_longer_than_the_subject_tables(tmp_path):
    """Devices kept 31 days after closure, accounts 30: the accounts row (and its closure date) is gone
    first, so the devices of that subject would never expire. Shorter or equal periods are safe (one
    run reads the closure dates once, before its first delete); so is a subject table kept forever."""
    bad = _write(tmp_path, _changed(("tables.devices.retention.period_days", 31),
                                    ("tables.third_party_provisions.retention", {"basis": "account_closure", "period_days": 1095})))
    with pytest.raises(PolicyError) as info:
        load_policy(bad)
    problems = dict(info.value.problems)
    for table, days in (("devices", 31), ("third_party_provisions", 1095)):
        message = problems[f"tables.{table}.retention.period_days"]
        assert f"{days} days after closure" in message and "accounts.closed_at" in message and "at most 30 days" in message
    result = CliRunner().invoke(app, ["validate-policy", str(bad)])
    assert result.exit_code == 2 and "tables.devices.retention.period_days" in result.output
    assert "tables.third_party_provisions.retention.period_days" in result.output

    assert load_policy(_write(tmp_path, _changed(("tables.devices.retention.period_days", 7)), "shorter.yaml"))
    assert load_policy(_write(tmp_path, _changed(("tables.accounts.retention", DELETE),
                                                 ("tables.devices.retention.period_days", 3650)), "kept.yaml"))


@pytest.mark.parametrize("content,expected", [
    ("北海道;北海道;東日本;*\n沖縄県;九州\n".encode(), "expected 4"),              # one level short
    ("F;*\nF;*\n".encode(), "duplicate original values"),
    (b"", "is empty"),
    ("F;*\n".encode("utf-16"), "not UTF-8 text"),
], ids=["levels", "duplicates", "empty", "utf16"])
def test_hierarchy_files_are_parsed_by_the_loader(tmp_path, content, expected):
    bad = _write(tmp_path, copy.deepcopy(BASE))
    (tmp_path / "hierarchies" / "prefecture.csv").write_bytes(content)
    with pytest.raises(PolicyError) as info:
        load_policy(bad)
    problems = dict(info.value.problems)
    assert list(problems) == ["hierarchies.prefecture.file"], problems
    assert expected in problems["hierarchies.prefecture.file"]
    result = CliRunner().invoke(app, ["validate-policy", str(bad)])
    assert result.exit_code == 2 and "hierarchies.prefecture.file" in result.output


def test_hierarchy_files_resolve_next_to_the_policy_not_the_working_directory(tmp_path, monkeypatch):
    """As the anonymize job resolves them: a path that exists from the working directory but not next
    to the policy file is an error; a relative policy path from elsewhere works."""
    repo = EXAMPLE.parent.parent
    monkeypatch.chdir(repo)
    assert (repo / "policies" / "hierarchies" / "gender.csv").is_file()
    away = tmp_path / "away"
    away.mkdir()
    bad = away / "bad.yaml"      # no hierarchies/ next to it
    bad.write_text(yaml.safe_dump(_changed(("hierarchies.gender.file", "policies/hierarchies/gender.csv")), allow_unicode=True))
    with pytest.raises(PolicyError) as info:
        load_policy(bad)
    assert {path for path, _ in info.value.problems} == {"hierarchies.gender.file", "hierarchies.prefecture.file"}
    assert str(away / "policies" / "hierarchies" / "gender.csv") in dict(info.value.problems)["hierarchies.gender.file"]

    home = tmp_path / "home"
    home.mkdir()
    _write(home, copy.deepcopy(BASE), "policy.yaml")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["validate-policy", "home/policy.yaml"])
    assert result.exit_code == 0, result.output


def test_every_problem_is_reported_at_once(tmp_path):
    """Field errors (ranges, bounds) and hierarchy files together; once the structure is valid, the
    cross-reference checks (closure order, rare values' columns, tree files) together with the files."""
    structural = _write(tmp_path, _changed(
        ("tables.network_events.retention.period_days", 36501), ("defaults.erasure_deadline_days", 91),
        ("releases.health_k5.k", 1001), ("releases.health_k5.rare_values", {"body_temp_c": [38.5, 35.5]}),
        ("hierarchies.prefecture.file", "hierarchies/none.csv")), "structural.yaml")
    result = CliRunner().invoke(app, ["validate-policy", str(structural)])
    assert result.exit_code == 2
    for path in ("tables.network_events.retention.period_days", "defaults.erasure_deadline_days", "releases.health_k5.k",
                 "releases.health_k5.rare_values.body_temp_c", "hierarchies.prefecture.file"):
        assert f"  {path}:" in result.output, (path, result.output)

    semantic = _write(tmp_path, _changed(
        ("tables.devices.retention.period_days", 60), ("releases.health_k5.rare_values", {"birth_date": [0, 90]}),
        ("hierarchies.gender.file", DELETE), ("hierarchies.prefecture.file", "hierarchies/none.csv")), "semantic.yaml")
    result = CliRunner().invoke(app, ["validate-policy", str(semantic)])
    assert result.exit_code == 2
    for path in ("tables.devices.retention.period_days", "releases.health_k5.rare_values.birth_date",
                 "hierarchies.gender.file", "hierarchies.prefecture.file"):
        assert f"  {path}:" in result.output, (path, result.output)


def test_the_subject_key_of_a_purpose_table_cannot_be_dropped():
    """Erasure finds a subject's 仮名加工情報 by the pseudonym of the subject key (jobs/lake/lineage.py)."""
    data = copy.deepcopy(BASE)
    data["tables"]["devices"]["columns"]["account_id"] = {"class": "linking_code", "treatment": "drop"}
    with pytest.raises(PolicyError) as info:
        parse_policy(data, "drop-key.yaml")
    assert any(path == "tables.devices.columns.account_id.treatment" for path, _m in info.value.problems)
