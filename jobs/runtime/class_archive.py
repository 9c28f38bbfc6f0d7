"""A class-data-sharing archive (the JDK's AppCDS) of the classes a wasure Spark JVM loads.

Every wasure process starts JVMs: a CLI command its driver, a spark-submitted pipeline step its
driver and one executor per worker. Each loads, parses and verifies thousands of classes of Spark,
Scala, Hadoop and Parquet from the jars, at start and as its first queries reach new code, whatever
the data: ~4.5 s of a session's start on this 2-core box, ~12 s of the executors' CPU in a
spark-submitted step (docs/performance.md, "Session 23"). ``make jars``
records those classes once, by running a small Delta workload in a JVM started with
``-XX:ArchiveClassesAtExit`` (``python -m jobs.runtime.class_archive``); later JVMs map the archive
(``-XX:SharedArchiveFile``) instead of parsing the classes again.

The archive belongs to one JDK build and one Spark classpath, so it is built on the machine that
uses it (``make jars``) and lives beside the jars (``jars/cache/wasure-classes.jsa``), never in a
lake. A JVM whose JDK or classpath differs from the archive's prints a ``[cds]`` warning and starts
without it; ``WASURE_CLASS_ARCHIVE=off`` leaves it out. A half-written archive would crash the JVM
that maps it, so it is written under a temporary name, mapped once by a JVM that must use it
(``-Xshare:on``), and only then renamed into place.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ARCHIVE_NAME = "wasure-classes.jsa"


def archive_path() -> Path | None:
    """The archive JVMs should map, or None (not built, or ``WASURE_CLASS_ARCHIVE=off``)."""
    from jobs.runtime.spark import SparkSetupError, jar_cache_dir

    choice = os.environ.get("WASURE_CLASS_ARCHIVE", "on")
    if choice not in ("on", "off"):
        raise SparkSetupError(f"WASURE_CLASS_ARCHIVE must be 'on' or 'off', got {choice!r}")
    if choice == "off":
        return None
    path = jar_cache_dir() / ARCHIVE_NAME
    return path if path.is_file() else None


def java_options() -> str:
    """The JVM flag that maps the archive (for ``spark.driver/executor.extraJavaOptions``), or ""."""
    path = archive_path()
    return f"-XX:SharedArchiveFile={path}" if path else ""


def _workload(spark, root: str) -> None:
    """What a pipeline step does to a lake, small: Delta create, append, reads with pruning, DELETE,
    MERGE, UPDATE, a replace, history and VACUUM, joins, windows, aggregates, explode, a local
    checkpoint and a cached batch. Spark and Delta's own API only: this layer sits below jobs.lake."""
    from delta.tables import DeltaTable
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    events, published = f"{root}/events", f"{root}/published"
    rows = (spark.range(2000)
            .select(F.concat(F.lit("S"), (F.col("id") % 200).cast("string")).alias("subject"),
                    (F.col("id") % 8).cast("int").alias("subject_bucket"),
                    F.date_add(F.lit("2026-01-01").cast("date"), (F.col("id") % 300).cast("int")).alias("day"),
                    F.concat_ws(" ", F.lit("note"), F.col("id").cast("string")).alias("text"),
                    (F.col("id") * 1.5).alias("amount")))
    (rows.write.format("delta").partitionBy("subject_bucket")
     .option("delta.enableDeletionVectors", "true").option("delta.dataSkippingStatsColumns", "subject,day").save(events))
    rows.limit(100).write.format("delta").mode("append").save(events)
    current = spark.read.format("delta").load(events)
    current.where("subject_bucket = 3 AND day < DATE'2026-05-01'").count()
    windowed = current.withColumn("rank", F.row_number().over(Window.partitionBy("subject").orderBy(F.desc("day"))))
    totals = current.groupBy("subject").agg(F.sum("amount").alias("total"), F.countDistinct("day").alias("days"))
    joined = windowed.where("rank = 1").join(totals, "subject")
    joined.select(F.explode(F.split("text", " ")).alias("token")).distinct().count()
    joined.localCheckpoint().count()
    cached = current.select("subject", "amount").persist()
    cached.agg(F.approx_count_distinct("subject"), F.percentile_approx("amount", 0.5)).collect()
    cached.unpersist()
    table = DeltaTable.forPath(spark, events)
    table.delete("subject_bucket IN (1, 2) AND subject IN ('S1', 'S2')")
    keys = spark.createDataFrame([("S3",), ("S4",)], "subject string")
    table.alias("t").merge(F.broadcast(keys).alias("s"), "t.subject = s.subject").whenMatchedDelete().execute()
    (table.alias("t").merge(rows.where("subject = 'S1'").alias("s"), "t.subject = s.subject AND t.day = s.day")
     .whenNotMatchedInsertAll().execute())
    table.update("subject = 'S5'", {"text": F.lit("updated")})
    table.history().collect()
    for _ in range(2):
        current.groupBy("day").count().writeTo(f"delta.`{published}`").using("delta").createOrReplace()
    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    table.vacuum(0)


def build(target: Path) -> Path:
    """Record the archive into ``target``: a child Python process runs ``_workload`` in a JVM that
    dumps its loaded classes when it exits; the result must map (``-Xshare:on``) before it replaces
    ``target``. Returns ``target``."""
    target = Path(target).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wasure-cds-") as work:
        recorded = Path(work) / ARCHIVE_NAME
        # Recorded on Spark's class path alone: an embedded driver appends wasure-udf.jar to it
        # (jobs.runtime.spark.nio_local_fs_jar), a cluster's JVMs do not, and both keep it as a prefix.
        env = {**os.environ, "WASURE_CLASS_ARCHIVE": "off", "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
               "WASURE_SPARK_UI": "0", "WASURE_LOCAL_FS": "hadoop"}
        for name in ("WASURE_SPARK_MASTER", "WASURE_SPARK_CONF"):     # recorded in local mode, wasure's own confs
            env.pop(name, None)
        subprocess.run([sys.executable, "-m", "jobs.runtime.class_archive", "--record", str(recorded), "--work", work],
                       env=env, check=True, cwd=work)
        if not recorded.is_file():
            raise RuntimeError(f"the JVM wrote no class archive to {recorded}")
        _check_maps(recorded)
        partial = target.with_name(target.name + ".partial")
        shutil.copyfile(recorded, partial)
        partial.replace(target)             # atomic: a JVM maps the old archive or the new one
    return target


def _check_maps(archive: Path) -> None:
    """The driver JVM spark-submit starts (Spark's launcher builds its classpath) must start with the
    archive mapped: ``-Xshare:on`` makes a JVM that cannot map it exit with an error."""
    import pyspark

    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    with tempfile.TemporaryDirectory(prefix="wasure-cds-check-") as work:     # a JVM that crashes writes hs_err there
        done = subprocess.run([str(submit), "--driver-java-options", f"-Xshare:on -XX:SharedArchiveFile={archive}",
                               "--version"], capture_output=True, text=True, cwd=work)
    if done.returncode:
        raise RuntimeError(f"the recorded class archive does not map: {(done.stderr or done.stdout)[-500:]}")


def _record(archive: Path, work: str) -> None:
    """In the child: a session whose driver JVM dumps its classes to ``archive`` at exit, the
    workload, then the JVM's own exit awaited (the dump happens as it exits)."""
    os.environ["WASURE_SPARK_CONF"] = _conf_file(work, f"-XX:ArchiveClassesAtExit={archive} -Xlog:cds*=error")
    from jobs.runtime.spark import get_spark

    spark = get_spark("wasure-class-archive")
    _workload(spark, f"{work}/lake")
    jvm = spark.sparkContext._gateway.proc
    spark.stop()
    jvm.stdin.close()                       # the gateway exits when its stdin closes, then dumps
    jvm.wait(timeout=600)


def _conf_file(work: str, java_option: str) -> str:
    path = Path(work) / "record.conf"
    path.write_text(f"spark.driver.extraJavaOptions {java_option}\n")
    return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the JVM class archive of wasure's Spark JVMs (make jars).")
    parser.add_argument("target", nargs="?", type=Path, help="where to write it (default: the jar cache)")
    parser.add_argument("--record", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.record:
        _record(args.record, args.work)
        return 0
    from jobs.runtime.spark import jar_cache_dir

    target = build(args.target or jar_cache_dir() / ARCHIVE_NAME)
    print(f"class archive: {target} ({target.stat().st_size / 2**20:.0f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
