"""Residue scan: does any file under a directory still hold one of a set of identifying values?

Used by the retention tests and by erasure verification (`wasure verify-erasure`). It looks at
every file, not at what Delta considers current:
- data Parquet files (any version, superseded or not): every top-level string column, exact match
  of the cell and of its tokens (identifiers quoted inside free text);
- `_delta_log` checkpoints (Parquet): the whole row as JSON, substring match (statistics live there);
- everything else (`_delta_log/*.json` commits, `.crc`, deletion-vector `.bin`, `_change_data`
  text, receipts): raw bytes as text, substring match.
All matching is distributed (a per-row lookup in a UDF holding the value set, or a join against
it); only file paths and counts come back from the files scanned, never a value.
"""
from __future__ import annotations

import contextlib
import string
from collections import defaultdict
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.lake.storage import parent_of
from jobs.lake.value_sets import token_hits_udf


FULL_WIDTH = "０１２３４５６７８９－＋＠．"
HALF_WIDTH = "0123456789-+@."
TOKEN_CHARS = string.digits + string.ascii_letters + "@._+-"
TOKEN_CLASS = r"0-9A-Za-z@._+\-"             # TOKEN_CHARS as a regex character class
TOKEN_SPLIT = f"[^{TOKEN_CLASS}]+"
# Up to this many values are broadcast to the scan's tasks (and held by its UDF); more are joined.
VALUES_IN_A_TASK = 200_000


def cell_tokens(cell: Column) -> Column:
    """What a string cell offers to a value scan: the cell itself and the tokens of its half-width
    form (free text quotes identifiers inside sentences; full-width digits are folded first). A
    cell made only of token characters (ids, emails, numbers: most cells) is its own only token,
    so only the other cells pay for the regex split. Null for a null cell."""
    half = F.translate(cell, FULL_WIDTH, HALF_WIDTH)
    own_token = F.translate(half, TOKEN_CHARS, "") == ""
    return (F.when(own_token & (half == cell), F.array(cell))
             .when(own_token, F.array(cell, half))
             .otherwise(F.array_union(F.array(cell), F.split(half, TOKEN_SPLIT))))


@dataclass(frozen=True)
class Finding:
    path: str
    kind: str
    matches: int


def identifier_values(df: DataFrame, columns: list[str], min_length: int = 5) -> DataFrame:
    """One column `value`: the distinct non-trivial values of `columns` (short values would match noise)."""
    values = None
    for column in columns:
        part = df.select(F.col(column).cast("string").alias("value"))
        values = part if values is None else values.unionByName(part)
    return values.where(F.col("value").isNotNull() & (F.length("value") >= min_length)).distinct()


def list_files(spark: SparkSession, root: str) -> list[str]:
    """Every file under root through Hadoop's FileSystem (Spark's readers skip `_`/`.` names)."""
    jvm = spark._jvm
    path = jvm.org.apache.hadoop.fs.Path(root)
    fs = path.getFileSystem(spark._jsc.hadoopConfiguration())
    if not fs.exists(path):
        return []
    iterator = fs.listFiles(path, True)
    files = []
    while iterator.hasNext():
        files.append(iterator.next().getPath().toString())
    return files


def _table_root(path: str) -> str:
    """The table directory of a data file's URI: what precedes its first partition (``k=v``) or
    ``_change_data`` folder, else its parent. String work only: the ``//`` of ``hdfs://`` stays."""
    parts = path.split("/")
    for i, part in enumerate(parts):
        if "=" in part or part == "_change_data":
            return "/".join(parts[:i])
    return parent_of(path)


EXCLUDE_SEPARATOR = "|"


def allowed_elsewhere(matches: DataFrame) -> DataFrame:
    """Drop the matches of a value inside a path its ``exclude`` column allows: null for none, else
    paths under the root joined by ``|`` (a closure's retained copy, copies a legal hold keeps)."""
    paths = F.split(F.col("exclude"), "\\" + EXCLUDE_SEPARATOR)
    inside = F.exists(paths, lambda e: F.col("path").contains(F.concat(F.lit("/"), e, F.lit("/"))))
    return matches.where(F.col("exclude").isNull() | ~inside)


def with_exclude(values: DataFrame, column: str = "value") -> DataFrame:
    """``values`` with its optional ``exclude`` column (see ``allowed_elsewhere``)."""
    exclude = F.col("exclude") if "exclude" in values.columns else F.lit(None).cast("string")
    return values.select(column, exclude.alias("exclude")).distinct()


def lake_files(spark: SparkSession, root: str, exclude: tuple[str, ...] = ()
               ) -> tuple[dict[str, list[str]], list[str], list[str]]:
    """Every file under root less ``exclude``: data Parquet files grouped by table, ``_delta_log``
    checkpoints, and everything else (read as raw bytes by the scans)."""
    files = [p for p in list_files(spark, root) if not any(f"/{e}/" in p for e in exclude)]
    data_groups: dict[str, list[str]] = defaultdict(list)
    checkpoints, others = [], []
    for path in files:
        if path.endswith(".parquet") and "/_delta_log/" in path:
            checkpoints.append(path)
        elif path.endswith(".parquet"):
            data_groups[_table_root(path)].append(path)
        else:
            others.append(path)
    return data_groups, checkpoints, others


def scan_for_values(spark: SparkSession, root: str, values: DataFrame, exclude: tuple[str, ...] = ()) -> list[Finding]:
    """Files under ``root`` (less the ``exclude`` paths) holding a value of ``values`` (column
    ``value``; an optional column ``exclude`` names a path where that one value may stay)."""
    data_groups, checkpoints, others = lake_files(spark, root, exclude)
    values = with_exclude(values)
    few = values.count() < VALUES_IN_A_TASK
    if few:
        values = F.broadcast(values.cache())
    # A few values (an erasure batch's) are looked up per row in the JVM (value_sets.token_hits_udf):
    # only a row's hits leave the scan. Many values: every token is a row, joined with them.
    wanted = sorted({row.value for row in values.select("value").distinct().collect()}) if few else []
    findings: list[Finding] = []
    with token_hits_udf(spark, wanted) if few else contextlib.nullcontext() as hits:
        for group in data_groups.values():
            df = spark.read.option("mergeSchema", "true").parquet(*group)
            strings = [f.name for f in df.schema.fields if f.dataType.typeName() == "string"]
            if not strings:
                continue
            cells = F.array(*[F.col(c) for c in strings])
            if hits is not None:
                tokens = df.select(F.input_file_name().alias("path"), F.explode(hits(cells)).alias("value"))
            else:
                tokens = (df.select(F.input_file_name().alias("path"), F.explode(cells).alias("cell"))
                          .select("path", F.explode(cell_tokens(F.col("cell"))).alias("value")))
            for row in allowed_elsewhere(tokens.join(values, "value")).groupBy("path").count().collect():
                findings.append(Finding(row.path, "parquet", row["count"]))
    if checkpoints:
        text = spark.read.parquet(*checkpoints).select(F.input_file_name().alias("path"), F.to_json(F.struct("*")).alias("text"))
        findings += _substring_matches(text, values, "checkpoint")
    if others:
        text = (spark.read.format("binaryFile").load(others)
                .select("path", F.col("content").cast("string").alias("text")))
        findings += _substring_matches(text, values, "file")
    return sorted(findings, key=lambda f: f.path)


def _substring_matches(text: DataFrame, values: DataFrame, kind: str) -> list[Finding]:
    joined = allowed_elsewhere(text.join(values, F.col("text").contains(F.col("value"))))
    return [Finding(r.path, kind, r["count"]) for r in joined.groupBy("path").count().collect()]
