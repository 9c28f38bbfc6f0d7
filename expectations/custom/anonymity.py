"""匿名加工情報 gates: k-anonymity, l-diversity and rare values of the released quasi-identifiers."""
from __future__ import annotations

from typing import Dict, List, Literal, Optional, Tuple

from great_expectations.compatibility import pydantic

from expectations import _sql
from expectations.custom.base import _plural, _WasureRowsExpectation


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
