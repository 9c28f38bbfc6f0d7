"""Independent tables of one step, processed a few at a time on the one SparkSession.

On small tables a step's time goes to fixed costs per Spark job (planning, code generation, task
launch, Delta commits), most of it on the driver while the executors wait: with several tables in
flight, one table's driver work overlaps another's tasks (docs/performance.md, tables_scaling).
Spark schedules jobs from several threads of one session; the session runs the FAIR scheduler
(jobs/runtime/spark.py) so a large table's job does not hold every core while small ones queue.

``WASURE_TABLE_THREADS`` (default 4) sets how many tables are in flight; 1 runs them one after
another, in order. Work that must stay ordered (commits to one table, state files, Great
Expectations contexts) stays outside the function given here.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_THREADS = 4


def table_threads() -> int:
    value = os.environ.get("WASURE_TABLE_THREADS", str(DEFAULT_THREADS))
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        from jobs.runtime.console import InputError

        raise InputError(f"WASURE_TABLE_THREADS must be a whole number >= 1, not {value!r}")
    return threads


def for_each_table(items: Iterable[T], work: Callable[[T], R], threads: int | None = None) -> list[R]:
    """``[work(item) for item in items]``, several items at once; results in the items' order.

    The first exception is raised after every started item has finished (no half-written table is
    left running behind the caller's back). Each thread inherits the caller's Spark local
    properties (job group, scheduler pool) and session tags, so job accounting and cancellation
    still see the step.
    """
    items = list(items)
    threads = min(threads or table_threads(), len(items))
    if threads <= 1:
        return [work(item) for item in items]
    from pyspark.sql import SparkSession
    from pyspark.util import inheritable_thread_target

    session = SparkSession.getActiveSession()     # given, its tags are inherited too (and no warning)
    target = inheritable_thread_target(session)(work) if session is not None else inheritable_thread_target(work)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wasure-table") as pool:
        futures = [pool.submit(target, item) for item in items]
    return [future.result() for future in futures]
