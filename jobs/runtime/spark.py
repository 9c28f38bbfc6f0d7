"""The one Spark runtime of wasure: session, Delta jars, and the Delta settings the engine relies on.

Embedded default: ``local[*]`` sized for a 2-core / 24 GiB box, Delta jars from the local cache
fetched once by ``make jars`` (so every start is offline). Cluster: when the process was launched by
``spark-submit`` (or ``WASURE_SPARK_MODE=cluster``) the master, jars and resources come from the
submit command; wasure only adds the Delta SQL settings, plus ``key value`` lines from the file named
by ``WASURE_SPARK_CONF`` (spark-defaults format) in either mode.
"""
from __future__ import annotations

import contextlib
import functools
import os
import threading
import zipfile
from pathlib import Path

from jobs.runtime import class_archive

DELTA_VERSION = "4.4.0"
DELTA_PACKAGE = f"io.delta:delta-spark_4.2_2.13:{DELTA_VERSION}"
REPO_ROOT = Path(__file__).resolve().parents[2]

# Settings every wasure session carries; docs/lake-layout.md explains each one.
DELTA_CONFS = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # Deletes and erasures mark rows in deletion vectors instead of rewriting whole files.
    "spark.databricks.delta.properties.defaults.enableDeletionVectors": "true",
    # Change data feed duplicates deleted rows into _change_data: off unless a job asks for it.
    "spark.databricks.delta.properties.defaults.enableChangeDataFeed": "false",
    # VACUUM's short-retention safety check stays ON globally; the purge step lifts it per call.
    "spark.databricks.delta.retentionDurationCheck.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
}

EMBEDDED_CONFS = {
    "spark.driver.memory": os.environ.get("WASURE_SPARK_DRIVER_MEMORY", "8g"),
    "spark.sql.shuffle.partitions": "8",
    "spark.default.parallelism": "4",
    "spark.sql.adaptive.enabled": "true",
    # Several small tables of one step run at once (jobs/runtime/concurrency.py): jobs share the cores
    # instead of queueing behind the first submitted.
    "spark.scheduler.mode": "FAIR",
    # Defaults sized for clusters launch 10,000 listing tasks per VACUUM and 50 tasks per Delta
    # log replay: on a 2-core box that overhead, not the data, was the cost of a purge.
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "8",
    "spark.databricks.delta.snapshotPartitions": "4",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.driver.host": "127.0.0.1",
    "spark.ui.showConsoleProgress": "false",
    # Tungsten's page size is derived from the heap: 64 MB at 4-8 GB on two cores, so the hash map of
    # every broadcast join held a 64 MB array even for a 50-row table while the broadcast lived (1 of
    # the 1.3 GB live heap of a test session in one heap dump: 16 such relations). 2 MB pages grow
    # with the data instead (a larger record still gets a page of its own).
    "spark.buffer.pageSize": "2m",
    # Parquet's vectored reads go through Hadoop's asynchronous file channel on a local file system,
    # which starts threads per read (29,914 in one run of the suite) and buys nothing on a local disk.
    "spark.hadoop.parquet.hadoop.vectored.io.enabled": "false",
    # A cached DataFrame (a staged pseudonymized output, the gates' identifiers) is built without
    # trying every column compression: on 10M staged rows the trial cost 9 s of a 20-s build, and
    # saved 14% of the cache's memory (docs/performance.md, Session 36).
    "spark.sql.inMemoryColumnarStorage.compressed": "false",
    "spark.sql.warehouse.dir": str(Path.cwd() / "spark-warehouse"),
}


def metastore_dir() -> Path:
    """Where the embedded Derby metastore lives (WASURE_CATALOG=hive): outside every lake."""
    return Path(os.environ.get("WASURE_METASTORE", Path.home() / ".local" / "share" / "wasure" / "metastore")).resolve()


def catalog_confs() -> dict[str, str]:
    """WASURE_CATALOG=hive: a persistent catalog (Hive metastore; embedded Derby unless the confs
    file names a metastore). Default: Spark's in-memory catalog, filled at session start by
    jobs.lake.catalog.analyst_session (Derby allows one process at a time; see docs/anonymization.md)."""
    choice = os.environ.get("WASURE_CATALOG", "in-memory")
    if choice == "in-memory":
        return {}
    if choice != "hive":
        raise SparkSetupError(f"WASURE_CATALOG must be 'in-memory' or 'hive', got {choice!r}")
    where = metastore_dir()
    return {"spark.sql.catalogImplementation": "hive",
            "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={where / 'metastore_db'};create=true",
            "spark.sql.warehouse.dir": str(where / "warehouse"),
            "spark.hadoop.hive.metastore.schema.verification": "false",
            "spark.hadoop.datanucleus.schema.autoCreateAll": "true",
            "spark.driver.extraJavaOptions": f"-Dderby.system.home={where}"}   # derby.log there, not in the cwd


class SparkSetupError(RuntimeError):
    """Spark or Delta cannot start; the message says what to install."""


def check_master_reachable(master: str, timeout: float = 5.0) -> None:
    """A standalone master (``spark://host:port``, or several comma-separated) must accept a TCP
    connection before a session is built on it: a cluster that is down is one clear error naming the
    URI (exit 2), not a minute of registration retries. Other masters (local, yarn, k8s) pass."""
    if not master.startswith("spark://"):
        return
    import socket

    problems = []
    for address in master[len("spark://"):].split(","):
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return
        except ValueError:
            problems.append(f"{address}: not host:port")
        except OSError as exc:
            problems.append(f"{address}: {exc.strerror or exc}")
    raise SparkSetupError(f"the Spark master {master} cannot be reached ({'; '.join(problems)}): is the cluster up? "
                          "(the master comes from WASURE_SPARK_MASTER)")


def jar_cache_dir() -> Path:
    return Path(os.environ.get("WASURE_JARS", REPO_ROOT / "jars" / "cache"))


def cached_delta_jars() -> list[str]:
    cache = jar_cache_dir()
    if not cache.is_dir():
        return []
    jars = sorted(str(p) for p in cache.glob("*.jar"))
    return jars if any("delta-spark" in Path(j).name for j in jars) else []


# Without libhadoop.so (Spark's distribution ships none) Hadoop's local file system starts a process
# per file for its mode: `chmod` for every file and directory it creates, `ls -ld` for every listed
# file, `readlink` twice per FileContext rename (every Delta commit). One run of the test suite
# started 34,405 of them. wasure-udf.jar's wasure.fs classes answer the same with java.nio
# (docs/performance.md, "Session 34"); WASURE_LOCAL_FS=hadoop keeps Hadoop's own.
NIO_LOCAL_FS_CONFS = {"spark.hadoop.fs.file.impl": "wasure.fs.NioLocalFileSystem",
                      "spark.hadoop.fs.AbstractFileSystem.file.impl": "wasure.fs.NioLocalFs"}


def nio_local_fs_jar(master: str) -> Path | None:
    """wasure-udf.jar when a driver started here on a local master uses wasure's local file system:
    the jar holds the classes (one built before them does not) and ``WASURE_LOCAL_FS`` is not
    ``hadoop``. A cluster's JVMs keep Hadoop's (their lake is on a distributed file system)."""
    choice = os.environ.get("WASURE_LOCAL_FS", "nio")
    if choice not in ("nio", "hadoop"):
        raise SparkSetupError(f"WASURE_LOCAL_FS must be 'nio' or 'hadoop', got {choice!r}")
    if choice == "hadoop" or not master.startswith("local"):
        return None
    jar = jar_cache_dir() / "wasure-udf.jar"
    try:
        with zipfile.ZipFile(jar) as archive:
            archive.getinfo("wasure/fs/NioLocalFileSystem.class")
    except (OSError, KeyError, zipfile.BadZipFile):
        return None
    return jar


@contextlib.contextmanager
def _jar_on_the_driver_class_path(jar: Path | None):
    """Hadoop looks ``fs.file.impl`` up while spark-submit starts, before ``spark.jars`` are loaded,
    so the jar must be on the driver JVM's own class path. Spark's launcher appends
    ``SPARK_DIST_CLASSPATH`` last: the class archive's recorded class path stays a prefix of it."""
    before = os.environ.get("SPARK_DIST_CLASSPATH")
    if jar is not None:
        os.environ["SPARK_DIST_CLASSPATH"] = os.pathsep.join(filter(None, [before, str(jar)]))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("SPARK_DIST_CLASSPATH", None)
        else:
            os.environ["SPARK_DIST_CLASSPATH"] = before


def submitted_by_spark_submit() -> bool:
    # spark-submit's PythonRunner hands the driver a gateway; a plain `python` process has none.
    return "PYSPARK_GATEWAY_PORT" in os.environ or os.environ.get("WASURE_SPARK_MODE") == "cluster"


def extra_confs_from_file() -> dict[str, str]:
    path = os.environ.get("WASURE_SPARK_CONF")
    if not path:
        return {}
    confs: dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise SparkSetupError(f"{path}:{number}: expected 'spark.key value', got {line.split()[0]!r}")
        confs[parts[0]] = parts[1]
    return confs


def session_confs(app_name: str = "wasure") -> dict[str, str]:
    """All configuration wasure applies to the session builder (pure: testable without Spark)."""
    confs = dict(DELTA_CONFS)
    if not submitted_by_spark_submit():
        confs["spark.master"] = os.environ.get("WASURE_SPARK_MASTER", "local[*]")
        confs.update(EMBEDDED_CONFS)
        if os.environ.get("WASURE_SPARK_UI", "1") == "0":
            confs["spark.ui.enabled"] = "false"
        jars = cached_delta_jars()
        if jars:
            confs["spark.jars"] = ",".join(jars)
        else:
            confs["spark.jars.packages"] = DELTA_PACKAGE
    confs.update(catalog_confs())
    if not submitted_by_spark_submit() and (archive := class_archive.java_options()):
        # spark-submit's command line chooses its own JVM flags (cluster.layout adds the archive there).
        confs["spark.driver.extraJavaOptions"] = f"{confs.get('spark.driver.extraJavaOptions', '')} {archive}".strip()
    for key, value in extra_confs_from_file().items():
        if key.endswith(".extraJavaOptions") and confs.get(key):
            value = f"{confs[key]} {value}"     # JVM flags add up: the catalog's Derby home stays
        confs[key] = value
    if not submitted_by_spark_submit() and nio_local_fs_jar(confs.get("spark.master", "")):
        for key, value in NIO_LOCAL_FS_CONFS.items():
            confs.setdefault(key, value)             # a confs file naming its own file system wins
    confs["spark.app.name"] = app_name
    return confs


_SESSION = None


def get_spark(app_name: str = "wasure"):
    """Return the process-wide SparkSession with Delta enabled (created on first use)."""
    global _SESSION
    if _SESSION is not None and not _SESSION.sparkContext._jsc.sc().isStopped():
        return _SESSION
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", os.environ.get("PYSPARK_PYTHON", _python()))
    from pyspark.sql import SparkSession

    confs = session_confs(app_name)
    check_master_reachable(confs.get("spark.master", ""))
    builder = SparkSession.builder
    for key, value in confs.items():
        builder = builder.config(key, value)
    local_fs = confs.get("spark.hadoop.fs.file.impl") == NIO_LOCAL_FS_CONFS["spark.hadoop.fs.file.impl"]
    nio_jar = nio_local_fs_jar(confs.get("spark.master", "")) if local_fs else None
    try:
        with _jar_on_the_driver_class_path(nio_jar):
            spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel(os.environ.get("WASURE_SPARK_LOG_LEVEL", "ERROR"))
        # Fails fast if the Delta classes are missing instead of at the first write.
        from py4j.java_gateway import JavaClass

        if not isinstance(spark._jvm.io.delta.tables.DeltaTable, JavaClass):
            raise RuntimeError("io.delta.tables.DeltaTable is not on Spark's classpath")
    except Exception as exc:  # noqa: BLE001 - turned into one actionable message
        raise SparkSetupError(
            "Spark with Delta Lake could not start. Install Java 17 and Maven, then run `make jars` "
            f"(fetches {DELTA_PACKAGE} into {jar_cache_dir()}), or give Spark network access to "
            f"Maven Central for spark.jars.packages. Cause: {type(exc).__name__}: {str(exc)[:300]}"
        ) from exc
    _SESSION = spark
    return spark


# ------------------------------------------------------------------ queries sized to the lake

# Below this many bytes of lake tables a query costs its planning, not its data: Catalyst's code
# generation, Janino and adaptive re-planning were most of the driver's CPU on the demo lake
# (docs/performance.md, "Small lakes: interpreted plans"). Such lakes run interpreted plans.
SMALL_LAKE_BYTES = int(os.environ.get("WASURE_SMALL_LAKE_BYTES", 64 * 2**20))
SMALL_LAKE_CONFS = {
    "spark.sql.adaptive.enabled": "false",
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
    "spark.sql.shuffle.partitions": "2",
    # A small lake's Delta log replays in one task and VACUUM lists in two: every query's file
    # filtering scans the replay, and four tasks per query bought no parallelism worth having there.
    "spark.databricks.delta.snapshotPartitions": "1",
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2",
}
_CONFS_BEFORE_SIZING: dict[str, str | None] = {}


def size_queries_to(spark, lake_bytes: int) -> bool:
    """Interpreted plans for a small lake (``SMALL_LAKE_CONFS``), the session's own settings for
    a larger one; keys set in the ``WASURE_SPARK_CONF`` file always win. Called by every job once
    it has checked its lake (``jobs.lake.layout.check_lake``), undone when the job returns
    (``queries_sized_for_the_run``). Returns whether the small-lake plans apply."""
    small = lake_bytes < SMALL_LAKE_BYTES
    chosen = extra_confs_from_file()
    for key, value in SMALL_LAKE_CONFS.items():
        if key in chosen:
            continue
        if key not in _CONFS_BEFORE_SIZING:
            _CONFS_BEFORE_SIZING[key] = spark.conf.get(key, None)
        before = _CONFS_BEFORE_SIZING[key]
        if small:
            spark.conf.set(key, value)
        elif before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)
    return small


_SIZED_RUNS = threading.local()


@contextlib.contextmanager
def queries_sized_for_the_run(spark):
    """Around a job's run (``jobs.lake.lease.with_lease``): whatever ``size_queries_to`` sets inside is
    undone when the outermost job returns, so the session's other users (a notebook, the catalog
    API, whose ``listTables`` cannot decode its rows with interpreted factories) get it back as it was."""
    depth = getattr(_SIZED_RUNS, "depth", 0)
    _SIZED_RUNS.depth = depth + 1
    try:
        yield
    finally:
        _SIZED_RUNS.depth = depth
        if depth == 0 and spark is not None:
            for key, before in _CONFS_BEFORE_SIZING.items():
                if before is None:
                    spark.conf.unset(key)
                else:
                    spark.conf.set(key, before)


def jvm_class(spark, name: str):
    """The JVM class ``name`` (a py4j ``JavaClass``), or None when it is not on Spark's classpath
    (wasure-udf.jar's classes come from `make jars`)."""
    from py4j.java_gateway import JavaClass

    found = functools.reduce(getattr, name.split("."), spark._jvm)
    return found if isinstance(found, JavaClass) else None


def new_session(spark):
    """``spark.newSession()`` (its own SQL settings, e.g. per-thread commit metadata) planning
    queries like ``spark`` does: a new session starts from the context's defaults."""
    session = spark.newSession()
    for key in SMALL_LAKE_CONFS:
        value = spark.conf.get(key, None)
        if value is not None:
            session.conf.set(key, value)
    return session


def _python() -> str:
    import sys

    return sys.executable
