"""A step's tables a few at a time (jobs/runtime/concurrency.py): results in order, the caller's
Spark local properties and session tags seen by every thread, a bad WASURE_TABLE_THREADS refused."""
import warnings

import pytest

from jobs.runtime.concurrency import for_each_table
from jobs.runtime.console import InputError


def test_threads_keep_the_order_and_inherit_local_properties_and_tags(spark, monkeypatch):
    monkeypatch.setenv("WASURE_TABLE_THREADS", "3")
    context = spark.sparkContext
    context.setLocalProperty("wasure.test.step", "retention")
    spark.addTag("wasure-test-step")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")          # "Spark session is not provided" would fail here
            seen = for_each_table(range(7), lambda i: (i, context.getLocalProperty("wasure.test.step"), spark.getTags()))
    finally:
        spark.removeTag("wasure-test-step")
        context.setLocalProperty("wasure.test.step", None)
    assert [i for i, _step, _tags in seen] == list(range(7))
    assert all(step == "retention" and "wasure-test-step" in tags for _i, step, tags in seen), seen


def test_a_bad_thread_count_is_an_input_error(monkeypatch):
    monkeypatch.setenv("WASURE_TABLE_THREADS", "0")
    with pytest.raises(InputError, match="WASURE_TABLE_THREADS"):
        for_each_table([1, 2], lambda i: i)
