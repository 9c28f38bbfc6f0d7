"""Task builders shared by the wasure DAGs (no business logic: every step lives in jobs/pipeline/).

Two execution modes, chosen at parse time by ``WASURE_AIRFLOW_MODE`` (no DB access):

- ``embedded`` (default): a step is a ``@task`` that calls ``jobs.pipeline.run_step`` in the worker
  process (Spark ``local[*]`` via ``jobs.runtime.spark``);
- ``cluster``: a step is a ``SparkSubmitOperator`` that submits ``jobs/pipeline/submit.py STEP ...`` (the same
  step functions, as a spark-submit application) to the cluster of the Spark connection
  ``$WASURE_SPARK_CONN_ID`` (default ``spark_default``; the Variable ``wasure_spark_conn_id`` overrides it
  at run time), with ``--packages io.delta:delta-spark_4.2_2.13:4.4.0`` and extra Spark confs from
  the JSON Variable ``wasure_spark_conf``.

In both modes a step gets the same arguments, rendered from the same Jinja templates (policy, lake,
run date, a JSON object of step options), so the two modes cannot drift apart.
"""
from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

import pendulum

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Param, TriggerRule, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

MODES = ("embedded", "cluster")
DELTA_PACKAGE = "io.delta:delta-spark_4.2_2.13:4.4.0"     # = jobs.runtime.spark.DELTA_PACKAGE (Maven Central)
START = pendulum.datetime(2026, 1, 1, tz="UTC")

# The run's business date: the `as_of` param when given, else the run's logical date (manual runs
# without one: the time it was triggered for), as YYYY-MM-DD in UTC. `logical_date` itself is
# undefined in a manual run's context (Airflow 3), so it is read from dag_run.
RUN_DATE = ("{{ params.as_of if params.as_of is defined and params.as_of "
            "else (dag_run.logical_date or dag_run.run_after).strftime('%Y-%m-%d') }}")
# An empty form field may arrive as null: render it as "" (the job's default), never as "None".
POLICY = "{{ params.policy or '' }}"
LAKE = "{{ params.lake or '' }}"


def mode() -> str:
    value = os.environ.get("WASURE_AIRFLOW_MODE", "embedded").strip().lower() or "embedded"
    if value not in MODES:
        raise ValueError(f"WASURE_AIRFLOW_MODE must be one of {', '.join(MODES)}, got {value!r}")
    return value


def default_args() -> dict:
    """Retries for transient failures (Spark executor loss, a Delta write conflict with another run).
    Bad input and failed checks are raised as AirflowFailException: never retried."""
    return {"owner": "wasure", "retries": int(os.environ.get("WASURE_AIRFLOW_RETRIES", "2")),
            "retry_delay": timedelta(minutes=int(os.environ.get("WASURE_AIRFLOW_RETRY_MINUTES", "10")))}


def common_params(as_of: bool = True) -> dict[str, Param]:
    """policy / lake (defaults: $WASURE_POLICY / $WASURE_LAKE at parse time) and the run date.

    All three may be left empty, so they admit null: Airflow's trigger form treats a param whose
    type excludes "null" as required and will not submit it empty."""
    params = {
        "policy": Param(os.environ.get("WASURE_POLICY", ""), type=["null", "string"], title="Policy file",
                        description="Policy YAML on the workers. Empty: $WASURE_POLICY of the worker, else policies/example.yaml."),
        "lake": Param(os.environ.get("WASURE_LAKE", ""), type=["null", "string"], title="Lake root",
                      description="Lake root: a directory or a URI (hdfs://host:port/path, s3a://bucket/path). Empty: $WASURE_LAKE of the worker."),
    }
    if as_of:
        params["as_of"] = Param("", type=["null", "string"], title="Business date", pattern=r"^(|\d{4}-\d{2}-\d{2})$",
                                description="YYYY-MM-DD; empty: the date of the run (UTC).")
    return params


def options_template(options: dict[str, str] | None) -> str:
    """A JSON object template: {"force": {{ params.force | tojson }}, ...} from name -> Jinja expression."""
    if not options:
        return "{}"
    return "{" + ", ".join(f"{json.dumps(name)}: {{{{ ({expr}) | tojson }}}}" for name, expr in options.items()) + "}"


# ------------------------------------------------------------------ embedded mode

def run_embedded(step: str, rendered: dict[str, str], extra: dict[str, Any] | None = None) -> dict:
    """Run one pipeline step in this process; map wasure errors onto Airflow outcomes."""
    from jobs import pipeline
    from jobs.runtime.console import CheckFailed, InputError

    options = json.loads(rendered.get("options") or "{}")
    options.update(extra or {})
    try:
        return pipeline.run_step(step, rendered.get("policy") or None, rendered.get("lake") or None,
                                 rendered.get("run_date") or None, **options)
    except pipeline.StepUnavailable as exc:
        raise AirflowSkipException(str(exc)) from None
    except InputError as exc:                 # includes PolicyError (a ValueError) via the next clause
        raise AirflowFailException(f"bad input, nothing was written: {exc}") from None
    except CheckFailed as exc:
        raise AirflowFailException(f"check failed: {exc}") from None
    except ValueError as exc:
        from jobs.policy import PolicyError

        if isinstance(exc, PolicyError):
            raise AirflowFailException(f"invalid policy, nothing was written: {exc}") from None
        raise


def _embedded_step(step: str, task_id: str, templates: dict[str, str], trigger_rule: str, doc_md: str | None,
                   subject_ids_param: str | None):
    @task(task_id=task_id, trigger_rule=trigger_rule, templates_dict=templates, doc_md=doc_md)
    def wasure_step(**context):
        extra = {}
        if subject_ids_param:        # ids stay out of templates/XCom: read from the run's params
            extra["subject_ids"] = list(context["params"][subject_ids_param] or [])
        return run_embedded(step, context["templates_dict"], extra)

    return wasure_step()


# ------------------------------------------------------------------ cluster mode

class WasureSparkSubmitOperator(SparkSubmitOperator):
    """SparkSubmitOperator whose extra confs come from a JSON Variable rendered at run time
    (``conf_json``) and whose connection id may be overridden by a Variable (``spark_conn_id``)."""

    template_fields = (*SparkSubmitOperator.template_fields, "conf_json", "spark_conn_id")

    def __init__(self, *, conf_json: str = "{}", spark_conn_id: str = "", secret_params: tuple[str, ...] = (), **kwargs):
        super().__init__(**kwargs)
        self.conf_json = conf_json
        self.spark_conn_id = spark_conn_id
        self.secret_params = tuple(secret_params)

    def render_template_fields(self, context, jinja_env=None) -> None:
        # Values of these params (subject ids) are rendered into env_vars for the driver. Registered
        # with Airflow's secrets masker first, they show as *** in task logs (the hook logs the
        # spark-submit command; YARN turns env vars into --conf) and in the stored rendered fields.
        from airflow.sdk.log import mask_secret

        for name in self.secret_params:
            for value in context["params"].get(name) or []:
                mask_secret(str(value))
        super().render_template_fields(context, jinja_env)

    def resolved_conf(self) -> dict:
        try:
            extra = json.loads(self.conf_json) if isinstance(self.conf_json, str) and self.conf_json.strip() else (self.conf_json or {})
        except ValueError:
            raise AirflowFailException("the Variable wasure_spark_conf must be a JSON object of Spark confs") from None
        if not isinstance(extra, dict):
            raise AirflowFailException("the Variable wasure_spark_conf must be a JSON object of Spark confs")
        return {**(self.conf or {}), **{str(k): str(v) for k, v in extra.items()}}

    def _get_hook(self):
        self.conf = self.resolved_conf()
        if self.spark_conn_id:
            self._conn_id = self.spark_conn_id
        return super()._get_hook()


def spark_application() -> str:
    """The spark-submit application: jobs/pipeline/submit.py of this checkout, or $WASURE_SPARK_APPLICATION
    (e.g. the same file on cluster storage)."""
    if os.environ.get("WASURE_SPARK_APPLICATION"):
        return os.environ["WASURE_SPARK_APPLICATION"]
    import importlib.util

    spec = importlib.util.find_spec("jobs.pipeline.submit")
    if spec is None or spec.origin is None:
        raise ImportError("jobs.pipeline.submit is not importable: install wasure (pip install -e .) or set WASURE_SPARK_APPLICATION")
    return spec.origin


def _cluster_step(step: str, task_id: str, templates: dict[str, str], trigger_rule: str, doc_md: str | None,
                  subject_ids_param: str | None):
    env_vars = {}
    if subject_ids_param:
        # Ids reach the driver in its environment, not on the command line (kept out of `ps`); YARN
        # cluster deploy mode turns env vars into confs, so the ids are also masked (secret_params).
        env_vars["WASURE_ERASE_SUBJECTS"] = f"{{{{ params.{subject_ids_param} | join(' ') }}}}"
    return WasureSparkSubmitOperator(
        task_id=task_id,
        trigger_rule=trigger_rule,
        doc_md=doc_md,
        application=spark_application(),
        application_args=[step, "--policy", templates["policy"], "--lake", templates["lake"],
                          "--date", templates["run_date"], "--options", templates["options"]],
        conn_id=os.environ.get("WASURE_SPARK_CONN_ID", "spark_default"),
        spark_conn_id="{{ var.value.get('wasure_spark_conn_id', '') }}",
        packages=os.environ.get("WASURE_SPARK_PACKAGES", DELTA_PACKAGE),
        py_files=os.environ.get("WASURE_SPARK_PY_FILES") or None,
        conf={"spark.app.name": f"wasure-{step}"},
        conf_json="{{ var.value.get('wasure_spark_conf', '{}') }}",
        env_vars=env_vars or None,
        secret_params=(subject_ids_param,) if subject_ids_param else (),
        name=f"wasure-{step}",
    )


def _unavailable_step(step: str, task_id: str, trigger_rule: str):
    from jobs.pipeline import unavailable_reason

    reason = unavailable_reason(step)

    @task(task_id=task_id, trigger_rule=trigger_rule, doc_md=reason)
    def unavailable():
        raise AirflowSkipException(reason)

    return unavailable()


# ------------------------------------------------------------------ the one builder the DAG files use

def step(name: str, *, task_id: str | None = None, options: dict[str, str] | None = None,
         trigger_rule: str = TriggerRule.NONE_FAILED, doc_md: str | None = None, subject_ids_param: str | None = None):
    """A pipeline step as a task of the current DAG, in the configured mode.

    options: step keyword -> Jinja expression (e.g. {"force": "params.force"}).
    trigger_rule: NONE_FAILED by default, so a step after a visibly skipped one (job not deployed)
    still runs, while any failure upstream stops everything downstream.
    """
    from jobs.pipeline import step_available

    task_id = task_id or name
    templates = {"policy": POLICY, "lake": LAKE, "run_date": RUN_DATE, "options": options_template(options)}
    if mode() == "cluster":
        if not step_available(name):
            return _unavailable_step(name, task_id, trigger_rule)
        return _cluster_step(name, task_id, templates, trigger_rule, doc_md, subject_ids_param)
    return _embedded_step(name, task_id, templates, trigger_rule, doc_md, subject_ids_param)


def light_task(func, *, task_id: str, trigger_rule: str = TriggerRule.ALL_SUCCESS, doc_md: str | None = None):
    """A small Python task (no Spark) that runs in the worker in both modes, with the same error mapping."""

    @task(task_id=task_id, trigger_rule=trigger_rule, doc_md=doc_md, retries=0)
    def light(**context):
        from jobs.runtime.console import CheckFailed, InputError

        try:
            return func(context)
        except InputError as exc:
            raise AirflowFailException(f"bad input, nothing was touched: {exc}") from None
        except CheckFailed as exc:
            raise AirflowFailException(f"check failed: {exc}") from None
        except ValueError as exc:
            from jobs.policy import PolicyError

            if isinstance(exc, PolicyError):
                raise AirflowFailException(f"invalid policy, nothing was touched: {exc}") from None
            raise

    return light()
