"""The purge deletes superseded files itself (jobs/lake/vacuum.py) where Delta's VACUUM ran: the same
files go and stay, with no Spark job and no log commit; VACUUM remains where the checksum file does
not list the table's files."""
import json
import shutil
from pathlib import Path

from jobs.lake.table import LakeTable


def _table_with_history(spark, root: Path) -> LakeTable:
    """A partitioned table with deletion vectors and what a purge meets: a vector replaced by a later
    delete on the same file, a file removed whole, a partition left empty, a file of a write that
    never committed, and hidden files VACUUM leaves alone."""
    table = LakeTable(spark, str(root))
    rows = spark.createDataFrame([(i, "JP" if i % 2 else "US", f"user-{i:03d}") for i in range(60)] + [(100, "EU", "user-100")],
                                 "id int, region string, handle string")
    table.write_new(rows.repartition(1), ["region"], stats_columns=["id"])     # one file per region
    for condition in ("handle = 'user-007'", "handle = 'user-009'", "region = 'EU'", "handle = 'user-010'"):
        spark.sql(f"DELETE FROM delta.`{table.uri}` WHERE {condition}")
    committed = next((root / "region=JP").glob("part-*.parquet"))
    shutil.copy(committed, root / "region=JP" / "part-99999-never-committed.c000.snappy.parquet")
    (root / "region=JP" / "_started_by_a_writer").write_text("x")
    (root / ".hidden").write_text("x")
    return table


def _on_disk(root: Path) -> tuple[set[str], set[str]]:
    """(files, directories) under the table, relative, Hadoop's .crc sidecars and the log left out."""
    files, dirs = set(), set()
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if relative.startswith("_delta_log") or (path.name.startswith(".") and path.name.endswith(".crc")):
            continue
        (dirs if path.is_dir() else files).add(relative)
    return files, dirs


def _operations(root: Path) -> list[str]:
    return [json.loads(line)["commitInfo"]["operation"] for commit in sorted((root / "_delta_log").glob("*.json"))
            for line in commit.read_text().splitlines() if '"commitInfo"' in line]


def _current_files(root: Path) -> set[str]:
    """The data files of the latest version, replayed from the log's JSON commits."""
    current: set[str] = set()
    for commit in sorted((root / "_delta_log").glob("*.json")):
        actions = [json.loads(line) for line in commit.read_text().splitlines()]
        current -= {a["remove"]["path"] for a in actions if "remove" in a}
        current |= {a["add"]["path"] for a in actions if "add" in a}
    return current


def _vacuum(spark, uri: str) -> None:
    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    try:
        spark.sql(f"VACUUM delta.`{uri}` RETAIN 0 HOURS")
    finally:
        spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "true")


def test_the_files_left_are_the_files_vacuum_leaves(spark, tmp_path):
    """On two copies of one table: ``delete_unreferenced_files`` and VACUUM RETAIN 0 HOURS leave the
    same files (the current version's data and vector files, the hidden ones) and the table reads
    the same rows; of the directories, only the ones VACUUM emptied and left are gone too. The sweep
    starts no Spark job."""
    ours, delta = tmp_path / "ours" / "events", tmp_path / "delta" / "events"
    table = _table_with_history(spark, ours)
    shutil.copytree(ours, delta)
    before = sorted(map(tuple, table.read().collect()))
    assert len(list(ours.glob("deletion_vector_*.bin"))) == 3           # JP's first vector was replaced by its second

    jobs = spark.sparkContext._jsc.sc().dagScheduler().numTotalJobs()
    deleted = table.delete_unreferenced_files()
    assert spark.sparkContext._jsc.sc().dagScheduler().numTotalJobs() == jobs
    _vacuum(spark, str(delta))

    (files, dirs), (vacuum_files, vacuum_dirs) = _on_disk(ours), _on_disk(delta)
    assert files == vacuum_files
    # VACUUM leaves a directory it emptied for its next run to delete; wasure deletes it now.
    assert dirs <= vacuum_dirs and all(not any((delta / d).iterdir()) for d in vacuum_dirs - dirs)
    assert "region=JP/part-99999-never-committed.c000.snappy.parquet" not in files and "region=EU" not in dirs
    assert {"region=JP/_started_by_a_writer", ".hidden"} <= files
    assert deleted == 3             # the never-committed file, EU's file (deleted whole), JP's first vector
    assert sorted(map(tuple, table.read().collect())) == before == sorted(map(tuple, LakeTable(spark, str(delta)).read().collect()))
    assert table.delete_unreferenced_files() == 0                       # nothing left to delete
    (ours / "_change_data").mkdir()                                      # deleted rows only VACUUM knows about
    assert table.delete_unreferenced_files() is None


def test_a_table_spelled_unlike_its_listing_loses_no_file(spark, tmp_path):
    """A URI the file listing answers in another spelling (``//`` in the path) would make every
    current file look unreferenced: the walk does not find the referenced files, so nothing is
    deleted and the answer is None (VACUUM decides)."""
    root = tmp_path / "events"
    _table_with_history(spark, root)
    before = _on_disk(root)
    oddly = LakeTable(spark, str(tmp_path) + "//events")
    assert oddly.checksum() is not None and oddly.delete_unreferenced_files() is None
    assert _on_disk(root) == before


def test_purge_rewrites_then_deletes_without_vacuum_commits(spark, tmp_path):
    """``purge``: REORG, then the superseded files deleted by wasure: only the current version's files
    stay on disk, no deleted value is in any of them, and the log ends with the REORG (VACUUM wrote
    VACUUM START / VACUUM END commits)."""
    import pyarrow.parquet as pq

    root = tmp_path / "events"
    table = _table_with_history(spark, root)
    table.purge()
    assert _operations(root)[-1] == "REORG"
    files, _dirs = _on_disk(root)
    data = {f for f in files if f.endswith(".parquet")}
    assert data == _current_files(root)
    handles = [v for f in data for v in pq.read_table(root / f).column("handle").to_pylist()]
    assert not {"user-007", "user-009", "user-010", "user-100"} & set(handles) and len(handles) == table.read().count() == 57
    assert not list(root.glob("deletion_vector_*.bin"))


def test_purge_runs_vacuum_where_the_checksum_does_not_list_the_files(spark, tmp_path):
    """Without the latest checksum file the current files are not known without Delta: nothing is
    deleted by wasure (None) and ``purge`` runs VACUUM, which still removes every superseded file."""
    root = tmp_path / "events"
    table = _table_with_history(spark, root)
    latest = root / "_delta_log" / f"{table.version():020d}.crc"
    latest.unlink()
    assert table.delete_unreferenced_files() is None
    assert "region=JP/part-99999-never-committed.c000.snappy.parquet" in _on_disk(root)[0]
    spark.sql(f"REORG TABLE delta.`{table.uri}` APPLY (PURGE)")
    (root / "_delta_log" / f"{table.version():020d}.crc").unlink()
    table.purge()
    assert _operations(root)[-2:] == ["VACUUM START", "VACUUM END"]
    assert "region=JP/part-99999-never-committed.c000.snappy.parquet" not in _on_disk(root)[0]
