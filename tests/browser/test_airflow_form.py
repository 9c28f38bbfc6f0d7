"""The closure form in a real browser, on a real Airflow, and a gate's Data Docs opened offline.

Real processes, no mocks: Debian's chromium driven by Playwright (``executable_path``, no browser
download), ``airflow api-server`` / ``scheduler`` / ``dag-processor`` on 127.0.0.1 (tests/browser/
_airflow_stack.py), the DAGs of dags/, a small lake built like tests/test_dags.py's, and the
closure's tasks run by the LocalExecutor (each Spark step in its own worker process).

1. log in (SimpleAuthManager), open wasure_account_closure's trigger form, submit one valid subject
   id with every optional field left empty, wait until the run succeeds: receipt written, subject
   gone from every table;
2. a malformed request id: the form refuses it (error shown, no run created);
3. the night's gate over the lake (retention, then the gate with its deletion-ledger check) writes
   Data Docs; its index.html, opened via file:// with every non-local request aborted, lists the
   gate's validations and is styled (Bootstrap, Font Awesome): Data Docs work offline.

Screenshots: docs/img/airflow_closure_form.png, airflow_closure_run.png, data_docs_offline.png.
Not part of ``make test`` (chromium is a system package); run it as docs/airflow.md says.
"""
import datetime as dt
import json
import os
from pathlib import Path

import pytest

from tests.e2e import E2E_TABLES, write_e2e_policy, write_small_lake
from tests.e2e import keys_file as e2e_keys

from _airflow_stack import AirflowStack

REPO = Path(__file__).resolve().parents[2]
IMG = REPO / "docs" / "img"
CHROMIUM = os.environ.get("WASURE_CHROMIUM", "/usr/bin/chromium")
DAG_ID = "wasure_account_closure"
RUN_TIMEOUT = 900            # the erase task starts its own Spark; a busy 2-core box is slow
UI_TIMEOUT = 60_000          # ms, for one page or element
VIEWPORT = {"width": 1280, "height": 860}
FORM_VIEWPORT = {"width": 1280, "height": 1480}
DOCS_VIEWPORT = {"width": 1500, "height": 760}

pytestmark = pytest.mark.timeout(2400)


# ------------------------------------------------------------------ lake, policy, keys (as tests/test_dags.py)

@pytest.fixture(scope="module")
def e2e_policy(tmp_path_factory):
    return write_e2e_policy(tmp_path_factory.mktemp("browser-policy"))


@pytest.fixture(scope="module")
def keys_file(e2e_policy, tmp_path_factory):
    with e2e_keys(e2e_policy, tmp_path_factory.mktemp("browser-keys") / "keys.json") as path:
        yield path


@pytest.fixture(scope="module")
def small_lake(spark, e2e_policy, keys_file, tmp_path_factory):
    """60 subjects, 4 events each, the three tables of the e2e policy."""
    from jobs.lake.layout import Lake

    return write_small_lake(spark, e2e_policy, Lake.at(tmp_path_factory.mktemp("browser-lake") / "lake"))


@pytest.fixture(scope="module")
def subject(spark, e2e_policy, small_lake):
    from jobs.lake.layout import read_current

    accounts = read_current(spark, small_lake.table_path(e2e_policy.tables["accounts"]))
    return accounts.orderBy("account_id").first().account_id


# ------------------------------------------------------------------ Airflow and the browser

@pytest.fixture(scope="module")
def airflow(e2e_policy, small_lake, keys_file, tmp_path_factory):
    stack = AirflowStack(home=tmp_path_factory.mktemp("airflow-home"), dags=REPO / "dags", extra_env={
        # the form's Policy file / Lake root defaults (read when the DAG is parsed) and the workers'
        "WASURE_POLICY": str(e2e_policy.source), "WASURE_LAKE": str(small_lake.root), "WASURE_KEYS": str(keys_file),
        "WASURE_AIRFLOW_RETRIES": "0", "SPARK_LOCAL_IP": "127.0.0.1", "WASURE_SPARK_UI": "0",
        "WASURE_SPARK_DRIVER_MEMORY": "2g", "PYTHONPATH": str(REPO),
    })
    try:
        stack.start()
        stack.wait_for_dag(DAG_ID)
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        raise FileNotFoundError(f"{CHROMIUM} not found: apt-get install -y chromium (or set WASURE_CHROMIUM)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


def _local_only(context) -> list[str]:
    """Abort every request that leaves this machine; returns the list of what was aborted."""
    aborted: list[str] = []

    def route(request_route):
        url = request_route.request.url
        if url.startswith(("http://127.0.0.1", "http://localhost", "file:", "data:", "blob:")):
            request_route.continue_()
        else:
            aborted.append(url)
            request_route.abort()

    context.route("**/*", route)
    return aborted


@pytest.fixture(scope="module")
def ui(browser, airflow):
    """A logged-in page of the Airflow UI."""
    context = browser.new_context(viewport=VIEWPORT)
    aborted = _local_only(context)
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT)
    page.goto(airflow.url + "/")
    page.wait_for_url("**/auth/login**")
    page.get_by_label("Username").fill("wasure-admin")
    page.get_by_label("Password").fill(airflow.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(airflow.url + "/")
    yield page
    context.close()
    assert aborted == [], f"the Airflow UI tried to reach other hosts: {aborted}"


def _open_trigger_form(page, airflow):
    page.goto(f"{airflow.url}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Run Parameters").wait_for()
    return dialog


def _run_ids(airflow) -> set[str]:
    return {r["dag_run_id"] for r in airflow.runs(DAG_ID)}


# ------------------------------------------------------------------ the tests

@pytest.fixture(scope="module")
def closure_run(ui, airflow, subject):
    """The valid request, through the form: one subject id, every optional field left empty."""
    before = _run_ids(airflow)
    dialog = _open_trigger_form(ui, airflow)
    dialog.locator("#element_subject_ids").fill(subject)
    # The form is prefilled from the DAG's params: the lake and policy of this test, nothing else.
    assert dialog.locator("#element_lake").input_value() == str(airflow.extra_env["WASURE_LAKE"])
    assert dialog.locator("#element_request_id").input_value() == ""
    ui.set_viewport_size(FORM_VIEWPORT)                            # the whole form, down to Business date
    ui.screenshot(path=str(IMG / "airflow_closure_form.png"))      # a generated id: no real person's
    ui.set_viewport_size(VIEWPORT)
    from playwright.sync_api import expect

    submit = dialog.get_by_test_id("trigger-dag-submit")
    expect(submit, "the trigger form does not submit with its optional fields empty").to_be_enabled()
    submit.click()
    dialog.wait_for(state="hidden")
    new = _run_ids(airflow) - before
    assert len(new) == 1, f"expected one new run, got {new}"
    run_id = new.pop()
    result = airflow.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT)
    ui.goto(f"{airflow.url}/dags/{DAG_ID}/runs/{run_id}")
    ui.get_by_text("receipt").first.wait_for()
    ui.get_by_text("success", exact=False).first.wait_for()
    ui.screenshot(path=str(IMG / "airflow_closure_run.png"))
    return {"run_id": run_id, **result}


def test_a_valid_request_from_the_form_erases_the_subject(closure_run, airflow, spark, e2e_policy, small_lake, subject):
    from pyspark.sql import functions as F

    from jobs.lake.layout import read_current

    assert closure_run["tasks"] == {"validate_request": "success", "erase": "success", "receipt": "success"}
    assert closure_run["run"]["conf"]["request_id"] == ""          # derived from the ids (keyed)
    receipts = list((small_lake.root / "receipts").glob("*.json"))
    assert len(receipts) == 1
    receipt = json.loads(receipts[0].read_text())
    assert receipt["state"] == "backups_quarantined" and sum(receipt["rows_removed"].values()) > 0
    assert subject not in receipts[0].read_text()
    for name in E2E_TABLES:
        df = read_current(spark, small_lake.table_path(e2e_policy.tables[name]))
        assert df.where(F.col("account_id") == subject).count() == 0, name


def test_the_form_refuses_a_malformed_request_id(closure_run, ui, airflow, subject):
    before = _run_ids(airflow)
    dialog = _open_trigger_form(ui, airflow)
    dialog.locator("#element_subject_ids").fill(subject)
    dialog.locator("#element_request_id").fill("../receipts/other")     # a path, not an id: the schema's pattern
    dialog.get_by_test_id("trigger-dag-submit").click()
    ui.get_by_text("Failed to Trigger Dag").wait_for()
    assert dialog.is_visible()                                          # the form stays open, nothing submitted
    ui.wait_for_timeout(3000)
    assert _run_ids(airflow) == before, "a run was created from a refused form"
    dialog.get_by_role("button", name="Close").click()


def test_gate_data_docs_list_the_validations_offline(closure_run, browser, spark, e2e_policy, small_lake):
    from jobs.pipeline import run_step

    day = dt.datetime.now(dt.timezone.utc).date().isoformat()     # the closure run's business date
    policy, lake = str(e2e_policy.source), str(small_lake.root)
    run_step("retention", policy, lake, day)
    gate = run_step("gates", policy, lake, day)
    assert gate["success"], gate["failures"]
    labels = gate["labels"]
    assert {f"raw.{t}" for t in E2E_TABLES} <= set(labels)

    context = browser.new_context(viewport=DOCS_VIEWPORT)
    aborted = _local_only(context)
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT)
    failed, errors = [], []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(Path(gate["docs_index"]).as_uri())
    page.wait_for_load_state("load")
    page.evaluate("document.fonts.ready")
    validations = page.locator("table.ge-index-page-validation-results-table")     # built by bootstrap-table
    rows = validations.locator("tbody tr")
    assert rows.count() == len(labels), f"the index lists {rows.count()} validation(s), the gate ran {len(labels)}"
    listed = validations.locator("tbody").inner_text()
    assert all(label in listed for label in labels), listed
    assert validations.locator(".ge-success-icon").count() == len(labels)          # every check passed
    # Styled: Bootstrap's navbar is a flexbox (unstyled: block), bootstrap-table wrapped the table,
    # Font Awesome's font is loaded.
    assert page.evaluate("getComputedStyle(document.querySelector('nav.navbar')).display") == "flex"
    assert page.locator(".bootstrap-table table.ge-index-page-validation-results-table").count() == 1
    assert page.evaluate("[...document.fonts].some(f => f.family.includes('Font Awesome') && f.status === 'loaded')")
    page.screenshot(path=str(IMG / "data_docs_offline.png"))
    context.close()
    assert aborted == [] and failed == [] and errors == [], {"aborted": aborted, "failed": failed, "errors": errors}
