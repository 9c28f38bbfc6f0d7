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
from expectations.custom.anonymity import (ExpectNoRareValues, ExpectQuasiIdentifierClassesToHaveAtLeastK,
                                           ExpectSensitiveAttributeToBeLDiverse)
from expectations.custom.lake import ExpectNoErasedSubjects, ExpectNoRowsPastRetention, ExpectRegionColumnToEqual
from expectations.custom.releases import (ExpectNoForbiddenColumns, ExpectNoSourceValuesInColumns,
                                          ExpectPseudonymsNotUnkeyedHashes)


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
