"""Generalization (一般化): replace a precise value by the class it falls in.

Spark SQL functions only (no UDF), so these run in the JVM at scan speed. Values that cannot be
generalized (unparseable dates, addresses with no recognisable prefecture) become null: keeping the
precise value would defeat the operator.
"""
from __future__ import annotations

import datetime as dt
from typing import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, FloatType, DoubleType, StringType, TimestampNTZType, TimestampType

from anonymizers.registry import (OperatorError, number_label, numeric_column, real_number, register,
                                  require_column, string_column)

DATE_LEVELS = {"month": "yyyy-MM", "year": "yyyy"}
ADDRESS_LEVELS = ("prefecture", "city")

PREFECTURES = (
    "北海道", "青森県", "岩手県", "宮城県", "秋田県", "山形県", "福島県", "茨城県", "栃木県", "群馬県",
    "埼玉県", "千葉県", "東京都", "神奈川県", "新潟県", "富山県", "石川県", "福井県", "山梨県", "長野県",
    "岐阜県", "静岡県", "愛知県", "三重県", "滋賀県", "京都府", "大阪府", "兵庫県", "奈良県", "和歌山県",
    "鳥取県", "島根県", "岡山県", "広島県", "山口県", "徳島県", "香川県", "愛媛県", "高知県", "福岡県",
    "佐賀県", "長崎県", "熊本県", "大分県", "宮崎県", "鹿児島県", "沖縄県",
)
# The 47 names spelled out rather than `^.{2,3}?[都道府県]`, which also matches addresses written
# without a prefecture (大阪市都島区 -> 大阪市都).
_PREF = "(?:" + "|".join(PREFECTURES) + ")"
# A municipality is the shortest text ending in 市/区/町/村, optionally after a county (郡; the county
# keeps its town: 虻田郡倶知安町). Names with one of those characters inside would be cut short
# (四日市市 -> 四日市), so the known ones are listed first. Designated cities stop at 市 (横浜市中区 ->
# 横浜市): the ward is finer than a municipality.
_COUNTY = "(?:余市郡|高市郡|[北西東]村山郡|[^市区町村郡]{1,4}郡)"
_MUNI = ("(?:四日市市|廿日市市|野々市市|十日町市|大町市|東村山市|武蔵村山市|羽村市|大村市|田村市|"
         "玉村町|上市町|大町町|余市町|.+?[市区町村])")
_ADDRESS_PATTERNS = {
    "prefecture": f"^({_PREF})",
    "city": f"^({_PREF}?{_COUNTY}?{_MUNI})",
}


def _choice(value: object, allowed, param: str):
    if value not in allowed:
        raise OperatorError(f"{param} must be one of {', '.join(allowed)}")
    return value


def _as_date(df: DataFrame, column: str, param: str) -> Column:
    require_column(df, column, param)
    data_type = df.schema[column].dataType
    if isinstance(data_type, DateType):
        return F.col(column)
    if isinstance(data_type, (TimestampType, TimestampNTZType)):
        return F.to_date(F.col(column))
    if isinstance(data_type, StringType):
        return F.try_to_date(F.col(column))  # unparseable -> null instead of failing the job (ANSI)
    raise OperatorError(f"{param}: column {column!r} must be a date, timestamp or ISO date string, "
                        f"not {data_type.simpleString()}")


def _null_if_empty(col: Column) -> Column:
    return F.when(col == "", F.lit(None).cast("string")).otherwise(col)


@register("generalize_date")
def generalize_date(df: DataFrame, column: str, level: str) -> DataFrame:
    """Date -> 'YYYY-MM' (level='month') or 'YYYY' (level='year'), as a string column."""
    pattern = DATE_LEVELS[_choice(level, tuple(DATE_LEVELS), "level")]
    return df.withColumn(column, F.date_format(_as_date(df, column, "column"), pattern))


@register("age_band")
def age_band(df: DataFrame, birth_date_col: str, as_of: dt.date, width: int = 5, top: int | None = 90,
             output: str = "age_band") -> DataFrame:
    """Age on ``as_of`` in bands of ``width`` years ('35-39'), top-coded as '90+'.

    The birth date column is replaced by ``output``: keeping it next to the band would defeat the
    generalization. Birth dates after ``as_of`` give null.
    """
    birth = _as_date(df, birth_date_col, "birth_date_col")
    if not isinstance(as_of, dt.date):
        raise OperatorError("as_of must be a datetime.date")
    if isinstance(as_of, dt.datetime):
        as_of = as_of.date()
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise OperatorError("width must be a positive integer number of years")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise OperatorError("top must be a positive integer age or None")
    if not isinstance(output, str) or not output:
        raise OperatorError("output must be a non-empty column name")

    # Completed years: the birthday this year counts only once it has been reached.
    before_birthday = (F.month(birth) * 100 + F.dayofmonth(birth)) > (as_of.month * 100 + as_of.day)
    age = F.lit(as_of.year) - F.year(birth) - F.when(before_birthday, 1).otherwise(0)
    lower = age - age % width
    upper = lower + (width - 1) if top is None else F.least(lower + (width - 1), F.lit(top - 1))
    band = F.when(age < 0, F.lit(None).cast("string"))
    if top is not None:
        band = band.when(age >= top, F.lit(f"{top}+"))
    band = band.otherwise(F.concat(lower.cast("string"), F.lit("-"), upper.cast("string")))
    out = df.withColumn(output, band)
    return out if output == birth_date_col else out.drop(birth_date_col)


@register("generalize_address")
def generalize_address(df: DataFrame, column: str, level: str) -> DataFrame:
    """Japanese address -> '東京都' (level='prefecture') or '東京都千代田区' (level='city').

    Spaces and a leading postal code (〒100-0001) are ignored. No match gives null.
    """
    _choice(level, ADDRESS_LEVELS, "level")
    string_column(df, column, "column")
    cleaned = F.regexp_replace(F.col(column), r"[\s\u3000]+", "")
    cleaned = F.regexp_replace(cleaned, r"^〒?[0-9０-９]{3}[-－‐ー−]?[0-9０-９]{4}", "")
    return df.withColumn(column, _null_if_empty(F.regexp_extract(cleaned, _ADDRESS_PATTERNS[level], 1)))


@register("bin_numeric")
def bin_numeric(df: DataFrame, column: str, edges: Sequence[float]) -> DataFrame:
    """Number -> its interval label '[10,20)'; below the first edge '<10', from the last '>=100'."""
    numeric_column(df, column, "column")
    if isinstance(edges, (str, bytes)) or not isinstance(edges, Sequence) or len(edges) < 2:
        raise OperatorError("edges must be a list of at least two numbers")
    edges = [real_number(e, "edges") for e in edges]
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise OperatorError("edges must be strictly increasing")
    col = F.col(column)
    labels = [number_label(e) for e in edges]
    missing = col.isNull()
    if isinstance(df.schema[column].dataType, (FloatType, DoubleType)):
        missing = missing | F.isnan(col)  # NaN compares greater than every edge in Spark
    expr = F.when(missing, F.lit(None).cast("string")).when(col < edges[0], F.lit(f"<{labels[0]}"))
    for i in range(1, len(edges)):
        expr = expr.when(col < edges[i], F.lit(f"[{labels[i - 1]},{labels[i]})"))
    return df.withColumn(column, expr.otherwise(F.lit(f">={labels[-1]}")))
