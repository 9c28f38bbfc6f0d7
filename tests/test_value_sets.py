"""The value-set UDFs (jobs/lake/value_sets.py, wasure-udf.jar) give the answers of the plain Spark
expressions they replace: the tokens a scan finds, the values an erasure captures, the residue a
verification reports, with and without the jar."""
from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F

import jobs.lake.value_sets as value_sets
from jobs.lake.residue import cell_tokens, scan_for_values
from jobs.lake.value_sets import token_hits_udf

# Token characters, their full-width forms, separators, kana/kanji, and characters Spark's
# regex and Java's char handling could disagree on (a supplementary-plane emoji, a tab).
ALPHABET = "aZ09@._+-０９－＋＠．ＡＢ 、。,;:/\t山田たろう🙂"
CELLS = st.one_of(st.none(), st.text(alphabet=ALPHABET, max_size=14))


def _expression_tokens(spark, rows: list[list[str | None]]) -> list[Counter]:
    """Per row, the tokens of its cells by the Spark expressions (``cell_tokens``, distinct per cell)."""
    df = spark.createDataFrame([(i, row) for i, row in enumerate(rows)], "i int, cells array<string>")
    tokens = df.select("i", F.explode("cells").alias("cell")).where(F.col("cell").isNotNull())
    found = [Counter() for _ in rows]
    for row in tokens.select("i", F.explode(cell_tokens(F.col("cell"))).alias("value")).collect():
        found[row.i][row.value] += 1
    return found


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(CELLS, min_size=1, max_size=3), min_size=1, max_size=25), data=st.data())
def test_token_hits_are_the_cell_tokens_in_the_set(spark, rows, data):
    tokens = _expression_tokens(spark, rows)
    every_token = sorted({t for c in tokens for t in c if t})
    values = data.draw(st.lists(st.sampled_from(every_token), max_size=8)) if every_token else []
    values += ["not-in-any-row-@x"]
    expected = [Counter({t: n for t, n in c.items() if t in values}) for c in tokens]
    with token_hits_udf(spark, values) as hits:
        assert hits is not None, "wasure-udf.jar is not on the classpath: run `make jars`"
        df = spark.createDataFrame([(i, row) for i, row in enumerate(rows)], "i int, cells array<string>")
        query = df.select("i", hits(F.col("cells")).alias("hits"))
        plan = query._jdf.queryExecution().toString()
        got = {r.i: Counter(r.hits) for r in query.collect()}
    assert [got[i] for i in range(len(rows))] == expected
    assert "not-in-any-row-@x" not in plan                         # the set never reaches a plan
    assert not [f.name for f in spark.catalog.listFunctions() if f.name.startswith("tokens_in_set_")]


@pytest.fixture
def without_jar(monkeypatch):
    def drop() -> None:
        monkeypatch.setattr(value_sets, "TOKENS_IN_SET_CLASS", "wasure.udf.NotOnTheClasspath")
    return drop


def test_capture_and_residue_scan_answer_the_same_without_the_jar(spark, policy, generated_lake, without_jar):
    """The erasure's value capture and the verification's residue scan: same answers through the
    UDF and through the explode-and-join they replace; shared values are left out of the capture."""
    from jobs.erasure.plan import candidates, capture_values, scan_subject_rows
    from jobs.lake.holds import HoldBook
    from jobs.lake.layout import read_current

    accounts = read_current(spark, generated_lake.table_path(policy.tables[policy.subject.table]))
    subjects = sorted(r[0] for r in accounts.select(policy.subject.key).orderBy(policy.subject.key).limit(12).collect())
    holds = HoldBook.load(spark, policy, generated_lake, dt.date(2026, 1, 1))
    erasable = {name: [s for s in subjects if holds.hold_for(s, name) is None] for name in policy.tables}
    values = [(v, None) for found in capture_values(spark, policy, generated_lake, subjects, holds).values() for v in found]
    frame = spark.createDataFrame(values + [(values[0][0], "raw")], "value string, exclude string")
    with_udf = (capture_values(spark, policy, generated_lake, subjects, holds),
                scan_for_values(spark, str(generated_lake.root), frame))
    without_jar()
    without_udf = (capture_values(spark, policy, generated_lake, subjects, holds),
                   scan_for_values(spark, str(generated_lake.root), frame))
    assert with_udf == without_udf
    captured, findings = with_udf
    shared_too = candidates(scan_subject_rows(spark, policy, generated_lake, list(policy.tables), subjects), erasable)
    assert captured and len({v for _s, v in shared_too}) > len({v for found in captured.values() for v in found})
    assert findings and any("/raw/" in f.path for f in findings)
