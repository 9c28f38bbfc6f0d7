"""Release gates: no column of a forbidden class, no source value copied into a release, no pseudonym
that is an unkeyed hash of a source identifier."""
from __future__ import annotations

from typing import Any, ClassVar, Dict, List, Literal, Optional, Tuple, Union

from great_expectations.compatibility import pydantic
from great_expectations.expectations.expectation import BatchExpectation

from expectations import _sql
from expectations.digests import PSEUDONYM_TEXT, checked_algorithms, digest_lengths, digests_sql
from expectations.source_prints import VALUE_TEXT, source_values_sql
from expectations.custom.base import _plural, _WasureResultMixin, _WasureRowsExpectation


def _hold(columns) -> str:
    return "holds" if len(columns) == 1 else "hold"


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

    Args (besides the above):
        source_prints, source_lengths: the source's fingerprints and lengths computed once for
            several checks of the same source (``expectations.source_prints.source_prints``: its
            frame, or a view of it, and its ``lengths``). Without them the check computes them
            from ``source``.
    """

    output_columns: List[str]
    source_prints: Optional[str] = None
    source_lengths: Optional[List[int]] = None

    _checked_field: ClassVar[str] = "output_columns"

    @classmethod
    def _query(cls, values):
        outputs = values["output_columns"] = _sql.column_list(values.get("output_columns"), "output_columns")
        source, source_columns = cls._source(values)
        # Cells are normalized inside the generator: a filter on the normalized text would
        # otherwise be pushed below it and normalize every cell twice.
        normalized = VALUE_TEXT.replace("{x}", "CAST({col} AS STRING)")
        cells = (f"cells AS (SELECT column_index, v FROM (SELECT {_sql.stack_columns(outputs, normalized)} "
                 "FROM {batch}) c0 WHERE v IS NOT NULL)")
        prints = values.get("source_prints")
        if prints is None:
            values_of_source = _sql.union_of_columns(source, source_columns, "CAST({col} AS STRING)")
            return (
                f"WITH src AS ({source_values_sql(values_of_source, bool(values.get('source_distinct')))}), "
                # A cell can only equal a source value of its length: cells of other lengths (e.g.
                # 64-character pseudonyms, when no identifier is that long) skip the join's shuffle.
                f"lens AS (SELECT collect_set(length(v)) AS source_lengths FROM src), {cells}, "
                f"lengthy AS (SELECT column_index, v FROM cells CROSS JOIN lens "
                "WHERE array_contains(source_lengths, length(v))) "
                + cls._matches("lengthy", len(outputs), f"(SELECT {_sql.fingerprint('v')} FROM src)")
            )
        if _sql.is_dataframe(prints):
            prints = values["source_prints"] = _sql.register_view(prints, "source_prints")
        else:
            _sql.view_ident(prints)
        lengths = values["source_lengths"] = sorted({int(n) for n in values.get("source_lengths") or []})
        wanted = f"length(v) IN ({', '.join(map(str, lengths))})" if lengths else "FALSE"
        return (f"WITH {cells}, lengthy AS (SELECT column_index, v FROM cells WHERE {wanted}) "
                + cls._matches("lengthy", len(outputs), _sql.view_ident(prints)))

    @classmethod
    def _matches(cls, cells: str, n: int, prints: str) -> str:
        return _sql.matching_rows_of(
            f"({_sql.distinct_cell_prints(cells, n)}) o LEFT SEMI JOIN {prints} s ON {_sql.fingerprint_match('o', 's')}",
            n, _sql.hash_join_hint("s"))

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
    md5/sha1/sha256 and a semi-join on 96-bit fingerprints (``_sql.fingerprint``).

    Args:
        pseudonym_columns: the pseudonym columns to check.
        source: a DataFrame or temp view name with the raw identifiers.
        source_columns: which source columns hold them (default: all columns of ``source``).
        algorithms: digests to try (md5, sha1, sha224, sha256, sha384, sha512).
        digests, digest_lengths: the candidates computed once for several checks of the same
            source (``expectations.digests.unkeyed_digests``: its frame, or a view of it, and its
            ``lengths``); a pseudonym of a digest's length outside ``digest_lengths`` fails the
            check as unchecked. Without them the check computes the candidates from ``source``.
    """

    pseudonym_columns: List[str]
    algorithms: List[Literal["md5", "sha1", "sha224", "sha256", "sha384", "sha512"]] = ["md5", "sha1", "sha256"]
    digests: Optional[str] = None
    digest_lengths: Optional[List[int]] = None

    _checked_field: ClassVar[str] = "pseudonym_columns"

    @classmethod
    def _query(cls, values):
        pseudonyms = values["pseudonym_columns"] = _sql.column_list(values.get("pseudonym_columns"), "pseudonym_columns")
        algorithms = checked_algorithms(values.get("algorithms"))
        source, source_columns = cls._source(values)
        n = len(pseudonyms)
        possible = digest_lengths(algorithms)
        # Only cells of a digest's length can be one: the others skip the join.
        # Normalized inside the generator: the length filter would otherwise be pushed below a
        # projection and normalize every cell twice (10M pseudonymized rows: 19 -> 16 s).
        text = PSEUDONYM_TEXT.replace("{x}", "CAST({col} AS STRING)")
        cells = (f"cells AS (SELECT column_index, v FROM (SELECT {_sql.stack_columns(pseudonyms, text)} "
                 f"FROM {{batch}}) p0 WHERE length(v) IN ({', '.join(map(str, possible))}))")
        if values.get("digests") is None:
            values_of_source = _sql.union_of_columns(source, source_columns, "CAST({col} AS STRING)")
            # Only digest forms whose length some pseudonym has are computed (64-hex pseudonyms:
            # sha256's hex; 22-character ones: md5's base64url and the 128-bit prefix of the others).
            return (
                f"WITH {cells}, lens AS (SELECT collect_set(length(v)) AS lengths FROM cells), "
                f"digests AS ({digests_sql(values_of_source, bool(values.get('source_distinct')), algorithms, None, 'lens')}) "
                + cls._matches("cells", n, "digests", "h")
            )
        digests = values["digests"]
        if _sql.is_dataframe(digests):
            digests = values["digests"] = _sql.register_view(digests, "digests")
        else:
            _sql.view_ident(digests)
        covered = sorted({int(length) for length in values.get("digest_lengths") or []} & set(possible))
        values["digest_lengths"] = covered
        listed = ", ".join(map(str, covered))
        if not covered:
            # Fail closed: a pseudonym the given digests were not computed for is not called clean.
            return (f"WITH {cells} SELECT column_index, 0 AS matching_rows, COUNT(*) AS unchecked_rows FROM cells "
                    "GROUP BY column_index")
        if set(covered) == set(possible):
            found = cls._matches("cells", n, _sql.view_ident(digests), None)
            return f"WITH {cells} SELECT column_index, matching_rows, 0 AS unchecked_rows FROM ({found}) m"
        return f"WITH {cells} " + cls._matches_and_unchecked("cells", n, _sql.view_ident(digests), listed)

    @classmethod
    def _matches(cls, cells: str, n: int, digests: str, digest_text: Optional[str]) -> str:
        """Rows (column_index, matching_rows) of the cells whose fingerprint a digest has;
        ``digest_text``: the digests' text column to fingerprint (None: already ``fa``, ``fb``)."""
        prints = f"(SELECT {_sql.fingerprint(digest_text)} FROM {digests})" if digest_text else digests
        return _sql.matching_rows_of(
            f"({_sql.distinct_cell_prints(cells, n)}) p LEFT SEMI JOIN {prints} d ON {_sql.fingerprint_match('p', 'd')}",
            n, _sql.hash_join_hint("d"))

    @classmethod
    def _matches_and_unchecked(cls, cells: str, n: int, digests: str, covered: str) -> str:
        """Rows (column_index, matching_rows, unchecked_rows) in ONE pass over the cells: a cell of a
        length the digests cover (``covered``: a SQL list) that a digest's fingerprint has is
        matching, a cell of another length unchecked (fail closed). An existence join keeps every
        distinct cell fingerprint once whatever the digests repeat, where a semi-join for the
        matches and a second scan for the unchecked cells read the cells twice (10M pseudonymized
        rows: 22-23 -> 20 s, Session 36). A fingerprint whose cells are unchecked is counted as
        unchecked only: the check fails either way."""
        counts = ", ".join(f"count_if(column_index = {i}) AS n{i}, "
                           f"count_if(column_index = {i} AND length(v) NOT IN ({covered})) AS u{i}" for i in range(n))
        any_unchecked = " + ".join(f"u{i}" for i in range(n))
        prints = (f"(SELECT *, {any_unchecked} AS u FROM (SELECT fa, fb, {counts} FROM (SELECT column_index, v, "
                  f"{_sql.fingerprint('v')} FROM {cells}) c GROUP BY fa, fb) g) p")
        sums = ", ".join(f"sum(if(u = 0, n{i}, 0)) AS m{i}, sum(u{i}) AS u{i}" for i in range(n))
        triples = ", ".join(f"{i}, m{i}, u{i}" for i in range(n))
        # The hint sits in the subquery, on the digests: the existence join builds its hash table
        # from them (cached, already partitioned on the fingerprint) and streams the cells.
        exists = (f"EXISTS (SELECT {_sql.hash_join_hint('d')} 1 FROM {digests} d "
                  f"WHERE {_sql.fingerprint_match('d', 'p')})")
        return (f"SELECT column_index, matching_rows, unchecked_rows FROM (SELECT stack({n}, {triples}) AS "
                f"(column_index, matching_rows, unchecked_rows) FROM (SELECT {sums} FROM {prints} "
                f"WHERE u > 0 OR {exists}) f) r WHERE matching_rows > 0 OR unchecked_rows > 0")

    @classmethod
    def _describe(cls, values):
        return (
            f"({', '.join(values['pseudonym_columns'])}) match no unkeyed "
            f"{'/'.join(values.get('algorithms') or ['md5', 'sha1', 'sha256'])} hash of "
            f"({', '.join(values['source_columns'])}), raw or NFKC/strip/lowercase-normalized"
        )

    def _summarize(self, rows):
        checked = self.pseudonym_columns
        matching, unchecked = {}, {}
        for row in sorted(rows, key=lambda r: int(r["column_index"])):
            column = checked[int(row["column_index"])]
            for counts, field in ((matching, "matching_rows"), (unchecked, "unchecked_rows")):
                if int(row.get(field) or 0):
                    counts[column] = counts.get(column, 0) + int(row[field])
        parts = []
        if matching:
            parts.append(f"{_plural(len(matching), 'pseudonym column')} {_hold(matching)} unkeyed hashes of source identifiers: "
                         + ", ".join(f"{c} ({_plural(k, 'row')})" for c, k in matching.items()))
        if unchecked:
            parts.append(f"{_plural(len(unchecked), 'pseudonym column')} {_hold(unchecked)} values of a digest's length the given "
                         f"digests do not cover (lengths {self.digest_lengths}), unchecked: "
                         + ", ".join(f"{c} ({_plural(k, 'row')})" for c, k in unchecked.items()))
        columns = [c for c in checked if c in matching or c in unchecked]
        counts = {"matching_rows": matching, **({"unchecked_rows": unchecked} if unchecked else {})}
        return sum(matching.values()) + sum(unchecked.values()), "; ".join(parts), columns, counts
