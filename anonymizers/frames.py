"""DataFrames of rows the driver holds (bookkeeping rows, value sets, split tables), without a Python worker.

``spark.createDataFrame(list_of_tuples, schema)`` parallelizes the pickled rows and re-serializes
them through a Python worker every time a query reads the frame: ~0.15-0.2 s and one more task per
query on a 2-core box, paid by every audit, state and ledger append of a run (bench/analysis.md,
"Session 31"). ``local_frame`` hands the same rows to the JVM once, as Arrow, and Spark keeps them
as a ``LocalRelation`` (an RDD read by the JVM alone above ``spark.sql.execution.arrow.localRelationThreshold``).
The rows stay out of plan strings: ``LocalRelation`` prints its columns, never its data.

It lives here, the lowest layer of wasure, because the Mondrian split tables use it too; jobs
import it from here.

    >>> local_frame(spark, [("r1", 3)], "request_id string, rows long").collect()
    [Row(request_id='r1', rows=3)]
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T


def local_frame(spark: SparkSession, rows: Iterable[Any], schema: T.StructType | str) -> DataFrame:
    """``spark.createDataFrame(rows, schema)`` for rows held by the driver: tuples (or ``Row``s) in
    the schema's column order, or dicts by column name. ``schema`` is a ``StructType`` or a DDL
    string ("value string, exclude string"). A value of the wrong type is a ``TypeError`` naming the
    column (never the value: rows may hold identifiers)."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema

    struct = schema if isinstance(schema, T.StructType) else T.DataType.fromDDL(schema)
    if not isinstance(struct, T.StructType):
        raise TypeError(f"not a row schema: {schema!r}")
    names = struct.fieldNames()
    tuples = [tuple(r[n] for n in names) if isinstance(r, dict) else tuple(r) for r in rows]
    for r in tuples:
        if len(r) != len(names):
            raise TypeError(f"a row has {len(r)} values for the {len(names)} columns {', '.join(names)}")
    arrow_schema = to_arrow_schema(struct, timezone="UTC")
    columns = []
    for i, (field, arrow_field) in enumerate(zip(struct.fields, arrow_schema)):
        values = [_python_value(r[i], field.dataType) for r in tuples]
        try:
            columns.append(pa.array(values, type=arrow_field.type))
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            raise TypeError(f"column {field.name}: a value does not fit {field.dataType.simpleString()} "
                            f"({type(exc).__name__})") from None
    return spark.createDataFrame(pa.Table.from_arrays(columns, schema=arrow_schema), struct)


def _python_value(value: Any, data_type: T.DataType) -> Any:
    """What Spark's own conversion would store, in the form Arrow takes: a naive timestamp is local
    time (as ``TimestampType.toInternal`` reads it), a datetime given for a date keeps its date."""
    if value is None:
        return None
    if isinstance(data_type, T.TimestampType) and isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.astimezone(dt.timezone.utc)
    if isinstance(data_type, T.DateType) and isinstance(value, dt.datetime):
        return value.date()
    return value
