"""Re-identification gates for wasure releases and lake tables (APPI 匿名加工情報 / 仮名加工情報).

Great Expectations 1.x custom expectations (``expectations.custom``), builders of expectation
lists from plain policy-derived parameters (``expectations.suites``) and ``run_gate``, which
validates Spark DataFrames and writes Data Docs (``expectations.gates``). This package never
imports ``jobs``: jobs call gates, not the reverse. See docs/expectations.md.
"""
from expectations.custom import (
    WASURE_EXPECTATIONS,
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
from expectations import custom
from expectations.gates import Failure, GateResult, run_gate
from expectations.suites import (
    columns_of_classes,
    pseudonymized_suite,
    release_suite,
    retention_suite,
)

__all__ = [
    *custom.__all__,
    "Failure",
    "GateResult",
    "run_gate",
    "release_suite",
    "pseudonymized_suite",
    "retention_suite",
    "columns_of_classes",
]
