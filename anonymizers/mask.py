"""Masking: hide all but the last few characters ('************1234').

Lengths count Unicode code points (Spark's char_length), so '山田太郎' masks four characters, not
twelve UTF-8 bytes. A value no longer than ``keep_last`` is masked entirely: showing all of it
would not be masking.
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from anonymizers.registry import OperatorError, register, require_column


@register("mask")
def mask(df: DataFrame, column: str, keep_last: int = 4, char: str = "*") -> DataFrame:
    require_column(df, column, "column")
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0:
        raise OperatorError("keep_last must be a non-negative integer")
    if not isinstance(char, str) or len(char) != 1:
        raise OperatorError("char must be exactly one character")
    value = F.col(column).cast("string")
    length = F.char_length(value)
    fill = F.lit(char)
    masked = F.when(length <= keep_last, F.repeat(fill, length)).otherwise(
        F.concat(F.repeat(fill, length - keep_last), F.right(value, F.lit(keep_last))))
    return df.withColumn(column, masked)
