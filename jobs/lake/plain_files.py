"""When a Delta table's current version can be read as plain Parquet files (``LakeTable.read_now``).

A Delta read plans before it reads: it loads the table's snapshot (a replay of ``_delta_log``) and
scans the snapshot's file list two or three times (data skipping, the deletion-vector check, the
file listing), each a Spark job with 100-150 ms of driver work before it (bench/analysis.md,
sessions 25 and 26). For a small table that is most of the read: a bookkeeping table of a few
dozen rows costs 0.4-0.7 s through Delta, ~0.1 s as Parquet.

Delta's checksum file of a version (``_delta_log/<version>.crc``) lists every data file of that
version for tables under 50 files (``allFiles``), with its partition values and deletion vector.
Reading exactly those files with the table's schema is the table, when:

- the list is whole (as many files and bytes as the checksum counts),
- files with a deletion vector are read with it applied (``deletion_vectors``: their rows whose
  index is in the vector are left out, as Delta's reader does), so every file needs a name of its
  own in the table (Delta's carry a UUID),
- no column mapping (Parquet column names would not be the table's),
- no reader feature beyond those that change nothing for a plain Parquet read,
- partition values are in Hive-style directories (``region=JP/subject_bucket=3/``) of types
  Spark parses back from a path exactly; the files' directories are checked against the values the
  log records.

Anything else, and ``plain_files`` answers None: the caller reads through Delta.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from pyspark.sql import types as T

# Reader features under which a table's files (less their deletion vectors' rows) are its rows.
PLAIN_READER_FEATURES = {"deletionVectors", "timestampNtz", "v2Checkpoint", "vacuumProtocolCheck"}
# Partition column types whose Hive-style path text Spark parses back to the same value.
PATH_PARTITION_TYPES = {"string", "integer", "long", "short", "byte", "date", "boolean"}
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
# File names that read the same in the log and in Spark's ``_metadata.file_path`` (no escaping).
_PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class PlainFiles:
    """The current version's data files (paths relative to the table, URL-encoded as in the log) and
    its schema (every column, partition columns included, in the table's order)."""
    paths: list[str]
    schema: T.StructType
    partition_columns: list[str]
    deletion_vectors: dict[str, dict] = field(default_factory=dict)   # path -> the log's descriptor

    @property
    def deleted_rows(self) -> int:
        return sum(int(dv.get("cardinality", 0)) for dv in self.deletion_vectors.values())

    @property
    def file_schema(self) -> T.StructType:
        """The schema to read the files with: data columns, then partition columns (Spark's order)."""
        data = [f for f in self.schema.fields if f.name not in self.partition_columns]
        parts = [next(f for f in self.schema.fields if f.name == c) for c in self.partition_columns]
        return T.StructType(data + parts)


def plain_files(checksum: dict | None) -> PlainFiles | None:
    """The files and schema of the checksum's version, if reading them as Parquet is the table; else None."""
    if not checksum:
        return None
    listed = checksum.get("allFiles")
    if listed is None or len(listed) != int(checksum.get("numFiles", -1)):
        return None
    if sum(int(add.get("size", 0)) for add in listed) != int(checksum.get("tableSizeBytes", -1)):
        return None
    protocol, metadata = checksum.get("protocol") or {}, checksum.get("metadata") or {}
    if int(protocol.get("minReaderVersion", 1)) > 3 or not set(protocol.get("readerFeatures") or []) <= PLAIN_READER_FEATURES:
        return None
    if (metadata.get("configuration") or {}).get("delta.columnMapping.mode", "none") != "none":
        return None
    schema = checksum_schema(checksum)
    if schema is None:
        return None
    partitions = list(metadata.get("partitionColumns") or [])
    types = {f.name: f.dataType.typeName() for f in schema.fields}
    if any(types.get(c) not in PATH_PARTITION_TYPES for c in partitions):
        return None
    paths, vectors = [], {}
    for add in listed:
        if "path" not in add:
            return None
        path = unquote(add["path"])          # the log URL-encodes paths
        if "://" in path or path.startswith("/") or not _in_hive_directories(path, partitions, add.get("partitionValues") or {}):
            return None
        paths.append(add["path"])
        if add.get("deletionVector"):
            vectors[add["path"]] = add["deletionVector"]
    names = {file_name(p) for p in paths}
    if vectors and (len(names) != len(paths) or not all(_PLAIN_NAME.fullmatch(n) for n in names)):
        return None                          # the vectors' filter tells files apart by name
    return PlainFiles(paths, schema, partitions, vectors)


def file_name(path: str) -> str:
    """A data file's name, as the deletion-vector filter keys it (``_metadata.file_path``'s last part)."""
    return path.rsplit("/", 1)[-1]


def checksum_schema(checksum: dict | None) -> T.StructType | None:
    """The table schema the checksum's metadata records (None without one, or unreadable)."""
    try:
        return T.StructType.fromJson(json.loads((checksum or {})["metadata"]["schemaString"]))
    except (KeyError, ValueError, TypeError):
        return None


def _in_hive_directories(path: str, partitions: list[str], values: dict[str, str | None]) -> bool:
    """Whether ``path`` lies in ``col=value/...`` directories, one per partition column in order,
    holding the values the log records for the file (so Spark's partition discovery reads them)."""
    directories = path.split("/")[:-1]
    if len(directories) != len(partitions):
        return False
    for directory, column in zip(directories, partitions):
        name, sep, text = directory.partition("=")
        if not sep or name != column:
            return False
        text = unquote(text)                 # Hive escapes with %XX, as URL quoting does
        recorded = values.get(column)
        if text == NULL_PARTITION:
            if recorded not in (None, ""):
                return False
        elif text != recorded:
            return False
    return True
