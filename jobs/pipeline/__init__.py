"""Pipeline steps for schedulers (the Airflow DAGs in dags/): the registry and the spark-submit launcher.

Every step takes a policy path, a lake root and a run date (plus a few step options), loads and
validates the policy, calls the job entry points in-process (``retention.run``, ``pseudonymize.run``,
``backup.run_backup``, ``erasure.run``, ...) and returns a small JSON-able dict for XCom: counts,
versions, paths and ids of requests/runs, never a personal value (no subject id, no identifier).

The same steps run in two ways:

- in-process (Airflow "embedded" mode): ``run_step("retention", policy=..., lake=..., run_date=...)``;
- under ``spark-submit`` (Airflow "cluster" mode): jobs/pipeline/submit.py is the application,
  ``spark-submit ... jobs/pipeline/submit.py retention --policy P --lake L --date 2026-11-22 [--options JSON]``;
  ``main`` prints the result as one JSON line and exits 0 ok, 1 a check failed, 2 bad input,
  3 the step's job module is not deployed.

The steps live in jobs/pipeline/nightly.py (the nightly chain) and jobs/pipeline/on_request.py
(closure, backup lifecycle, access), on the helpers of jobs/pipeline/common.py.

Steps whose job module may not exist yet (``anonymize``, ``statistics``) raise ``StepUnavailable``
naming the missing module; the DAGs turn that into a visible skip, never a silent success.
"""
from __future__ import annotations

import json
import sys
from typing import Any, Callable

from jobs.runtime.console import InputError, entry_point
from jobs.pipeline.common import EXIT_BAD_INPUT, EXIT_OK, EXIT_UNAVAILABLE, StepUnavailable, available
from jobs.pipeline.nightly import (anonymize, backup, gates, physical_purge, pseudonymize, publish, retention,
                                   statistics)
from jobs.pipeline.on_request import (access, advance_erasures, closure, end_quarantines, erasure_deadlines,
                                    expire_backups, reverify_erasures)

# What the DAGs and tests import from here, defined beside the steps.
from jobs.pipeline.common import EXIT_CHECK_FAILED, DeadlineAlert, load, run_date  # noqa: E402,F401
from jobs.pipeline.on_request import exports_dir, receipt_summary, validate_access, validate_closure  # noqa: E402,F401


# ------------------------------------------------------------------ registry and spark-submit launcher

STEPS: dict[str, Callable[..., dict]] = {
    "backup": backup, "retention": retention, "pseudonymize": pseudonymize, "anonymize": anonymize,
    "statistics": statistics, "gates": gates, "publish": publish, "physical_purge": physical_purge,
    "closure": closure, "expire_backups": expire_backups, "end_quarantines": end_quarantines,
    "advance_erasures": advance_erasures, "reverify_erasures": reverify_erasures,
    "erasure_deadlines": erasure_deadlines, "access": access,
}
# Job module each step needs beyond retention/pseudonymize (checked without importing).
STEP_MODULES: dict[str, str] = {
    "backup": "backup", "expire_backups": "backup", "end_quarantines": "backup", "anonymize": "anonymize",
    "statistics": "statistics", "closure": "erasure", "advance_erasures": "erasure", "reverify_erasures": "erasure",
    "erasure_deadlines": "erasure", "access": "access",
}


def step_available(step: str) -> bool:
    module = STEP_MODULES.get(step)
    return module is None or available(module)


def unavailable_reason(step: str) -> str:
    return (f"step {step!r} skipped: jobs.{STEP_MODULES[step]} is not part of this deployment yet "
            "(the job was not run; nothing was produced)")


def run_step(step: str, policy: str | None, lake: str | None, run_date_: Any = None, **options) -> dict:
    if step not in STEPS:
        raise InputError(f"unknown step {step!r} (steps: {', '.join(STEPS)})")
    if not step_available(step):
        raise StepUnavailable(unavailable_reason(step))
    return STEPS[step](policy, lake, run_date_, **options)


@entry_point
def main(argv: list[str] | None = None) -> int:
    """spark-submit application: `jobs/pipeline/submit.py STEP [--policy P] [--lake L] [--date D] [--options JSON]`."""
    import argparse

    parser = argparse.ArgumentParser(prog="jobs.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=sorted(STEPS))
    parser.add_argument("--policy", default="", help="policy YAML (default $WASURE_POLICY or policies/example.yaml)")
    parser.add_argument("--lake", default="", help="lake root (default $WASURE_LAKE)")
    parser.add_argument("--date", default="", help="run date YYYY-MM-DD (default today UTC)")
    parser.add_argument("--options", default="{}", help="step options as a JSON object")
    args = parser.parse_args(argv)
    try:
        options = json.loads(args.options or "{}")
        if not isinstance(options, dict):
            raise ValueError
    except ValueError:
        print("error: --options must be a JSON object", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        result = run_step(args.step, args.policy or None, args.lake or None, args.date or None, **options)
    except StepUnavailable as exc:
        print(f"unavailable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(json.dumps(result, default=str, ensure_ascii=False))
    return EXIT_OK
