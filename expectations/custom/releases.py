"""Release gates: no column of a forbidden class, no source value copied into a release, no pseudonym
that is an unkeyed hash of a source identifier."""
from __future__ import annotations

from typing import Any, ClassVar, Dict, List, Literal, Optional, Tuple, Union

from great_expectations.compatibility import pydantic
from great_expectations.expectations.expectation import BatchExpectation

from expectations import _sql
from expectations.custom.base import _plural, _WasureResultMixin, _WasureRowsExpectation


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
