"""wasure nightly: backup -> retention -> pseudonymize -> anonymize -> statistics -> gates -> publish -> physical purge.

Each step is its own task (a failed step is retried alone; every step is idempotent, so re-running a
day does no double work). Steps whose job is not deployed yet are skipped visibly, and the steps
after them still run. Embedded or spark-submit execution: WASURE_AIRFLOW_MODE (see dags/_wasure.py).
"""
from __future__ import annotations

from airflow.sdk import Param, chain, dag

try:
    import _wasure as w          # the dags folder is on sys.path when Airflow parses it
except ImportError:              # imported as the `dags` package (tests, tools)
    from dags import _wasure as w


@dag(
    dag_id="wasure_nightly",
    schedule="0 2 * * *",
    start_date=w.START,
    catchup=False,
    max_active_runs=1,
    default_args=w.default_args(),
    params={**w.common_params(),
            "force": Param(False, type="boolean", title="Force retention",
                           description="Allow retention to remove more than defaults.max_delete_share of a table.")},
    tags=["wasure", "retention", w.mode()],
    doc_md=__doc__,
)
def wasure_nightly():
    chain(
        w.step("backup", trigger_rule="all_success", doc_md="Today's backup of every policy table (skipped if it exists)."),
        w.step("retention", options={"force": "params.force"},
               doc_md="Retention as of the run date; the physical purge is the last task."),
        w.step("pseudonymize", doc_md="仮名加工情報 per purpose; unchanged sources are skipped."),
        w.step("anonymize", doc_md="匿名加工情報 releases (jobs/anonymize.py)."),
        w.step("statistics", doc_md="k-anonymous statistics (jobs/statistics/)."),
        w.step("gates", doc_md="Great Expectations gate over raw tables and every dataset to publish."),
        w.step("publish", doc_md="Release manifest state/published/<date>.json of the gated datasets."),
        w.step("physical_purge", doc_md="REORG ... APPLY (PURGE) + VACUUM of deletes past their grace."),
    )


wasure_nightly()
