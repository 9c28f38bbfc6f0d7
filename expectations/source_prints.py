"""The right side of the source-value check: the fingerprints of every source value, built once.

``ExpectNoSourceValuesInColumns`` normalizes the source's values (trim, lowercase), learns their
lengths and fingerprints them inside its own query, from its ``source``. A caller that checks
several outputs of the same source (one per purpose) builds them once with ``source_prints`` and
hands the result to each check: at 10M rows the source side was a third of each check (its
fingerprints shuffled again and its lengths collected again for every purpose).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from expectations import _sql

# How a value compares, on both sides of the check: trimmed and lowercased (a change of case does
# not hide a copied e-mail address).
VALUE_TEXT = "lower(trim({x}))"


def source_values_sql(values_of_source: str, distinct: bool) -> str:
    """A query of one column ``v``: every normalized, non-blank value of ``values_of_source``."""
    text = VALUE_TEXT.replace("{x}", "v")
    return (f"SELECT {'' if distinct else 'DISTINCT '}{text} AS v FROM ({values_of_source}) u "
            "WHERE v IS NOT NULL AND trim(v) <> ''")


@dataclass(frozen=True)
class SourcePrints:
    """The fingerprints (``fa``, ``fb``) of every normalized source value and ``lengths``, the
    lengths those values have (a cell of another length cannot equal one); hash-partitioned on the
    fingerprint, so a join against it shuffles only the cells. Persist ``frame`` to share it
    between checks (``source_prints`` does, and collects the lengths), and unpersist it after."""
    frame: Any
    lengths: tuple[int, ...]


def source_prints(source: Any, *, source_columns: Optional[Sequence[str]] = None,
                  source_distinct: bool = False) -> SourcePrints:
    """The normalized values' fingerprints ``ExpectNoSourceValuesInColumns`` would compute from
    ``source`` (a DataFrame), persisted with the lengths learned in the same read.

        prints = source_prints(identifiers, source_distinct=True)
        pseudonymized_suite(["email"], identifiers, output_columns=[...], source_prints=prints)
        prints.frame.unpersist()
    """
    columns = _sql.column_list(list(source_columns) if source_columns else list(source.columns), "source_columns")
    values = _sql.source_values(source, columns, "prints_source")
    frame = _sql.partitioned_on_fingerprint(
        source.sparkSession,
        f"SELECT {_sql.fingerprint('v')}, length(v) AS n FROM ({source_values_sql(values, source_distinct)}) s")
    frame = frame.persist()
    lengths = tuple(sorted(int(row[0]) for row in frame.select("n").distinct().collect()))
    return SourcePrints(frame, lengths)
