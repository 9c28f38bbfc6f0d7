"""Access and portability requests (`wasure access`): APPI art. 33, GDPR art. 15/20; REQUIREMENTS S6, S12.

One request exports every row of one subject in every raw table the policy lists, grouped by table
with the policy's class and description of each column, plus the legal holds that concern them
(tables, until, reason; no case internals). Registers (consents, restrictions, third-party
provision records) are raw tables of the policy, so they are in the export like any other.
Left out, with the reason written into the export: 仮名加工情報 (pseudonymized/, retained/; APPI
art. 41(9) exempts it from disclosure requests, and 004 お客様の権利 5 promises it is not in the
portability file), anonymized releases and statistics (they no longer relate to a person).

Files go OUTSIDE the lake root (an export is the person's data in the clear; the lake's readers
must not see it): ``<out>/<request id>/`` holds ``export.json`` (+ ``export.schema.json``), one
CSV per table and ``index.html``. Credentials that could cause financial damage (card numbers,
Wi-Fi passwords: class property_damage) are exported masked (last 4 characters of a card number).
The lake keeps only counts: ``receipts/access-<request id>.json``, one row in ``state/access_requests``
(request state and deadline, subject as a keyed hash) and one in ``audit/access``.
"""
from __future__ import annotations

import csv
import datetime as dt
import html
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from anonymizers.frames import local_frame
from anonymizers.checkdigits import luhn_valid
from jobs.lake.backup_ledger import ledger_key, subject_hash
from jobs.runtime.console import InputError
from jobs.erasure import check_request_id, check_subject_ids
from jobs.lake.storage import join
from jobs.lake.layout import SUBJECT_BUCKET, Lake, append_rows, check_lake, is_delta, read_now, subject_bucket
from jobs.lake.lease import with_lease
from jobs.policy import ColumnClass, Policy

FORMATS = ("json", "csv", "html")
STATE_TABLE, AUDIT_TABLE = "access_requests", "access"
EXCLUDED = [
    {"datasets": "pseudonymized/<purpose>/<table>, pseudonymized/<purpose>/retained/<table>",
     "why": "仮名加工情報 (pseudonymized data): APPI art. 41(9) exempts it from disclosure requests, and it is "
            "kept apart from anything that identifies you; it is not part of the portability file."},
    {"datasets": "anonymized/<release>",
     "why": "匿名加工情報 (anonymized data): it no longer relates to an identifiable person (APPI art. 43)."},
    {"datasets": "statistics/<name>",
     "why": "Aggregate statistics with small-cell suppression: no row relates to a person."},
]
STATE_SCHEMA = T.StructType([
    T.StructField("request_id", T.StringType()), T.StructField("subject_hash", T.StringType()),
    T.StructField("received_at", T.TimestampType()), T.StructField("deadline", T.DateType()),
    T.StructField("state", T.StringType()), T.StructField("at", T.TimestampType()),
    T.StructField("rows_by_table", T.StringType()), T.StructField("formats", T.ArrayType(T.StringType())),
])


@dataclass
class AccessReport:
    request_id: str
    directory: str
    files: list[str]
    rows: dict[str, int]
    holds: int
    deadline: dt.date
    receipt: str
    notes: list[str] = field(default_factory=list)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def check_formats(formats: list[str] | None) -> list[str]:
    chosen = list(dict.fromkeys(formats or FORMATS))
    bad = [f for f in chosen if f not in FORMATS]
    if bad:
        raise InputError(f"--format {bad[0]!r}: one of {', '.join(FORMATS)}")
    return chosen


def check_out_dir(lake: Lake, out: str | Path, request_id: str) -> Path:
    """<out>/<request id>, outside the lake root and not an earlier export."""
    target = (Path(out).expanduser().resolve() / request_id)
    if lake.is_local and (target == lake.root or lake.root in target.parents):
        raise InputError(f"--out {out}: lies under the lake root {lake.uri}; an export holds personal data in the clear "
                         "and must be written outside the lake")
    if target.exists() and any(target.iterdir()):
        raise InputError(f"--out {out}: {target} already holds an export; choose another --request-id or --out")
    return target


def _masked(value, spec_class: ColumnClass) -> object:
    """property_damage values leave only masked: a card's last 4 characters, nothing of a password."""
    if value is None or spec_class != ColumnClass.property_damage:
        return value
    digits = re.sub(r"\D", "", str(value))
    if 12 <= len(digits) <= 19 and luhn_valid(digits):       # a card: its last 4, as on a statement
        return f"****{digits[-4:]}"
    return "[withheld for security: ask us to confirm it]"


def _jsonable(value):
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    return value


def _strip_internals(reason: str | None) -> str | None:
    """A hold's reason without case references: '(case 2026-W-0142)' stays with legal."""
    return re.sub(r"\s*\([^)]*\)", "", reason).strip() if reason else reason


def subject_rows(spark: SparkSession, policy: Policy, lake: Lake, subject: str) -> dict[str, list[dict]]:
    """table -> the subject's rows in the current version (the subject's bucket partitions only)."""
    out: dict[str, list[dict]] = {}
    for name, table in policy.tables.items():
        df = read_now(spark, lake.table_path(table))
        bucket = subject_bucket(F.lit(subject), table.subject_buckets)
        rows = df.where((F.col(SUBJECT_BUCKET) == bucket) & (F.col(table.subject_key) == subject)).drop(SUBJECT_BUCKET)
        columns = [c for c in table.columns if c in rows.columns]
        ordered = rows.select(*columns).orderBy(*[F.col(c).asc_nulls_last() for c in ([table.date_column] if table.date_column else [])])
        out[name] = [{c: _jsonable(_masked(row[c], table.column(c).class_)) for c in columns} for row in ordered.collect()]
    return out


def holds_of(spark: SparkSession, policy: Policy, lake: Lake, subject: str, as_of: dt.date) -> list[dict]:
    from jobs.lake.subjects import Registers

    held = Registers(spark, policy, lake).holds(as_of).where(F.col("subject").isNull() | (F.col("subject") == subject))
    out = {}
    for row in held.collect():
        entry = out.setdefault((_strip_internals(row.reason), row.until), {"reason": _strip_internals(row.reason),
                                                                          "until": _jsonable(row.until), "tables": set()})
        entry["tables"].add(row.table_name or "every table")
    return [{**e, "tables": sorted(e["tables"])} for e in sorted(out.values(), key=lambda e: (e["reason"] or "", str(e["until"])))]


def document(policy: Policy, request_id: str, subject: str, rows: dict[str, list[dict]], holds: list[dict],
             generated_at: dt.datetime) -> dict:
    """The export as one JSON document (see export_schema)."""
    holds_table = policy.subject.legal_holds_table
    tables = {}
    for name, table in policy.tables.items():
        if name == holds_table:
            continue          # hold internals stay with legal; the holds section says what concerns you
        tables[name] = {
            "kind": "record" if table.record_keeping else "data",
            "columns": {c: {"class": table.column(c).class_.value, "description": table.column(c).description}
                        for c in table.columns},
            "rows": rows.get(name, []),
        }
    return {"request_id": request_id, "generated_at": generated_at.isoformat(timespec="seconds") + "Z",
            "controller": policy.name, "subject_id": subject, "found": any(rows.get(n) for n in tables),
            "tables": tables, "legal_holds": holds, "excluded": EXCLUDED,
            "note": "Card numbers and credentials are shown masked; contact us to confirm one."}


def export_schema() -> dict:
    column = {"type": "object", "properties": {"class": {"type": "string"}, "description": {"type": ["string", "null"]}},
              "required": ["class"]}
    table = {"type": "object", "required": ["kind", "columns", "rows"],
             "properties": {"kind": {"enum": ["data", "record"]}, "columns": {"type": "object", "additionalProperties": column},
                            "rows": {"type": "array", "items": {"type": "object"}}}}
    hold = {"type": "object", "required": ["tables", "until", "reason"],
            "properties": {"tables": {"type": "array", "items": {"type": "string"}},
                           "until": {"type": ["string", "null"]}, "reason": {"type": ["string", "null"]}}}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "wasure access export",
            "type": "object", "required": ["request_id", "generated_at", "subject_id", "tables", "legal_holds", "excluded"],
            "properties": {"request_id": {"type": "string"}, "generated_at": {"type": "string"}, "controller": {"type": "string"},
                           "subject_id": {"type": "string"}, "found": {"type": "boolean"},
                           "tables": {"type": "object", "additionalProperties": table},
                           "legal_holds": {"type": "array", "items": hold},
                           "excluded": {"type": "array", "items": {"type": "object"}}, "note": {"type": "string"}}}


def render_html(doc: dict) -> str:
    e = html.escape
    parts = [f"<!doctype html><html lang='ja'><meta charset='utf-8'><title>Your data — {e(doc['request_id'])}</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:.5em 0 2em}"
             "td,th{border:1px solid #ccc;padding:.25em .5em;font-size:90%}th{background:#f4f4f4}</style>",
             f"<h1>Your personal data held by {e(doc['controller'])}</h1>",
             f"<p>Request <b>{e(doc['request_id'])}</b>, generated {e(doc['generated_at'])}. "
             "The same data is in <code>export.json</code> (machine-readable, schema in <code>export.schema.json</code>) "
             "and one CSV file per table.</p>"]
    for name, table in doc["tables"].items():
        parts.append(f"<h2>{e(name)} <small>({len(table['rows'])} row(s){', record' if table['kind'] == 'record' else ''})</small></h2>")
        if not table["rows"]:
            parts.append("<p>No data.</p>")
            continue
        columns = list(table["columns"])
        parts.append("<table><tr>" + "".join(
            f"<th title='{e(table['columns'][c]['description'] or table['columns'][c]['class'])}'>{e(c)}</th>" for c in columns) + "</tr>")
        for row in table["rows"]:
            parts.append("<tr>" + "".join(f"<td>{e('' if row.get(c) is None else str(row.get(c)))}</td>" for c in columns) + "</tr>")
        parts.append("</table>")
    parts.append("<h2>Legal holds that concern your data</h2>")
    parts.append("<ul>" + "".join(f"<li>{e(', '.join(h['tables']))}: {e(h['reason'] or '')} (until {e(str(h['until']))})</li>"
                                  for h in doc["legal_holds"]) + "</ul>" if doc["legal_holds"] else "<p>None.</p>")
    parts.append("<h2>Not included, and why</h2><ul>" + "".join(
        f"<li><code>{e(x['datasets'])}</code>: {e(x['why'])}</li>" for x in doc["excluded"]) + "</ul>")
    parts.append(f"<p>{e(doc['note'])}</p></html>")
    return "\n".join(parts)


def _write_files(target: Path, doc: dict, formats: list[str]) -> list[str]:
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    written = []
    if "json" in formats:
        (target / "export.json").write_text(json.dumps(doc, ensure_ascii=False, indent=2))
        (target / "export.schema.json").write_text(json.dumps(export_schema(), indent=2))
        written += ["export.json", "export.schema.json"]
    if "csv" in formats:
        for name, table in doc["tables"].items():
            with open(target / f"{name}.csv", "w", newline="", encoding="utf-8-sig") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(table["columns"]))
                writer.writeheader()
                writer.writerows(table["rows"])
            written.append(f"{name}.csv")
    if "html" in formats:
        (target / "index.html").write_text(render_html(doc), encoding="utf-8")
        written.append("index.html")
    return written


@dataclass(frozen=True)
class AccessRequest:
    """One access request, checked: the subject (its id as the policy writes it), the request id,
    the export folder ``<out>/<request id>`` outside the lake, the formats, when it was received
    (default: when it is answered)."""
    subject: str
    request_id: str
    export_dir: Path
    formats: tuple[str, ...]
    received_at: dt.datetime | None = None

    @classmethod
    def checked(cls, policy: Policy, lake: Lake, subject: str, request_id: str, out: str | Path,
                formats: list[str] | None = None, received_at: dt.datetime | None = None,
                labels: tuple[str, str] = ("--subject", "--request-id")) -> AccessRequest:
        """Every problem of the request at once (InputError, one per line, never the id), then the
        ledger key the receipt needs: exit 2 before Spark starts. ``labels`` name the subject and the
        request id as the surface does (the CLI's options, the DAG's parameters)."""
        problems: list[str] = []

        def attempt(check, *args):
            try:
                return check(*args)
            except InputError as exc:
                problems.append(str(exc))

        ids = attempt(check_subject_ids, policy, [(labels[0], subject)])
        valid_id = attempt(check_request_id, request_id, labels[1])
        chosen = attempt(check_formats, formats)
        target = attempt(check_out_dir, lake, out, request_id) if valid_id else None
        if problems:
            raise InputError("\n  ".join(problems))
        ledger_key(policy, lake)
        return cls(ids[0], request_id, target, tuple(chosen), received_at)


@with_lease("access")
def run(spark: SparkSession, policy: Policy, lake: Lake, request: AccessRequest,
        progress: Callable[[str], None] = lambda _m: None) -> AccessReport:
    """Export one subject's data outside the lake; record counts only in the lake."""
    subject, request_id, target = request.subject, request.request_id, request.export_dir
    formats = list(request.formats)
    _key_id, key = ledger_key(policy, lake)
    check_lake(spark, policy, lake)
    state_path = lake.state(STATE_TABLE)
    if is_delta(state_path) and read_now(spark, state_path).where(F.col("request_id") == request_id).limit(1).count():
        raise InputError(f"--request-id {request_id}: an access request with this id was already answered")
    now = _now()
    received_at = request.received_at or now
    deadline = received_at.date() + dt.timedelta(days=policy.defaults.erasure_deadline_days)
    progress("reading the subject's rows in every table")
    rows = subject_rows(spark, policy, lake, subject)
    holds = holds_of(spark, policy, lake, subject, now.date())
    doc = document(policy, request_id, subject, rows, holds, now)
    progress(f"writing {', '.join(formats)} to {target}")
    # Written aside and moved into place once the lake has recorded the answer: a failure leaves
    # no export without its receipt, and a retry of the same request id is not refused.
    partial = target.parent / f".{target.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    files = _write_files(partial, doc, formats)
    counts = {name: len(table["rows"]) for name, table in doc["tables"].items()}
    h = subject_hash(key, subject)
    receipt = {"request_id": request_id, "kind": "access", "subject_id_hash": h, "received_at": received_at.isoformat(sep=" "),
               "deadline": deadline.isoformat(), "answered_at": now.isoformat(sep=" ", timespec="seconds"),
               "deadline_met": now.date() <= deadline, "rows_by_table": counts, "legal_holds": len(holds),
               "formats": formats, "files": files, "excluded": [x["datasets"] for x in EXCLUDED],
               "policy_sha256": policy.sha256}
    receipt_path = join(lake.receipts, f"access-{request_id}.json")
    lake.files.write_text(receipt_path, json.dumps(receipt, indent=2, ensure_ascii=False))
    row = (request_id, h, received_at, deadline, "answered", now, json.dumps(counts, sort_keys=True), formats)
    append_rows(spark, state_path, local_frame(spark, [row], STATE_SCHEMA))
    append_rows(spark, lake.audit(AUDIT_TABLE), local_frame(spark, [row], STATE_SCHEMA))
    if target.exists():
        target.rmdir()                          # empty (check_out_dir refused a non-empty one)
    partial.rename(target)
    notes = [] if doc["found"] else ["no data found for this subject in the lake (the export says so)"]
    return AccessReport(request_id, str(target), files, counts, len(holds), deadline, str(receipt_path), notes)
