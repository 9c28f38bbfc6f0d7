"""The lake's file layer (jobs/lake/storage.py) and table handle (jobs/lake/table.py): both backends answer
alike, so a lake on hdfs:// behaves as a local one (the HDFS run itself is in tests/cluster)."""
import functools

import pytest
from pyspark.sql import functions as F

from jobs.runtime.console import InputError
from jobs.lake.layout import Lake
from jobs.lake.storage import HadoopFiles, LocalFiles, check_reachable, join, normalize, relative
from jobs.lake.table import LakeTable


@pytest.fixture(params=["local", "hadoop"])
def files_and_root(request, spark, tmp_path):
    if request.param == "local":
        return LocalFiles(), str(tmp_path)
    return HadoopFiles(spark), f"file://{tmp_path}"      # Hadoop's FileSystem API over the local disk


def test_both_backends_write_read_list_move_delete(files_and_root, tmp_path):
    files, root = files_and_root
    state = join(root, "state", "job.json")
    assert not files.exists(state) and files.list(join(root, "state")) == []
    files.write_text(state, '{"v": 1}')
    files.write_text(state, '{"v": 2, "名": "x"}')                     # replaced whole, utf-8
    assert files.read_text(state) == '{"v": 2, "名": "x"}' and files.is_file(state) and not files.is_dir(state)
    assert files.list(join(root, "state")) == [state]                   # no temporary or checksum files left
    files.write_text(join(root, "backups", "2026-12-01", "manifest.json"), "{}")
    files.write_text(join(root, "backups", ".tmp-2026-12-02", "manifest.json"), "{}")
    assert files.glob(join(root, "backups", ".tmp-*")) == [join(root, "backups", ".tmp-2026-12-02")]
    assert files.glob(join(root, "backups", "*", "manifest.json")) == [join(root, "backups", "2026-12-01", "manifest.json")]
    files.rename(join(root, "backups", ".tmp-2026-12-02"), join(root, "backups", "2026-12-02"))
    with pytest.raises(FileExistsError):
        files.rename(join(root, "backups", "2026-12-01"), join(root, "backups", "2026-12-02"))
    assert [relative(p, root) for p in files.list(join(root, "backups"))] == ["backups/2026-12-01", "backups/2026-12-02"]
    site = tmp_path / "site-src"
    (site / "static").mkdir(parents=True)
    (site / "index.html").write_text("<html/>")
    (site / "static" / "app.js").write_text("1")
    files.put_dir(str(site), join(root, "docs", "run-1"))
    assert files.read_text(join(root, "docs", "run-1", "static", "app.js")) == "1"
    files.delete(join(root, "backups"))
    files.delete(join(root, "backups"))                                   # absent: nothing to do
    assert not files.exists(join(root, "backups"))


def test_lake_addresses_are_uris():
    lake = Lake("hdfs://127.0.0.1:8020/lakes/prod/")
    assert lake.uri == "hdfs://127.0.0.1:8020/lakes/prod" and not lake.is_local
    assert lake.state("pipeline") == "hdfs://127.0.0.1:8020/lakes/prod/state/pipeline"
    assert lake.pseudonymized("service", "accounts") == "hdfs://127.0.0.1:8020/lakes/prod/pseudonymized/service/accounts"
    with pytest.raises(InputError, match="not a local directory"):
        lake.root
    assert Lake("file:///tmp/x/../lake").uri == "/tmp/lake" and Lake("/tmp/lake").is_local
    for bad in ("", "hdfs:///no-host/lake", "file://host/lake"):
        with pytest.raises(InputError):
            normalize(bad)


def test_unreachable_lake_is_a_clear_input_error(spark):
    # Nothing listens on port 1 of the loopback: the NameNode "is down".
    with pytest.raises(InputError, match=r"the lake hdfs://127\.0\.0\.1:1/lake cannot be reached"):
        check_reachable("hdfs://127.0.0.1:1/lake", spark)


def test_table_handle_publishes_in_one_transaction(spark, tmp_path):
    table = LakeTable(spark, str(tmp_path / "pseudonymized" / "p" / "t"))
    assert not table.exists()
    first = spark.createDataFrame([(1, "JP"), (2, "US")], "id int, region string")
    table.publish(first, ["region"], stats_columns=[], published=True)
    assert table.version() == 0 and sorted(r.id for r in table.read().collect()) == [1, 2]
    before = {p.name for p in (tmp_path / "pseudonymized" / "p" / "t").rglob("*.parquet")}
    table.publish(spark.createDataFrame([(3, "JP")], "id int, region string"), ["region"], stats_columns=[])
    assert table.version() == 1 and [r.id for r in table.read().collect()] == [3]
    after = {p.name for p in (tmp_path / "pseudonymized" / "p" / "t").rglob("*.parquet")}
    assert before and not before & after               # the replaced version's rows are gone from disk
    history = spark.sql(f"DESCRIBE HISTORY delta.`{table.uri}`").select("operation").collect()
    assert [h.operation for h in history][0] == "CREATE OR REPLACE TABLE AS SELECT"
    assert not table.has_reader_feature("deletionVectors")              # readable by delta-rs (docs/reading.md)
    moved = table.move_to(str(tmp_path / "quarantine" / "t"))
    assert moved.exists() and not table.exists() and moved.version() == 1


def test_checksum_answers_what_describe_detail_does(spark, tmp_path):
    """Properties, reader features, file count and size come from the latest version's checksum
    file (no Spark job); without it (a writer stopped after its commit) DESCRIBE DETAIL answers the same."""
    root = tmp_path / "raw" / "t"
    table = LakeTable(spark, str(root))
    table.write_new(spark.createDataFrame([(i, "JP" if i % 2 else "US") for i in range(10)], "id int, region string"),
                    ["region"], stats_columns=["id"], properties={"wasure.note": "it's a \\ test"})
    table.set_properties({"wasure.later": "['x']"})
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{table.uri}`").first()
    from_checksum = (table.properties(), table.has_reader_feature("deletionVectors"), table.summary())
    assert table.checksum() is not None
    assert from_checksum[0]["wasure.note"] == "it's a \\ test" and from_checksum[0]["wasure.later"] == "['x']"
    assert from_checksum[0] == dict(detail.properties) and from_checksum[1] is True
    assert from_checksum[2] == {"version": 1, "files": detail.numFiles, "bytes": detail.sizeInBytes, "rows": 10}
    spark.sql(f"DELETE FROM delta.`{table.uri}` WHERE id < 3")          # a deletion vector: 7 rows left
    assert table.checksum()["allFiles"] and table.row_count() == table.read().count() == 7
    from_checksum = (table.properties(), table.has_reader_feature("deletionVectors"), table.summary())
    for crc in (root / "_delta_log").glob("*.crc"):
        crc.unlink()
    assert table.checksum() is None
    assert (table.properties(), table.has_reader_feature("deletionVectors"), table.summary()) == from_checksum


def test_merge_counts_are_this_merges_own(spark, tmp_path):
    """delete_matching / insert_new return the rows their MERGE changed, 0 when it changed none
    (Delta then commits nothing, and the latest commit's metrics belong to an earlier MERGE)."""
    table = LakeTable(spark, str(tmp_path / "raw" / "t"))
    table.write_new(spark.createDataFrame([(i, "JP") for i in range(10)], "id int, region string"), ["region"], stats_columns=[])
    three = spark.createDataFrame([(3,)], "id int")
    assert table.delete_matching(three, "t.id = s.id") == 1
    version = table.version()
    assert table.delete_matching(three, "t.id = s.id") == 0
    assert table.version() == version          # no commit: the latest metrics still say 1 row deleted
    new_rows = spark.createDataFrame([(20, "JP"), (21, "JP")], "id int, region string")
    assert table.insert_new(new_rows, "t.id = s.id") == 2
    assert table.insert_new(new_rows, "t.id = s.id") == 0
    assert table.row_count() == 11


def test_a_sole_inserter_appends_when_no_row_matches_and_merges_a_rerun(spark, tmp_path):
    """``insert_new(..., sole_inserter=True)``: rows no row matches go in as a plain append (a WRITE
    commit, no MERGE); a re-run's rows, all or some of them there, go through the MERGE, which adds
    only the missing ones."""
    from anonymizers.frames import local_frame

    table = LakeTable(spark, str(tmp_path / "state" / "ledger"))
    table.append(local_frame(spark, [("h0", "r0")], "subject_hash string, request_id string"))
    batch = local_frame(spark, [("h1", "r1"), ("h2", "r1")], "subject_hash string, request_id string")
    condition = "t.subject_hash = s.subject_hash AND t.request_id = s.request_id"
    assert table.insert_new(batch, condition, sole_inserter=True) == 2
    assert table.commits()[-1].operation == "WRITE"
    assert table.insert_new(batch, condition, sole_inserter=True) == 0
    again = local_frame(spark, [("h2", "r1"), ("h3", "r1")], "subject_hash string, request_id string")
    assert table.insert_new(again, condition, sole_inserter=True) == 1
    assert table.commits()[-1].operation == "MERGE"
    assert sorted(tuple(r) for r in table.read().collect()) == [("h0", "r0"), ("h1", "r1"), ("h2", "r1"), ("h3", "r1")]


@pytest.mark.parametrize("engine", ["jvm-udf", "merge-without-jar"])
def test_delete_values_removes_the_rows_and_leaves_no_value_in_the_log(spark, tmp_path, monkeypatch, engine):
    """An erasure's delete by value: the listed subjects' rows go, in the listed partitions only,
    and neither the values nor anything derived from them is written to ``_delta_log``. With
    wasure-udf.jar the condition is a UDF holding the set (a DELETE), without it a MERGE."""
    import jobs.lake.value_sets as value_sets

    if engine == "merge-without-jar":
        monkeypatch.setattr(value_sets, "VALUE_SET_CLASS", "wasure.udf.NotOnTheClasspath")
    table = LakeTable(spark, str(tmp_path / "raw" / "t"))
    rows = [(f"SUBJ-{i:03d}", i % 4, i) for i in range(40)]
    table.write_new(spark.createDataFrame(rows, "account_id string, subject_bucket int, n int"), ["subject_bucket"],
                    stats_columns=[])
    erased = ["SUBJ-005", "SUBJ-006", "SUBJ-999"]               # 5 is in bucket 1, 6 in bucket 2, 999 nowhere
    assert table.delete_values("account_id", erased, {"subject_bucket": [1, 2, 3]}) == 2
    assert table.delete_values("account_id", ["SUBJ-007"], {"subject_bucket": [1]}) == 0    # 7 is in bucket 3
    left = {r.account_id for r in table.read().collect()}
    assert left == {f"SUBJ-{i:03d}" for i in range(40)} - {"SUBJ-005", "SUBJ-006"}
    deleting = [c for c in table.commits() if c.operation in ("DELETE", "MERGE")]
    assert [c.operation for c in deleting][:1] == (["DELETE"] if engine == "jvm-udf" else ["MERGE"])
    assert deleting[0].rows_deleted == 2
    for log in (tmp_path / "raw" / "t" / "_delta_log").glob("*.json"):
        text = log.read_text()
        assert "SUBJ-00" not in text and "SUBJ-999" not in text, log.name
    assert table.delete_values("account_id", []) == 0
    assert not [f.name for f in spark.catalog.listFunctions() if f.name.startswith("in_value_set_")]   # values dropped


def test_files_from_log_are_the_files_delta_reads(spark, tmp_path):
    """``LakeTable.files_from_log`` (a backup's files, no Spark job) names the files a Delta read
    reads, with their partition values, across appends and file removals, and ``read_files`` gives
    their rows with the table's types; a table with a deletion vector gets None (its files alone
    are not its rows)."""
    def delta_files(table):
        return sorted({r.f for r in table.read().select(F.col("_metadata.file_path").alias("f")).collect()})

    def normal(uri):
        return "file:" + uri.removeprefix("file:").replace("///", "/") if "://" in uri or uri.startswith("/") else uri

    rows = spark.createDataFrame([(f"S{i}", i % 3, i) for i in range(30)], "account_id string, subject_bucket int, n int")
    plain = LakeTable(spark, str(tmp_path / "plain")).write_new(rows, ["subject_bucket"], stats_columns=[],
                                                                properties={"delta.enableDeletionVectors": "false"})
    plain.append(rows.where("n < 5"))
    plain.delete_where("subject_bucket = 2")                   # without deletion vectors: files removed
    found = plain.files_from_log()
    assert found is not None and {p["subject_bucket"] for _u, p in found} == {"0", "1"}
    assert sorted(normal(u) for u, _p in found) == [normal(u) for u in delta_files(plain)]
    assert all(f"subject_bucket={p['subject_bucket']}/" in u for u, p in found)
    from_files = plain.read_files([u for u, _p in found], ["account_id", "n"])
    assert dict(from_files.dtypes) == {"account_id": "string", "n": "int"}          # the table's types
    assert sorted(from_files.collect()) == sorted(plain.read().select("account_id", "n").collect())
    with_dv = LakeTable(spark, str(tmp_path / "dv")).write_new(rows, ["subject_bucket"], stats_columns=[])
    assert sorted(normal(u) for u, _p in with_dv.files_from_log()) == [normal(u) for u in delta_files(with_dv)]
    with_dv.delete_where("n = 4")
    assert with_dv.files_from_log() is None


def _jobs_of(spark, action):
    """(what ``action`` returns, the Spark jobs it ran)."""
    dag = spark.sparkContext._jsc.sc().dagScheduler()
    before = int(dag.numTotalJobs())
    result = action()
    return result, int(dag.numTotalJobs()) - before


def _reads_as_delta(table, version=None):
    """``read_now`` gives Delta's types, rows and data files (of ``version``: Delta's time travel)."""
    now, delta = table.read_now(version), table.read(version)
    assert now.dtypes == delta.dtypes
    assert sorted(map(tuple, now.collect())) == sorted(map(tuple, delta.collect()))
    files = F.col("_metadata.file_path").alias("f")
    assert sorted({r.f for r in now.select(files).collect()}) == sorted({r.f for r in delta.select(files).collect()})


def test_read_now_reads_small_tables_as_their_files_and_answers_as_delta_does(spark, tmp_path):
    """``LakeTable.read_now`` gives the rows, columns and types Delta's read gives, across appends,
    an overwrite, an added column, partition values that need escaping (and a null one), timestamps
    and dates, an empty table and a bookkeeping table after an UPDATE; it reads the checksum's files
    as Parquet in one Spark job where Delta's read plans with more; and it falls back to Delta's
    read for a missing checksum and column mapping (deletion vectors: the next test)."""
    import datetime as dt
    import os

    from jobs.lake.plain_files import plain_files

    jobs_of, same = functools.partial(_jobs_of, spark), _reads_as_delta
    at, day = dt.datetime(2026, 11, 22, 1, 2, 3, 456789), dt.date(2026, 11, 22)   # bookkeeping tables' types
    rows = spark.createDataFrame([(f"S{i}", ["JP", "a b/c:d%e", None][i % 3], i, at, day) for i in range(30)],
                                 "account_id string, region string, n int, at timestamp, day date")
    table = LakeTable(spark, str(tmp_path / "state" / "t")).write_new(rows, ["region"], stats_columns=[])
    table.append(rows.where("n < 5"))
    assert plain_files(table.checksum()) is not None
    same(table)
    rows_now, jobs_now = jobs_of(lambda: table.read_now().collect())
    _rows, jobs_delta = jobs_of(lambda: table.read().collect())
    assert len(rows_now) == 35 and jobs_now == 1 and jobs_delta > jobs_now
    spark.sql(f"ALTER TABLE delta.`{table.uri}` ADD COLUMNS (note STRING)")   # old files lack it: nulls
    table.append(spark.createDataFrame([("S99", "JP", 99, at, day, "x")],
                                       "account_id string, region string, n int, at timestamp, day date, note string"))
    same(table)
    rows.where("n > 20").write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(table.uri)
    same(table)
    assert table.read_now().count() == 9

    empty = LakeTable(spark, str(tmp_path / "state" / "empty"))
    empty.create(spark.createDataFrame([], "request_id string, at timestamp"), [])
    assert empty.read_now().collect() == [] and empty.read_now().dtypes == empty.read().dtypes

    # A bookkeeping table (LakeTable.append creates it) rewrites on UPDATE instead of marking rows:
    # it stays readable as its files.
    ledger = LakeTable(spark, str(tmp_path / "state" / "ledger")).append(rows)
    ledger.append(rows.where("n < 3"))
    ledger.update_where(F.col("n") == 4, {"region": F.lit("US")})
    assert plain_files(ledger.checksum()) is not None
    same(ledger)
    assert ledger.read_now().where("region = 'US'").count() == 1

    with_dv = LakeTable(spark, str(tmp_path / "state" / "dv")).write_new(rows, [], stats_columns=[])
    with_dv.delete_where("n = 4")
    assert plain_files(with_dv.checksum()).deletion_vectors      # read with its vector applied
    same(with_dv)
    no_checksum = LakeTable(spark, str(tmp_path / "state" / "nocrc")).write_new(rows, [], stats_columns=[])
    os.remove(str(tmp_path / "state" / "nocrc" / "_delta_log" / f"{no_checksum.version():020d}.crc"))
    assert no_checksum.checksum() is None
    same(no_checksum)
    mapped = LakeTable(spark, str(tmp_path / "state" / "mapped")).write_new(
        rows, [], stats_columns=[], properties={"delta.columnMapping.mode": "name"})
    assert plain_files(mapped.checksum()) is None
    same(mapped)


def test_read_now_leaves_out_the_rows_of_deletion_vectors_as_delta_does(spark, tmp_path):
    """Tables with deletion vectors, read as their files less the vectors' rows
    (``jobs.lake.deletion_vectors``), give Delta's rows and files: deletes in partitions (two on the
    same files, a whole partition), an UPDATE, a MERGE, every row deleted, and a vector of 125,000
    rows in one file (Roaring's array, bitmap and run containers). The read is one Spark job where
    Delta's plans with more. A vector whose bytes do not check out (length, CRC-32, magic number) is
    refused, so the read goes through Delta; an inline vector (Z85 in the log) reads as a stored one.
    An earlier version (the backup's consistent copy) reads the same way, from its own checksum."""
    import struct
    import zlib

    from delta.tables import DeltaTable

    from jobs.lake.deletion_vectors import MAGIC, Z85, DeletionVectorError, vector_bytes, vector_file
    from jobs.lake.plain_files import plain_files
    from jobs.lake.storage import LocalFiles

    def jobs_of(action):
        return _jobs_of(spark, action)[1]

    def same(table, vectors=True):
        plain = plain_files(table.checksum())
        assert plain is not None and bool(plain.deletion_vectors) == vectors
        _reads_as_delta(table)

    rows = spark.createDataFrame([(f"S{i}", ["JP", "US", "EU"][i % 3], i, i % 4) for i in range(3000)],
                                 "account_id string, region string, n int, subject_bucket int")
    table = LakeTable(spark, str(tmp_path / "raw" / "t")).write_new(
        rows.repartition("region", "subject_bucket"), ["region", "subject_bucket"], stats_columns=[])
    table.delete_where("n % 10 = 3")
    same(table)
    assert jobs_of(lambda: table.read_now().collect()) == 1 < jobs_of(lambda: table.read().collect())
    first_delete = table.version()
    table.delete_where("n % 10 = 4")                        # the same files' vectors grow
    same(table)
    table.update_where(F.col("n") < 100, {"subject_bucket": F.lit(3)})
    same(table)
    table.delete_where("region = 'US'")
    same(table)
    DeltaTable.forPath(spark, table.uri).alias("t").merge(
        rows.where("n > 2990").withColumn("account_id", F.lit("merged")).alias("s"), "t.n = s.n").whenMatchedUpdateAll().execute()
    same(table)
    table.delete_where("n >= 0")
    same(table, vectors=False)                              # every file removed: none left to filter
    assert table.read_now().count() == 0
    _reads_as_delta(table, first_delete)                    # that version's files and vectors, not today's
    assert table.read_now(first_delete).count() == 2700
    assert jobs_of(lambda: table.read_now(first_delete).collect()) == 1 < jobs_of(lambda: table.read(first_delete).collect())

    big = LakeTable(spark, str(tmp_path / "raw" / "big")).write_new(
        spark.range(200000).selectExpr("id", "cast(id % 5 as int) AS k").coalesce(1), [], stats_columns=[])
    big.delete_where("id % 2 = 0 OR (id > 100000 AND id < 150000)")
    same(big)
    assert big.read_now().count() == 75000

    # The vector's bytes, checked; an inline vector is the same bytes Z85-encoded in the log.
    descriptor = next(iter(plain_files(big.checksum()).deletion_vectors.values()))
    raw = LocalFiles().read_bytes(vector_file(big.uri, descriptor))
    data = vector_bytes(descriptor, lambda _uri: raw, big.uri)
    assert struct.unpack_from("<i", data)[0] == MAGIC and len(data) == descriptor["sizeInBytes"]
    offset = int(descriptor["offset"])
    for broken in (raw[:offset + 4] + bytes([raw[offset + 4] ^ 1]) + raw[offset + 5:],                      # CRC-32
                   raw[:offset] + struct.pack(">i", len(data) + 1) + raw[offset + 4:]):                     # length
        with pytest.raises(DeletionVectorError):
            vector_bytes(descriptor, lambda _uri, b=broken: b, big.uri)
    padded = data + bytes(-len(data) % 4)
    words = [int.from_bytes(padded[i:i + 4], "big") for i in range(0, len(padded), 4)]
    inline = "".join("".join(Z85[(w // 85 ** p) % 85] for p in range(4, -1, -1)) for w in words)
    assert vector_bytes({"storageType": "i", "pathOrInlineDv": inline, "sizeInBytes": len(data)}, None, big.uri) == data
    assert zlib.crc32(data) == struct.unpack_from(">I", raw, offset + 4 + len(data))[0]


def test_commits_read_from_the_log_equal_describe_history(spark, tmp_path):
    """``LakeTable.commits`` (the log's JSON, no Spark job) answers what DESCRIBE HISTORY does:
    versions, operations, userMetadata, operation metrics and timestamps (on HDFS:
    tests/cluster/test_cluster_smoke.py)."""
    import json

    from jobs.lake.quarantine import commit_metadata

    table = LakeTable(spark, str(tmp_path / "raw" / "t"))
    table.write_new(spark.createDataFrame([(i, "JP") for i in range(10)], "id int, region string"), ["region"], stats_columns=[])
    with commit_metadata(spark, {"job": "erasure", "run_id": "r1"}):
        table.delete_matching(spark.createDataFrame([(3,)], "id int"), "t.id = s.id")
    table.append(spark.createDataFrame([(11, "JP")], "id int, region string"))
    history = {h.version: h for h in table.history().collect()}
    for commits in (table.commits(),):
        assert [c.version for c in commits] == sorted(history) == [0, 1, 2]
        for c in commits:
            h = history[c.version]
            assert (c.operation, c.user_metadata, c.operation_metrics) == (h.operation, h.userMetadata, dict(h.operationMetrics or {}))
            assert abs(c.timestamp.timestamp() - h.timestamp.timestamp()) < 1.0
    erasures = table.commits(containing="erasure")
    assert [c.version for c in erasures] == [1] and erasures[0].metadata() == {"job": "erasure", "run_id": "r1"}
    assert erasures[0].operation_metrics["numTargetRowsDeleted"] == "1"
    assert json.loads(history[1].userMetadata) == erasures[0].metadata()


@pytest.mark.parametrize("rewrite_every_file", [False, True], ids=["reorg-purge", "rewrite-for-clusters"])
def test_purge_leaves_no_deleted_row_in_any_file(spark, tmp_path, rewrite_every_file):
    """Both purge forms (REORG in local mode, the rewrite used on a real cluster) leave the deleted
    value in no Parquet file and no deletion-vector file behind; the rows, partitioning and
    properties stay."""
    import pyarrow.parquet as pq

    root = tmp_path / "raw" / "events"
    table = LakeTable(spark, str(root))
    rows = spark.createDataFrame([(i, "JP" if i % 2 else "US", f"user-{i:03d}") for i in range(60)],
                                 "id int, region string, handle string")
    table.write_new(rows.repartition(3), ["region"], stats_columns=["id"])
    assert table.has_reader_feature("deletionVectors")
    spark.sql(f"DELETE FROM delta.`{table.uri}` WHERE handle = 'user-007'")
    assert list(root.rglob("deletion_vector_*.bin"))                   # a soft delete: the row is still on disk
    table.purge(rewrite_every_file=rewrite_every_file)
    on_disk = [v for p in root.rglob("*.parquet") if "_delta_log" not in p.parts
               for v in pq.read_table(p).column("handle").to_pylist()]
    assert "user-007" not in on_disk and len(on_disk) == 59
    assert not list(root.rglob("deletion_vector_*.bin"))
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{table.uri}`").first()
    assert list(detail.partitionColumns) == ["region"] and detail.properties["delta.dataSkippingStatsColumns"] == "`id`"
    assert table.read().count() == 59


@pytest.mark.parametrize("surface", ["cli", "pipeline"])
def test_a_cluster_that_is_down_is_exit_2_naming_the_master(tmp_path, surface):
    """WASURE_SPARK_MASTER pointing at a standalone master that does not answer: both surfaces stop
    with exit 2 and one message naming the master URI, before Spark starts or anything is written."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    lake = tmp_path / "lake"
    env = {**os.environ, "WASURE_SPARK_MASTER": "spark://127.0.0.1:1", "SPARK_LOCAL_IP": "127.0.0.1"}
    env.pop("WASURE_SPARK_MODE", None)
    if surface == "cli":
        args = [sys.executable, "-m", "jobs.cli", "retention", "--dry-run", "--lake", str(lake)]
    else:
        args = [sys.executable, str(repo / "jobs" / "pipeline" / "submit.py"), "retention", "--lake", str(lake)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=repo, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert "the Spark master spark://127.0.0.1:1 cannot be reached" in " ".join(output.split()), output[-2000:]
    assert "Traceback" not in output and not lake.exists()


def test_queries_are_sized_to_the_lake(spark, tmp_path, monkeypatch):
    """A small lake gets interpreted plans; a large one the session's own settings back; a key set
    in the WASURE_SPARK_CONF file is never overridden; threads' new sessions plan alike."""
    from jobs.runtime import spark as runtime

    keys = list(runtime.SMALL_LAKE_CONFS)
    before = {k: spark.conf.get(k, None) for k in keys}
    try:
        assert runtime.size_queries_to(spark, 1_000)
        assert {k: spark.conf.get(k) for k in keys} == runtime.SMALL_LAKE_CONFS
        assert {k: runtime.new_session(spark).conf.get(k) for k in keys} == runtime.SMALL_LAKE_CONFS
        assert not runtime.size_queries_to(spark, runtime.SMALL_LAKE_BYTES)
        assert spark.conf.get("spark.sql.codegen.factoryMode", None) != "NO_CODEGEN"
        assert spark.conf.get("spark.sql.adaptive.enabled") == runtime._CONFS_BEFORE_SIZING["spark.sql.adaptive.enabled"]
        conf = tmp_path / "spark.conf"
        conf.write_text("spark.sql.shuffle.partitions 5\n")
        monkeypatch.setenv("WASURE_SPARK_CONF", str(conf))
        runtime.size_queries_to(spark, 1_000)
        assert spark.conf.get("spark.sql.shuffle.partitions") == runtime._CONFS_BEFORE_SIZING["spark.sql.shuffle.partitions"]
        assert spark.conf.get("spark.sql.codegen.wholeStage") == "false"
        monkeypatch.delenv("WASURE_SPARK_CONF")
        with runtime.queries_sized_for_the_run(spark):          # a job (jobs.lake.lease.with_lease)
            with runtime.queries_sized_for_the_run(spark):      # and one it calls
                runtime.size_queries_to(spark, 1_000)
            assert spark.conf.get("spark.sql.codegen.factoryMode") == "NO_CODEGEN"
        # After the outermost job the session is as it was: the catalog API decodes its rows again.
        assert {k: spark.conf.get(k, None) for k in keys} == runtime._CONFS_BEFORE_SIZING
        assert isinstance(spark.catalog.listTables(), list)
    finally:
        for key, value in before.items():
            spark.conf.unset(key) if value is None else spark.conf.set(key, value)


def test_embedded_sessions_use_small_tungsten_pages(spark):
    """2 MB pages: Spark's default is derived from the heap (64 MB at this session's 4 GB on two
    cores), and the hash map of every broadcast join held one whole page for a table of a few rows."""
    from jobs.runtime.spark import session_confs

    assert session_confs()["spark.buffer.pageSize"] == "2m"
    assert spark._jsc.sc().env().memoryManager().pageSizeBytes() == 2 * 1024 * 1024


def test_subject_buckets_on_the_driver_equal_sparks(spark, tmp_path):
    """jobs/lake/buckets.py is Spark's pmod(xxhash64(id), n) in Python: the rows ``of_subjects``
    selects (literals, no Spark job) are exactly the rows of those subjects, partitions pruned."""
    from pyspark.sql import functions as F

    from jobs.lake.buckets import bucket_of
    from jobs.lake.layout import SUBJECT_BUCKET, of_subjects, subject_bucket

    ids = ["", "A000000001", "顧客-東京-0042", "é" * 7, "x" * 31, "y" * 32, "z" * 33, "0123456789" * 9] + \
          [f"S{i:09d}" for i in range(200)]
    for buckets in (1, 7, 16, 64):
        rows = (spark.createDataFrame([(s,) for s in ids], "s string")
                .select("s", subject_bucket(F.col("s"), buckets).alias("b")).collect())
        assert {r.s: r.b for r in rows} == {s: bucket_of(s, buckets) for s in ids}
    path = str(tmp_path / "t")
    table = (spark.createDataFrame([(s, n) for n, s in enumerate(ids)], "account_id string, n int")
             .withColumn(SUBJECT_BUCKET, subject_bucket(F.col("account_id"), 16)))
    table.write.format("delta").partitionBy(SUBJECT_BUCKET).save(path)
    wanted = ["顧客-東京-0042", "S000000007", "not-there"]
    dag = spark.sparkContext._jsc.sc().dagScheduler()
    before = dag.numTotalJobs()
    condition = of_subjects("account_id", wanted, 16)
    assert dag.numTotalJobs() == before
    found = spark.read.format("delta").load(path).where(condition)
    assert sorted(r.account_id for r in found.collect()) == ["S000000007", "顧客-東京-0042"]
    plan = found._jdf.queryExecution().executedPlan().toString()
    assert "PartitionFilters: [" in plan and f"{SUBJECT_BUCKET}#" in plan.split("PartitionFilters: [", 1)[1].split("]", 1)[0]
