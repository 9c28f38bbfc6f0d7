"""wasure's re-identification gates as Great Expectations 1.x custom expectations.

Each class is a regular GE expectation (registered under its snake_case name on import), so it can
be put in any ExpectationSuite and its results render into Data Docs. Most are
``UnexpectedRowsExpectation`` subclasses: the Spark SQL query is built from plain parameters in a
pydantic-v1 ``root_validator(pre=True)`` (GE 1.24 copies and rebuilds expectations from their
JSON configuration, and ignores ``model_post_init``), and GE substitutes ``{batch}`` at validation.

What no failure may reveal is a data value. Every query therefore *projects only counts and
column indexes*: the rows GE fetches (``unexpected_rows_query.table``, at most 200) and the
messages built from them contain numbers, column names and the caller's parameters, never a cell.
Joins against a second data set (source identifiers, held subjects, deletion ledger) run in Spark
against a temp view: nothing is collected to the driver.

A DataFrame passed where a view is expected is registered as a fresh temp view
(``wasure_<role>_<hex>``) in its session and replaced by the view's name, because expectation
parameters must serialize to JSON.
"""
from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar, Dict, List, Literal, Optional, Tuple, Union

from great_expectations.compatibility import pydantic
from great_expectations.expectations.expectation import BatchExpectation
from great_expectations.expectations.core.unexpected_rows_expectation import UnexpectedRowsExpectation
from great_expectations.render import LegacyDiagnosticRendererType
from great_expectations.render.renderer.renderer import renderer

from expectations import _sql

__all__ = [
    "ExpectQuasiIdentifierClassesToHaveAtLeastK",
    "ExpectSensitiveAttributeToBeLDiverse",
    "ExpectNoForbiddenColumns",
    "ExpectNoSourceValuesInColumns",
    "ExpectPseudonymsNotUnkeyedHashes",
    "ExpectNoRareValues",
    "ExpectNoRowsPastRetention",
    "ExpectNoErasedSubjects",
    "ExpectRegionColumnToEqual",
    "WASURE_EXPECTATIONS",
]

# Hash functions an unkeyed pseudonym is most often made with, as Spark SQL expressions.
_DIGESTS = {
    "md5": "md5({x})",
    "sha1": "sha1({x})",
    "sha224": "sha2({x}, 224)",
    "sha256": "sha2({x}, 256)",
    "sha384": "sha2({x}, 384)",
    "sha512": "sha2({x}, 512)",
}

# Strip: remove leading / trailing ASCII whitespace (Java regex \s: [ \t\n\x0B\f\r]), U+3000
# (全角スペース) and NBSP, which Spark's plain trim() keeps. trim(BOTH set FROM x) needs no regex:
# 4x cheaper than regexp_replace on 12M identifiers. (\u escapes: Spark SQL literals have no \f.)
_STRIP = r"trim(BOTH ' \t\n\u000B\u000C\r\u3000\u00a0' FROM {x})"
# NFKC without a Python UDF: Spark 4 ships ICU4J (for collations) and reflect() calls its static
# Normalizer.compose(String, boolean compat=true), i.e. NFKC, on the executors. The CASE guards
# null, on which ICU throws. ASCII text is NFKC-invariant, so it skips the reflective call (one
# byte per character in UTF-8 <=> ASCII): most identifiers are ASCII, and there are millions.
_NFKC = ("CASE WHEN {x} IS NULL THEN NULL WHEN octet_length({x}) = char_length({x}) THEN {x} "
         "ELSE reflect('com.ibm.icu.text.Normalizer', 'compose', {x}, true) END")
# Bytes of each digest. A digest can only equal a pseudonym of the same length in one of the text
# forms a pseudonym may take: hex (2 per byte), unpadded base64url of the whole digest, or of its
# first 16 bytes (22 characters, the form of wasure's own 128-bit pseudonyms).
_DIGEST_BYTES = {"md5": 16, "sha1": 20, "sha224": 28, "sha256": 32, "sha384": 48, "sha512": 64}
_B64URL = "TRIM(TRAILING '=' FROM translate(base64(unhex({x})), '+/', '-_'))"


def _digest_forms(algorithm: str, x: str) -> list[tuple[int, str]]:
    """(text length, SQL) of each text form of ``algorithm``'s digest of ``x``."""
    hexed = _apply(_DIGESTS[algorithm], x)
    n = _DIGEST_BYTES[algorithm]
    forms = [(2 * n, hexed), (-(-4 * n // 3), _apply(_B64URL, hexed))]
    if n > 16:
        forms.append((22, _apply(_B64URL, f"substr({hexed}, 1, 32)")))
    return forms


def _apply(template: str, x: str) -> str:
    return template.replace("{x}", x)


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


# --------------------------------------------------------------------------------------------
# 匿名加工情報: k-anonymity, l-diversity, rare values
# --------------------------------------------------------------------------------------------


class ExpectQuasiIdentifierClassesToHaveAtLeastK(_WasureRowsExpectation):
    """Every combination of quasi-identifier values occurs in at least ``k`` rows (k-anonymity).

    Args:
        quasi_identifiers: the QI columns defining the equivalence classes (null is a value).
        k: the minimum class size.
    """

    quasi_identifiers: List[str]
    k: int = pydantic.Field(ge=1)

    @classmethod
    def _query(cls, values):
        qis = values["quasi_identifiers"] = _sql.column_list(values.get("quasi_identifiers"), "quasi_identifiers")
        k = int(values["k"])
        group = ", ".join(_sql.ident(c) for c in qis)
        # The QI values stay inside the aggregation; the outer select keeps only sizes.
        return (
            "SELECT class_size, COUNT(*) OVER () AS small_classes, "
            "SUM(class_size) OVER () AS rows_in_small_classes, MIN(class_size) OVER () AS smallest_class "
            f"FROM (SELECT COUNT(*) AS class_size FROM {{batch}} GROUP BY {group} HAVING COUNT(*) < {k}) small"
        )

    @classmethod
    def _describe(cls, values):
        return (
            f"k-anonymity: every combination of ({', '.join(values['quasi_identifiers'])}) "
            f"occurs in at least k={int(values['k'])} rows"
        )

    def _columns(self):
        return list(self.quasi_identifiers)

    def _summarize(self, rows):
        first = rows[0]
        row_count = int(first["small_classes"])
        counts = {
            "violating_classes": row_count,
            "rows_in_violating_classes": first.get("rows_in_small_classes"),
            "smallest_class": first.get("smallest_class"),
        }
        summary = (
            f"{_plural(row_count, 'equivalence class', 'equivalence classes')} "
            f"{'has' if row_count == 1 else 'have'} fewer than k={self.k} rows "
            f"({_plural(int(counts['rows_in_violating_classes'] or 0), 'row')} in them; smallest class "
            f"{counts['smallest_class']})"
        )
        return row_count, summary, self._columns(), counts


class ExpectSensitiveAttributeToBeLDiverse(_WasureRowsExpectation):
    """Within every equivalence class over the QIs, the sensitive attribute is l-diverse.

    Args:
        quasi_identifiers: the QI columns defining the classes.
        sensitive_column: the sensitive attribute.
        l: the required diversity.
        variant: ``"distinct"`` (at least ``l`` distinct values per class) or ``"entropy"``
            (the entropy of the value distribution in each class is at least ``log(l)``).

    Null sensitive values disclose nothing and are ignored (a class of only nulls passes).
    """

    quasi_identifiers: List[str]
    sensitive_column: str
    l: int = pydantic.Field(ge=1)  # noqa: E741 - the name the literature (and the policy) uses
    variant: Literal["distinct", "entropy"] = "distinct"

    @classmethod
    def _query(cls, values):
        qis = values["quasi_identifiers"] = _sql.column_list(values.get("quasi_identifiers"), "quasi_identifiers")
        sensitive = values.get("sensitive_column")
        if sensitive in qis:
            raise ValueError("sensitive_column must not also be a quasi-identifier")
        s = _sql.ident(sensitive)
        level = int(values["l"])
        variant = values.get("variant", "distinct")
        group = ", ".join(_sql.ident(c) for c in qis)
        if variant == "distinct":
            inner = (
                f"SELECT COUNT(*) AS class_size, CAST(COUNT(DISTINCT {s}) AS DOUBLE) AS diversity "
                f"FROM {{batch}} WHERE {s} IS NOT NULL GROUP BY {group} "
                f"HAVING COUNT(DISTINCT {s}) < {level}"
            )
        elif variant == "entropy":
            # Entropy of a class with value counts n_i, N = sum n_i: H = ln N - sum(n_i ln n_i) / N.
            # diversity = exp(H), the "effective l"; a tiny tolerance keeps H == ln(l) passing.
            inner = (
                "SELECT class_size, EXP(entropy) AS diversity FROM ("
                "SELECT SUM(n) AS class_size, LN(SUM(n)) - SUM(n * LN(n)) / SUM(n) AS entropy "
                f"FROM (SELECT {group}, {s}, COUNT(*) AS n FROM {{batch}} WHERE {s} IS NOT NULL "
                f"GROUP BY {group}, {s}) per_value GROUP BY {group}"
                f") per_class WHERE entropy < LN({level}) - 1e-9"
            )
        else:
            raise ValueError("variant must be 'distinct' or 'entropy'")
        return (
            "SELECT class_size, diversity, COUNT(*) OVER () AS low_classes, SUM(class_size) OVER () AS rows_in_classes, "
            f"MIN(diversity) OVER () AS lowest_diversity FROM ({inner}) low"
        )

    @classmethod
    def _describe(cls, values):
        level = int(values["l"])
        if values.get("variant", "distinct") == "distinct":
            what = f"at least l={level} distinct values"
        else:
            what = f"an entropy of at least log(l={level})"
        return (
            f"l-diversity ({values.get('variant', 'distinct')}): in every class over "
            f"({', '.join(values['quasi_identifiers'])}) '{values['sensitive_column']}' has {what}"
        )

    def _columns(self):
        return [self.sensitive_column]

    def _summarize(self, rows):
        first = rows[0]
        row_count = int(first["low_classes"])
        lowest = first.get("lowest_diversity")
        counts = {
            "violating_classes": row_count,
            "rows_in_violating_classes": first.get("rows_in_classes"),
            "lowest_diversity": None if lowest is None else round(float(lowest), 3),
        }
        if self.variant == "distinct":
            detail = f"fewer than l={self.l} distinct values (lowest {int(lowest or 0)})"
        else:
            detail = f"entropy below log(l={self.l}) (lowest effective l {counts['lowest_diversity']})"
        summary = (
            f"{_plural(row_count, 'equivalence class', 'equivalence classes')} over "
            f"({', '.join(self.quasi_identifiers)}) {'has' if row_count == 1 else 'have'} {detail}; "
            f"{_plural(int(counts['rows_in_violating_classes'] or 0), 'row')} in them"
        )
        return row_count, summary, self._columns(), counts


class ExpectNoRareValues(_WasureRowsExpectation):
    """No 特異な記述: no numeric value outside given bounds and no rare categorical value.

    Args:
        numeric_bounds: ``{column: (min, max)}``; either side may be None. A value below min or
            above max is rare (top/bottom coding should have removed it). Values that do not
            cast to a number are not judged.
        category_min_counts: ``{column: n}``; a non-null value seen in fewer than ``n`` rows is rare.
    """

    numeric_bounds: Dict[str, Tuple[Optional[float], Optional[float]]] = {}
    category_min_counts: Dict[str, int] = {}

    @classmethod
    def _checks(cls, values) -> List[Tuple[str, str]]:
        return [("numeric", c) for c in (values.get("numeric_bounds") or {})] + [
            ("categorical", c) for c in (values.get("category_min_counts") or {})
        ]

    @classmethod
    def _query(cls, values):
        bounds = dict(values.get("numeric_bounds") or {})
        minimums = dict(values.get("category_min_counts") or {})
        if not bounds and not minimums:
            raise ValueError("give numeric_bounds and/or category_min_counts")
        branches = []
        for index, (kind, column) in enumerate(cls._checks(values)):
            c = _sql.ident(column)
            if kind == "numeric":
                low, high = (list(bounds[column]) + [None, None])[:2]
                if low is None and high is None:
                    raise ValueError(f"numeric_bounds[{column!r}]: give a min, a max or both")
                if low is not None and high is not None and float(low) > float(high):
                    raise ValueError(f"numeric_bounds[{column!r}]: min is above max")
                # try_cast: under ANSI mode a failing cast raises an error that quotes the value.
                tests = []
                if low is not None:
                    tests.append(f"try_cast({c} AS DOUBLE) < {_sql.number_literal(low, 'min')}")
                if high is not None:
                    tests.append(f"try_cast({c} AS DOUBLE) > {_sql.number_literal(high, 'max')}")
                branches.append(
                    f"SELECT {index} AS column_index, CAST(NULL AS BIGINT) AS rare_values, "
                    f"COUNT(*) AS rare_rows FROM {{batch}} WHERE {' OR '.join(tests)}"
                )
            else:
                threshold = int(minimums[column])
                if threshold < 1:
                    raise ValueError(f"category_min_counts[{column!r}] must be >= 1")
                branches.append(
                    f"SELECT {index} AS column_index, COUNT(*) AS rare_values, "
                    f"COALESCE(SUM(n), 0) AS rare_rows FROM (SELECT COUNT(*) AS n FROM {{batch}} "
                    f"WHERE {c} IS NOT NULL GROUP BY {c} HAVING COUNT(*) < {threshold}) rare"
                )
        return f"SELECT column_index, rare_values, rare_rows FROM ({' UNION ALL '.join(branches)}) found WHERE rare_rows > 0"

    @classmethod
    def _describe(cls, values):
        parts = []
        for column, (low, high) in (values.get("numeric_bounds") or {}).items():
            parts.append(f"{column} within [{'-inf' if low is None else low}, {'inf' if high is None else high}]")
        for column, n in (values.get("category_min_counts") or {}).items():
            parts.append(f"every {column} value in at least {n} rows")
        return "No rare values (特異な記述): " + "; ".join(parts)

    def _columns(self):
        return list(dict.fromkeys(c for _, c in self._checks(self.__dict__)))

    def _summarize(self, rows):
        checks = self._checks(self.__dict__)
        findings, columns, per_column = [], [], {}
        for row in sorted(rows, key=lambda r: r["column_index"]):
            kind, column = checks[int(row["column_index"])]
            columns.append(column)
            if kind == "numeric":
                low, high = self.numeric_bounds[column]
                findings.append(f"{column}: {_plural(int(row['rare_rows']), 'row')} outside [{low}, {high}]")
                per_column[f"{column}:numeric"] = {"rare_rows": int(row["rare_rows"])}
            else:
                findings.append(
                    f"{column}: {_plural(int(row['rare_values']), 'value')} seen in fewer than "
                    f"{self.category_min_counts[column]} rows ({_plural(int(row['rare_rows']), 'row')})"
                )
                per_column[f"{column}:categorical"] = {
                    "rare_values": int(row["rare_values"]),
                    "rare_rows": int(row["rare_rows"]),
                }
        observed = sum(v["rare_rows"] for v in per_column.values())
        columns = list(dict.fromkeys(columns))
        return observed, "rare values found: " + "; ".join(findings), columns, {"findings": per_column}


# --------------------------------------------------------------------------------------------
# Releases: forbidden columns, copied source values, unkeyed hashes
# --------------------------------------------------------------------------------------------


class ExpectNoForbiddenColumns(_WasureResultMixin, BatchExpectation):
    """No column of a forbidden class (identifying, individual_code, property_damage,
    linking_code, ...) is present. Names compare case-insensitively, as Spark resolves them.

    Args:
        forbidden_columns: the column names, or ``{name: class}`` to name the class in messages.
    """

    forbidden_columns: Union[Dict[str, str], List[str]]

    metric_dependencies: ClassVar[Tuple[str, ...]] = ("table.columns",)
    success_keys: ClassVar[Tuple[str, ...]] = ("forbidden_columns",)

    @pydantic.root_validator(pre=True)
    def _describe_forbidden(cls, values: Dict[str, Any]) -> Dict[str, Any]:
        values = dict(values)
        forbidden = values.get("forbidden_columns")
        names = list(forbidden) if forbidden is not None else []
        _sql.column_list(names, "forbidden_columns", allow_empty=True)
        if not values.get("description"):
            shown = ", ".join(str(n) for n in names[:12]) + (", ..." if len(names) > 12 else "")
            values["description"] = f"None of the {len(names)} forbidden columns is present ({shown})"
        return values

    def _validate(self, metrics: dict, runtime_configuration: Optional[dict] = None, execution_engine=None):
        forbidden = self.forbidden_columns
        classes = forbidden if isinstance(forbidden, dict) else {}
        wanted = {name.lower(): name for name in forbidden}
        present = [c for c in metrics["table.columns"] if str(c).lower() in wanted]
        if not present:
            return self._wasure_result(True, 0, "", [], {}, execution_engine)
        labels = []
        for column in present:
            klass = classes.get(wanted[str(column).lower()])
            labels.append(f"{column} ({klass})" if klass else str(column))
        summary = f"{_plural(len(present), 'forbidden column')} present: {', '.join(labels)}"
        return self._wasure_result(
            False, len(present), summary, [str(c) for c in present], {"forbidden_present": len(present)}, execution_engine
        )


class _SourceJoinExpectation(_WasureRowsExpectation):
    """Common parameters of the expectations that join output columns to source identifiers."""

    source: str
    source_columns: List[str]
    # The caller guarantees that the source holds each value once (e.g. a persisted set of distinct
    # identifiers): the query then skips its own DISTINCT, a shuffle of every source value. A
    # semi-join needs no unique keys, so the result is the same either way.
    source_distinct: bool = False

    _checked_field: ClassVar[str] = ""

    @classmethod
    def _distinct(cls, values) -> str:
        return "" if values.get("source_distinct") else "DISTINCT "

    @classmethod
    def _source(cls, values) -> Tuple[str, List[str]]:
        source = values.get("source")
        if _sql.is_dataframe(source):
            columns = values.get("source_columns") or list(source.columns)
            source = _sql.register_view(source, "source")
        else:
            _sql.view_ident(source)
            columns = values.get("source_columns") or _sql.view_columns(source)
        values["source"] = source
        values["source_columns"] = _sql.column_list(columns, "source_columns")
        return source, values["source_columns"]

    def _columns(self):
        return list(getattr(self, self._checked_field))

    def _summarize(self, rows):
        checked = getattr(self, self._checked_field)
        ordered = sorted(rows, key=lambda r: int(r["column_index"]))
        per_column = {checked[int(r["column_index"])]: int(r["matching_rows"]) for r in ordered}
        columns = [c for c in checked if c in per_column]
        detail = ", ".join(f"{c} ({_plural(n, 'row')})" for c, n in per_column.items())
        return sum(per_column.values()), self._finding(len(columns)) + f": {detail}", columns, {"matching_rows": per_column}

    def _finding(self, n_columns: int) -> str:  # pragma: no cover - overridden
        raise NotImplementedError


class ExpectNoSourceValuesInColumns(_SourceJoinExpectation):
    """No value of any output column equals a raw identifying value of the source.

    Args:
        output_columns: the released columns to check.
        source: a DataFrame or temp view name holding the source's identifying values.
        source_columns: which source columns hold them (default: all columns of ``source``).

    Values compare as strings after trim and lowercase (a change of case does not hide a copied
    e-mail address); null and blank source values are ignored. The join runs in Spark, on a
    96-bit fingerprint of the normalized value (``_sql.fingerprint``: no match is ever missed).
    """

    output_columns: List[str]

    _checked_field: ClassVar[str] = "output_columns"

    @classmethod
    def _query(cls, values):
        outputs = values["output_columns"] = _sql.column_list(values.get("output_columns"), "output_columns")
        source, source_columns = cls._source(values)
        values_of_source = _sql.union_of_columns(source, source_columns, "CAST({col} AS STRING)")
        return (
            f"WITH src AS (SELECT {cls._distinct(values)}lower(trim(v)) AS v FROM "
            f"({values_of_source}) u WHERE v IS NOT NULL AND trim(v) <> ''), "
            # A cell can only equal a source value of its length: cells of other lengths (e.g.
            # 64-character pseudonyms, when no identifier is that long) skip the join's shuffle.
            "lens AS (SELECT collect_set(length(v)) AS source_lengths FROM src), "
            f"cells AS (SELECT column_index, lower(trim(v)) AS v FROM (SELECT {_sql.stack_columns(outputs)} "
            "FROM {batch}) c0 WHERE v IS NOT NULL) "
            f"SELECT {_sql.hash_join_hint('s')} column_index, COUNT(*) AS matching_rows FROM "
            f"(SELECT column_index, {_sql.fingerprint('v')} FROM cells CROSS JOIN lens "
            "WHERE array_contains(source_lengths, length(v))) o "
            f"LEFT SEMI JOIN (SELECT {_sql.fingerprint('v')} FROM src) s "
            f"ON {_sql.fingerprint_match('o', 's')} GROUP BY column_index"
        )

    @classmethod
    def _describe(cls, values):
        return (
            f"No value of ({', '.join(values['output_columns'])}) equals an identifying value of "
            f"the source ({', '.join(values['source_columns'])})"
        )

    def _finding(self, n_columns):
        return f"{_plural(n_columns, 'column')} contain raw identifying values of the source"


class ExpectPseudonymsNotUnkeyedHashes(_SourceJoinExpectation):
    """Pseudonym columns are not unkeyed hashes of a source identifier.

    A pseudonym that equals md5/sha1/sha256(identifier) can be reversed by hashing candidate
    identifiers, so it is not a 仮名加工情報 pseudonym. Candidates are every source value in 8 forms:
    raw and every combination of NFKC, strip and lowercase (applied in that order), each digest as
    hex, as unpadded base64url, and as the base64url of its first 128 bits; pseudonyms compare
    trimmed and lowercased, so upper-case hex is caught too. Computed with Spark's
    md5/sha1/sha2 and a semi-join on 96-bit fingerprints (``_sql.fingerprint``).

    Args:
        pseudonym_columns: the pseudonym columns to check.
        source: a DataFrame or temp view name with the raw identifiers.
        source_columns: which source columns hold them (default: all columns of ``source``).
        algorithms: digests to try (md5, sha1, sha224, sha256, sha384, sha512).
    """

    pseudonym_columns: List[str]
    algorithms: List[Literal["md5", "sha1", "sha224", "sha256", "sha384", "sha512"]] = ["md5", "sha1", "sha256"]

    _checked_field: ClassVar[str] = "pseudonym_columns"

    @classmethod
    def _forms_sql(cls, source: str) -> str:
        """One row per distinct form of each value ``v`` of ``source``: raw and every combination of
        NFKC, strip and lowercase, in that order. NFKC and strip are computed once per value in an
        inner projection (inlined into 8 forms they ran 4 times each)."""
        return (
            "SELECT explode(array_distinct(array(v, lower(v), s, lower(s), n, lower(n), ns, lower(ns)))) AS f "
            f"FROM (SELECT v, s, n, {_apply(_STRIP, 'n')} AS ns "
            f"FROM (SELECT v, {_apply(_STRIP, 'v')} AS s, {_apply(_NFKC, 'v')} AS n FROM {source}) b0) b1"
        )

    @classmethod
    def _query(cls, values):
        pseudonyms = values["pseudonym_columns"] = _sql.column_list(values.get("pseudonym_columns"), "pseudonym_columns")
        algorithms = list(values.get("algorithms") or ["md5", "sha1", "sha256"])
        unknown = [a for a in algorithms if a not in _DIGESTS]
        if unknown:
            raise ValueError(f"unknown algorithms {unknown}; known: {sorted(_DIGESTS)}")
        source, source_columns = cls._source(values)
        values_of_source = _sql.union_of_columns(source, source_columns, "CAST({col} AS STRING)")
        # Only digest forms whose length some pseudonym has are computed (64-hex pseudonyms: sha256's
        # hex; 22-character ones: md5's base64url and the 128-bit prefix of the others): CASE is lazy.
        digests = ", ".join(
            f"CASE WHEN array_contains(lengths, {length}) THEN lower({form}) END"
            for a in algorithms for length, form in _digest_forms(a, "f")
        )
        pseudonym_cells = f"(SELECT {_sql.stack_columns(pseudonyms)} FROM {{batch}})"
        return (
            f"WITH lens AS (SELECT collect_set(length(lower(trim(v)))) AS lengths FROM {pseudonym_cells} p0), "
            # DISTINCT first (unless the caller's source is already distinct): a linking code repeats
            # on every row of its subject; hash each value once.
            f"src AS (SELECT {cls._distinct(values)}v FROM ({values_of_source}) u WHERE v IS NOT NULL), "
            # Forms are deduplicated per value (most identifiers are ASCII: NFKC and strip change
            # nothing), not with a lake-wide DISTINCT: the semi-join below needs no unique keys.
            f"forms AS ({cls._forms_sql('src')}), "
            f"digests AS (SELECT h FROM (SELECT explode(array({digests})) AS h FROM forms CROSS JOIN lens) d "
            "WHERE h IS NOT NULL) "
            f"SELECT {_sql.hash_join_hint('d')} column_index, COUNT(*) AS matching_rows FROM "
            f"(SELECT column_index, {_sql.fingerprint('lower(trim(v))')} FROM {pseudonym_cells} p0 "
            "WHERE v IS NOT NULL) p "
            f"LEFT SEMI JOIN (SELECT {_sql.fingerprint('h')} FROM digests) d "
            f"ON {_sql.fingerprint_match('p', 'd')} GROUP BY column_index"
        )

    @classmethod
    def _describe(cls, values):
        return (
            f"({', '.join(values['pseudonym_columns'])}) match no unkeyed "
            f"{'/'.join(values.get('algorithms') or ['md5', 'sha1', 'sha256'])} hash of "
            f"({', '.join(values['source_columns'])}), raw or NFKC/strip/lowercase-normalized"
        )

    def _finding(self, n_columns):
        return f"{_plural(n_columns, 'pseudonym column')} hold unkeyed hashes of source identifiers"


# --------------------------------------------------------------------------------------------
# Lake tables: retention, erasure, region
# --------------------------------------------------------------------------------------------


class ExpectNoRowsPastRetention(_WasureRowsExpectation):
    """No row's ``date_column`` is before ``cutoff``, except rows of held subjects.

    Args:
        date_column: the table's business date / timestamp column.
        cutoff: ISO date (``2026-01-31``) or naive timestamp; rows strictly before it are expired.
        subject_column: the subject key (required with ``held_subjects``).
        held_subjects: DataFrame or temp view name of subjects under legal hold.
        held_subject_column: their key column in ``held_subjects`` (default ``subject_column``).

    Dates that are null or do not parse are not judged (retention cannot be computed for them).
    """

    date_column: str
    cutoff: str
    subject_column: Optional[str] = None
    held_subjects: Optional[str] = None
    held_subject_column: Optional[str] = None

    @classmethod
    def _query(cls, values):
        d = _sql.ident(values.get("date_column"))
        values["cutoff"], literal = _sql.cutoff_literal(values.get("cutoff"))
        as_type = "DATE" if literal.startswith("DATE") else "TIMESTAMP"
        expired = f"try_cast(b.{d} AS {as_type}) < {literal}"
        held = values.get("held_subjects")
        if held is None:
            return (
                "SELECT expired_rows, 0 AS held_rows FROM "
                f"(SELECT COUNT(*) AS expired_rows FROM {{batch}} b WHERE {expired}) x WHERE expired_rows > 0"
            )
        if _sql.is_dataframe(held):
            held = values["held_subjects"] = _sql.register_view(held, "held")
        subject = values.get("subject_column")
        if not subject:
            raise ValueError("held_subjects needs subject_column")
        held_column = values["held_subject_column"] = values.get("held_subject_column") or subject
        key, held_key = _sql.ident(subject), _sql.ident(held_column)
        return (
            # Legal holds are few (hundreds, not millions of subjects): broadcast them rather than
            # shuffle and sort every row of the table for the join (2.9 -> 1.4 s on 10M rows).
            "SELECT expired_rows, held_rows FROM (SELECT /*+ BROADCAST(h) */ "
            "COALESCE(SUM(CASE WHEN h.held_subject IS NULL THEN 1 ELSE 0 END), 0) AS expired_rows, "
            "COALESCE(SUM(CASE WHEN h.held_subject IS NULL THEN 0 ELSE 1 END), 0) AS held_rows "
            f"FROM {{batch}} b LEFT JOIN (SELECT DISTINCT {held_key} AS held_subject FROM "
            f"{_sql.view_ident(held)} WHERE {held_key} IS NOT NULL) h ON b.{key} = h.held_subject "
            f"WHERE {expired}) x WHERE expired_rows > 0"
        )

    @classmethod
    def _describe(cls, values):
        text = f"No row has {values['date_column']} before {values['cutoff']}"
        if values.get("held_subjects"):
            text += " unless its subject is under legal hold"
        return text

    def _columns(self):
        return [self.date_column]

    def _summarize(self, rows):
        row = rows[0]
        expired, held = int(row["expired_rows"]), int(row["held_rows"])
        summary = f"{_plural(expired, 'row')} older than the cutoff {self.cutoff}"
        if self.held_subjects:
            summary += f" ({_plural(held, 'older row')} kept for held subjects)"
        return expired, summary, self._columns(), {"expired_rows": expired, "held_rows": held}


class ExpectNoErasedSubjects(_WasureRowsExpectation):
    """No row belongs to an erased subject: its keyed subject hash is not in the deletion ledger.

    Args:
        hash_column: the column with the keyed hash of the subject id (computed by the caller
            with the ledger's key, so raw ids never meet the ledger).
        ledger: DataFrame or temp view name of the deletion ledger.
        ledger_hash_column: the keyed-hash column in the ledger (default ``hash_column``).
    """

    hash_column: str
    ledger: str
    ledger_hash_column: Optional[str] = None

    @classmethod
    def _query(cls, values):
        h = _sql.ident(values.get("hash_column"))
        ledger = values.get("ledger")
        if _sql.is_dataframe(ledger):
            ledger = values["ledger"] = _sql.register_view(ledger, "ledger")
        values["ledger_hash_column"] = values.get("ledger_hash_column") or values["hash_column"]
        lh = _sql.ident(values["ledger_hash_column"])
        return (
            "SELECT erased_rows, erased_subjects FROM (SELECT COUNT(*) AS erased_rows, "
            f"COUNT(DISTINCT b.{h}) AS erased_subjects FROM {{batch}} b LEFT SEMI JOIN "
            f"(SELECT {lh} AS h FROM {_sql.view_ident(ledger)}) l ON b.{h} = l.h) x WHERE erased_rows > 0"
        )

    @classmethod
    def _describe(cls, values):
        return f"No {values['hash_column']} appears in the deletion ledger ({values['ledger_hash_column']})"

    def _columns(self):
        return [self.hash_column]

    def _summarize(self, rows):
        row = rows[0]
        erased_rows, subjects = int(row["erased_rows"]), int(row["erased_subjects"])
        summary = f"{_plural(erased_rows, 'row')} of {_plural(subjects, 'erased subject')} still present"
        return erased_rows, summary, self._columns(), {"erased_rows": erased_rows, "erased_subjects": subjects}


class ExpectRegionColumnToEqual(_WasureRowsExpectation):
    """Every row of a region's table carries that region (null counts as another region).

    Args:
        region_column: the table's region column.
        region: the region code the table holds, e.g. ``"JP"``.
    """

    region_column: str
    region: str

    @classmethod
    def _query(cls, values):
        c = _sql.ident(values.get("region_column"))
        literal = _sql.region_literal(values.get("region"))
        return (
            "SELECT other_rows, null_rows, other_regions FROM (SELECT COUNT(*) AS other_rows, "
            f"COALESCE(SUM(CASE WHEN {c} IS NULL THEN 1 ELSE 0 END), 0) AS null_rows, "
            f"COUNT(DISTINCT {c}) AS other_regions FROM {{batch}} "
            f"WHERE {c} IS NULL OR CAST({c} AS STRING) <> {literal}) x WHERE other_rows > 0"
        )

    @classmethod
    def _describe(cls, values):
        return f"Every row has {values['region_column']} = {values['region']}"

    def _columns(self):
        return [self.region_column]

    def _summarize(self, rows):
        row = rows[0]
        other, nulls, regions = int(row["other_rows"]), int(row["null_rows"]), int(row["other_regions"])
        summary = (
            f"{_plural(other, 'row')} not of region {self.region} "
            f"({_plural(regions, 'other region')}, {_plural(nulls, 'null')})"
        )
        return other, summary, self._columns(), {"other_rows": other, "null_rows": nulls, "other_regions": regions}


WASURE_EXPECTATIONS = (
    ExpectQuasiIdentifierClassesToHaveAtLeastK,
    ExpectSensitiveAttributeToBeLDiverse,
    ExpectNoForbiddenColumns,
    ExpectNoSourceValuesInColumns,
    ExpectPseudonymsNotUnkeyedHashes,
    ExpectNoRareValues,
    ExpectNoRowsPastRetention,
    ExpectNoErasedSubjects,
    ExpectRegionColumnToEqual,
)
