"""Nothing slips through: erasure reaches every derived copy (仮名加工情報), register changes reach
every output on the next run, and verification fails while a derived copy still holds a subject.

Checked with an independent scan: every Parquet file under the lake is read with pyarrow (not
Spark, not the code under test) and searched for the subjects' pseudonyms, computed here with
``hmac`` from the key file."""
import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from pyspark.sql import functions as F
from typer.testing import CliRunner

from jobs import erasure, pseudonymize
from jobs.lake.layout import Lake, read_current, write_policy_table
from jobs.policy import parse_policy

from conftest import EXAMPLE_POLICY

AS_OF = dt.date(2026, 11, 22)
HELD = {"A000000007", "A000000328"}          # policy hold; register hold (seed 42)


def _policy_data() -> dict:
    data = yaml.safe_load(open(EXAMPLE_POLICY))
    data["defaults"]["grace_days"] = 0          # purge at once
    return data


def _key(key_id: str) -> bytes:
    return base64.b64decode(json.loads(Path(os.environ["WASURE_KEYS"]).read_text())["keys"][key_id])


def _pseudonym(policy, purpose: str, subject: str) -> str:
    """The pseudonym format: HMAC-SHA256's first 16 bytes, base64url without padding."""
    digest = hmac.new(_key(policy.purposes[purpose].key_id), subject.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode("ascii")


def _legacy_pseudonym(policy, purpose: str, subject: str) -> str:
    """What wasure wrote before the 128-bit format: the whole digest in hex."""
    return hmac.new(_key(policy.purposes[purpose].key_id), subject.encode(), hashlib.sha256).hexdigest()


def _parquet_hits(root: Path, needles: set[str]) -> dict[str, set[str]]:
    """needle -> files (relative) whose string cells contain it, for every data Parquet file."""
    hits: dict[str, set[str]] = {n: set() for n in needles}
    for path in root.rglob("*.parquet"):
        if "_delta_log" in path.parts:
            continue
        table = pq.read_table(path)
        for column in table.column_names:
            if not str(table.schema.field(column).type).startswith(("string", "large_string")):
                continue
            for cell in table.column(column).to_pylist():
                if cell in needles:
                    hits[cell].add(str(path.relative_to(root)))
    return hits


def _cli(lake: Lake, *args: str):
    from jobs.cli import app

    policy_file = lake.root.parent / "policy.yaml"
    if not policy_file.exists():
        policy_file.write_text(yaml.safe_dump(_policy_data(), allow_unicode=True))
        shutil.copytree(Path(EXAMPLE_POLICY).parent / "hierarchies", lake.root.parent / "hierarchies")
    return CliRunner().invoke(app, [*args, "--policy", str(policy_file), "--lake", str(lake.root)])


@pytest.fixture(scope="module")
def derived(spark, generated_lake, keys_env, tmp_path_factory):
    policy = parse_policy(_policy_data(), "test-policy.yaml")
    lake = Lake.at(tmp_path_factory.mktemp("derived") / "lake")
    shutil.copytree(generated_lake.root, lake.root)
    state: dict = {"policy": policy, "lake": lake}
    pseudonymize.run(spark, policy, lake, pseudonymize.PseudonymizeRequest.checked(policy, lake))

    # Two subjects present in pseudonymized/service/accounts (not restricted, not held).
    service = read_current(spark, lake.pseudonymized("service", "accounts")).select("account_id")
    present = {r.account_id for r in service.collect()}
    candidates = [f"A{i:09d}" for i in range(100, 400) if f"A{i:09d}" not in HELD]
    chosen = [s for s in candidates if _pseudonym(policy, "service", s) in present][:2]
    gdpr, closure = chosen
    state.update(gdpr=gdpr, closure=closure)
    state["before"] = _parquet_hits(lake.root / "pseudonymized", {_pseudonym(policy, p, s)
                                                                  for p in policy.purposes for s in chosen})
    # A data file of the service copy holding the GDPR subject, kept outside the lake (residue to plant).
    files = (read_current(spark, lake.pseudonymized("service", "accounts"))
             .where(F.col("account_id") == _pseudonym(policy, "service", gdpr))
             .select(F.col("_metadata.file_path").alias("f")).distinct().collect())
    source = Path(files[0].f.removeprefix("file:"))
    state["residue"] = lake.root.parent / "residue.parquet"
    shutil.copy(source, state["residue"])
    state["residue_target"] = str(source.relative_to(lake.root)).replace(source.name, "part-99999-restored.snappy.parquet")

    # A row as wasure wrote it before the 128-bit format (64 hex), still in a copy: it goes too.
    state["legacy"] = _legacy_pseudonym(policy, "service", gdpr)
    (read_current(spark, lake.pseudonymized("service", "accounts"))
     .where(F.col("account_id") == _pseudonym(policy, "service", gdpr)).withColumn("account_id", F.lit(state["legacy"]))
     .write.format("delta").mode("append").save(lake.pseudonymized("service", "accounts")))
    assert _parquet_hits(lake.root / "pseudonymized", {state["legacy"]})[state["legacy"]]

    requests = [erasure.RequestInput("gdpr-derived", [gdpr], "gdpr", dt.datetime(2026, 11, 21)),
                erasure.RequestInput("closure-derived", [closure], "account_closure", dt.datetime(2026, 11, 21))]
    state["report"] = erasure.run(spark, policy, lake, requests, as_of=AS_OF)
    state["receipts"] = {rc["request_id"]: rc for rc in state["report"].receipts}
    state["after"] = _parquet_hits(lake.root, {_pseudonym(policy, p, s) for p in policy.purposes for s in chosen}
                                   | {state["legacy"]})
    return state


def test_the_subjects_were_in_the_derived_copies_before(derived):
    policy = derived["policy"]
    for subject in (derived["gdpr"], derived["closure"]):
        files = derived["before"][_pseudonym(policy, "service", subject)]
        assert any(f.startswith("service/accounts/") for f in files), subject


def test_gdpr_erasure_leaves_no_pseudonym_in_any_file(derived):
    policy = derived["policy"]
    for purpose in policy.purposes:
        assert derived["after"][_pseudonym(policy, purpose, derived["gdpr"])] == set(), purpose


def test_a_legacy_hex_pseudonym_of_the_subject_is_erased_too(derived):
    assert derived["after"][derived["legacy"]] == set()


def test_closure_keeps_only_its_retained_pseudonymized_rows(derived):
    policy = derived["policy"]
    for purpose in policy.purposes:
        files = derived["after"][_pseudonym(policy, purpose, derived["closure"])]
        if purpose == "service":     # S5: accounts' retention keeps 仮名加工情報 under the service key
            assert files and all(f.startswith("pseudonymized/service/retained/accounts/") for f in files), files
        else:
            assert files == set(), (purpose, files)


def test_receipts_name_the_derived_copies_and_close_only_when_they_are_gone(derived):
    gdpr = derived["receipts"]["gdpr-derived"]
    assert gdpr["state"] == "closed"
    copies = {c["copy"] for c in gdpr["derived_copies_erased"]}
    assert {"pseudonymized/service/accounts", "pseudonymized/service/devices"} <= copies
    assert gdpr["verification"]["pseudonyms_checked"] >= 1
    closure = derived["receipts"]["closure-derived"]
    assert "pseudonymized/service/retained/accounts" not in {c["copy"] for c in closure["derived_copies_erased"]}
    assert closure["retained_pseudonymized"] == ["pseudonymized/service/retained/accounts"]
    text = json.dumps(derived["receipts"])
    assert derived["gdpr"] not in text and _pseudonym(derived["policy"], "service", derived["gdpr"]) not in text


def test_verify_erasure_fails_while_a_derived_copy_holds_the_subject(derived):
    lake, policy = derived["lake"], derived["policy"]
    clean = _cli(lake, "verify-erasure")
    assert clean.exit_code == 0, clean.output
    target = lake.root / derived["residue_target"]
    shutil.copy(derived["residue"], target)
    try:
        dirty = _cli(lake, "verify-erasure", "--request-id", "gdpr-derived")
    finally:
        target.unlink()
    assert dirty.exit_code == 1, dirty.output
    assert target.name in dirty.output
    assert derived["gdpr"] not in dirty.output
    assert _pseudonym(policy, "service", derived["gdpr"]) not in dirty.output


def test_register_changes_reach_the_next_pseudonymize_run(spark, derived):
    """A new restriction and a consent re-grant change no source table, yet the next run obeys both."""
    policy, lake = derived["policy"], derived["lake"]
    service = {r.account_id for r in read_current(spark, lake.pseudonymized("service", "accounts")).collect()}
    restricted = next(s for s in (f"A{i:09d}" for i in range(200, 400))
                      if s not in HELD and _pseudonym(policy, "service", s) in service)
    consents = read_current(spark, lake.table_path(policy.tables["consents"]))
    regrant = (consents.where((F.col("purpose") == "analytics") & (F.col("status") == "withdrawn"))
               .select("account_id").orderBy("account_id").first().account_id)
    analytics = {r.account_id for r in read_current(spark, lake.pseudonymized("analytics", "accounts")).collect()}
    assert _pseudonym(policy, "analytics", regrant) not in analytics          # withdrawn before
    region = read_current(spark, lake.table_path(policy.tables["accounts"])).where(F.col("account_id") == regrant).first().region
    later = dt.datetime(2026, 11, 30, 12, 0)
    write_policy_table(spark, lake, policy.tables["restrictions"], spark.createDataFrame(
        [(restricted, "all_processing", later, "JP")], "account_id string, scope string, requested_at timestamp, region string"),
        mode="append")
    write_policy_table(spark, lake, policy.tables["consents"], spark.createDataFrame(
        [(regrant, "analytics", "granted", later, region)],
        "account_id string, purpose string, status string, changed_at timestamp, region string"), mode="append")

    result = pseudonymize.run(spark, policy, lake, pseudonymize.PseudonymizeRequest.checked(policy, lake, ["service", "analytics"]))
    status = {(t.purpose, t.table): t.status for t in result.tables}
    assert status[("service", "accounts")] == "published"
    service = {r.account_id for r in read_current(spark, lake.pseudonymized("service", "accounts")).collect()}
    assert _pseudonym(policy, "service", restricted) not in service
    analytics = {r.account_id for r in read_current(spark, lake.pseudonymized("analytics", "accounts")).collect()}
    assert _pseudonym(policy, "analytics", regrant) in analytics              # latest state wins


def test_a_copy_written_under_a_rotated_key_is_searched_under_that_key(spark, tmp_path):
    """Retained and quarantined copies keep the key id of their day (jobs.lake.lineage.copy_key_ids):
    erasure looks the subject up under every key id a copy carries, not only the current one."""
    from jobs.lake.lineage import DerivedCopy, copy_key_ids

    lake = Lake.at(tmp_path / "lake")
    path = lake.root / "pseudonymized" / "service" / "retained" / "accounts"
    spark.createDataFrame([("p1", "svc-2026-10"), ("p2", "svc-2026-11"), ("p3", "svc-2026-11")],
                          "account_id string, pseudonym_key_id string").write.format("delta").save(str(path))
    copy = DerivedCopy("accounts", "service", "pseudonymized/service/retained/accounts", "account_id", True)
    assert copy_key_ids(spark, lake, [copy]) == {copy.relative: ["svc-2026-10", "svc-2026-11"]}
    # Adding rows under a newer key to such a copy first records its ids (the scanned ones too) in
    # the table property that erasure then reads instead of scanning the copy.
    from jobs.lake.lineage import recorded_key_ids, record_key_id
    from jobs.lake.table import LakeTable

    table = LakeTable(spark, lake.path(copy.relative))
    assert recorded_key_ids(table) is None
    record_key_id(table, "svc-2026-12")
    assert recorded_key_ids(table) == ["svc-2026-10", "svc-2026-11", "svc-2026-12"]
    assert copy_key_ids(spark, lake, [copy]) == {copy.relative: ["svc-2026-10", "svc-2026-11", "svc-2026-12"]}


def test_every_copy_records_the_key_ids_of_its_rows(spark, derived):
    """Published, quarantined and retained copies name their key ids in a table property, and the
    property matches the rows (copy_key_ids reads it without a scan)."""
    from jobs.lake.lineage import KEY_ID_COLUMN, derived_copies, recorded_key_ids
    from jobs.lake.table import LakeTable

    lake, policy = derived["lake"], derived["policy"]
    copies = derived_copies(policy, lake)
    assert any(c.retained for c in copies)
    for copy in copies:
        rows = read_current(spark, lake.path(copy.relative)).select(KEY_ID_COLUMN).distinct().collect()
        recorded = recorded_key_ids(LakeTable(spark, lake.path(copy.relative)))
        assert recorded and {r[0] for r in rows} <= set(recorded), copy.relative      # never narrower
