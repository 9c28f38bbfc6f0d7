"""wasure access / portability request (manual or API trigger; no schedule).

Trigger from the UI form or `airflow dags trigger wasure_access_request --conf '{"subject_ids":
["A000000042"], "request_id": "access-2026-12-02", "formats": ["json", "csv", "html"]}'`.

1. validate_request checks every param (one id against policy.subject.id_pattern, request id,
   formats, an export folder outside the lake: $WASURE_EXPORTS) before any data is touched.
2. export runs jobs.access: every raw row of the subject, consents, restrictions, provision records,
   the legal holds that concern them; 仮名加工情報, releases and statistics left out (with why).
3. receipt returns the receipt path (<lake>/receipts/access-<request id>.json): counts only.
The subject id never reaches XCom, the receipt or the task logs (masked like the closure's).
"""
from __future__ import annotations

from airflow.sdk import Param, dag

try:
    import _wasure as w
except ImportError:
    from dags import _wasure as w


def _validate(context) -> dict:
    from jobs.pipeline import validate_access

    p = context["params"]
    return validate_access(p["policy"] or None, p["lake"] or None, p["subject_ids"], p["request_id"], p["formats"])


def _receipt(context) -> dict:
    import json

    from jobs.lake.storage import files_for

    checked = context["ti"].xcom_pull(task_ids="validate_request")
    receipt = json.loads(files_for(checked["receipt"]).read_text(checked["receipt"]))
    return {"request_id": checked["request_id"], "receipt": checked["receipt"], "deadline": receipt["deadline"],
            "deadline_met": receipt["deadline_met"], "rows_by_table": receipt["rows_by_table"]}


@dag(
    dag_id="wasure_access_request",
    schedule=None,
    start_date=w.START,
    catchup=False,
    max_active_runs=1,
    default_args=w.default_args(),
    params={
        "subject_ids": Param([], type="array", items={"type": "string", "minLength": 1}, minItems=1, maxItems=1,
                             title="Subject id", description="The one subject (account) id whose data is exported; "
                             "checked against the policy's subject.id_pattern."),
        "request_id": Param("", type="string", title="Request id", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$",
                            description="Names the export folder ($WASURE_EXPORTS/<request id>/) and the receipt."),
        "formats": Param(["json", "csv", "html"], type="array", items={"type": "string", "enum": ["json", "csv", "html"]},
                         title="Formats", description="json (with its schema), csv (one file per table), html (readable page)."),
        **w.common_params(),
    },
    tags=["wasure", "access", w.mode()],
    doc_md=__doc__,
)
def wasure_access_request():
    validate = w.light_task(_validate, task_id="validate_request",
                            doc_md="Every param checked before any data is touched (no Spark).")
    export = w.step("access", task_id="export", trigger_rule="all_success", subject_ids_param="subject_ids",
                    options={"request_id": "params.request_id", "formats": "params.formats"},
                    doc_md="jobs.access: the export, outside the lake; counts only in the lake.")
    receipt = w.light_task(_receipt, task_id="receipt", doc_md="Receipt path and counts (XCom).")
    validate >> export >> receipt


wasure_access_request()
