"""Top and bottom coding (特異な記述の削除): rare extremes become an open-ended class.

A 104-year-old or a 3 kg adult is identifying on its own; '90+' is not. Other values are kept, as
strings, so the column has one type.
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, FloatType

from anonymizers.registry import OperatorError, number_label, numeric_column, real_number, register


@register("top_bottom_code")
def top_bottom_code(df: DataFrame, column: str, top: float | None = None,
                    bottom: float | None = None) -> DataFrame:
    """Values >= ``top`` become '<top>+', values <= ``bottom`` become '<=<bottom>'; NaN becomes null."""
    numeric_column(df, column, "column")
    if top is None and bottom is None:
        raise OperatorError("give top, bottom or both")
    if top is not None:
        real_number(top, "top")
    if bottom is not None:
        real_number(bottom, "bottom")
    if top is not None and bottom is not None and bottom >= top:
        raise OperatorError("bottom must be smaller than top")
    col = F.col(column)
    expr = F.when(col.isNull(), F.lit(None).cast("string"))
    if isinstance(df.schema[column].dataType, (FloatType, DoubleType)):
        expr = expr.when(F.isnan(col), F.lit(None).cast("string"))  # NaN would pass `>= top`
    if top is not None:
        expr = expr.when(col >= top, F.lit(f"{number_label(top)}+"))
    if bottom is not None:
        expr = expr.when(col <= bottom, F.lit(f"<={number_label(bottom)}"))
    return df.withColumn(column, expr.otherwise(col.cast("string")))
