"""Drop columns outright (削除): the only treatment that leaves nothing to re-identify."""
from __future__ import annotations

from typing import Sequence

from pyspark.sql import DataFrame

from anonymizers.registry import column_list, register


@register("drop")
def drop(df: DataFrame, columns: str | Sequence[str]) -> DataFrame:
    # Missing columns are an error, not a no-op: a typo in a policy must not silently keep PII.
    return df.drop(*column_list(df, columns))
