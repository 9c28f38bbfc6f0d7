"""What every pipeline step shares: the run date, policy and lake loading, the Spark session,
optional job modules, JSON-able results (jobs/pipeline/__init__.py is the registry, jobs/pipeline/submit.py the spark-submit application)."""
from __future__ import annotations

import datetime as dt
import importlib
import importlib.util
import os
from typing import Any

from jobs.runtime.console import CheckFailed, InputError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_UNAVAILABLE = 0, 1, 2, 3
CLOSURE_SOURCES = ("account_closure", "ccpa", "appi", "gdpr")
DEFAULT_DEADLINE_WARN_DAYS = 14


class StepUnavailable(RuntimeError):
    """The job module a step needs is not part of this deployment: the step did not run."""


class DeadlineAlert(CheckFailed):
    """Erasure requests are close to (or past) their legal due date."""

# ------------------------------------------------------------------ shared helpers

def run_date(value: Any = None) -> dt.date:
    """The business date of a run: a date, a datetime (its UTC date), 'YYYY-MM-DD', or None (today UTC)."""
    if value is None or value == "":
        return dt.datetime.now(dt.timezone.utc).date()
    if isinstance(value, dt.datetime):
        return (value.astimezone(dt.timezone.utc) if value.tzinfo else value).date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise InputError(f"run date must be YYYY-MM-DD, got {value!r}") from None


def load(policy_path: str | os.PathLike | None, lake_root: str | os.PathLike | None):
    """(policy, lake) from explicit values, else $WASURE_POLICY / $WASURE_LAKE (the CLI's defaults)."""
    from jobs.lake.layout import Lake
    from jobs.policy import default_policy_path, load_policy

    policy_path = policy_path or None
    lake_root = lake_root or os.environ.get("WASURE_LAKE")
    if not lake_root:
        raise InputError("no lake root: pass the lake (DAG param `lake`) or set WASURE_LAKE")
    policy, lake = load_policy(policy_path or default_policy_path()), Lake.at(lake_root)
    if not lake.is_local:                # hdfs:// or s3a:// down or mistyped: exit 2 naming it, before any write
        from jobs.lake.storage import check_reachable

        check_reachable(lake.uri)
    return policy, lake


def _spark(step: str):
    from jobs.runtime.spark import get_spark

    return get_spark(f"wasure-{step}")


def available(module: str) -> bool:
    """Whether ``jobs.<module>`` is deployed (no import: safe at DAG parse time)."""
    return importlib.util.find_spec(f"jobs.{module}") is not None


def _optional(module: str, step: str):
    if not available(module):
        raise StepUnavailable(f"step {step!r} skipped: jobs.{module} is not part of this deployment yet "
                              f"(the job was not run; nothing was produced)")
    return importlib.import_module(f"jobs.{module}")


def _jsonable(value: Any, depth: int = 0) -> Any:
    """A result object as JSON-able data (dataclasses, dates); bounded so XComs stay small."""
    from dataclasses import asdict, is_dataclass

    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        items = list(value)
        return [_jsonable(v, depth + 1) for v in items[:200]] + ([f"... {len(items) - 200} more"] if len(items) > 200 else [])
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _versions(spark, policy, lake) -> dict[str, int]:
    from jobs.lake.layout import is_delta
    from jobs.lake.layout import table_version

    return {n: table_version(spark, lake.table_path(t)) for n, t in policy.tables.items() if is_delta(lake.table_path(t))}
