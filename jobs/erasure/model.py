"""The erasure's bookkeeping: constants, the Delta schemas of its state tables, requests and their states."""
from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field

from pyspark.sql import SparkSession
from pyspark.sql import types as T

from anonymizers.frames import local_frame
from jobs.lake.layout import Lake, append_rows, is_delta, read_now
from jobs.policy import ColumnClass
from jobs.lake.residue import TOKEN_CLASS

JOB = "erasure"
EXTENDED, EXTENDED_ORDER = "extended", 100    # an event, not a state: read after every state (jobs.erasure.deadlines)
STATES = ("received", "retained_copy", "deleted", "backups_quarantined", "purged", "verified", "closed")
SOURCES = ("account_closure", "ccpa", "appi", "gdpr")
# Sources after which 仮名加工情報 is kept (S5, APPI 仮名加工情報). A GDPR / CCPA deletion request also
# covers pseudonymized data (still personal data there), so no copy is retained for them.
KEEPS_PSEUDONYMIZED = ("account_closure", "appi")
VALUE_CLASSES = (ColumnClass.identifying, ColumnClass.individual_code, ColumnClass.property_damage)
CONCURRENT_ERASES = 3          # tables erased at once (deletes of different tables never conflict)
MIN_VALUE_LENGTH = 6            # shorter values would match noise in a byte scan
REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
TOKEN = re.compile(f"[{TOKEN_CLASS}]+")   # values a keyed-hash scan can find (see scan_for_hashes)

STATE_TABLE, ROWS_TABLE, VALUES_TABLE, REQUESTS_TABLE = "erasure_state", "erasure_rows", "erasure_values", "erasure_requests"

STATE_SCHEMA = T.StructType([
    T.StructField("request_id", T.StringType()), T.StructField("state", T.StringType()),
    T.StructField("state_order", T.IntegerType()), T.StructField("at", T.TimestampType()),
    T.StructField("as_of", T.DateType()), T.StructField("batch_id", T.StringType()),
    T.StructField("source", T.StringType()), T.StructField("received_at", T.TimestampType()),
    T.StructField("deadline", T.DateType()), T.StructField("subject_hashes", T.ArrayType(T.StringType())),
    T.StructField("detail", T.StringType()),
])

ROWS_SCHEMA = T.StructType([
    T.StructField("plan_id", T.StringType()), T.StructField("batch_id", T.StringType()),
    T.StructField("request_id", T.StringType()), T.StructField("table", T.StringType()),
    T.StructField("subject_hash", T.StringType()), T.StructField("rows_removed", T.LongType()),
    T.StructField("rows_held", T.LongType()), T.StructField("hold_id", T.StringType()),
    T.StructField("hold_reason", T.StringType()), T.StructField("hold_until", T.DateType()),
    T.StructField("empty_plan", T.BooleanType()), T.StructField("planned_at", T.TimestampType()),
])

# exclude: a path under the lake where the value may stay (a closure's own retained 仮名加工情報), else null.
VALUES_SCHEMA = T.StructType([T.StructField("request_id", T.StringType()), T.StructField("value_hash", T.StringType()),
                              T.StructField("exclude", T.StringType())])

REQUESTS_SCHEMA = T.StructType([
    T.StructField("request_id", T.StringType()), T.StructField("subject_id", T.StringType()),
    T.StructField("received_at", T.TimestampType()), T.StructField("source", T.StringType()),
])

AUDIT_SCHEMA = T.StructType([
    T.StructField("request_id", T.StringType()), T.StructField("source", T.StringType()),
    T.StructField("received_at", T.TimestampType()), T.StructField("deadline", T.DateType()),
    T.StructField("closed_at", T.TimestampType()), T.StructField("subject_hashes", T.ArrayType(T.StringType())),
    T.StructField("subjects", T.IntegerType()), T.StructField("subjects_found", T.IntegerType()),
    T.StructField("rows_removed", T.LongType()), T.StructField("rows_removed_by_table", T.StringType()),
    T.StructField("held", T.StringType()), T.StructField("backups_holding", T.ArrayType(T.StringType())),
    T.StructField("purged_on", T.DateType()), T.StructField("last_byte_gone", T.DateType()),
    T.StructField("deadline_met", T.BooleanType()), T.StructField("policy_sha256", T.StringType()),
    T.StructField("batch_id", T.StringType()), T.StructField("receipt", T.StringType()),
])


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


# ------------------------------------------------------------------ state

@dataclass
class Request:
    request_id: str
    source: str
    received_at: dt.datetime
    deadline: dt.date
    subject_hashes: list[str]
    subjects: list[str] = field(default_factory=list)          # plain, memory only
    values: list[str] = field(default_factory=list)            # plain, memory only
    pseudonyms: list[tuple[str, str | None]] = field(default_factory=list)   # (pseudonym, exclude), memory only
    states: dict[str, dict] = field(default_factory=dict)

    @property
    def state(self) -> str | None:
        done = [s for s in STATES if s in self.states]
        return done[-1] if done else None

    @property
    def order(self) -> int:
        return STATES.index(self.state) if self.state else -1


def load_states(spark: SparkSession, lake: Lake) -> dict[str, Request]:
    path = lake.state(STATE_TABLE)
    if not is_delta(path):
        return {}
    requests: dict[str, Request] = {}
    for row in read_now(spark, path).orderBy("state_order", "at").collect():
        if row.state == "received":
            requests[row.request_id] = Request(row.request_id, row.source, row.received_at, row.deadline, list(row.subject_hashes or []))
        request = requests.get(row.request_id)
        if request is not None and row.state not in request.states:
            request.states[row.state] = {"at": row.at, "as_of": row.as_of, "batch_id": row.batch_id,
                                         "detail": json.loads(row.detail or "{}")}
            if row.state == EXTENDED:            # jobs.erasure.deadlines: the one CCPA extension
                request.deadline = row.deadline
    return requests


def append_states(spark: SparkSession, lake: Lake, state: str, requests: list[Request], batch_id: str,
                   as_of: dt.date, details: dict[str, dict] | None = None) -> None:
    at = now_utc()
    rows = []
    for r in requests:
        detail = (details or {}).get(r.request_id, {})
        order = STATES.index(state) if state in STATES else EXTENDED_ORDER
        rows.append((r.request_id, state, order, at, as_of, batch_id, r.source, r.received_at, r.deadline,
                     r.subject_hashes if state == "received" else None, json.dumps(detail, sort_keys=True, default=str)))
        r.states[state] = {"at": at, "as_of": as_of, "batch_id": batch_id, "detail": detail}
    append_rows(spark, lake.state(STATE_TABLE), local_frame(spark, rows, STATE_SCHEMA))


# ------------------------------------------------------------------ the report

@dataclass
class ErasureReport:
    batch_id: str
    as_of: dt.date
    dry_run: bool
    receipts: list[dict] = field(default_factory=list)
    plans: list[dict] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
