"""WASURE_CATALOG=hive: a release registered by one process is a table for the next one (embedded
Derby metastore outside the lake). Runs in subprocesses: the test session's Spark has no Hive catalog."""
import os
import subprocess
import sys
import textwrap

REGISTER = textwrap.dedent("""
    import sys
    from jobs.lake.catalog import register_release
    from jobs.lake.layout import Lake
    from jobs.runtime.spark import get_spark
    spark = get_spark("catalog-test")
    lake = Lake.at(sys.argv[1])
    spark.createDataFrame([("20-24", "F", 3)], "age string, gender string, n int").write.format("delta").save(lake.anonymized("r1", "data"))
    print(register_release(spark, lake, "r1"))
""")
READ = textwrap.dedent("""
    from jobs.runtime.spark import get_spark
    spark = get_spark("catalog-test-reader")
    print(spark.conf.get("spark.sql.catalogImplementation"), spark.table("anonymized.r1_data").count(),
          sorted(t.name for t in spark.catalog.listTables("anonymized")))
""")


def _python(code: str, *args: str, env: dict) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=600,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_hive_catalog_persists_releases_across_processes(tmp_path):
    env = {**os.environ, "WASURE_CATALOG": "hive", "WASURE_METASTORE": str(tmp_path / "metastore"), "WASURE_SPARK_UI": "0"}
    lake = tmp_path / "lake"
    assert _python(REGISTER, str(lake), env=env) == "anonymized.r1_data"
    assert _python(READ, env=env) == "hive 1 ['r1_data']"
    assert (tmp_path / "metastore" / "metastore_db").is_dir() and not (lake / "metastore_db").exists()


def test_unknown_catalog_choice_is_refused(monkeypatch):
    import pytest

    from jobs.runtime.spark import SparkSetupError, session_confs

    monkeypatch.setenv("WASURE_CATALOG", "glue")
    with pytest.raises(SparkSetupError, match="WASURE_CATALOG"):
        session_confs()


def test_jvm_flags_of_the_confs_file_add_to_the_catalogs(monkeypatch, tmp_path):
    from jobs.runtime.spark import session_confs

    confs_file = tmp_path / "spark.conf"
    confs_file.write_text("spark.driver.extraJavaOptions -XX:TieredStopAtLevel=1\n")
    monkeypatch.setenv("WASURE_CATALOG", "hive")
    monkeypatch.setenv("WASURE_METASTORE", str(tmp_path / "metastore"))
    monkeypatch.setenv("WASURE_SPARK_CONF", str(confs_file))
    from jobs.runtime import class_archive

    options = session_confs()["spark.driver.extraJavaOptions"].split()
    assert options == [f"-Dderby.system.home={(tmp_path / 'metastore').resolve()}", *class_archive.java_options().split(),
                       "-XX:TieredStopAtLevel=1"]
