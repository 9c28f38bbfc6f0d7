"""wasure account closure / erasure on request (manual or API trigger; no schedule).

Trigger from the UI form or `airflow dags trigger wasure_account_closure --conf '{"subject_ids":
["A000000042"], "request_id": "closure-2026-11-22", "source": "account_closure", "dry_run": false}'`.

1. validate_request checks every param (ids against policy.subject.id_pattern, request id, source,
   dry_run), the lake and the keys, before any data is touched; bad input fails here.
2. erase runs the erasure state machine (jobs.erasure) as far as the grace period allows; the
   backup-lifecycle DAG finishes it (purge, verify, close) once the grace has passed.
3. receipt returns the receipt path (<lake>/receipts/<request id>.json) and its headline in XCom.
Subject ids are never written to XCom or to the receipts (keyed hashes only).
"""
from __future__ import annotations

from airflow.sdk import Param, dag

try:
    import _wasure as w
except ImportError:
    from dags import _wasure as w

SOURCES = ["account_closure", "ccpa", "appi", "gdpr"]


def _validate(context) -> dict:
    from jobs.pipeline import validate_closure

    p = context["params"]
    return validate_closure(p["policy"] or None, p["lake"] or None, p["subject_ids"], p["request_id"], p["source"], p["dry_run"])


def _receipt(context) -> dict:
    from jobs.pipeline import receipt_summary

    checked = context["ti"].xcom_pull(task_ids="validate_request")
    if checked["dry_run"]:
        return {"receipt": None, "dry_run": True, "request_id": checked["request_id"],
                "note": "dry run: nothing was changed; the plan is in the erase task's log / result"}
    return {"request_id": checked["request_id"], **receipt_summary(checked["lake"], checked["request_id"])}


@dag(
    dag_id="wasure_account_closure",
    schedule=None,
    start_date=w.START,
    catchup=False,
    max_active_runs=1,
    default_args=w.default_args(),
    params={
        "subject_ids": Param([], type="array", items={"type": "string", "minLength": 1}, minItems=1, title="Subject ids",
                             description="Subject (account) ids to erase, one per line; checked against the policy's subject.id_pattern."),
        # null allowed: the trigger form would otherwise refuse to submit it empty (see w.common_params)
        "request_id": Param("", type=["null", "string"], title="Request id", pattern=r"^([A-Za-z0-9][A-Za-z0-9._-]{0,79})?$",
                            description="Names the receipt (receipts/<request id>.json). Empty: derived from the ids (keyed)."),
        "source": Param("account_closure", type="string", enum=SOURCES, title="Source",
                        description="account_closure and appi keep 仮名加工情報; ccpa and gdpr erase it too."),
        "dry_run": Param(False, type="boolean", title="Dry run", description="Change nothing; report what would be erased and held."),
        **w.common_params(),
    },
    tags=["wasure", "erasure", w.mode()],
    doc_md=__doc__,
)
def wasure_account_closure():
    validate = w.light_task(_validate, task_id="validate_request",
                            doc_md="Every param checked before any data is touched (no Spark).")
    erase = w.step("closure", task_id="erase", trigger_rule="all_success", subject_ids_param="subject_ids",
                   options={"request_id": "ti.xcom_pull(task_ids='validate_request')['request_id']",
                            "source": "params.source", "dry_run": "params.dry_run"},
                   doc_md="jobs.erasure state machine for this request (and every open one).")
    receipt = w.light_task(_receipt, task_id="receipt", doc_md="Receipt path and headline (XCom).")
    validate >> erase >> receipt


wasure_account_closure()
