"""Builders of expectation lists from plain parameters the caller derives from its policy.

Nothing here reads a policy: ``jobs/`` maps its policy objects to column lists, k, l, thresholds
and DataFrames, and passes them in. Each builder returns a list of expectation instances for
``run_gate`` (or for any GE suite).
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from expectations import _sql
from expectations.custom import (
    ExpectNoErasedSubjects,
    ExpectNoForbiddenColumns,
    ExpectNoRareValues,
    ExpectNoRowsPastRetention,
    ExpectNoSourceValuesInColumns,
    ExpectPseudonymsNotUnkeyedHashes,
    ExpectQuasiIdentifierClassesToHaveAtLeastK,
    ExpectRegionColumnToEqual,
    ExpectSensitiveAttributeToBeLDiverse,
)
from expectations.digests import UnkeyedDigests
from expectations.source_prints import SourcePrints


def columns_of_classes(column_classes: Mapping[str, str], classes: Iterable[str]) -> dict[str, str]:
    """``{column: class}`` restricted to ``classes``: the forbidden-column map for a table. Which
    classes an output may not carry is the policy's to say (jobs.policy.TREATMENTS:
    PSEUDONYMIZED_FORBIDDEN, RELEASE_FORBIDDEN), not the suites'."""
    wanted = {str(c) for c in classes}
    return {column: str(klass) for column, klass in column_classes.items() if str(klass) in wanted}


def _shared_source(source: Any, source_columns: Optional[Sequence[str]]) -> tuple[Any, Optional[list[str]]]:
    # Register a DataFrame once so both source-joining expectations read the same view.
    if source is not None and _sql.is_dataframe(source):
        columns = list(source_columns) if source_columns else list(source.columns)
        return _sql.register_view(source, "source"), columns
    return source, (list(source_columns) if source_columns else None)


def release_suite(
    qis: Sequence[str],
    k: int,
    sensitive: Sequence[str] = (),
    l: Optional[int] = None,  # noqa: E741 - the policy's name
    forbidden_columns: Union[Mapping[str, str], Sequence[str]] = (),
    rare_thresholds: Optional[Mapping[str, Mapping]] = None,
    *,
    l_variant: str = "distinct",
    output_columns: Sequence[str] = (),
    source: Any = None,
    source_columns: Optional[Sequence[str]] = None,
) -> list:
    """Gates for a 匿名加工情報 release table.

    Args:
        qis: quasi-identifier columns (as released, i.e. generalized).
        k: minimum equivalence-class size.
        sensitive: sensitive columns; each must be l-diverse when ``l`` > 1.
        l: required diversity (``None`` or 1: no l-diversity check).
        forbidden_columns: names (or ``{name: class}``) that must not be in the release.
        rare_thresholds: ``{"numeric_bounds": {col: (min, max)}, "category_min_counts": {col: n}}``.
        l_variant: ``"distinct"`` or ``"entropy"``.
        output_columns, source, source_columns: when given, no output value may equal a raw
            identifying value of ``source`` (a DataFrame or temp view name).
    """
    suite: list = []
    if forbidden_columns:
        suite.append(ExpectNoForbiddenColumns(forbidden_columns=_forbidden(forbidden_columns)))
    suite.append(ExpectQuasiIdentifierClassesToHaveAtLeastK(quasi_identifiers=list(qis), k=k))
    if l is not None and l > 1:
        for column in sensitive:
            suite.append(
                ExpectSensitiveAttributeToBeLDiverse(
                    quasi_identifiers=list(qis), sensitive_column=column, l=l, variant=l_variant
                )
            )
    if rare_thresholds:
        suite.append(
            ExpectNoRareValues(
                numeric_bounds=dict(rare_thresholds.get("numeric_bounds") or {}),
                category_min_counts=dict(rare_thresholds.get("category_min_counts") or {}),
            )
        )
    if source is not None and output_columns:
        source, source_columns = _shared_source(source, source_columns)
        suite.append(
            ExpectNoSourceValuesInColumns(
                output_columns=list(output_columns), source=source, source_columns=source_columns
            )
        )
    return suite


def pseudonymized_suite(
    pseudonym_columns: Sequence[str],
    source: Any,
    source_columns: Optional[Sequence[str]] = None,
    forbidden_columns: Union[Mapping[str, str], Sequence[str]] = (),
    *,
    output_columns: Sequence[str] = (),
    algorithms: Optional[Sequence[str]] = None,
    region_column: Optional[str] = None,
    region: Optional[str] = None,
    source_distinct: bool = False,
    digests: Optional[UnkeyedDigests] = None,
    source_prints: Optional[SourcePrints] = None,
) -> list:
    """Gates for a 仮名加工情報 table.

    Args:
        pseudonym_columns: columns holding pseudonyms; none may be an unkeyed hash of a source
            identifier (raw or NFKC/strip/lowercase-normalized).
        source: DataFrame or temp view name with the raw identifiers (e.g. the accounts table's
            identifying and linking-code columns).
        source_columns: the identifier columns of ``source`` (default: all).
        forbidden_columns: names (or ``{name: class}``) that must be gone.
        output_columns: when given, none of these may hold a raw identifier value.
        algorithms: digests to try (default md5, sha1, sha256).
        region_column, region: when given, every row must belong to ``region``.
        source_distinct: ``source`` already holds each value once (the queries skip their DISTINCT).
        digests: the unkeyed digests of ``source``, built once (``expectations.digests.unkeyed_digests``)
            for the outputs of several purposes; the unkeyed-hash check uses them and their algorithms.
        source_prints: the fingerprints of ``source``'s values, built once
            (``expectations.source_prints.source_prints``); the source-value check joins them.
    """
    source, source_columns = _shared_source(source, source_columns)
    suite: list = []
    if forbidden_columns:
        suite.append(ExpectNoForbiddenColumns(forbidden_columns=_forbidden(forbidden_columns)))
    hashes: dict[str, Any] = dict(pseudonym_columns=list(pseudonym_columns), source=source, source_columns=source_columns,
                                  source_distinct=source_distinct)
    if algorithms:
        hashes["algorithms"] = list(algorithms)
    if digests is not None:
        if algorithms and list(algorithms) != list(digests.algorithms):
            raise ValueError(f"algorithms {list(algorithms)} differ from the digests' {list(digests.algorithms)}")
        hashes.update(digests=_sql.register_view(digests.frame, "digests"), digest_lengths=list(digests.lengths),
                      algorithms=list(digests.algorithms))
    suite.append(ExpectPseudonymsNotUnkeyedHashes(**hashes))
    if output_columns:
        shared = {}
        if source_prints is not None:
            shared = dict(source_prints=_sql.register_view(source_prints.frame, "source_prints"),
                          source_lengths=list(source_prints.lengths))
        suite.append(
            ExpectNoSourceValuesInColumns(
                output_columns=list(output_columns), source=source, source_columns=source_columns,
                source_distinct=source_distinct, **shared,
            )
        )
    if region_column and region:
        suite.append(ExpectRegionColumnToEqual(region_column=region_column, region=region))
    return suite


def retention_suite(
    date_column: Optional[str],
    cutoff: Union[str, date, datetime, None],
    subject_column: Optional[str] = None,
    held_subjects: Any = None,
    held_subject_column: Optional[str] = None,
    *,
    hash_column: Optional[str] = None,
    deletion_ledger: Any = None,
    ledger_hash_column: Optional[str] = None,
    region_column: Optional[str] = None,
    region: Optional[str] = None,
) -> list:
    """Gates for a lake table after retention and erasure ran.

    Args:
        date_column, cutoff: no row older than ``cutoff`` (skipped when either is None, e.g. a
            table retained by account closure rather than business date).
        subject_column, held_subjects, held_subject_column: rows of subjects in ``held_subjects``
            (DataFrame or view: legal holds) are exempt.
        hash_column, deletion_ledger, ledger_hash_column: no row's keyed subject hash is in the
            deletion ledger (both required to add the check).
        region_column, region: every row belongs to ``region``.
    """
    suite: list = []
    if date_column and cutoff is not None:
        suite.append(
            ExpectNoRowsPastRetention(
                date_column=date_column,
                cutoff=cutoff,
                subject_column=subject_column,
                held_subjects=held_subjects,
                held_subject_column=held_subject_column,
            )
        )
    if hash_column and deletion_ledger is not None:
        suite.append(
            ExpectNoErasedSubjects(
                hash_column=hash_column, ledger=deletion_ledger, ledger_hash_column=ledger_hash_column
            )
        )
    if region_column and region:
        suite.append(ExpectRegionColumnToEqual(region_column=region_column, region=region))
    return suite


def _forbidden(columns: Union[Mapping[str, str], Sequence[str]]) -> Union[dict, list]:
    return dict(columns) if isinstance(columns, Mapping) else list(columns)
