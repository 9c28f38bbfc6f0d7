"""Access / portability export (`wasure access`), compared with the raw rows read independently
(pyarrow over the Parquet files of the freshly generated tables, not Spark or the code under test)."""
import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conftest import EXAMPLE_POLICY

SUBJECT = "A000000123"


def _raw_rows(lake_root: Path, table_path: str, key: str, subject: str) -> list[dict]:
    """The subject's rows of a one-version generated table: every Parquet file under it (no log)."""
    rows = []
    for path in sorted((lake_root / table_path).rglob("*.parquet")):
        if "_delta_log" in path.parts:
            continue
        rows += [r for r in pq.read_table(path).to_pylist() if r.get(key) == subject]
    return rows


def _invoke(lake, *args):
    from jobs.cli import app

    return CliRunner().invoke(app, ["access", *args, "--policy", EXAMPLE_POLICY, "--lake", str(lake.root)])


@pytest.fixture(scope="module")
def exported(generated_lake, keys_env, tmp_path_factory):
    import shutil

    from jobs.lake.layout import Lake

    lake = Lake.at(tmp_path_factory.mktemp("access") / "lake")
    shutil.copytree(generated_lake.root, lake.root)
    out = lake.root.parent / "exports"
    result = _invoke(lake, "--subject", SUBJECT, "--request-id", "export-1", "--out", str(out))
    return {"lake": lake, "out": out / "export-1", "result": result}


def test_the_export_holds_every_raw_row_of_the_subject(exported, policy):
    assert exported["result"].exit_code == 0, exported["result"].output
    doc = json.loads((exported["out"] / "export.json").read_text())
    assert doc["subject_id"] == SUBJECT and doc["found"] is True
    for name, table in policy.tables.items():
        if name == policy.subject.legal_holds_table:
            assert name not in doc["tables"]          # hold internals stay with legal
            continue
        raw = _raw_rows(exported["lake"].root, table.path, table.subject_key, SUBJECT)
        got = doc["tables"][name]["rows"]
        assert len(got) == len(raw), name
        for column in table.columns:
            spec = table.column(column)
            if spec.class_.value == "property_damage":
                assert all(r[column] is None or "****" in r[column] or "withheld" in r[column] for r in got), column
                continue
            want = sorted(str(r[column]) for r in raw if r.get(column) is not None)
            have = sorted(str(r[column]) for r in got if r[column] is not None)
            if spec.class_.value in ("identifying", "linking_code", "individual_code", "free_text"):
                assert have == want, (name, column)
            else:
                assert len(have) == len(want), (name, column)
        assert set(doc["tables"][name]["columns"]) == set(table.columns)


def test_csv_html_and_schema_are_written_outside_the_lake(exported, policy):
    out, lake = exported["out"], exported["lake"]
    assert lake.root not in out.parents
    files = {p.name for p in out.iterdir()}
    assert {"export.json", "export.schema.json", "index.html", "accounts.csv"} <= files
    with open(out / "accounts.csv", encoding="utf-8-sig") as handle:
        assert [r["account_id"] for r in csv.DictReader(handle)] == [SUBJECT]
    page = (out / "index.html").read_text()
    assert "accounts" in page and "仮名加工情報" in page and "third_party_provisions" in page
    import jsonschema

    jsonschema.validate(json.loads((out / "export.json").read_text()), json.loads((out / "export.schema.json").read_text()))
    excluded = json.loads((out / "export.json").read_text())["excluded"]
    assert any("pseudonymized" in x["datasets"] for x in excluded)


def test_the_lake_keeps_counts_only(exported, spark):
    from jobs.lake.layout import read_current

    lake = exported["lake"]
    receipt = (lake.root / "receipts" / "access-export-1.json").read_text()
    doc = json.loads((exported["out"] / "export.json").read_text())
    email = doc["tables"]["accounts"]["rows"][0]["email"]
    assert SUBJECT not in receipt and email not in receipt
    assert json.loads(receipt)["rows_by_table"]["accounts"] == 1
    for name in ("state/access_requests", "audit/access"):
        text = json.dumps([r.asDict() for r in read_current(spark, str(lake.root / name)).collect()], default=str)
        assert SUBJECT not in text and email not in text


@pytest.mark.parametrize("args, message", [
    (["--subject", "not-an-id", "--request-id", "a-2"], "--subject"),
    (["--subject", SUBJECT, "--request-id", "a-3", "--format", "pdf"], "--format"),
    (["--subject", SUBJECT, "--request-id", "export-1"], "already"),
])
def test_bad_requests_are_exit_2_and_write_nothing(exported, args, message):
    lake = exported["lake"]
    before = sorted(p.name for p in (lake.root / "receipts").iterdir())
    result = _invoke(lake, *args, "--out", str(lake.root.parent / "exports2"))
    assert result.exit_code == 2, result.output
    assert message in result.output and "not-an-id" not in result.output
    assert sorted(p.name for p in (lake.root / "receipts").iterdir()) == before
    assert not (lake.root.parent / "exports2" / "a-3").exists()


def test_an_export_under_the_lake_root_is_refused(exported):
    lake = exported["lake"]
    result = _invoke(lake, "--subject", SUBJECT, "--request-id", "a-4", "--out", str(lake.root / "exports"))
    assert result.exit_code == 2 and "outside the lake" in " ".join(result.output.split())
    assert not (lake.root / "exports").exists()
