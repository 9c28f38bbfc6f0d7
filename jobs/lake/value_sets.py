"""Sets of personal values held in a Java UDF (wasure-udf.jar), so that a query can test rows
against them without the values ever appearing in a plan, a Delta commit or a log.

Spark prints a registered UDF as its name and arguments, never its fields: a query or a Delta
DELETE that calls ``in_value_set_ab12(account_id)`` records that text, not the ids. Each set is
registered under a random name for one block and dropped after it, so the values leave the
session's function registry too. The set travels to the executors inside each task, like a
broadcast join's keys: meant for the values of one erasure batch, not for millions.

- ``value_set_udf``: ``column -> boolean``, whether the value is in the set (the erasure's DELETE).
- ``token_hits_udf``: ``[cells] -> array<string>``, the tokens of a row's string cells that are in
  the set (``residue.cell_tokens`` tokenization, computed in the JVM per row): a scan of a whole
  table for a few values emits rows only for hits instead of one row per token of every cell.

Both yield None when wasure-udf.jar is not on Spark's classpath; the callers then use the plain
Spark expressions (a join), which give the same answers more slowly.
"""
from __future__ import annotations

import contextlib
import uuid
from typing import Callable, Iterator

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

VALUE_SET_CLASS = "wasure.udf.InValueSet"
TOKENS_IN_SET_CLASS = "wasure.udf.TokensInSet"


@contextlib.contextmanager
def _registered(spark: SparkSession, class_name: str, prefix: str, values: list[str], return_type
                ) -> Iterator[Callable[..., Column] | None]:
    from jobs.runtime.spark import jvm_class

    java_class = jvm_class(spark, class_name)
    if java_class is None:
        yield None
        return
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    # PySpark's gateway converts the list to a java.util.List in one call (auto_convert).
    spark._jsparkSession.udf().register(name, java_class(list(values)), return_type(spark._jvm.org.apache.spark.sql.types))
    try:
        yield lambda *columns: F.call_udf(name, *columns)
    finally:
        spark.sql(f"DROP TEMPORARY FUNCTION IF EXISTS {name}")


def value_set_udf(spark: SparkSession, values: list[str]):
    """Context manager yielding ``column -> Column``: whether the column's value is in ``values``."""
    return _registered(spark, VALUE_SET_CLASS, "in_value_set", values, lambda types: types.DataTypes.BooleanType)


def token_hits_udf(spark: SparkSession, values: list[str]):
    """Context manager yielding ``array_of_cells -> Column``: the cells' tokens that are in
    ``values`` (each cell's distinct tokens; a value in two cells counts twice). Empty strings are
    left out of the set: no token is empty, and no identifying value is either."""
    kept = [v for v in values if v]
    if not kept:
        return contextlib.nullcontext(lambda cells: F.array().cast("array<string>"))
    return _registered(spark, TOKENS_IN_SET_CLASS, "tokens_in_set", kept,
                       lambda types: types.DataTypes.createArrayType(types.DataTypes.StringType))
