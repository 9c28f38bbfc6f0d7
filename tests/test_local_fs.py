"""wasure's local file system (wasure-udf.jar's ``wasure.fs``, jobs/runtime/spark.py): Hadoop's
answers about local files (lengths, times, modes, owners, links, missing files) without the
``chmod`` / ``ls -ld`` / ``readlink`` process Hadoop starts per file when libhadoop.so is missing."""
import os

import pytest
from py4j.protocol import Py4JJavaError

from jobs.lake.table import LakeTable

HADOOP_FILE_COMMANDS = ("chmod", "ls", "readlink", "stat")


def _uri(jvm):
    return jvm.java.net.URI("file:///")


def _hadoop_raw(spark):
    """Hadoop's own RawLocalFileSystem, set up like the session's."""
    jvm = spark._jvm
    raw = jvm.org.apache.hadoop.fs.RawLocalFileSystem()
    raw.initialize(_uri(jvm), spark._jsc.hadoopConfiguration())
    return raw


def _session_fs(spark):
    jvm = spark._jvm
    return jvm.org.apache.hadoop.fs.FileSystem.get(_uri(jvm), spark._jsc.hadoopConfiguration())


def _fields(status):
    return (str(status.getPath()), status.getLen(), status.isDirectory(), status.isSymlink(), status.getReplication(),
            status.getBlockSize(), status.getModificationTime(), status.getAccessTime(),
            status.getPermission().toShort(), status.getOwner(), status.getGroup())


def _missing(call):
    with pytest.raises(Py4JJavaError) as failure:
        call()
    return failure.value.java_exception.getClass().getName()


def test_the_session_uses_wasures_local_file_system_for_files_and_commits(spark):
    jvm = spark._jvm
    fs = _session_fs(spark)
    assert fs.getClass().getName() == "wasure.fs.NioLocalFileSystem"
    assert fs.getRaw().getClass().getName() == "wasure.fs.NioRawLocalFileSystem"
    context = jvm.org.apache.hadoop.fs.FileContext.getFileContext(_uri(jvm), spark._jsc.hadoopConfiguration())
    assert context.getDefaultFileSystem().getClass().getName() == "wasure.fs.NioLocalFs"


def test_statuses_modes_and_links_are_hadoops(spark, tmp_path):
    """Each answer equals Hadoop's RawLocalFileSystem's for the same file: a file, directories (one
    with the sticky bit), a symbolic link, a name with a colon and a space, a listing of a directory
    and of a file, a link's own status, a missing path; modes set and created are Hadoop's too."""
    jvm = spark._jvm
    ours, hadoop = _session_fs(spark).getRaw(), _hadoop_raw(spark)
    Path = jvm.org.apache.hadoop.fs.Path
    (tmp_path / "data.parquet").write_bytes(b"x" * 1234)
    os.chmod(tmp_path / "data.parquet", 0o640)
    (tmp_path / "part a b:c.parquet").write_bytes(b"yz")
    (tmp_path / "closed").mkdir(mode=0o750)
    (tmp_path / "shared").mkdir()
    os.chmod(tmp_path / "shared", 0o1777)
    (tmp_path / "link.parquet").symlink_to(tmp_path / "data.parquet")
    for name in ("data.parquet", "closed", "shared", "link.parquet"):
        path = Path(str(tmp_path / name))
        assert _fields(ours.getFileStatus(path)) == _fields(hadoop.getFileStatus(path)), name
    assert ours.getFileStatus(Path(str(tmp_path / "shared"))).getPermission().getStickyBit()
    assert "RawLocalFileStatus" not in ours.getFileStatus(Path(str(tmp_path / "data.parquet"))).getClass().getName()

    def listing(fs, path):
        return sorted(_fields(s) for s in fs.listStatus(Path(str(path))))

    assert listing(ours, tmp_path) == listing(hadoop, tmp_path) and len(listing(ours, tmp_path)) == 5
    assert listing(ours, tmp_path / "data.parquet") == listing(hadoop, tmp_path / "data.parquet")
    regular = Path(str(tmp_path / "data.parquet"))
    assert _fields(ours.getFileLinkStatus(regular)) == _fields(hadoop.getFileLinkStatus(regular))
    missing = Path(str(tmp_path / "gone.parquet"))
    for fs in (ours, hadoop):
        assert _missing(lambda: fs.getFileStatus(missing)) == "java.io.FileNotFoundException"
        assert _missing(lambda: fs.listStatus(missing)) == "java.io.FileNotFoundException"
        assert _missing(lambda: fs.getFileLinkStatus(missing)) == "java.io.FileNotFoundException"

    FsPermission = jvm.org.apache.hadoop.fs.permission.FsPermission
    ours.setPermission(regular, FsPermission("600"))
    assert os.stat(tmp_path / "data.parquet").st_mode & 0o7777 == 0o600
    ours.setPermission(Path(str(tmp_path / "closed")), FsPermission("1755"))
    assert os.stat(tmp_path / "closed").st_mode & 0o7777 == 0o1755
    for name, fs in (("ours", ours), ("hadoop", hadoop)):       # created with the configured umask
        fs.mkdirs(Path(str(tmp_path / name / "a" / "b")), FsPermission("777"))
        fs.create(Path(str(tmp_path / name / "a" / "f.json"))).close()
    for relative in ("a", "a/b", "a/f.json"):
        assert os.stat(tmp_path / "ours" / relative).st_mode == os.stat(tmp_path / "hadoop" / relative).st_mode, relative


def _recorded(spark, work, event_name, action) -> list:
    """The JVM's own JFR events ``event_name`` (e.g. ``jdk.ProcessStart``) while ``action`` runs."""
    jvm = spark._jvm
    recording = jvm.jdk.jfr.Recording()
    recording.enable(event_name)
    recording.start()
    try:
        action()
    finally:
        recording.stop()
    dump = jvm.java.io.File(str(work / f"{event_name}.jfr")).toPath()
    recording.dump(dump)
    recording.close()
    return list(jvm.jdk.jfr.consumer.RecordingFile.readAllEvents(dump))


def test_delta_writes_reads_and_commits_start_no_file_process(spark, tmp_path):
    """A partitioned Delta table created, appended to, deleted from, read and listed: Hadoop's local
    file system would start a chmod per file and directory, an ls per listed file and two readlinks
    per commit (hundreds here); wasure's starts none."""
    rows = spark.range(300).selectExpr("cast(id as string) as account_id", "cast(id % 5 as int) as subject_bucket")

    def lake_work():
        table = LakeTable(spark, str(tmp_path / "raw" / "t")).write_new(rows, ["subject_bucket"], stats_columns=[])
        table.append(rows.where("subject_bucket = 1"))
        table.delete_where("account_id = '7'")
        assert table.read().count() == 359
        listed = spark.read.option("pathGlobFilter", "*.parquet").parquet(str(tmp_path / "raw" / "t"))
        assert listed.count() == 360                                    # listed as plain files

    commands = [event.getString("command") for event in _recorded(spark, tmp_path, "jdk.ProcessStart", lake_work)]
    assert [c for c in commands if c.split()[0] in HADOOP_FILE_COMMANDS] == []


def test_the_local_file_system_is_chosen_for_local_masters_with_the_jar_only(monkeypatch, tmp_path):
    from jobs.runtime import spark as runtime

    monkeypatch.delenv("WASURE_SPARK_MODE", raising=False)
    monkeypatch.delenv("WASURE_SPARK_CONF", raising=False)
    monkeypatch.setenv("WASURE_SPARK_MASTER", "local[2]")
    monkeypatch.setenv("WASURE_LOCAL_FS", "nio")
    assert runtime.session_confs()["spark.hadoop.fs.file.impl"] == "wasure.fs.NioLocalFileSystem"
    monkeypatch.setenv("WASURE_LOCAL_FS", "hadoop")
    assert "spark.hadoop.fs.file.impl" not in runtime.session_confs()
    monkeypatch.setenv("WASURE_LOCAL_FS", "posix")
    with pytest.raises(runtime.SparkSetupError, match="WASURE_LOCAL_FS must be 'nio' or 'hadoop', got 'posix'"):
        runtime.session_confs()
    monkeypatch.setenv("WASURE_LOCAL_FS", "nio")
    monkeypatch.setenv("WASURE_SPARK_MASTER", "spark://127.0.0.1:7077")          # a cluster keeps Hadoop's
    assert "spark.hadoop.fs.file.impl" not in runtime.session_confs()
    monkeypatch.setenv("WASURE_SPARK_MASTER", "local[2]")
    import zipfile

    with zipfile.ZipFile(tmp_path / "wasure-udf.jar", "w") as jar:                 # built before wasure.fs
        jar.writestr("wasure/udf/KeyedPseudonym.class", b"")
    monkeypatch.setenv("WASURE_JARS", str(tmp_path))
    assert "spark.hadoop.fs.file.impl" not in runtime.session_confs()


def _unnamed_thread_starts(spark, work, action) -> int:
    """Threads started while ``action`` runs with a JVM default name ("Thread-N"): Hadoop's
    asynchronous reads name none of theirs; Spark's pools (file listing, exchanges) name theirs."""
    names = [event.getThread("thread").getJavaName() for event in _recorded(spark, work, "jdk.ThreadStart", action)]
    return sum(1 for name in names if name and name.startswith("Thread-"))


def test_parquet_reads_start_no_thread_per_file(spark, tmp_path):
    """The session reads Parquet without vectored reads: on a local file system they go through an
    asynchronous file channel that starts threads for the files it reads. The same read with them
    on starts them (the check can fail)."""
    assert spark._jsc.hadoopConfiguration().get("parquet.hadoop.vectored.io.enabled") == "false"
    files = str(tmp_path / "t")
    spark.range(4000).selectExpr("id", "cast(id % 40 as int) as k").repartition(40, "k").write.parquet(files)
    read = spark.read.parquet(files)

    def scan():                                                  # every file's column chunks
        assert read.selectExpr("sum(id)").first()[0] == sum(range(4000))

    scan()                                                       # the file index and the plan, once
    key = "parquet.hadoop.vectored.io.enabled"
    quiet = _unnamed_thread_starts(spark, tmp_path, scan)
    spark.conf.set(key, "true")
    try:
        vectored = _unnamed_thread_starts(spark, tmp_path, scan)
    finally:
        spark.conf.unset(key)
    assert quiet <= 2 and vectored >= 20, (quiet, vectored)


def test_cached_frames_are_stored_without_column_compression(spark):
    """The embedded session caches DataFrames (staged outputs, the gates' identifiers) without
    Spark's per-column compression trial, which cost nearly half of a 10M-row output's cache
    build; with the setting on, the same frame caches compressed (the check can fail)."""
    key = "spark.sql.inMemoryColumnarStorage.compressed"
    assert spark.conf.get(key) == "false"

    text = "the same text on every row"

    def cached_bytes() -> int:            # this frame's cache only (its name is its plan)
        frame = spark.range(200_000).selectExpr(f"'{text}' AS t").persist()
        try:
            frame.count()
            return sum(info.memSize() for info in spark.sparkContext._jsc.sc().getRDDStorageInfo() if text in info.name())
        finally:
            frame.unpersist(blocking=True)

    plain = cached_bytes()
    spark.conf.set(key, "true")
    try:
        compressed = cached_bytes()
    finally:
        spark.conf.set(key, "false")
    assert plain > 10 * max(compressed, 1), (plain, compressed)
