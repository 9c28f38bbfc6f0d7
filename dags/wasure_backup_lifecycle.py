"""wasure backup lifecycle (daily): take today's backup, expire old ones, end quarantines whose last
backup is gone, continue erasures whose grace has passed (purge, verify, close), re-verify every
erasure past its grace, and alert on erasure requests close to their legal due date.

The deadline check fails the run (visible in the UI, alerting via the usual failure notifications)
when an open erasure request is due within `deadline_warn_days` days (default
$WASURE_DEADLINE_WARN_DAYS or 14) of its due date: received + defaults.erasure_deadline_days
(45 days, CCPA) of the policy.
"""
from __future__ import annotations

import os

from airflow.sdk import Param, chain, dag

try:
    import _wasure as w
except ImportError:
    from dags import _wasure as w


@dag(
    dag_id="wasure_backup_lifecycle",
    schedule="0 4 * * *",
    start_date=w.START,
    catchup=False,
    max_active_runs=1,
    default_args=w.default_args(),
    params={**w.common_params(),
            "deadline_warn_days": Param(int(os.environ.get("WASURE_DEADLINE_WARN_DAYS", "14")), type="integer", minimum=0,
                                        title="Deadline warning (days)",
                                        description="Alert on open erasure requests due within this many days.")},
    tags=["wasure", "backup", "erasure", w.mode()],
    doc_md=__doc__,
)
def wasure_backup_lifecycle():
    backup = w.step("backup", trigger_rule="all_success", doc_md="Today's backup (skipped if it exists).")
    chain(
        backup,
        w.step("expire_backups", doc_md="Delete backups older than defaults.backup_retention_days."),
        w.step("end_quarantines", doc_md="Release ledger subjects whose last backup is gone."),
        w.step("advance_erasures", doc_md="Open erasure requests past their grace: purge, verify, close, receipt."),
        w.step("reverify_erasures", doc_md="Residue scan for every erasure past its grace."),
        w.step("erasure_deadlines", options={"warn_days": "params.deadline_warn_days"}, trigger_rule="all_done",
               doc_md="Fails when an open erasure request is close to (or past) its due date."),
    )


wasure_backup_lifecycle()
