"""The JVM class archive (jobs/runtime/class_archive.py): built by `make jars`, mapped by every JVM
wasure starts, harmless when it does not fit the JVM, refused when it does not map."""
import subprocess
from pathlib import Path

import pytest


def _spark_submit() -> str:
    import pyspark

    return str(Path(pyspark.__file__).parent / "bin" / "spark-submit")


@pytest.mark.parametrize("appended", [False, True], ids=["spark-class-path", "wasure-udf-jar-appended"])
def test_the_driver_jvm_loads_spark_classes_from_the_archive(tmp_path, appended):
    """What `make jars` built is what sessions map: a driver started the way spark-submit starts
    one (Spark's launcher builds the classpath) takes its Spark classes from the archive, also with
    wasure-udf.jar appended to its class path (an embedded driver's local file system)."""
    import os

    from jobs.runtime import class_archive
    from jobs.runtime.spark import nio_local_fs_jar, session_confs

    archive = class_archive.archive_path()
    assert archive is not None, "make jars builds jars/cache/wasure-classes.jsa"
    assert f"-XX:SharedArchiveFile={archive}" in session_confs()["spark.driver.extraJavaOptions"].split()
    env = dict(os.environ)
    if appended:
        jar = nio_local_fs_jar("local[*]")
        assert jar is not None, "make jars builds wasure-udf.jar with wasure.fs"
        env["SPARK_DIST_CLASSPATH"] = str(jar)
    log = tmp_path / "classes.log"
    done = subprocess.run([_spark_submit(), "--driver-java-options",
                           f"-Xshare:on {class_archive.java_options()} -Xlog:class+load=info:file={log}", "--version"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-800:]
    loaded = log.read_text().splitlines()
    from_archive = [line for line in loaded if "org.apache.spark." in line and "shared objects file (top)" in line]
    from_jars = [line for line in loaded if "org.apache.spark." in line and "source: file:" in line]
    assert len(from_archive) > 50 and len(from_archive) > 10 * len(from_jars), (len(from_archive), len(from_jars))


def test_the_cluster_client_confs_give_the_archive_to_driver_and_executors():
    from cluster.layout import client_spark_confs
    from jobs.runtime import class_archive

    option = class_archive.java_options()
    assert option
    for role in ("driver", "executor"):
        assert option in client_spark_confs()[f"spark.{role}.extraJavaOptions"].split()


def test_off_leaves_the_archive_out(monkeypatch):
    from cluster.layout import client_spark_confs
    from jobs.runtime import class_archive
    from jobs.runtime.spark import session_confs

    monkeypatch.setenv("WASURE_CLASS_ARCHIVE", "off")
    assert class_archive.archive_path() is None and class_archive.java_options() == ""
    assert "SharedArchiveFile" not in session_confs().get("spark.driver.extraJavaOptions", "")
    assert "SharedArchiveFile" not in client_spark_confs()["spark.executor.extraJavaOptions"]


def test_an_unknown_choice_is_refused(monkeypatch):
    from jobs.runtime import class_archive
    from jobs.runtime.spark import SparkSetupError

    monkeypatch.setenv("WASURE_CLASS_ARCHIVE", "of")
    with pytest.raises(SparkSetupError, match="WASURE_CLASS_ARCHIVE must be 'on' or 'off', got 'of'"):
        class_archive.java_options()


def test_an_archive_that_does_not_fit_the_jvm_is_ignored():
    """Another classpath (or, after an upgrade, another JDK): the JVM warns and starts without it."""
    from jobs.runtime import class_archive

    done = subprocess.run(["java", class_archive.java_options(), "-version"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-800:]
    assert "Unable to use shared archive" in done.stdout + done.stderr     # unified logging: stdout


def test_a_truncated_archive_is_refused_before_it_replaces_one(tmp_path):
    """A half-written archive crashes the JVM that maps it: the build maps what it recorded with
    -Xshare:on first, and only then renames it into place."""
    from jobs.runtime import class_archive

    truncated = tmp_path / "truncated.jsa"
    with open(class_archive.archive_path(), "rb") as whole:
        truncated.write_bytes(whole.read(1 << 20))
    with pytest.raises(RuntimeError, match="does not map"):
        class_archive._check_maps(truncated)
    class_archive._check_maps(class_archive.archive_path())     # the real one maps
