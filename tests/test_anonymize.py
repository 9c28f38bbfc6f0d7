"""匿名加工情報 release on a generated lake: k and l hold, no linking code survives, rare values are
coded away, the manifest lists exactly what is released, the catalog serves it, a broken release is blocked."""
import datetime as dt
import json
import os
import re

import pytest
from pyspark.sql import functions as F

from anonymizers.privacy_models import check_distinct_l_diversity, check_k_anonymity
from jobs.anonymize import ReleaseRequest, _gate, run
from jobs.lake.layout import read_current

AS_OF = dt.date(2026, 11, 22)


@pytest.fixture(scope="module")
def release(spark, policy, generated_lake, tmp_path_factory):
    import shutil

    from jobs.lake.layout import Lake

    lake = Lake.at(tmp_path_factory.mktemp("anon") / "lake")
    shutil.copytree(generated_lake.root, lake.root)
    # Plant rare values (特異な記述): a 116-year-old with a 41.0 °C measurement.
    accounts_path = lake.table_path(policy.tables["accounts"])
    health_path = lake.table_path(policy.tables["health_measurements"])
    subject = (read_current(spark, health_path).where(F.col("region") == "JP").select("account_id").first().account_id)
    spark.sql(f"UPDATE delta.`{accounts_path}` SET birth_date = DATE'1910-05-01' WHERE account_id = '{subject}'")
    spark.sql(f"UPDATE delta.`{health_path}` SET body_temp_c = 41.0 WHERE account_id = '{subject}'")
    result = run(spark, policy, lake, ReleaseRequest.checked(policy, "health_k5", AS_OF))
    return {"lake": lake, "result": result, "data": read_current(spark, lake.anonymized("health_k5")).cache()}


def test_release_is_k_anonymous_and_l_diverse(release, policy):
    spec = policy.releases["health_k5"]
    qis = ["age", "gender", "prefecture", "measured_at_month"]
    data = release["data"]
    assert set(data.columns) == set(qis) | set(spec.sensitive)
    assert check_k_anonymity(data, qis, spec.k) == (True, 0)
    assert check_distinct_l_diversity(data, qis, "body_temp_c", spec.l)[0]
    assert release["result"].rows + release["result"].suppressed > 100
    assert release["result"].suppressed <= 0.02 * (release["result"].rows + release["result"].suppressed) + 1


def test_no_linking_code_survives(spark, release, policy, generated_lake):
    data = release["data"]
    values = data.select(F.explode(F.array(*[F.col(c).cast("string") for c in data.columns])).alias("v")).distinct()
    for table in ("health_measurements", "accounts"):
        source = read_current(spark, generated_lake.table_path(policy.tables[table]))
        for column in policy.tables[table].columns_of(*[c for c in type(policy.tables[table].column("account_id").class_)
                                                        if c.value in ("linking_code", "identifying")]):
            ids = source.select(F.col(column).cast("string").alias("v")).where(F.length("v") > 4)
            assert values.join(ids, "v").count() == 0, (table, column)


def test_rare_values_are_coded_away(release):
    data = release["data"]
    assert data.where(F.col("body_temp_c") == "41.0").count() == 0
    assert data.where(F.col("body_temp_c") == "38.5+").count() >= 1
    uppers = [int(n) for r in data.select("age").distinct().collect() for n in re.findall(r"\d+", r.age)]
    assert max(uppers) <= 90


def test_manifest_lists_exactly_the_released_categories(release):
    manifest_dir = os.path.dirname(release["result"].manifest)
    doc = json.load(open(os.path.join(manifest_dir, "manifest.json")))
    released = {c["released_as"] for c in doc["categories_of_personal_information"]}
    assert released == set(release["data"].columns)
    assert "匿名加工情報" in doc["statement_ja"] and doc["method"]["k"] == 5 and doc["region"] == "JP"
    assert "gcp" in doc["metrics"] and "max_prosecutor_risk" in doc["metrics"]
    markdown = open(release["result"].manifest).read()
    assert "匿名加工情報" in markdown and "| body_temp_c |" in markdown


def test_catalog_serves_the_release(spark, release):
    assert spark.table("anonymized.health_k5_data").count() == release["result"].rows
    names = {t.name for t in spark.catalog.listTables("anonymized")}
    assert not any("raw" in n or "pseudonym" in n for n in names)


def test_gate_blocks_a_release_with_a_linking_code(spark, policy, release):
    data = release["data"].limit(50).withColumn("measurement_id", F.lit("M1"))
    health = read_current(spark, release["lake"].table_path(policy.tables["health_measurements"]))
    broken = data.withColumn("measurement_id", F.lit(health.select("measurement_id").first()[0]))
    qis = ["age", "gender", "prefecture", "measured_at_month"]
    gate = _gate(spark, policy, release["lake"], "broken", policy.releases["health_k5"], qis, broken)
    assert not gate.success
    assert any(f.expectation == "ExpectNoForbiddenColumns" and "measurement_id" in f.column for f in gate.failures), gate.failures
    assert os.path.exists(gate.docs_index)


def test_gate_blocks_a_rare_value_left_uncoded(spark, policy, release):
    qis = ["age", "gender", "prefecture", "measured_at_month"]
    data = release["data"]
    broken = data.unionByName(data.limit(1).withColumn("body_temp_c", F.lit("41.0")))   # one row, in an existing class
    gate = _gate(spark, policy, release["lake"], "rare", policy.releases["health_k5"], qis, broken)
    assert not gate.success
    assert [f.column for f in gate.failures if f.expectation == "ExpectNoRareValues"] == ["body_temp_c"], gate.failures
    assert all("41.0" not in f.message for f in gate.failures)


def test_a_broken_hierarchy_file_exits_2_before_any_release_publishes(tmp_path, generated_lake):
    """Every release's hierarchy files are checked before Spark starts: a release later in the list
    must not fail after an earlier one was published."""
    import shutil

    from typer.testing import CliRunner

    from jobs.cli import app
    from jobs.policy import default_policy_path

    shutil.copytree(default_policy_path().parent, tmp_path / "policies")
    broken = tmp_path / "policies" / "hierarchies" / "prefecture.csv"
    broken.write_text(broken.read_text(encoding="utf-8") + "沖縄県;九州\n", encoding="utf-8")   # one level short
    before = sorted(generated_lake.root.rglob("*"))
    result = CliRunner().invoke(app, ["anonymize", "--policy", str(tmp_path / "policies" / "example.yaml"),
                                      "--lake", str(generated_lake.root), "--as-of", AS_OF.isoformat()])
    assert result.exit_code == 2, result.output
    assert "hierarchies.prefecture.file" in result.output and "expected 4" in result.output
    assert "starting Spark" not in result.output
    assert sorted(generated_lake.root.rglob("*")) == before


def test_data_the_hierarchy_does_not_cover_fails_the_release_naming_counts_only(spark, policy, generated_lake, tmp_path):
    """A QI value outside its hierarchy: Mondrian cannot generalize it, the run is a failed check
    (exit 1) with a count and the column, not the value, and nothing is published."""
    import shutil

    from jobs.runtime.console import CheckFailed
    from jobs.lake.layout import Lake

    lake = Lake.at(tmp_path / "lake")
    shutil.copytree(generated_lake.root, lake.root)
    accounts_path = lake.table_path(policy.tables["accounts"])      # the release takes prefecture from accounts
    spark.sql(f"UPDATE delta.`{accounts_path}` SET prefecture = 'Atlantis-Prefecture-9' WHERE region = 'JP'")
    with pytest.raises(CheckFailed) as failure:
        run(spark, policy, lake, ReleaseRequest.checked(policy, "health_k5", AS_OF))
    message = str(failure.value)
    assert "prefecture" in message and "nothing was published" in message
    assert "Atlantis" not in message
    assert not os.path.exists(lake.anonymized("health_k5"))
