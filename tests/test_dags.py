"""The Airflow DAGs (dags/) on real Airflow 3 with an SQLite metadata DB in a temporary AIRFLOW_HOME.

- the DagBag imports with no error, in both modes, without starting Spark or touching a DB;
- the closure DAG's params are a JSON-schema form; bad params fail before any data is touched;
- cluster mode renders the expected spark-submit command (provider's SparkSubmitHook, connection
  from AIRFLOW_CONN_SPARK_DEFAULT, confs from the wasure_spark_conf Variable), without a cluster;
- each DAG runs end to end with dag.test() on a small generated lake (nightly twice: the second run
  changes no table version), leaving backups, pseudonymized tables, a release manifest, receipts.
"""
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.e2e import E2E_TABLES, keys_file, write_e2e_policy, write_small_lake

# The repository root (this file may live in tests/ or tests/pending/).
REPO = next(p for p in Path(__file__).resolve().parents if (p / "jobs").is_dir() and (p / "dags").is_dir())
DAGS = REPO / "dags"
POLICY = str(REPO / "policies" / "example.yaml")

# Airflow reads its configuration when first imported: point it at a private home first.
_HOME = tempfile.mkdtemp(prefix="wasure-airflow-")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["WASURE_AIRFLOW_RETRIES"] = "0"          # a failing task fails the test run at once
os.environ.pop("WASURE_AIRFLOW_MODE", None)

# Several whole DAG runs share one small lake: allow more than the suite's per-test default when the
# machine is busy (a hang still fails).
pytestmark = pytest.mark.timeout(3600)

DAG_IDS = {"wasure_nightly", "wasure_account_closure", "wasure_backup_lifecycle", "wasure_access_request"}
LIFECYCLE_TASKS = ["backup", "expire_backups", "end_quarantines", "advance_erasures", "reverify_erasures", "erasure_deadlines"]
NIGHTLY_TASKS = ["backup", "retention", "pseudonymize", "anonymize", "statistics", "gates", "publish", "physical_purge"]
RUN_DAY = dt.date(2026, 11, 22)
LOGICAL = dt.datetime(2026, 11, 22, 2, 0, tzinfo=dt.timezone.utc)


def _airflow_env(**extra) -> dict:
    env = dict(os.environ)
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


# ------------------------------------------------------------------ parsing (no Spark, no DB)

PARSE_SCRIPT = r"""
import json, os, sys
from airflow.dag_processing.dagbag import DagBag
out = {}
for mode in ("embedded", "cluster"):
    os.environ["WASURE_AIRFLOW_MODE"] = mode
    bag = DagBag(dag_folder=sys.argv[1])
    out[mode] = {"errors": {k: str(v) for k, v in bag.import_errors.items()},
                 "dags": {d.dag_id: {t.task_id: type(t).__name__ for t in d.tasks} for d in bag.dags.values()}}
# No SparkContext can exist without pyspark: parsing must not even import it (nor py4j).
out["spark_modules"] = sorted(m for m in sys.modules if m.split(".")[0] in ("pyspark", "py4j", "delta"))
print("RESULT" + json.dumps(out))
"""


def test_dagbag_imports_without_spark_or_db(tmp_path):
    """Both modes parse with no import error; parsing imports no pyspark (so no SparkContext can
    start) and needs no metadata DB (the DB URL points into a directory that does not exist)."""
    env = _airflow_env(AIRFLOW_HOME=str(tmp_path / "home"),
                       AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{tmp_path}/missing/dir/airflow.db")
    proc = subprocess.run([sys.executable, "-c", PARSE_SCRIPT, str(DAGS)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert not (tmp_path / "missing").exists()
    for mode in ("embedded", "cluster"):
        assert result[mode]["errors"] == {}, result[mode]["errors"]
        assert set(result[mode]["dags"]) == DAG_IDS
        assert list(result[mode]["dags"]["wasure_nightly"]) == NIGHTLY_TASKS
    assert result["spark_modules"] == [], "parsing the DAGs imported Spark"
    cluster = result["cluster"]["dags"]
    assert cluster["wasure_nightly"]["retention"] == "WasureSparkSubmitOperator"
    assert cluster["wasure_account_closure"]["validate_request"] == "_PythonDecoratedOperator"   # no Spark needed
    assert cluster["wasure_account_closure"]["erase"] == "WasureSparkSubmitOperator"
    assert cluster["wasure_access_request"]["export"] == "WasureSparkSubmitOperator"
    assert result["embedded"]["dags"]["wasure_nightly"]["retention"] == "_PythonDecoratedOperator"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    os.environ.pop("WASURE_AIRFLOW_MODE", None)
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag


def test_closure_params_are_a_typed_form(dagbag):
    dag = dagbag.dags["wasure_account_closure"]
    assert dag.timetable.can_be_scheduled is False         # manual / API trigger only
    schema = {name: param.schema for name, param in dag.params.items()}
    assert schema["subject_ids"]["type"] == "array" and schema["subject_ids"]["items"]["type"] == "string"
    assert schema["subject_ids"]["minItems"] == 1
    assert schema["source"]["enum"] == ["account_closure", "ccpa", "appi", "gdpr"]
    assert schema["dry_run"]["type"] == "boolean"
    assert schema["request_id"]["type"] == ["null", "string"]      # optional: Airflow 3.3 requires non-null types
    assert [t.task_id for t in dag.tasks] == ["validate_request", "erase", "receipt"]
    nightly = dagbag.dags["wasure_nightly"]
    assert nightly.timetable.can_be_scheduled and nightly.max_active_runs == 1


# ------------------------------------------------------------------ cluster mode: the spark-submit command

def test_cluster_mode_renders_spark_submit_command(monkeypatch):
    import pendulum
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.execution_time.context import VariableAccessor

    monkeypatch.setenv("WASURE_AIRFLOW_MODE", "cluster")
    monkeypatch.setenv("WASURE_POLICY", "/srv/wasure/policy.yaml")
    monkeypatch.setenv("WASURE_LAKE", "/data/lake")
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", "spark://spark-master:7077")
    monkeypatch.setenv("AIRFLOW_VAR_WASURE_SPARK_CONF", json.dumps({"spark.executor.memory": "2g", "spark.executor.cores": 2}))
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    dag = bag.dags["wasure_nightly"]
    op = dag.get_task("retention")
    logical = pendulum.datetime(2026, 11, 22, 2, tz="UTC")

    class _Run:                       # a manual run (Airflow 3): no logical date; `logical_date` is not in its context
        logical_date = None
        run_after = logical

    context = {"params": dag.params.validate(), "dag_run": _Run(),
               "var": {"value": VariableAccessor(deserialize_json=False), "json": VariableAccessor(deserialize_json=True)}}
    op.render_template_fields(context, jinja_env=dag.get_template_env())
    command = op._get_hook()._build_spark_submit_command(op.application)
    assert command[0] == "spark-submit"
    assert command[command.index("--master") + 1] == "spark://spark-master:7077"
    assert command[command.index("--packages") + 1] == "io.delta:delta-spark_4.2_2.13:4.4.0"
    confs = {command[i + 1] for i, part in enumerate(command) if part == "--conf"}
    assert {"spark.executor.memory=2g", "spark.executor.cores=2", "spark.app.name=wasure-retention"} <= confs
    assert command[command.index("--name") + 1] == "wasure-retention"
    app = command.index(str(REPO / "jobs" / "pipeline" / "submit.py"))
    assert command[app + 1:] == ["retention", "--policy", "/srv/wasure/policy.yaml", "--lake", "/data/lake",
                                 "--date", "2026-11-22", "--options", '{"force": false}']
    # The application understands exactly these arguments.
    from jobs.pipeline import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0

    # The closure's subject ids go to the driver's environment, never to the command line.
    erase = bag.dags["wasure_account_closure"].get_task("erase")
    assert erase.env_vars == {"WASURE_ERASE_SUBJECTS": "{{ params.subject_ids | join(' ') }}"}
    assert not any("subject_ids" in str(arg) for arg in erase.application_args)
    # Rendered, the driver gets the ids; the rendered fields Airflow stores and the task log do not.
    from airflow.sdk._shared.secrets_masker import redact
    from airflow.sdk.execution_time.task_runner import _serialize_rendered_fields

    closure = bag.dags["wasure_account_closure"]
    ids = ["A000000123", "bob.closure@example.com"]
    class _TaskInstance:              # the validate_request task's XCom, as the erase task reads it
        @staticmethod
        def xcom_pull(task_ids):
            return {"request_id": "closure-2026-11-22"}

    closure_context = {**context, "ti": _TaskInstance(), "params": {**closure.params.dump(), "subject_ids": ids}}
    erase.render_template_fields(closure_context, jinja_env=closure.get_template_env())
    assert erase.env_vars == {"WASURE_ERASE_SUBJECTS": "A000000123 bob.closure@example.com"}
    stored = json.dumps(_serialize_rendered_fields(erase))
    assert "WASURE_ERASE_SUBJECTS" in stored and not any(i in stored for i in ids)
    logged = redact(f"Spark-Submit cmd: --conf spark.yarn.appMasterEnv.WASURE_ERASE_SUBJECTS={ids[0]} {ids[1]}")
    assert not any(i in logged for i in ids)
    assert bag.dags["wasure_backup_lifecycle"].get_task("erasure_deadlines").trigger_rule == "all_done"


def test_a_job_that_is_not_deployed_is_skipped_visibly(monkeypatch):
    """A step whose job module is missing never reports success: embedded mode raises
    AirflowSkipException naming the module, cluster mode builds a task that does the same, and the
    spark-submit launcher exits 3."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import AirflowSkipException

    import jobs.pipeline as pipeline
    from dags import _wasure

    monkeypatch.setitem(pipeline.STEP_MODULES, "anonymize", "anonymize_not_deployed")
    with pytest.raises(AirflowSkipException, match=r"jobs\.anonymize_not_deployed is not part of this deployment"):
        _wasure.run_embedded("anonymize", {"policy": POLICY, "lake": "/nonexistent", "run_date": "2026-11-22", "options": "{}"})
    assert pipeline.main(["anonymize", "--policy", POLICY, "--lake", "/nonexistent"]) == pipeline.EXIT_UNAVAILABLE
    monkeypatch.setenv("WASURE_AIRFLOW_MODE", "cluster")
    bag = DagBag(dag_folder=str(DAGS))
    skipped = bag.dags["wasure_nightly"].get_task("anonymize")
    assert type(skipped).__name__ == "_PythonDecoratedOperator" and "not part of this deployment" in skipped.doc_md
    with pytest.raises(AirflowSkipException, match="anonymize_not_deployed"):
        skipped.python_callable()
    downstream = bag.dags["wasure_nightly"].get_task("statistics")
    assert downstream.trigger_rule == "none_failed"              # the steps after a skip still run


def test_launcher_rejects_bad_closure_input_before_spark(monkeypatch, tmp_path):
    """spark-submit side of a bad trigger: exit 2, nothing started or written."""
    from jobs.pipeline import EXIT_BAD_INPUT, main

    monkeypatch.setenv("WASURE_ERASE_SUBJECTS", "bob@example.com A000000001")
    code = main(["closure", "--policy", POLICY, "--lake", str(tmp_path / "lake"),
                 "--options", json.dumps({"request_id": "r-1", "source": "fax", "dry_run": False})])
    assert code == EXIT_BAD_INPUT
    assert not (tmp_path / "lake").exists()


# ------------------------------------------------------------------ running the DAGs on a small lake

@pytest.fixture(scope="module")
def airflow_db():
    from airflow.utils import db

    db.initdb()
    yield


@pytest.fixture(scope="module")
def e2e_policy(tmp_path_factory):
    return write_e2e_policy(tmp_path_factory.mktemp("dag-policy"))


@pytest.fixture(scope="module")
def keys_env(e2e_policy, tmp_path_factory):
    with keys_file(e2e_policy, tmp_path_factory.mktemp("dag-keys") / "keys.json") as path:
        yield path


@pytest.fixture(scope="module")
def small_lake(spark, e2e_policy, keys_env, tmp_path_factory):
    """60 subjects, 4 events each, the three tables of the e2e policy (generator's table builders)."""
    from jobs.lake.layout import Lake

    return write_small_lake(spark, e2e_policy, Lake.at(tmp_path_factory.mktemp("dag-lake") / "lake"))


def _versions(spark, policy, lake) -> dict[str, int]:
    from jobs.lake.layout import table_version

    return {n: table_version(spark, lake.table_path(t)) for n, t in policy.tables.items()}


def _run(dag, conf: dict, logical_date=LOGICAL) -> tuple[dict, dict, str]:
    """dag.test(); returns ({task: state}, {task: XCom return value}, run state)."""
    dr = dag.test(logical_date=logical_date, run_conf=conf)
    states, values = {}, {}
    for ti in dr.get_task_instances():
        states[ti.task_id] = str(ti.state.value if hasattr(ti.state, "value") else ti.state)
        values[ti.task_id] = ti.xcom_pull(task_ids=ti.task_id) if states[ti.task_id] == "success" else None
    return states, values, str(dr.state.value if hasattr(dr.state, "value") else dr.state)


@pytest.fixture(scope="module")
def nightly(dagbag, airflow_db, spark, e2e_policy, small_lake):
    dag = dagbag.dags["wasure_nightly"]
    policy = e2e_policy
    conf = {"policy": policy.source, "lake": str(small_lake.root)}
    before = _versions(spark, policy, small_lake)
    first = _run(dag, conf)
    after_first = _versions(spark, policy, small_lake)
    second = _run(dag, conf)
    after_second = _versions(spark, policy, small_lake)
    return {"first": first, "second": second, "before": before, "after_first": after_first, "after_second": after_second}


def test_nightly_runs_end_to_end(nightly, small_lake):
    states, values, run_state = nightly["first"]
    assert states == {name: "success" for name in NIGHTLY_TASKS}
    assert run_state == "success"
    assert values["backup"]["status"] == "created" and Path(values["backup"]["path"], "_manifest.json").is_file()
    assert values["retention"]["as_of"] == RUN_DAY.isoformat() and values["retention"]["removed"] > 0
    assert values["pseudonymize"]["published"] == 3
    assert Path(small_lake.pseudonymized("service", "devices"), "_delta_log").is_dir()
    assert values["anonymize"]["releases"] == [] and "no releases" in values["anonymize"]["note"]
    assert values["statistics"]["statistics"] == [] and "no statistics" in values["statistics"]["note"]
    assert values["gates"]["success"] and values["gates"]["checks"] > 0 and Path(values["gates"]["docs_index"]).is_file()
    manifest = json.loads(Path(values["publish"]["manifest"]).read_text())
    assert manifest["date"] == RUN_DAY.isoformat() and manifest["datasets"]
    assert values["physical_purge"]["purged"] == []            # grace of 7 days not over yet
    assert any(nightly["after_first"][n] > v for n, v in nightly["before"].items())
    # XComs carry counts and paths, never a subject id or an identifier.
    assert "A0000" not in json.dumps(values) and "@" not in json.dumps(values)


def test_nightly_rerun_of_the_same_day_does_no_double_work(nightly):
    states, values, run_state = nightly["second"]
    assert run_state == "success"
    assert nightly["after_second"] == nightly["after_first"]      # no table version moved
    assert values["backup"]["status"] == "exists"
    assert values["retention"]["removed"] == 0
    assert values["pseudonymize"]["published"] == 0 and values["pseudonymize"]["unchanged"] > 0
    assert values["publish"]["status"] == "unchanged"


@pytest.fixture(scope="module")
def closure_ids(spark, e2e_policy, small_lake, nightly):
    policy = e2e_policy
    from pyspark.sql import functions as F

    from jobs.lake.layout import read_current

    accounts = read_current(spark, small_lake.table_path(policy.tables["accounts"]))
    return sorted(r.account_id for r in accounts.where(F.col("account_id") != "A000000007")
                  .orderBy("account_id").limit(2).collect())


def test_closure_with_bad_params_fails_before_touching_data(dagbag, airflow_db, spark, e2e_policy, small_lake, nightly):
    policy = e2e_policy
    from airflow.sdk.exceptions import ParamValidationError

    dag = dagbag.dags["wasure_account_closure"]
    before = _versions(spark, policy, small_lake)
    states, _values, run_state = _run(dag, {"subject_ids": ["bob@example.com", "A12"], "request_id": "closure-bad",
                                            "source": "account_closure", "dry_run": False,
                                            "policy": policy.source, "lake": str(small_lake.root)},
                                      logical_date=LOGICAL + dt.timedelta(hours=1))
    assert states["validate_request"] == "failed"
    assert states["erase"] == "upstream_failed" and states["receipt"] == "upstream_failed"
    assert run_state == "failed"
    assert _versions(spark, policy, small_lake) == before
    assert not (small_lake.root / "receipts" / "closure-bad.json").exists()
    assert not Path(small_lake.state("erasure_state")).exists()
    # Values the form's JSON schema rejects never create a run.
    with pytest.raises(ParamValidationError):
        dag.test(logical_date=LOGICAL + dt.timedelta(hours=2),
                 run_conf={"subject_ids": "A000000001", "source": "fax", "lake": str(small_lake.root)})


@pytest.fixture(scope="module")
def closure(dagbag, airflow_db, spark, e2e_policy, small_lake, closure_ids):
    dag = dagbag.dags["wasure_account_closure"]
    policy = e2e_policy
    before = _versions(spark, policy, small_lake)
    result = _run(dag, {"subject_ids": closure_ids, "request_id": "closure-test-1", "source": "account_closure",
                        "dry_run": False, "policy": policy.source, "lake": str(small_lake.root)},
                  logical_date=LOGICAL + dt.timedelta(hours=3))
    return {"result": result, "before": before, "after": _versions(spark, policy, small_lake)}


def test_closure_erases_and_returns_the_receipt_path(closure, spark, e2e_policy, small_lake, closure_ids):
    from pyspark.sql import functions as F

    from jobs.lake.layout import read_current

    states, values, run_state = closure["result"]
    assert states == {"validate_request": "success", "erase": "success", "receipt": "success"}, states
    assert run_state == "success"
    assert values["validate_request"]["subjects"] == 2 and values["validate_request"]["request_id"] == "closure-test-1"
    receipt_path = Path(values["receipt"]["receipt"])
    assert receipt_path == small_lake.root / "receipts" / "closure-test-1.json" and receipt_path.is_file()
    receipt = json.loads(receipt_path.read_text())
    assert receipt["state"] == "backups_quarantined"           # waits for the grace period
    assert values["receipt"]["rows_removed"] == sum(receipt["rows_removed"].values()) > 0
    for name in E2E_TABLES:
        df = read_current(spark, small_lake.table_path(e2e_policy.tables[name]))
        assert df.where(F.col("account_id").isin(closure_ids)).count() == 0, name
    assert closure["after"]["accounts"] > closure["before"]["accounts"]
    text = receipt_path.read_text() + json.dumps(values)
    assert not any(i in text for i in closure_ids)             # receipts and XComs hold no subject id


def test_deadline_check_lists_requests_close_to_their_due_date(closure, e2e_policy, small_lake):
    from jobs.pipeline import DeadlineAlert, erasure_deadlines

    POLICY = e2e_policy.source
    quiet = erasure_deadlines(POLICY, str(small_lake.root), RUN_DAY, warn_days=10)
    assert quiet["open"] == 1 and quiet["approaching"] == [] and quiet["deadline_days"] == 45
    with pytest.raises(DeadlineAlert, match=r"closure-test-1 \(account_closure, state backups_quarantined\): due 2027-01-06, 5 day"):
        erasure_deadlines(POLICY, str(small_lake.root), RUN_DAY + dt.timedelta(days=40))
    with pytest.raises(DeadlineAlert, match="OVERDUE by 3 day"):
        erasure_deadlines(POLICY, str(small_lake.root), RUN_DAY + dt.timedelta(days=48))


def test_backup_lifecycle_finishes_erasures_past_their_grace(dagbag, airflow_db, closure, e2e_policy, small_lake):
    dag = dagbag.dags["wasure_backup_lifecycle"]
    day = RUN_DAY + dt.timedelta(days=8)                      # grace (7 days) is over
    states, values, run_state = _run(dag, {"policy": e2e_policy.source, "lake": str(small_lake.root)},
                                     logical_date=dt.datetime.combine(day, dt.time(4), tzinfo=dt.timezone.utc))
    assert states == {name: "success" for name in LIFECYCLE_TASKS}, states
    assert run_state == "success"
    assert values["backup"]["status"] == "created" and values["backup"]["date"] == day.isoformat()
    assert values["expire_backups"]["kept"] == [RUN_DAY.isoformat(), day.isoformat()]
    assert values["advance_erasures"]["closed_now"] == ["closure-test-1"]
    assert values["reverify_erasures"]["requests"] == ["closure-test-1"] and values["reverify_erasures"]["findings"] == 0
    assert values["erasure_deadlines"]["approaching"] == [] and values["erasure_deadlines"]["open"] == 0
    receipt = json.loads((small_lake.root / "receipts" / "closure-test-1.json").read_text())
    assert receipt["state"] == "closed" and receipt["deadline_met"] is True


def test_access_request_exports_outside_the_lake(dagbag, airflow_db, spark, e2e_policy, small_lake, closure_ids,
                                                 tmp_path, monkeypatch):
    """The access DAG: one subject's rows of every table, written to $WASURE_EXPORTS; XCom and the
    receipt hold counts only; a second id or a bad format never creates a run."""
    from airflow.sdk.exceptions import ParamValidationError
    from pyspark.sql import functions as F

    from jobs.lake.layout import read_current

    dag = dagbag.dags["wasure_access_request"]
    assert dag.timetable.can_be_scheduled is False
    schema = {name: param.schema for name, param in dag.params.items()}
    assert schema["subject_ids"]["maxItems"] == 1 and schema["formats"]["items"]["enum"] == ["json", "csv", "html"]
    accounts = read_current(spark, small_lake.table_path(e2e_policy.tables["accounts"]))
    subject = (accounts.where(~F.col("account_id").isin(closure_ids + ["A000000007"])).orderBy("account_id").first().account_id)
    monkeypatch.setenv("WASURE_EXPORTS", str(tmp_path / "exports"))
    states, values, run_state = _run(dag, {"subject_ids": [subject], "request_id": "access-dag-1",
                                           "policy": e2e_policy.source, "lake": str(small_lake.root)},
                                     logical_date=LOGICAL + dt.timedelta(hours=5))
    assert states == {"validate_request": "success", "export": "success", "receipt": "success"}, states
    assert run_state == "success"
    export = json.loads((tmp_path / "exports" / "access-dag-1" / "export.json").read_text())
    for name in E2E_TABLES:
        raw = read_current(spark, small_lake.table_path(e2e_policy.tables[name])).where(F.col("account_id") == subject).count()
        assert len(export["tables"][name]["rows"]) == raw, name
    assert values["receipt"]["rows_by_table"]["accounts"] == 1
    assert subject not in json.dumps(values) and subject not in Path(values["receipt"]["receipt"]).read_text()
    with pytest.raises(ParamValidationError):
        dag.test(logical_date=LOGICAL + dt.timedelta(hours=6),
                 run_conf={"subject_ids": [subject, subject], "request_id": "access-dag-2", "lake": str(small_lake.root)})
