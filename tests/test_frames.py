"""anonymizers.frames.local_frame: the same rows as spark.createDataFrame, held by the JVM as a LocalRelation."""
from __future__ import annotations

import contextlib
import datetime as dt
import io

import pytest
from pyspark.sql import types as T

from anonymizers.frames import local_frame

SCHEMA = T.StructType([
    T.StructField("id", T.StringType()), T.StructField("n", T.IntegerType()), T.StructField("big", T.LongType()),
    T.StructField("share", T.DoubleType()), T.StructField("ok", T.BooleanType()),
    T.StructField("at", T.TimestampType()), T.StructField("on", T.DateType()),
    T.StructField("tags", T.ArrayType(T.StringType())), T.StructField("children", T.MapType(T.IntegerType(), T.LongType())),
])
ROWS = [
    ("山田🙂", 1, 2**40, 0.25, True, dt.datetime(2026, 12, 7, 1, 2, 3, 456789, tzinfo=dt.timezone.utc),
     dt.date(2026, 1, 31), ["a", "b"], {1: 10, 2: 20}),
    ("naive", -3, -1, -1.5, False, dt.datetime(2026, 12, 7, 1, 2, 3), dt.datetime(2026, 2, 28, 23, 59), [], {}),
    (None, None, None, None, None, None, None, None, None),
]


def _plan(df) -> str:
    return df._jdf.queryExecution().analyzed().toString()


def test_the_rows_are_the_rows_create_dataframe_makes(spark):
    mine, theirs = local_frame(spark, ROWS, SCHEMA), spark.createDataFrame(ROWS, SCHEMA)
    assert mine.schema == theirs.schema
    assert mine.collect() == theirs.collect()
    assert _plan(mine).startswith("LocalRelation")              # no RDD of pickled rows, no Python worker
    assert not _plan(theirs).startswith("LocalRelation")


def test_ddl_schema_dict_rows_and_no_rows(spark):
    df = local_frame(spark, [{"exclude": None, "value": "v1"}, ("v2", "x")], "value string, exclude string")
    assert [tuple(r) for r in df.collect()] == [("v1", None), ("v2", "x")]
    empty = local_frame(spark, [], "subject string")
    assert empty.count() == 0 and empty.columns == ["subject"]


def test_a_value_of_the_wrong_type_names_the_column_never_the_value(spark):
    with pytest.raises(TypeError) as error:
        local_frame(spark, [("secret-subject-42", "not a number")], "subject string, rows long")
    assert "rows" in str(error.value) and "secret-subject-42" not in str(error.value) and "not a number" not in str(error.value)
    with pytest.raises(TypeError, match="2 values for the 3 columns"):
        local_frame(spark, [("a", 1)], "a string, b long, c long")


def test_the_rows_never_reach_a_plan_string(spark):
    df = local_frame(spark, [("secret-subject-42",)], "subject string")
    other = spark.range(3).selectExpr("concat('secret-subject-', CAST(id + 42 AS STRING)) AS subject")   # 42, 43, 44
    joined = other.join(df, "subject")
    assert joined.count() == 1
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        joined.explain(True)
        df.explain(mode="formatted")
    plans = out.getvalue() + joined._jdf.queryExecution().toString() + df._jdf.queryExecution().toString()
    assert "LocalRelation" in plans
    assert "secret-subject-42" not in plans


def test_the_engine_builds_its_small_frames_locally(spark):
    from jobs.erasure.plan import subjects_frame

    assert "LocalRelation" in _plan(subjects_frame(spark, ["A000001"], 16))


def test_no_engine_module_builds_a_frame_of_python_rows_through_a_python_worker():
    """`spark.createDataFrame(<list>)` re-serializes its rows in a Python worker at every read of the
    frame; the engine's small frames go through `local_frame` (the class-archive workload, which
    only exercises Spark's own API, is the exception)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    allowed = {"anonymizers/frames.py", "jobs/runtime/class_archive.py"}
    found = []
    for package in ("jobs", "anonymizers", "dags"):
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            for node in ast.walk(ast.parse(path.read_text(), relative)):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "createDataFrame" and relative not in allowed):
                    found.append(f"{relative}:{node.lineno}")
    assert not found, found
