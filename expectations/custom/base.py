"""What every wasure expectation shares: the result built from counts and column indexes only (no
cell value ever reaches a result or a message), the ``UnexpectedRowsExpectation`` base whose query is
built from plain parameters, and small helpers. The expectations themselves live beside this module,
one module per family (anonymity, releases, lake)."""
from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar, Dict, List, Optional, Tuple

from great_expectations.compatibility import pydantic
from great_expectations.expectations.core.unexpected_rows_expectation import UnexpectedRowsExpectation
from great_expectations.render import LegacyDiagnosticRendererType
from great_expectations.render.renderer.renderer import renderer


def _plural(n: int, word: str, plural: Optional[str] = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


class _WasureResultMixin:
    """Result shape and Data Docs cell shared by every wasure expectation.

    ``result.observed_value`` is a count; ``result.details`` holds ``message`` (expectation,
    table, columns, counts), ``table``, ``columns`` (the columns the finding is about) and the
    counts behind the message.
    """

    @staticmethod
    def _table_name(execution_engine: Any, fallback: Optional[str]) -> str:
        try:
            return execution_engine.batch_manager.active_batch.data_asset.name
        except Exception:  # noqa: BLE001 - a legacy batch has no asset; the batch id still names it
            return fallback or "?"

    def _wasure_result(
        self,
        success: bool,
        observed: int,
        summary: str,
        columns: List[str],
        counts: Dict[str, Any],
        execution_engine: Any,
    ) -> dict:
        table = self._table_name(execution_engine, getattr(self, "batch_id", None))
        where = f"table '{table}'"
        if columns:
            where += f", column{'s' if len(columns) > 1 else ''} " + ", ".join(columns)
        verdict = summary if not success else "passed"
        message = f"{type(self).__name__} on {where}: {verdict}"
        return {
            "success": success,
            "result": {
                "observed_value": observed,
                "details": {"message": message, "table": table, "columns": columns, **counts},
            },
        }

    @classmethod
    @renderer(renderer_type=LegacyDiagnosticRendererType.OBSERVED_VALUE)
    def _diagnostic_observed_value_renderer(
        cls, configuration=None, result=None, runtime_configuration=None, **kwargs
    ) -> str:
        # Data Docs' "Observed Value" cell: the message (counts only) rather than a bare number.
        body = (result.result if result is not None else None) or {}
        details = body.get("details") or {}
        if details.get("message"):
            return details["message"]
        observed = body.get("observed_value")
        return "--" if observed is None else str(observed)


class _WasureRowsExpectation(_WasureResultMixin, UnexpectedRowsExpectation):
    """Base of the SQL-backed expectations: subclasses say how to build and how to summarize.

    Only GE's ``unexpected_rows_query.table`` metric is requested (the base class also runs the
    query a second time for ``row_count``): every query here returns at most one row per checked
    column, or carries its exact totals in window columns, so the fetched rows (<= 200) suffice.
    """

    metric_dependencies: ClassVar[Tuple[str, ...]] = ("unexpected_rows_query.table",)

    @pydantic.root_validator(pre=True)
    def _build_query(cls, values: Dict[str, Any]) -> Dict[str, Any]:
        values = dict(values)
        # Normalizes parameters in place (e.g. DataFrame -> view name) and returns the query.
        values["unexpected_rows_query"] = cls._query(values)
        if not values.get("description"):
            values["description"] = cls._describe(values)
        return values

    @classmethod
    @abstractmethod
    def _query(cls, values: Dict[str, Any]) -> str:
        """The Spark SQL on ``{batch}``; one result row per finding, counts only."""

    @classmethod
    @abstractmethod
    def _describe(cls, values: Dict[str, Any]) -> str:
        """What the expectation proves, for Data Docs (parameters only)."""

    @abstractmethod
    def _summarize(self, rows: List[dict]) -> Tuple[int, str, List[str], Dict[str, Any]]:
        """(observed count, summary sentence, columns concerned, counts) of a failed check."""

    def _validate(self, metrics: dict, runtime_configuration: Optional[dict] = None, execution_engine=None):
        rows = metrics["unexpected_rows_query.table"] or []
        if not rows:
            return self._wasure_result(True, 0, "", self._columns(), {}, execution_engine)
        observed, summary, columns, counts = self._summarize(rows)
        return self._wasure_result(False, observed, summary, columns, counts, execution_engine)

    def _columns(self) -> List[str]:
        return []
