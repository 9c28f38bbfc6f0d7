"""Data scientists read what is published with pandas and polars (delta-rs), not only Spark.

The published tables carry no reader feature delta-rs lacks (deletion vectors); raw tables keep
them. Every snippet of docs/reading.md runs on a lake with a release, a statistic and a
pseudonymized purpose, and gives the rows Spark sees. The protocols are read from `_delta_log`
with json, not through the code under test."""
import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

READING = Path(__file__).resolve().parent.parent / "docs" / "reading.md"


@pytest.fixture(scope="module")
def published(spark, policy, generated_lake, keys_env, tmp_path_factory):
    from jobs import anonymize, pseudonymize, statistics
    from jobs.lake.layout import Lake

    lake = Lake.at(tmp_path_factory.mktemp("reading") / "lake")
    shutil.copytree(generated_lake.root, lake.root)
    anonymize.run(spark, policy, lake, anonymize.ReleaseRequest.checked(policy, "health_k5"))
    statistics.run(spark, policy, lake, statistics.StatisticsRequest.checked(policy, ["network_usage"], ["JP"]))
    pseudonymize.run(spark, policy, lake, pseudonymize.PseudonymizeRequest.checked(policy, lake, ["service"]))
    return lake


def _protocol(table: Path) -> dict:
    """The latest protocol action of a Delta table, from its JSON commits."""
    found = {}
    for commit in sorted((table / "_delta_log").glob("*.json")):
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            if "protocol" in action:
                found = action["protocol"]
    return found


def _published_tables(lake) -> list[Path]:
    root = lake.root
    return ([root / "anonymized" / "health_k5" / "data", root / "statistics" / "network_usage" / "region=JP"]
            + sorted(p for p in (root / "pseudonymized" / "service").iterdir() if (p / "_delta_log").is_dir()))


def test_published_tables_have_no_reader_feature_delta_rs_lacks(published, policy):
    tables = _published_tables(published)
    assert len(tables) >= 4
    for table in tables:
        assert "deletionVectors" not in _protocol(table).get("readerFeatures", []), table
    raw = published.root / policy.tables["accounts"].path
    assert "deletionVectors" in _protocol(raw).get("readerFeatures", [])     # raw tables keep them


def test_pandas_and_polars_read_every_published_table_like_spark(published, spark):
    import polars as pl
    from deltalake import DeltaTable

    for table in _published_tables(published):
        expected = spark.read.format("delta").load(str(table)).count()
        assert len(DeltaTable(str(table)).to_pandas()) == expected, table
        assert pl.read_delta(str(table)).height == expected, table


def test_every_snippet_of_docs_reading_runs(published, spark):
    blocks = re.findall(r"```python\n(.*?)```", READING.read_text(), re.S)
    assert len(blocks) >= 5 and blocks[0].startswith("LAKE = ")
    scope: dict = {}
    exec(f"LAKE = {str(published.root)!r}", scope)
    for block in blocks[1:]:
        exec(compile(block, str(READING), "exec"), scope)
    release_rows = spark.read.format("delta").load(str(published.root / "anonymized/health_k5/data")).count()
    assert len(scope["release"]) == release_rows == scope["release_pl"].height == scope["release_sp"].count() > 0
    assert scope["manifest"]["release"] == "health_k5"
    usage = spark.read.format("delta").load(str(published.root / "statistics/network_usage/region=JP"))
    assert len(scope["usage"]) == scope["usage_sp"].count() == usage.count()
    assert len(scope["cells"]) == scope["usage_pl"].height == usage.where("margin_over = ''").count() > 0


def test_releases_command_prints_paths_manifests_and_reading_lines(published):
    from jobs.cli import app

    result = CliRunner().invoke(app, ["releases", "--lake", str(published.root)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    data = str(published.root / "anonymized" / "health_k5" / "data")
    statistic = str(published.root / "statistics" / "network_usage" / "region=JP")
    assert f'DeltaTable("{data}").to_pandas()' in result.output
    assert f'pl.read_delta("{statistic}")' in result.output
    assert str(published.root / "anonymized" / "health_k5" / "manifest.json") in result.output
