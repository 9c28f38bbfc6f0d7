"""Lake-table gates: no row past its retention, no erased subject, every row in the expected region."""
from __future__ import annotations

from typing import Optional

from expectations import _sql
from expectations.custom.base import _plural, _WasureRowsExpectation


class ExpectNoRowsPastRetention(_WasureRowsExpectation):
    """No row's ``date_column`` is before ``cutoff``, except rows of held subjects.

    Args:
        date_column: the table's business date / timestamp column.
        cutoff: ISO date (``2026-01-31``) or naive timestamp; rows strictly before it are expired.
        subject_column: the subject key (required with ``held_subjects``).
        held_subjects: DataFrame or temp view name of subjects under legal hold.
        held_subject_column: their key column in ``held_subjects`` (default ``subject_column``).

    Dates that are null or do not parse are not judged (retention cannot be computed for them).
    """

    date_column: str
    cutoff: str
    subject_column: Optional[str] = None
    held_subjects: Optional[str] = None
    held_subject_column: Optional[str] = None

    @classmethod
    def _query(cls, values):
        d = _sql.ident(values.get("date_column"))
        values["cutoff"], literal = _sql.cutoff_literal(values.get("cutoff"))
        as_type = "DATE" if literal.startswith("DATE") else "TIMESTAMP"
        expired = f"try_cast(b.{d} AS {as_type}) < {literal}"
        held = values.get("held_subjects")
        if held is None:
            return (
                "SELECT expired_rows, 0 AS held_rows FROM "
                f"(SELECT COUNT(*) AS expired_rows FROM {{batch}} b WHERE {expired}) x WHERE expired_rows > 0"
            )
        if _sql.is_dataframe(held):
            held = values["held_subjects"] = _sql.register_view(held, "held")
        subject = values.get("subject_column")
        if not subject:
            raise ValueError("held_subjects needs subject_column")
        held_column = values["held_subject_column"] = values.get("held_subject_column") or subject
        key, held_key = _sql.ident(subject), _sql.ident(held_column)
        return (
            # Legal holds are few (hundreds, not millions of subjects): broadcast them rather than
            # shuffle and sort every row of the table for the join (2.9 -> 1.4 s on 10M rows).
            "SELECT expired_rows, held_rows FROM (SELECT /*+ BROADCAST(h) */ "
            "COALESCE(SUM(CASE WHEN h.held_subject IS NULL THEN 1 ELSE 0 END), 0) AS expired_rows, "
            "COALESCE(SUM(CASE WHEN h.held_subject IS NULL THEN 0 ELSE 1 END), 0) AS held_rows "
            f"FROM {{batch}} b LEFT JOIN (SELECT DISTINCT {held_key} AS held_subject FROM "
            f"{_sql.view_ident(held)} WHERE {held_key} IS NOT NULL) h ON b.{key} = h.held_subject "
            f"WHERE {expired}) x WHERE expired_rows > 0"
        )

    @classmethod
    def _describe(cls, values):
        text = f"No row has {values['date_column']} before {values['cutoff']}"
        if values.get("held_subjects"):
            text += " unless its subject is under legal hold"
        return text

    def _columns(self):
        return [self.date_column]

    def _summarize(self, rows):
        row = rows[0]
        expired, held = int(row["expired_rows"]), int(row["held_rows"])
        summary = f"{_plural(expired, 'row')} older than the cutoff {self.cutoff}"
        if self.held_subjects:
            summary += f" ({_plural(held, 'older row')} kept for held subjects)"
        return expired, summary, self._columns(), {"expired_rows": expired, "held_rows": held}


class ExpectNoErasedSubjects(_WasureRowsExpectation):
    """No row belongs to an erased subject: its keyed subject hash is not in the deletion ledger.

    Args:
        hash_column: the column with the keyed hash of the subject id (computed by the caller
            with the ledger's key, so raw ids never meet the ledger).
        ledger: DataFrame or temp view name of the deletion ledger.
        ledger_hash_column: the keyed-hash column in the ledger (default ``hash_column``).
    """

    hash_column: str
    ledger: str
    ledger_hash_column: Optional[str] = None

    @classmethod
    def _query(cls, values):
        h = _sql.ident(values.get("hash_column"))
        ledger = values.get("ledger")
        if _sql.is_dataframe(ledger):
            ledger = values["ledger"] = _sql.register_view(ledger, "ledger")
        values["ledger_hash_column"] = values.get("ledger_hash_column") or values["hash_column"]
        lh = _sql.ident(values["ledger_hash_column"])
        return (
            "SELECT erased_rows, erased_subjects FROM (SELECT COUNT(*) AS erased_rows, "
            f"COUNT(DISTINCT b.{h}) AS erased_subjects FROM {{batch}} b LEFT SEMI JOIN "
            f"(SELECT {lh} AS h FROM {_sql.view_ident(ledger)}) l ON b.{h} = l.h) x WHERE erased_rows > 0"
        )

    @classmethod
    def _describe(cls, values):
        return f"No {values['hash_column']} appears in the deletion ledger ({values['ledger_hash_column']})"

    def _columns(self):
        return [self.hash_column]

    def _summarize(self, rows):
        row = rows[0]
        erased_rows, subjects = int(row["erased_rows"]), int(row["erased_subjects"])
        summary = f"{_plural(erased_rows, 'row')} of {_plural(subjects, 'erased subject')} still present"
        return erased_rows, summary, self._columns(), {"erased_rows": erased_rows, "erased_subjects": subjects}


class ExpectRegionColumnToEqual(_WasureRowsExpectation):
    """Every row of a region's table carries that region (null counts as another region).

    Args:
        region_column: the table's region column.
        region: the region code the table holds, e.g. ``"JP"``.
    """

    region_column: str
    region: str

    @classmethod
    def _query(cls, values):
        c = _sql.ident(values.get("region_column"))
        literal = _sql.region_literal(values.get("region"))
        return (
            "SELECT other_rows, null_rows, other_regions FROM (SELECT COUNT(*) AS other_rows, "
            f"COALESCE(SUM(CASE WHEN {c} IS NULL THEN 1 ELSE 0 END), 0) AS null_rows, "
            f"COUNT(DISTINCT {c}) AS other_regions FROM {{batch}} "
            f"WHERE {c} IS NULL OR CAST({c} AS STRING) <> {literal}) x WHERE other_rows > 0"
        )

    @classmethod
    def _describe(cls, values):
        return f"Every row has {values['region_column']} = {values['region']}"

    def _columns(self):
        return [self.region_column]

    def _summarize(self, rows):
        row = rows[0]
        other, nulls, regions = int(row["other_rows"]), int(row["null_rows"]), int(row["other_regions"])
        summary = (
            f"{_plural(other, 'row')} not of region {self.region} "
            f"({_plural(regions, 'other region')}, {_plural(nulls, 'null')})"
        )
        return other, summary, self._columns(), {"other_rows": other, "null_rows": nulls, "other_regions": regions}
