"""One Delta table of the lake, addressed by URI: every read, write, purge and publish goes here.

In the spirit of ``DeltaTable.forPath``: get a handle, call an action.

    >>> t = LakeTable.for_path(spark, lake.pseudonymized("service", "accounts"))
    >>> t.version()                           # one listing of _delta_log, no Spark job
    >>> t.read().count()                      # the current version, never time travel
    >>> t.publish(gated, partition_by=["region"], stats_columns=[], published=True)
    >>> t.purge()                             # rewrite files with deleted rows, delete the superseded
    >>> LakeTable.for_path(spark, lake.staging("x")).move_to(lake.quarantine("x", run_id))

A URI is whatever Spark reads: a local path, ``hdfs://``, ``s3a://``. Files around the tables
(state, receipts, manifests) belong to ``jobs.lake.storage``.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import operator
from dataclasses import dataclass
from typing import Callable
from urllib.parse import unquote

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from anonymizers.frames import local_frame
from jobs.runtime.console import InputError
from jobs.lake.deletion_vectors import DeletionVectorError, row_not_deleted, vector_bytes, vector_file
from jobs.lake.plain_files import PlainFiles, checksum_schema, file_name, plain_files
from jobs.lake.storage import files_for, join
from jobs.lake.vacuum import delete_unreferenced
from jobs.lake.value_sets import value_set_udf

STATS_TYPES = {"string", "integer", "long", "short", "byte", "double", "float", "decimal", "date", "timestamp"}


@dataclass(frozen=True)
class Commit:
    """One commit of a table's history (``LakeTable.commits``)."""
    version: int
    timestamp: dt.datetime           # timezone-aware, UTC
    operation: str | None
    user_metadata: str | None
    operation_metrics: dict[str, str]

    def metadata(self) -> dict:
        """The userMetadata as a dict ({} when absent or not JSON: not one of wasure's commits)."""
        try:
            value = json.loads(self.user_metadata) if self.user_metadata else {}
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    @property
    def rows_deleted(self) -> int:
        """Rows this commit deleted: a MERGE's ``numTargetRowsDeleted``, a DELETE's ``numDeletedRows``."""
        metrics = self.operation_metrics
        return int(metrics.get("numTargetRowsDeleted", metrics.get("numDeletedRows", 0)))


def _within(partitions: dict[str, list[int]] | None) -> list[str]:
    """SQL terms restricting ``t`` to the given partition values (``t.`subject_bucket` IN (3, 17)``)."""
    return [f"t.`{name}` IN ({', '.join(map(repr, sorted(allowed)))})" for name, allowed in sorted((partitions or {}).items())]


def _parse_commit(version: int, text: str, modified: Callable[[], float]) -> Commit | None:
    """The commitInfo of one ``_delta_log/<version>.json``; None for a commit written without one."""
    for line in text.splitlines():
        if '"commitInfo"' in line:
            info = json.loads(line)["commitInfo"]
            # History's timestamp: the in-commit timestamp when the table has them, else the commit
            # file's modification time (Delta's own rule).
            millis = info.get("inCommitTimestamp")
            seconds = millis / 1000.0 if millis is not None else modified()
            return Commit(version, dt.datetime.fromtimestamp(seconds, dt.timezone.utc), info.get("operation"),
                          info.get("userMetadata"),
                          {k: str(v) for k, v in (info.get("operationMetrics") or {}).items()})
    return None


# Bookkeeping tables (state, ledgers, audit, the request inbox) hold a few rows per run: an UPDATE or
# DELETE there rewrites a small file instead of marking rows, so ``read_now`` keeps reading them as
# plain Parquet (a deletion vector would send every later read through Delta's planning).
BOOKKEEPING_PROPERTIES = {"delta.enableDeletionVectors": "false"}


def table_properties(df: DataFrame, partition_by: list[str], stats_columns: list[str] | None = None,
                     change_data_feed: bool = False, published: bool = False) -> dict[str, str]:
    """The Delta properties of a wasure table.

    stats_columns: the only columns whose min/max go into ``_delta_log`` (personal columns never
    do, or the values outlive a delete there). ``None`` keeps Delta's default (tables without
    personal data: audit, ledgers).
    published: a table data scientists read (pseudonymized/, anonymized/, statistics/). Those are
    rewritten whole, so deletion vectors buy nothing there, and the ``deltalake`` (delta-rs) reader
    behind pandas and polars refuses tables with that reader feature (docs/reading.md). Raw tables
    keep them: a subject delete marks rows instead of rewriting whole files.
    """
    properties = {"delta.enableDeletionVectors": str(not published).lower(),
                  "delta.enableChangeDataFeed": str(change_data_feed).lower()}
    if stats_columns is not None:
        # Delta collects min/max only for orderable types (not booleans, maps, arrays).
        types = {f.name: f.dataType.typeName() for f in df.schema.fields}
        usable = [c for c in stats_columns if c not in partition_by and types.get(c) in STATS_TYPES]
        if usable:
            properties["delta.dataSkippingStatsColumns"] = ",".join(f"`{c}`" for c in usable)
        else:
            properties["delta.dataSkippingNumIndexedCols"] = "0"
    return properties


def executors_share_driver_jvm(spark: SparkSession) -> bool:
    """True for Spark local mode (``local``, ``local[n]``, ``local[*]``): tasks run in the driver's JVM."""
    master = spark.sparkContext.master
    return master == "local" or master.startswith("local[")


class LakeTable:
    """A Delta table at a URI (it need not exist yet: ``exists()``, then ``create``/``write_new``)."""

    def __init__(self, spark: SparkSession, uri: str) -> None:
        if "`" in str(uri):
            raise InputError(f"a table URI may not contain a backtick: {uri!r}")
        self.spark, self.uri = spark, str(uri).rstrip("/")

    @classmethod
    def for_path(cls, spark: SparkSession, uri: str) -> "LakeTable":
        return cls(spark, uri)

    def __repr__(self) -> str:
        return f"LakeTable({self.uri})"

    @property
    def _sql_name(self) -> str:
        return f"delta.`{self.uri}`"

    # ------------------------------------------------------------------ reading

    def exists(self) -> bool:
        return files_for(self.uri, self.spark).is_dir(join(self.uri, "_delta_log"))

    def version(self) -> int:
        """The latest version: the highest ``_delta_log/<version>.json``. Delta writes that file for
        every commit and its log cleanup never removes the newest, so this is the version a read
        would see now, from one listing and without the Spark job of ``DESCRIBE HISTORY`` (one per
        table per step added up: docs/performance.md)."""
        versions = [version for version, _uri in self._commit_files()]
        if not versions:
            raise InputError(f"{self.uri} is not a Delta table (no commit in its _delta_log)")
        return max(versions)

    def _commit_files(self) -> list[tuple[int, str]]:
        """(version, uri) of every commit file in ``_delta_log`` (checkpoints and CRCs left out)."""
        found = []
        for uri in files_for(self.uri, self.spark).list(join(self.uri, "_delta_log")):
            name = uri.rsplit("/", 1)[-1]
            if name.endswith(".json") and name[:-5].isdigit():
                found.append((int(name[:-5]), uri))
        return found

    def read(self, version: int | None = None) -> DataFrame:
        """The read path of jobs and analysts: the current version. ``version``: that version, for
        the backup's copy (one consistent version while other jobs commit); nothing else reads an
        older version (docs/reading.md: it would return rows an erasure has since removed)."""
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(self.uri)

    def read_now(self, version: int | None = None) -> DataFrame:
        """The current version's rows, for a read used right away (collected, counted, gated). A
        small table whose checksum file lists every data file (``jobs.lake.plain_files``) is read
        as those Parquet files, less the rows their deletion vectors mark
        (``jobs.lake.deletion_vectors``): no snapshot load and none of Delta's two or three planning
        jobs (0.1 s instead of 0.4-0.7 s for a bookkeeping table). Any other table is ``read(version)``.
        The fast path's DataFrame keeps the files listed now, where Delta's resolves the latest
        version at each action: do not hold it across a commit to the same table. ``version``: that
        version's rows the same way (its own checksum file), as ``read(version)`` would give them.

            >>> {r.request_id for r in LakeTable.for_path(spark, lake.state("erasure_state")).read_now().collect()}
        """
        plain = plain_files(self.checksum(version))
        if plain is None or not plain.paths:          # no file: Delta's read keeps _metadata resolvable
            return self.read(version)
        keep = None
        if plain.deletion_vectors:
            try:
                keep = self._rows_not_deleted(plain)
            except (KeyError, ValueError):    # a descriptor or vector not as expected (DeletionVectorError too)
                keep = None
            if keep is None:
                return self.read(version)
        reader = self.spark.read.schema(plain.file_schema)
        if plain.partition_columns:
            reader = reader.option("basePath", self.uri)       # partition values from the directories
        df = reader.parquet(*[self._file_uri(path) for path in plain.paths])
        if keep is not None:
            df = df.where(keep(F.col("_metadata.file_path"), F.col("_metadata.row_index")))
        return df.select(*[F.col(f"`{n}`") for n in plain.schema.names])

    def _rows_not_deleted(self, plain: PlainFiles):
        """The filter that leaves out the rows of ``plain``'s deletion vectors (None without
        wasure-udf.jar). Each vector file is read once, however many vectors it holds."""
        files, read = files_for(self.uri, self.spark), {}

        def read_file(uri: str) -> bytes:
            if uri not in read:
                read[uri] = files.read_bytes(uri)
            return read[uri]

        vectors = {file_name(path): vector_bytes(descriptor, read_file, self.uri)
                   for path, descriptor in plain.deletion_vectors.items()}
        return row_not_deleted(self.spark, vectors, plain.deleted_rows)

    def files_from_log(self) -> list[tuple[str, dict[str, str]]] | None:
        """(data file URI, partition values) of the current version, replayed from the log's JSON
        commits without Spark: for a table written once and never changed in place (a backup), whose
        every commit is still in the log. None when the replay would not be the table: a commit
        missing (only a checkpoint holds it), a file with a deletion vector, or column mapping (the
        files' column names are not the table's). Reading these files (``read_files``) skips the
        two Spark jobs each Delta read plans with (its file listing, and the deletion-vector check).

            >>> [uri for uri, parts in t.files_from_log() if parts["subject_bucket"] == "3"]
        """
        files = files_for(self.uri, self.spark)
        commits = sorted(self._commit_files())
        if not commits or [v for v, _uri in commits] != list(range(len(commits))):
            return None
        current: dict[str, dict[str, str]] = {}
        for _version, uri in commits:
            actions = [json.loads(line) for line in files.read_text(uri).splitlines() if line.strip()]
            for action in actions:           # a commit's removes apply before its adds
                if "remove" in action:
                    current.pop(action["remove"]["path"], None)
            for action in actions:
                mapping = action.get("metaData", {}).get("configuration", {}).get("delta.columnMapping.mode", "none")
                if mapping != "none":                # Parquet names would not be the columns'
                    return None
                if "add" in action:
                    if action["add"].get("deletionVector"):
                        return None
                    current[action["add"]["path"]] = action["add"].get("partitionValues") or {}
        return [(self._file_uri(path), partitions) for path, partitions in sorted(current.items())]

    def read_files(self, uris: list[str], columns: list[str]) -> DataFrame:
        """``columns`` of some of the table's data files (``files_from_log``), read as Parquet with
        the types of the table's schema from its checksum file, so Spark reads no footer to infer
        them (a Spark job per read); without the checksum file it infers them."""
        reader = self.spark.read
        schema = checksum_schema(self.checksum())
        if schema is not None and all(c in schema.names for c in columns):
            reader = reader.schema(T.StructType([schema[c] for c in columns]))
        return reader.parquet(*uris).select(*columns)

    def _file_uri(self, path: str) -> str:
        """A data file's URI from its log path (URL-encoded, relative to the table or absolute)."""
        path = unquote(path)
        return path if "://" in path or path.startswith("/") else join(self.uri, path)

    def columns(self) -> list[str]:
        """The latest version's column names, in the table's order: from its checksum file's schema
        (no Spark job, no data or deletion-vector file read); from a read without one."""
        schema = checksum_schema(self.checksum())
        return schema.names if schema is not None else self.read_now().columns

    def checksum(self, version: int | None = None) -> dict | None:
        """The latest version's checksum file (``_delta_log/<version>.crc``, JSON; or ``version``'s),
        which Delta writes after each commit: the version's metadata (schema, properties), protocol,
        file count and size. One listing and one small read, no Spark job and no snapshot load. None
        when the file is missing or unreadable (a writer that stopped right after its commit):
        callers then ask Delta (``DESCRIBE DETAIL``)."""
        files = files_for(self.uri, self.spark)
        uri = join(self.uri, "_delta_log", f"{self.version() if version is None else version:020d}.crc")
        try:
            found = json.loads(files.read_text(uri)) if files.exists(uri) else None
        except ValueError:
            return None
        return found if isinstance(found, dict) and "metadata" in found and "protocol" in found else None

    def partition_columns(self, version: int | None = None) -> list[str]:
        """The partition columns of the latest version (or ``version``'s), from its checksum file;
        without one, the latest version's from Delta (``DESCRIBE DETAIL``).

            >>> LakeTable.for_path(spark, uri).partition_columns()
            ['region', 'subject_bucket']
        """
        checksum = self.checksum(version)
        if checksum is not None:
            return list(checksum["metadata"].get("partitionColumns") or [])
        return list(self._detail().partitionColumns)

    def _detail(self):
        return self.spark.sql(f"DESCRIBE DETAIL {self._sql_name}").first()

    def properties(self) -> dict[str, str]:
        """The table's properties (``TBLPROPERTIES``) at its latest version.

            >>> t.properties().get("delta.enableDeletionVectors")
        """
        checksum = self.checksum()
        if checksum is not None:
            return dict(checksum["metadata"].get("configuration") or {})
        return dict(self._detail().properties or {})

    def set_properties(self, properties: dict[str, str]) -> None:
        """``ALTER TABLE ... SET TBLPROPERTIES`` (one commit, no data touched)."""
        def literal(text: str) -> str:
            return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
        pairs = ", ".join(f"{literal(k)} = {literal(v)}" for k, v in properties.items())
        self.spark.sql(f"ALTER TABLE {self._sql_name} SET TBLPROPERTIES ({pairs})")

    def row_count(self) -> int:
        """Rows in the current version. From the checksum's file list when it has one (Delta lists
        the files there for tables under 50 files) with statistics for every file: each
        file's ``numRecords`` minus the rows its deletion vector removes, as Delta's own count from
        statistics does; otherwise one ``count()`` job.

            >>> t.row_count() == t.read().count()
        """
        return self._row_count(self.checksum())

    def _row_count(self, checksum: dict | None) -> int:
        listed = (checksum or {}).get("allFiles")
        if listed is not None and len(listed) == int(checksum.get("numFiles", -1)):
            total = 0
            for add in listed:
                records = json.loads(add["stats"]).get("numRecords") if add.get("stats") else None
                if records is None:
                    break
                total += int(records) - int((add.get("deletionVector") or {}).get("cardinality", 0))
            else:
                return total
        return int(self.read_now().count())

    def summary(self) -> dict:
        checksum = self.checksum()
        files, size = self._files_and_bytes(checksum)
        return {"version": self.version(), "files": files, "bytes": size, "rows": self._row_count(checksum)}

    def size_bytes(self) -> int:
        """Bytes of the latest version's data files: from its checksum file (no Spark job); without
        one, from Delta (``DESCRIBE DETAIL``).

            >>> LakeTable.for_path(spark, uri).size_bytes()
            272831592
        """
        return self._files_and_bytes(self.checksum())[1]

    def _files_and_bytes(self, checksum: dict | None) -> tuple[int, int]:
        if checksum is not None:
            return int(checksum["numFiles"]), int(checksum["tableSizeBytes"])
        detail = self._detail()
        return int(detail.numFiles), int(detail.sizeInBytes)

    def has_reader_feature(self, feature: str) -> bool:
        checksum = self.checksum()
        if checksum is not None:
            return feature in (checksum["protocol"].get("readerFeatures") or [])
        return feature in (self._detail().tableFeatures or [])

    # ------------------------------------------------------------------ writing

    def create(self, df: DataFrame, partition_by: list[str], stats_columns: list[str] | None = None,
               change_data_feed: bool = False, published: bool = False,
               properties: dict[str, str] | None = None) -> "LakeTable":
        """Create the (empty) table with ``df``'s schema and wasure's properties, plus ``properties``
        (idempotent: an existing table is left as it is)."""
        from delta.tables import DeltaTable

        builder = DeltaTable.createIfNotExists(self.spark).location(self.uri).addColumns(df.schema)
        chosen = table_properties(df, partition_by, stats_columns, change_data_feed, published) | (properties or {})
        for name, value in chosen.items():
            builder = builder.property(name, value)
        if partition_by:
            builder = builder.partitionedBy(*partition_by)
        builder.execute()
        return self

    def create_bookkeeping(self, df: DataFrame, partition_by: list[str], stats_columns: list[str] | None = None) -> "LakeTable":
        """Create a bookkeeping table (state, ledger, audit, inbox) with ``df``'s schema and
        ``BOOKKEEPING_PROPERTIES`` unless it exists; an existing one is left as it is, without the
        snapshot load and Spark jobs of Delta's CREATE IF NOT EXISTS."""
        if not self.exists():
            self.create(df, partition_by, stats_columns, properties=BOOKKEEPING_PROPERTIES)
        return self

    def write_new(self, df: DataFrame, partition_by: list[str], stats_columns: list[str] | None = None,
                  published: bool = False, properties: dict[str, str] | None = None) -> "LakeTable":
        """Write ``df`` as a new table, data and properties in one commit (staging, backups, quarantine):
        half the commits of ``create`` + append, and no moment where the table exists without its rows."""
        self._writer(df, partition_by, stats_columns, published, properties).create()
        return self

    def publish(self, df: DataFrame, partition_by: list[str], stats_columns: list[str] | None = None,
                published: bool = True, properties: dict[str, str] | None = None) -> "LakeTable":
        """Replace the table's content, schema and properties with ``df`` in ONE Delta transaction
        (``CREATE OR REPLACE``): readers see the old version or the new one, never a missing or a
        half-written table. Creates the table on first publish. The files of the replaced version
        are deleted right after (``delete_replaced_files``): a published output must not keep, in
        its history, rows that a restriction, an erasure or a key rotation took out of it.

        A table first written with deletion vectors (before published tables went without them)
        still lists that reader feature in its protocol, which no replace can drop; it is rewritten
        once from scratch so the ``deltalake`` readers can open it (docs/reading.md)."""
        if published and self.exists() and self.has_reader_feature("deletionVectors"):
            df = df.localCheckpoint() if not df.isStreaming else df   # the rows must not depend on the old files
            self.drop()
            return self.write_new(df, partition_by, stats_columns, published, properties)
        existed = self.exists()
        self._writer(df, partition_by, stats_columns, published, properties).createOrReplace()
        if existed:
            self.delete_replaced_files(self.version())
        return self

    def delete_replaced_files(self, version: int) -> int:
        """Delete the data files that commit ``version`` removed from the table: a VACUUM of that one
        commit, without VACUUM's Spark job over the whole directory. Time travel to earlier versions
        ends there, as after ``purge``. Callers hold the lake lease (jobs/lake/lease.py)."""
        files = files_for(self.uri, self.spark)
        commit = files.read_text(join(self.uri, "_delta_log", f"{version:020d}.json"))
        removed = [json.loads(line)["remove"]["path"] for line in commit.splitlines() if '"remove"' in line]
        removed = [r for r in removed if r]
        for path in removed:
            files.delete(self._file_uri(path))
        return len(removed)

    def _writer(self, df: DataFrame, partition_by: list[str], stats_columns: list[str] | None, published: bool,
                properties: dict[str, str] | None = None):
        writer = df.writeTo(self._sql_name).using("delta")
        chosen = table_properties(df, partition_by, stats_columns, published=published) | (properties or {})
        for name, value in chosen.items():
            writer = writer.tableProperty(name, value)
        if partition_by:
            writer = writer.partitionedBy(*[F.col(c) for c in partition_by])
        return writer

    def append(self, df: DataFrame, partition_by: list[str] | None = None) -> "LakeTable":
        """Append to a small bookkeeping table (audit, ledger, state), creating it on first use
        (``BOOKKEEPING_PROPERTIES``)."""
        self.create_bookkeeping(df, partition_by or [])
        df.coalesce(1).write.format("delta").mode("append").save(self.uri)
        return self

    def delete_matching(self, keys: DataFrame, condition: str) -> int:
        """One MERGE ... WHEN MATCHED DELETE: the rows of ``t`` that match a row of ``keys`` (``s``)
        under ``condition`` (a subject's rows, a purpose's pseudonyms). Returns the rows deleted,
        from the commit's own metrics (no extra Spark job)."""
        return self._merged(self._merge(keys, condition).whenMatchedDelete(), "numTargetRowsDeleted")

    def delete_values(self, column: str, values: list[str], partitions: dict[str, list[int]] | None = None) -> int:
        """DELETE the rows whose ``column`` (as text) is one of ``values``: a request's subject ids,
        their pseudonyms. ``partitions`` names the partition values that can hold them (``{"subject_bucket":
        [3, 17]}``), so the scan prunes the rest; a commit's files name those partitions anyway.
        Returns the rows deleted, from the commit's metrics.

        The values never reach ``_delta_log``: Delta records a DELETE's condition, literals
        included, so the condition is a UDF holding the set (``wasure.udf.InValueSet``, registered
        under a random name: ``in_value_set_ab12(account_id)`` is what the commit records). A DELETE
        runs about half the Spark jobs of the MERGE with a keys frame (bench/analysis.md, session 21),
        which stays the path when wasure-udf.jar is not on the classpath.

            >>> LakeTable.for_path(spark, uri).delete_values("account_id", ["A1", "A2"], {"subject_bucket": [3, 9]})
            12
        """
        values = sorted(set(values))
        if not values:
            return 0
        deleted = self.delete_value_sets(column, [(values, None)], partitions)
        if deleted is not None:
            return deleted
        keys = F.broadcast(local_frame(self.spark, [(v,) for v in values], "value string"))
        return self.delete_matching(keys, " AND ".join([*_within(partitions), f"CAST(t.`{column}` AS STRING) = s.value"]))

    def delete_value_sets(self, column: str, sets: list[tuple[list[str] | None, Column | None]],
                          partitions: dict[str, list[int]] | None = None, keep: list[str] | None = None) -> int | None:
        """ONE DELETE of the rows whose ``column`` (as text) is in one of the value sets, each with
        its own further condition or None: retention's "every row of these subjects, only the rows
        before the cutoff of those" (``jobs.lake.quarantine.delete_keys``), an erasure's one set
        (``delete_values``). A set of None is every non-null value (its condition required);
        ``keep``: values whose rows stay whatever the sets say. Each set is a
        ``wasure.udf.InValueSet`` under a random name, so the commit records no value. Returns the
        rows deleted, or None when wasure-udf.jar is not loaded (nothing done: the caller's MERGE
        is the path).

            >>> t.delete_value_sets("account_id", [(["A1"], None), (["A2"], F.col("day") < F.lit(cutoff))])
            >>> t.delete_value_sets("account_id", [(None, F.col("day") < F.lit(cutoff))], keep=["A3"])
        """
        from delta.tables import DeltaTable

        text = F.col(f"`{column}`").cast("string")
        with contextlib.ExitStack() as registered:

            def in_set(values: list[str]):
                return registered.enter_context(value_set_udf(self.spark, sorted(set(values))))

            terms = []
            for values, also in sets:
                if values is None:
                    if also is None:
                        raise ValueError("a set of every value needs its own condition")
                    terms.append(text.isNotNull() & also)
                    continue
                if not values:
                    continue                    # InValueSet refuses an empty set; it would match nothing
                member = in_set(values)
                if member is None:
                    return None
                terms.append(member(text) if also is None else member(text) & also)
            if not terms:
                return 0
            condition = functools.reduce(operator.or_, terms)
            if keep:
                kept = in_set(keep)
                if kept is None:
                    return None
                condition = condition & ~kept(text)
            if partitions:
                condition = F.expr(" AND ".join(_within(partitions))) & condition
            table = DeltaTable.forPath(self.spark, self.uri).alias("t")
            return self._committed(lambda: table.delete(condition), "numDeletedRows")

    def insert_new(self, rows: DataFrame, condition: str, sole_inserter: bool = False) -> int:
        """Insert the rows (``s``) that no row of the table (``t``) matches: a re-run adds nothing.
        Returns the rows inserted, from the commit's own metrics (no extra Spark job; an append
        counts ``rows``).

        ``sole_inserter``: the caller holds the lease under which no one else inserts into this
        small bookkeeping table (the erasure's values table and backup ledger). Then a table where
        no row matches, the common case, gets a plain append after one read (~0.2 s) instead of the
        MERGE (~0.55 s and 4 Spark jobs on this box, bench/analysis.md "Session 31"); a re-run that
        finds its rows still MERGEs.

            >>> t.insert_new(rows, "t.request_id = s.request_id", sole_inserter=True)
        """
        if sole_inserter and not self.read_now().alias("t").join(rows.alias("s"), F.expr(condition), "left_semi").take(1):
            self.append(rows)
            return rows.count()
        return self._merged(self._merge(rows, condition).whenNotMatchedInsertAll(), "numTargetRowsInserted")

    def update_matching(self, rows: DataFrame, condition: str, assignments: dict[str, str]) -> None:
        """Update the matched rows of ``t`` with SQL ``assignments`` over ``t`` and ``s``."""
        self._merge(rows, condition).whenMatchedUpdate(set=assignments).execute()

    def delete_where(self, condition) -> None:
        """DELETE the rows matching a SQL condition or Column (bookkeeping tables: inbox, ledgers)."""
        from delta.tables import DeltaTable

        DeltaTable.forPath(self.spark, self.uri).delete(condition)

    def update_where(self, condition, assignments: dict) -> None:
        """UPDATE the rows matching ``condition`` with ``assignments`` (column -> Column or SQL)."""
        from delta.tables import DeltaTable

        DeltaTable.forPath(self.spark, self.uri).update(condition, assignments)

    def _merged(self, merge, metric: str) -> int:
        return self._committed(merge.execute, metric)

    def _committed(self, operation: Callable[[], object], metric: str) -> int:
        """Run a MERGE or DELETE and return one of its commit's metrics. One that changes nothing
        may commit nothing (Delta's ``commitIfNeeded`` skips empty commits): then the latest commit
        is an older one, whose metrics are not this operation's, and the answer is 0."""
        before = self.version()
        operation()
        return int(self.last_commit_metrics().get(metric, 0)) if self.version() != before else 0

    def _merge(self, source: DataFrame, condition: str):
        from delta.tables import DeltaTable

        # The source's session: callers run MERGEs from their own sessions (per-thread commit metadata).
        return DeltaTable.forPath(source.sparkSession, self.uri).alias("t").merge(source.alias("s"), condition)

    def commits(self, containing: str | None = None) -> list[Commit]:
        """Every commit still in ``_delta_log`` (oldest first), read from the log's JSON files: what
        ``DESCRIBE HISTORY`` answers, without its Spark job and snapshot load (one per table and
        step added up: docs/performance.md). ``containing`` keeps only the commits whose file holds
        that text (a cheap pre-filter, e.g. a job name in the userMetadata).

            >>> [c.version for c in t.commits() if c.metadata().get("job") == "erasure"]
        """
        files = files_for(self.uri, self.spark)
        found = []
        for version, uri in self._commit_files():
            text = files.read_text(uri)
            if containing is None or containing in text:
                commit = _parse_commit(version, text, lambda: files.modified(uri))
                if commit is not None:
                    found.append(commit)
        return sorted(found, key=lambda c: c.version)

    def history(self) -> DataFrame:
        """Delta's history as a DataFrame (one Spark job); jobs use ``commits()``."""
        from delta.tables import DeltaTable

        return DeltaTable.forPath(self.spark, self.uri).history()

    def last_commit_metrics(self) -> dict[str, str]:
        """``operationMetrics`` of the latest commit, read from its log file alone (not DESCRIBE
        HISTORY). Callers hold the lake lease, so the latest commit is their own."""
        files = files_for(self.uri, self.spark)
        version = self.version()
        uri = join(self.uri, "_delta_log", f"{version:020d}.json")
        commit = _parse_commit(version, files.read_text(uri), lambda: files.modified(uri))
        return commit.operation_metrics if commit is not None else {}

    def purge(self, rewrite_every_file: bool | None = None) -> None:
        """Physically remove what the current version no longer references: rewrite the files that
        carry deletion vectors, then delete every file superseded, just now or before
        (``delete_unreferenced_files``; ``VACUUM ... RETAIN 0 HOURS`` when the checksum file does not
        list the table's files, the safety check lifted for this call only). Callers hold the lake
        lease (jobs/lake/lease.py): a writer running at the same time would lose its uncommitted files.

        The rewrite is Delta's REORG ... APPLY (PURGE) (only the files with deleted rows) when the
        executors run inside the driver's JVM (``local[n]``). On a real cluster Delta 4.4's REORG
        fails: it reads Parquet footers in executor tasks through ``SparkSession.active``, which
        exists only on the driver (delta-io/delta#5697). There the current rows are written over
        the table with ``dataChange=false`` (every file rewritten, deletion vectors applied).
        ``rewrite_every_file`` forces one or the other (None: chosen by the Spark master)."""
        if rewrite_every_file is None:
            rewrite_every_file = not executors_share_driver_jvm(self.spark)
        if not rewrite_every_file:
            self.spark.sql(f"REORG TABLE {self._sql_name} APPLY (PURGE)")
        else:
            self.rewrite_current_rows()
        if self.delete_unreferenced_files() is not None:
            return
        self.spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
        try:
            self.spark.sql(f"VACUUM {self._sql_name} RETAIN 0 HOURS")
        finally:
            self.spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "true")

    def delete_unreferenced_files(self) -> int | None:
        """Delete what ``VACUUM ... RETAIN 0 HOURS`` would, without its seven Spark jobs and two
        commits (``jobs.lake.vacuum``): every file under the table that the latest version does not
        reference, then the directories left empty. Only when the latest checksum file lists every
        current file (``plain_files``: tables under 50 files, most of a lake's) and the table has no
        change data (its ``_change_data`` copies deleted rows, and only VACUUM knows which it still
        needs); otherwise None, nothing deleted, and ``purge`` runs VACUUM. Returns the files
        deleted. Callers hold the lake lease (jobs/lake/lease.py), as for VACUUM.

            >>> t.delete_unreferenced_files()
            12
        """
        plain = plain_files(self.checksum())
        files = files_for(self.uri, self.spark)
        if plain is None or files.exists(join(self.uri, "_change_data")):
            return None
        try:
            vectors = {vector_file(self.uri, descriptor) for descriptor in plain.deletion_vectors.values()}
        except DeletionVectorError:           # a vector stored by absolute path: VACUUM knows it
            return None
        if not files.is_dir(self.uri):        # a spelling the backend does not list: never "nothing to do"
            return None
        keep = {self._file_uri(path) for path in plain.paths} | (vectors - {None})
        return delete_unreferenced(files, self.uri, keep, plain.partition_columns)

    def rewrite_current_rows(self) -> None:
        """Write the current rows over the table in one commit that changes no data (Delta's
        compaction form of overwrite): the new files carry no deletion vectors, the partitioning
        and the table's properties stay; the old files become superseded, ready for VACUUM."""
        partition_by = self.partition_columns()
        current = self.read()
        if partition_by:                                   # one file per partition, as when written
            current = current.repartition(*[F.col(c) for c in partition_by])
        current.write.format("delta").mode("overwrite").option("dataChange", "false").save(self.uri)

    # ------------------------------------------------------------------ whole-table moves

    def drop(self) -> None:
        """Remove the table and its files (staging and expired copies; never a published table)."""
        files_for(self.uri, self.spark).delete(self.uri)

    def move_to(self, uri: str) -> "LakeTable":
        """Move the whole table (its log and files) to ``uri``: a failed output into quarantine.
        One rename on HDFS and local disks; object stores copy."""
        files_for(self.uri, self.spark).rename(self.uri, uri)
        return LakeTable(self.spark, uri)
