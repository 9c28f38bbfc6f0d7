"""Operators by name, Presidio style: a policy names a technique, the engine looks it up here.

Every operator is a pure function ``(df, **params) -> DataFrame``. Parameter problems raise
``OperatorError`` naming the parameter and what is wrong; messages never quote a data value or a key,
because they end up in job logs.
"""
from __future__ import annotations

from typing import Callable, Sequence

from pyspark.sql import DataFrame

Operator = Callable[..., DataFrame]
OPERATORS: dict[str, Operator] = {}


class OperatorError(ValueError):
    """An operator was called with an invalid parameter."""


def register(name: str) -> Callable[[Operator], Operator]:
    def decorator(func: Operator) -> Operator:
        known = OPERATORS.get(name)
        # Re-registering the same function (a module reload) is fine; a second function is a clash.
        if known is not None and (known.__module__, known.__qualname__) != (func.__module__, func.__qualname__):
            raise OperatorError(f"operator {name!r} is already registered")
        OPERATORS[name] = func
        return func

    return decorator


def get_operator(name: str) -> Operator:
    # Importing the package registers every built-in operator, whoever imported the registry first.
    import anonymizers  # noqa: F401

    try:
        return OPERATORS[name]
    except KeyError:
        raise OperatorError(f"unknown operator {name!r}; known: {', '.join(sorted(OPERATORS))}") from None


# ---- parameter checks shared by the operators ----

def column_list(df: DataFrame, columns: str | Sequence[str], param: str = "columns") -> list[str]:
    """``columns`` as a non-empty list of existing column names (a bare string is one column)."""
    if isinstance(columns, str):
        columns = [columns]
    if not isinstance(columns, Sequence) or not columns:
        raise OperatorError(f"{param} must be a non-empty list of column names")
    names = list(columns)
    for name in names:
        require_column(df, name, param)
    if len(set(names)) != len(names):
        raise OperatorError(f"{param} lists a column more than once")
    return names


def require_column(df: DataFrame, name: object, param: str = "column") -> str:
    if not isinstance(name, str) or not name:
        raise OperatorError(f"{param} must be a non-empty column name string")
    if name not in df.columns:
        raise OperatorError(f"{param}: column {name!r} is not in the DataFrame")
    return name


def string_column(df: DataFrame, name: str, param: str = "column") -> str:
    require_column(df, name, param)
    if df.schema[name].dataType.typeName() != "string":
        raise OperatorError(f"{param}: column {name!r} must be a string column, "
                            f"not {df.schema[name].dataType.simpleString()}")
    return name


def numeric_column(df: DataFrame, name: str, param: str = "column") -> str:
    from pyspark.sql.types import NumericType

    require_column(df, name, param)
    if not isinstance(df.schema[name].dataType, NumericType):
        raise OperatorError(f"{param}: column {name!r} must be numeric, "
                            f"not {df.schema[name].dataType.simpleString()}")
    return name


def real_number(value: object, param: str) -> float:
    # bool is an int subclass; True as a threshold is always a policy mistake.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
            or value in (float("inf"), float("-inf")):
        raise OperatorError(f"{param} must be a finite number")
    return value


def number_label(value: float) -> str:
    """10.0 -> '10', 2.5 -> '2.5': labels read like the policy that set them."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
