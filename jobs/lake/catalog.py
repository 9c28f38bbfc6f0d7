"""The data scientists' read path: promoted releases as tables of the catalog database `anonymized`.

Only `anonymized/<release>/` (匿名加工情報) is ever registered; raw and pseudonymized zones never are.
With a Hive metastore (a cluster's, or the embedded Derby one with WASURE_CATALOG=hive) the
registration persists; with Spark's default in-memory catalog, `analyst_session()` registers every
promoted release at session start, so `spark.table('anonymized.<release>_data')` works either way.
"""
from __future__ import annotations

import json
import re

from pyspark.sql import SparkSession

from jobs.lake.layout import Lake, is_delta
from jobs.lake.storage import join, name_of, parent_of

DATABASE = "anonymized"


def table_name(release: str, table: str = "data") -> str:
    return f"{DATABASE}.{re.sub(r'[^0-9A-Za-z_]', '_', release)}_{table}"


def register_release(spark: SparkSession, lake: Lake, release: str, table: str = "data") -> str:
    path = lake.anonymized(release, table)
    name = table_name(release, table)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    spark.sql(f"DROP TABLE IF EXISTS {name}")   # external table: dropping the entry keeps the files
    spark.sql(f"CREATE TABLE {name} USING delta LOCATION '{path}'")
    return name


def releases(lake: Lake) -> list[dict]:
    """Promoted releases with their manifests (newest first)."""
    files = lake.files
    found = []
    for manifest in files.glob(join(lake.uri, "anonymized", "*", "manifest.json")):
        doc = json.loads(files.read_text(manifest))
        doc["path"] = parent_of(manifest)
        found.append(doc)
    return sorted(found, key=lambda d: d["created"], reverse=True)


def statistics_tables(lake: Lake) -> list[tuple[str, str, str]]:
    """(statistic, region, path) of every published statistic table (one Delta table per region)."""
    return [(name_of(parent_of(table)), name_of(table).split("=", 1)[1], table)
            for table in lake.files.glob(join(lake.uri, "statistics", "*", "region=*")) if is_delta(table)]


def reading_example(path: str) -> list[str]:
    """Two lines a data scientist can paste to read a published table (docs/reading.md)."""
    return [f'pandas: from deltalake import DeltaTable; df = DeltaTable("{path}").to_pandas()',
            f'polars: import polars as pl; df = pl.read_delta("{path}")']


def register_all(spark: SparkSession, lake: Lake) -> list[str]:
    return [register_release(spark, lake, doc["release"]) for doc in releases(lake)
            if is_delta(join(doc["path"], "data"))]


def analyst_session(lake_root: str | None = None) -> SparkSession:
    """A Spark session in which every promoted release of the lake is `anonymized.<release>_data`."""
    from jobs.runtime.spark import get_spark

    spark = get_spark("wasure-analyst")
    register_all(spark, Lake.at(lake_root))
    return spark
