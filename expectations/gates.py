"""Run a named gate: validate Spark DataFrames against expectation lists, write Data Docs.

Context choice: every ``run_gate`` call uses its own **ephemeral** GE context (nothing read from
or written to a GE project on disk, so concurrent jobs cannot corrupt each other's config) with a
single filesystem Data Docs site whose root *is* ``docs_dir``: ``docs_dir/index.html`` lists this
run's validations, one page per checked table under ``docs_dir/validations/``. ``docs_dir`` may be
a URI of the lake's file system (hdfs://, s3a://): the site is built in a temporary directory and
copied there through the Spark session's Hadoop FileSystem. Use one
``docs_dir`` per gate run (e.g. ``<lake>/_gates/<run id>/<gate>/``); a second run into the same
directory rewrites ``index.html`` to list only its own validations. The site works offline: its
scripts, stylesheets and fonts are copied to ``docs_dir/static/vendor/`` and every page links
them there (``expectations.data_docs``).

Privacy of what is written: results use a SUMMARY format with unexpected values excluded (GE's
built-in column expectations would otherwise list offending cell values), and exception messages
are reduced to the exception type and Spark error class before Data Docs are rendered (Spark can
quote a value in e.g. a failed cast). wasure's own expectations only ever report counts.

GE's Spark query metrics register the batch as the temp view ``tmp_view``; do not run two gates
concurrently in one SparkSession.
"""
from __future__ import annotations

import copy
import datetime as _dt
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Tuple

from expectations.data_docs import copy_site, make_offline

SITE_NAME = "wasure_gate"
# GE's views, except that they share compiled Jinja templates (expectations.doc_views).
SITE_VIEWS = {
    "site_section_builders": {section: {"view": {"module_name": "expectations.doc_views", "class_name": "PageView"}}
                              for section in ("expectations", "validations", "profiling")},
    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder",
                           "view": {"module_name": "expectations.doc_views", "class_name": "IndexPageView"}},
}

# SUMMARY keeps counts; partial_unexpected_count=0 + exclude_unexpected_values keep GE's built-in
# map expectations from copying unexpected cell values into results and Data Docs.
SAFE_RESULT_FORMAT = {
    "result_format": "SUMMARY",
    "partial_unexpected_count": 0,
    "exclude_unexpected_values": True,
    "include_unexpected_rows": False,
    "return_unexpected_index_query": False,
}

_SPARK_ERROR_CLASS = re.compile(r"\[([A-Z][A-Z0-9_.]+)\]")
_WITHHELD = "(message withheld: it may quote data values)"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")

Check = Tuple[str, Any, Sequence[Any]]


@dataclass(frozen=True)
class Failure:
    """One failed (or crashed) expectation: never carries a data value."""

    expectation: str  # class name, e.g. ExpectQuasiIdentifierClassesToHaveAtLeastK
    table: str  # the check's table label
    column: str  # the column(s) concerned, comma-separated; "" for a table-level finding
    message: str


@dataclass
class GateResult:
    name: str
    success: bool
    failures: list[Failure]
    docs_index: str  # path of the Data Docs index.html
    results: list = field(default_factory=list, repr=False)  # GE suite results, one per check

    def report(self) -> str:
        """Human-readable lines for logs and CLI output."""
        head = f"gate {self.name}: {'PASSED' if self.success else 'FAILED'} (Data Docs: {self.docs_index})"
        return "\n".join([head] + [f"  - {f.message}" for f in self.failures])


def run_gate(name: str, checks: Iterable[Check], docs_dir: str) -> GateResult:
    """Validate each ``(table_label, df, expectations)`` and render Data Docs into ``docs_dir``.

    Expectations are copied into one suite per table, so the same instances may be reused across
    checks and gates. The gate fails if any expectation fails or cannot run.
    """
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    checks = list(checks)
    labels = [label for label, _, _ in checks]
    # Labels name assets, suites and Data Docs paths (where unsafe characters become "_").
    if len({_safe(label) for label in labels}) != len(labels):
        raise ValueError(f"gate {name!r}: table labels must be unique, got {labels}")
    remote = "://" in str(docs_dir) and not str(docs_dir).startswith("file:")
    # GE's site builder writes local files: a lake on hdfs:// or s3a:// gets the finished site copied.
    docs_path = Path(tempfile.mkdtemp(prefix="wasure-docs-")) if remote else Path(str(docs_dir).removeprefix("file://")).resolve()
    docs_path.mkdir(parents=True, exist_ok=True)

    context = _context(gx, docs_path)
    gate_id = _safe(name) or "gate"
    # persist=False: _validate caches a batch itself, and only one that is not in memory already
    datasource = context.data_sources.add_spark(name=gate_id, persist=False)
    run_id = RunIdentifier(run_name=name, run_time=_dt.datetime.now(_dt.timezone.utc))

    results, failures = [], []
    for label, df, expectations in checks:
        result = _validate(gx, context, datasource, f"{gate_id}.{_safe(label)}", label, df, expectations, run_id)
        results.append(result)
        failures.extend(_failures(label, result))
    _build_docs(context, docs_path)
    if remote:
        copy_site(docs_path, str(docs_dir), checks[0][1].sparkSession if checks else None)
        shutil.rmtree(docs_path, ignore_errors=True)

    return GateResult(
        name=name,
        success=all(r.success for r in results) and not failures,
        failures=failures,
        docs_index=f"{str(docs_dir).rstrip('/')}/index.html" if remote else str(docs_path / "index.html"),
        results=results,
    )


def _validate(gx: Any, context, datasource, name: str, label: str, df, expectations: list, run_id):
    """One check: its own asset, suite (copies of the expectations) and validation, the result scrubbed."""
    asset = datasource.add_dataframe_asset(name=label)
    batch_definition = asset.add_batch_definition_whole_dataframe("whole dataframe")
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=[copy.copy(e) for e in expectations]))
    validation = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch_definition, suite=suite))
    # GE's queries rescan the batch: cache it for the check unless it is in memory already, or no
    # expectation reads a row (caching a Delta scan plans it: a snapshot and a file listing job each).
    cache = _reads_rows(expectations) and not _served_from_cache(df)
    if cache:
        df.persist()
    try:
        result = validation.run(batch_parameters={"dataframe": df}, result_format=dict(SAFE_RESULT_FORMAT), run_id=run_id)
    finally:
        if cache:
            df.unpersist()
    _scrub(result)
    return result


# Metrics answered from a DataFrame's schema alone (no Spark job).
SCHEMA_METRICS = frozenset({"table.columns", "table.column_types"})


def _reads_rows(expectations: Sequence) -> bool:
    """Whether any expectation needs a row of the batch: one that declares only schema metrics
    (``ExpectNoForbiddenColumns``: ``table.columns``) does not; one that declares none is assumed to."""
    for expectation in expectations:
        needs = set(getattr(expectation, "metric_dependencies", ()) or ())
        if not needs or not needs <= SCHEMA_METRICS:
            return True
    return False


def _served_from_cache(df) -> bool:
    """Whether every leaf of ``df``'s plan is a cached relation: a persisted DataFrame, or columns or
    rows of one (a job's staged output without its bookkeeping columns). Caching such a batch again
    would copy memory into memory; a plan with any other leaf (a file scan) is cached for the check."""
    if not hasattr(df, "_jdf"):
        return True                  # not a Spark DataFrame: nothing to cache
    leaves = df._jdf.queryExecution().withCachedData().collectLeaves()
    return all(leaves.apply(i).nodeName() == "InMemoryRelation" for i in range(leaves.size()))


def _build_docs(context, docs_path: Path) -> None:
    """The Data Docs site from scrubbed results, with its assets shipped for offline reading."""
    # vd.run() stored the unscrubbed result; overwrite before Data Docs read the store.
    store = context.validation_results_store
    for key in store.list_keys():
        stored = store.get(key)
        _scrub(stored)
        store.set(key, stored)
    context.build_data_docs(site_names=[SITE_NAME])
    # GE's pages load their scripts, stylesheets and fonts from CDNs: ship them with the site.
    make_offline(docs_path)


def _context(gx: Any, docs_path: Path):
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # The ephemeral context's default site writes to a temp dir; only ours is built.
    for site in list(context.list_data_docs_sites()):
        context.delete_data_docs_site(site)
    context.add_data_docs_site(
        SITE_NAME,
        {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_path)},
            **copy.deepcopy(SITE_VIEWS),
        },
    )
    # Batch jobs log to files: no tqdm bars per validation.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def _safe(text: str) -> str:
    return _UNSAFE_NAME.sub("_", str(text)).strip("_")


def _class_name(expectation_type: str) -> str:
    from great_expectations.expectations.registry import get_expectation_impl

    try:
        return get_expectation_impl(expectation_type).__name__
    except Exception:  # noqa: BLE001 - an unregistered type still has its snake_case name
        return expectation_type


def _withheld(info: dict) -> str:
    # Keep the Spark error class (e.g. UNRESOLVED_COLUMN.WITH_SUGGESTION): enough to act on.
    match = _SPARK_ERROR_CLASS.search(str(info.get("exception_message") or ""))
    label = match.group(1) if match else "error"
    return f"{label} {_WITHHELD}"


def _scrub(suite_result: Any) -> None:
    """Reduce exception info to the Spark error class, in GE's flat shape.

    A failed metric leaves ``exception_info`` keyed by metric id (with full Spark messages and
    tracebacks); GE's own Data Docs renderer expects the flat ``{raised_exception,
    exception_message, exception_traceback}`` shape and breaks on the nested one, so it is
    flattened here as well as withheld.
    """
    for evr in getattr(suite_result, "results", []) or []:
        info = evr.exception_info
        if not info:
            continue
        entries = [info] + [v for v in info.values() if isinstance(v, dict)]
        raised = [e for e in entries if e.get("raised_exception")]
        if not raised:
            evr.exception_info = {"raised_exception": False, "exception_message": None, "exception_traceback": None}
            continue
        message = str(raised[0].get("exception_message") or "")
        evr.exception_info = {
            "raised_exception": True,
            "exception_message": message if message.endswith(_WITHHELD) else _withheld(raised[0]),
            # GE renders the traceback as a collapsible template: it must be a string.
            "exception_traceback": "traceback withheld",
        }


def _exception_text(info: Optional[dict]) -> Optional[str]:
    if not info:
        return None
    entries = [info] + [v for v in info.values() if isinstance(v, dict)]
    raised = [e for e in entries if isinstance(e, dict) and e.get("raised_exception")]
    return raised[0].get("exception_message") if raised else None


def _failures(label: str, suite_result: Any) -> list[Failure]:
    failures = []
    for evr in suite_result.results:
        if evr.success:
            continue
        config = evr.expectation_config
        name = _class_name(config.type)
        body = evr.result or {}
        details = body.get("details") if isinstance(body.get("details"), dict) else {}
        kwargs = config.kwargs or {}
        columns = details.get("columns") or (
            [kwargs["column"]] if kwargs.get("column") else list(kwargs.get("column_list") or [])
        )
        column = ", ".join(str(c) for c in columns)
        crashed = _exception_text(evr.exception_info)
        if crashed:
            message = f"{name} on table '{label}' could not run: {crashed}"
        elif details.get("message"):
            message = details["message"]
        else:
            # A GE built-in expectation: report its counts, never its observed value (which for
            # e.g. a column max *is* a data value).
            counts = ", ".join(
                f"{k}={body[k]}" for k in ("unexpected_count", "element_count", "missing_count") if k in body
            )
            where = f"table '{label}'" + (f", column {column}" if column else "")
            message = f"{name} on {where}: failed" + (f" ({counts})" if counts else "")
        failures.append(Failure(expectation=name, table=label, column=column, message=message))
    return failures
