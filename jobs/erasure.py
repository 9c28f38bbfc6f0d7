"""Erasure on request (`wasure erase`, `wasure verify-erasure`): REQUIREMENTS S3, S4, S5, S13, S14.

One run takes a batch of requests (each: a request id, one or more subject ids, a source among
account_closure / ccpa / appi / gdpr, the date it was received) and moves every request through a
resumable state machine stored in the Delta table ``state/erasure_state`` (append-only, one commit
per transition of the batch):

    received -> retained_copy -> deleted -> backups_quarantined -> purged -> verified -> closed

- received: the subject ids are checked; their identifying values (the unique values of columns of
  class identifying / individual_code / property_damage, and the subject id itself) are captured
  into an encrypted per-request vault (AES-GCM under a key derived from the ledger key) so that a
  run killed later can still verify, and their keyed hashes into ``state/erasure_values`` so that
  an auditor can verify after the vault is destroyed.
- retained_copy: for account closures (and APPI requests), the tables whose retention action is
  ``pseudonymize`` keep their 仮名加工情報 (``jobs.pseudonymize.retain_pseudonymized``, S5).
- deleted: ONE Delta MERGE per table for the whole batch (``retention.delete_keys``), keyed on the
  subject and its bucket; the commit's userMetadata (job "erasure", the request ids, no personal
  value) lets ``retention.reconcile(job="erasure")`` rebuild the quarantine ledger and the per-table
  audit, and lets a re-run tell which tables are done. Legal holds keep the held rows (S13).
- backups_quarantined: every unexpired backup holding a subject is recorded in the deletion ledger
  (``jobs.backup``), which a restore re-applies.
- purged: after the grace period the superseded files are rewritten and vacuumed
  (``retention.physical_purge``: REORG ... APPLY (PURGE) + VACUUM); until then requests wait here.
- verified: ``verify.scan_for_values`` over every file under the lake root except the backups
  quarantined for these subjects finds none of their identifying values.
- closed: receipt JSON (``receipts/<request id>.json``) and a row in ``audit/erasure``; the vault is
  destroyed.

Every state, ledger, audit and receipt row names a subject only by HMAC-SHA256 with the ledger key
(``policy.defaults.ledger_key_id``). Plain ids and values live in memory and, encrypted, in the vault.
A run killed anywhere finishes when any later `wasure erase` runs (every open request is resumed),
with no double effect: each step is idempotent or recognizes its own earlier commits.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from anonymizers.pseudonym import pseudonym_of
from jobs.backup import (
    add_to_ledger, expires_on, hash_column, ledger_key, list_backups, read_ledger, subject_hash,
    subjects_in_backups, unexpired_backups,
)
from jobs.console import CheckFailed, InputError, entry_point
from jobs.lake import SUBJECT_BUCKET, Lake, check_lake, append_rows, create_table, is_delta, read_current, subject_bucket
from jobs.lease import with_lease
from jobs.policy import ColumnClass, Policy
from jobs.lineage import RETAINED, DerivedCopy, derived_copies, keeps_pseudonymized, retained_purpose
from jobs.retention import commit_metadata, current_version, delete_keys, physical_purge, reconcile
from jobs.verify import (
    EXCLUDE_SEPARATOR, FULL_WIDTH, HALF_WIDTH, TOKEN_CLASS, TOKEN_SPLIT, Finding, allowed_elsewhere, cell_tokens, list_files, scan_for_values,
    with_exclude,
)

JOB = "erasure"
EXTENDED, EXTENDED_ORDER = "extended", 100    # an event, not a state: read after every state (jobs.deadlines)
STATES = ("received", "retained_copy", "deleted", "backups_quarantined", "purged", "verified", "closed")
SOURCES = ("account_closure", "ccpa", "appi", "gdpr")
# Sources after which 仮名加工情報 is kept (S5, APPI 仮名加工情報). A GDPR / CCPA deletion request also
# covers pseudonymized data (still personal data there), so no copy is retained for them.
KEEPS_PSEUDONYMIZED = ("account_closure", "appi")
VALUE_CLASSES = (ColumnClass.identifying, ColumnClass.individual_code, ColumnClass.property_damage)
CONCURRENT_ERASES = 3          # tables erased at once (MERGEs of different tables never conflict)
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


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


# ------------------------------------------------------------------ input (checked before any write)

@dataclass
class RequestInput:
    """A request as given: plain subject ids live only in memory."""
    request_id: str
    subjects: list[str]
    source: str = "account_closure"
    received_at: dt.datetime | None = None


def check_subject_ids(policy: Policy, entries: Iterable[tuple[str, str | None]]) -> list[str]:
    """entries: (position, raw id). Returns the ids; raises InputError naming positions, never an id."""
    regex = policy.subject_id_regex()
    problems, seen = [], {}
    for where, raw in entries:
        value = (raw or "").strip().lstrip("\ufeff").strip()
        if not value:
            problems.append(f"{where}: empty subject id")
        elif not regex.fullmatch(value):
            problems.append(f"{where}: not a valid subject id (subject.id_pattern {policy.subject.id_pattern})")
        elif value in seen:
            problems.append(f"{where}: duplicate of {seen[value]}")
        else:
            seen[value] = where
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise InputError(f"{len(problems)} bad subject id(s) (ids are not echoed):\n  " + "\n  ".join(shown))
    return list(seen)


def read_id_file(path: Path) -> list[tuple[str, str]]:
    """(position, raw id) per line of a file of subject ids, one per line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--file {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"--file {path}: not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"--file {path}: cannot be read ({exc.strerror})") from None
    return [(f"--file line {number}", line) for number, line in enumerate(text.splitlines(), 1)]


def check_request_id(request_id: str, where: str = "--request-id") -> str:
    if not REQUEST_ID.fullmatch(request_id or ""):
        raise InputError(f"{where}: a request id is 1-80 characters of letters, digits, '.', '_' or '-' "
                         "(it names the receipt file), starting with a letter or digit")
    return request_id


def check_source(source: str, where: str = "--source") -> str:
    if source not in SOURCES:
        raise InputError(f"{where}: must be one of {', '.join(SOURCES)}")
    return source


def parse_received_at(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InputError("--received-at must be a date or date-time (YYYY-MM-DD[THH:MM[:SS]])") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return parsed


def default_request_id(key: bytes, subjects: list[str], source: str) -> str:
    """Deterministic: re-running the same command continues the same request (keyed, so not an id hash)."""
    digest = hmac.new(key, ("request\0" + source + "\0" + "\n".join(sorted(subjects))).encode(), hashlib.sha256).hexdigest()
    return f"er-{digest[:16]}"


def submit_requests(spark: SparkSession, lake: Lake, rows: list[tuple[str, str, dt.datetime, str]]) -> None:
    """Append (request_id, subject_id, received_at, source) rows to the ``state/erasure_requests`` inbox.

    The inbox is created with the subject id kept out of the Delta statistics: its min/max would
    otherwise outlive the row in ``_delta_log``. Processed requests are deleted from the inbox and
    purged with the data."""
    df = spark.createDataFrame(rows, REQUESTS_SCHEMA)
    path = lake.state(REQUESTS_TABLE)
    create_table(spark, path, df, [], stats_columns=["request_id", "received_at", "source"])
    df.coalesce(1).write.format("delta").mode("append").save(path)


def requests_from_inbox(spark: SparkSession, policy: Policy, lake: Lake) -> list[RequestInput]:
    """Requests of the inbox, checked like command-line input (positions, never ids, in errors)."""
    path = lake.state(REQUESTS_TABLE)
    if not is_delta(path):
        raise InputError(f"--from-requests: no erasure_requests table at {path}")
    df = read_current(spark, path)
    missing = [c for c in ("request_id", "subject_id", "received_at", "source") if c not in df.columns]
    if missing:
        raise InputError(f"--from-requests: {path} lacks column(s) {', '.join(missing)}")
    rows = (df.select("request_id", "subject_id", F.col("received_at").cast("timestamp").alias("received_at"), "source")
              .orderBy("request_id", "received_at", "subject_id").collect())
    grouped: dict[str, list] = {}
    problems = []
    for number, row in enumerate(rows, 1):
        if row.request_id is None or not REQUEST_ID.fullmatch(row.request_id):
            problems.append(f"erasure_requests row {number}: invalid request_id")
            continue
        grouped.setdefault(row.request_id, []).append(row)
    requests = []
    for request_id, group in grouped.items():
        where = f"erasure_requests request {request_id}"
        sources = {r.source for r in group}
        received = {r.received_at for r in group}
        if len(sources) != 1 or next(iter(sources)) not in SOURCES:
            problems.append(f"{where}: source must be one value among {', '.join(SOURCES)}")
        if len(received) != 1 or None in received:
            problems.append(f"{where}: received_at must be one non-null value")
        try:
            subjects = check_subject_ids(policy, [(f"{where} entry {i}", r.subject_id) for i, r in enumerate(group, 1)])
        except InputError as exc:
            problems.append(str(exc).split("\n", 1)[1].strip().replace("\n  ", "\n"))
            continue
        if not problems:
            requests.append(RequestInput(request_id, subjects, group[0].source, group[0].received_at))
    if problems:
        raise InputError("bad erasure request(s) (ids are not echoed):\n  " + "\n  ".join(problems[:20]))
    return requests


# ------------------------------------------------------------------ vault (plain ids and values, encrypted)

def _vault_key(key: bytes) -> bytes:
    return hmac.new(key, b"wasure erasure vault v1", hashlib.sha256).digest()


def vault_path(lake: Lake, request_id: str) -> Path:
    return lake.root / "state" / "erasure_vault" / f"{request_id}.bin"


def write_vault(lake: Lake, key: bytes, request_id: str, payload: dict) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    path = vault_path(lake, request_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    nonce = os.urandom(12)
    blob = nonce + AESGCM(_vault_key(key)).encrypt(nonce, json.dumps(payload).encode(), request_id.encode())
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, path)


def read_vault(lake: Lake, key: bytes, request_id: str) -> dict | None:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    path = vault_path(lake, request_id)
    if not path.is_file():
        return None
    blob = path.read_bytes()
    try:
        return json.loads(AESGCM(_vault_key(key)).decrypt(blob[:12], blob[12:], request_id.encode()))
    except InvalidTag:
        raise InputError(f"the erasure vault of request {request_id} does not open with ledger key "
                         f"(was the key rotated?)") from None


def destroy_vault(lake: Lake, request_id: str) -> None:
    vault_path(lake, request_id).unlink(missing_ok=True)


def value_hash(key: bytes, value: str) -> str:
    return hmac.new(key, ("value\0" + value).encode("utf-8"), hashlib.sha256).hexdigest()


def _value_hash_column(column: Column, key: bytes) -> Column:
    """``value_hash`` as a Spark Column (JVM HMAC UDF, or its Arrow twin without the jar)."""
    from anonymizers.pseudonym import keyed_hash

    return keyed_hash(SparkSession.active(), key)(F.concat(F.lit("value\0"), column))


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
    for row in read_current(spark, path).orderBy("state_order", "at").collect():
        if row.state == "received":
            requests[row.request_id] = Request(row.request_id, row.source, row.received_at, row.deadline, list(row.subject_hashes or []))
        request = requests.get(row.request_id)
        if request is not None and row.state not in request.states:
            request.states[row.state] = {"at": row.at, "as_of": row.as_of, "batch_id": row.batch_id,
                                         "detail": json.loads(row.detail or "{}")}
            if row.state == EXTENDED:            # jobs.deadlines: the one CCPA extension
                request.deadline = row.deadline
    return requests


def _append_states(spark: SparkSession, lake: Lake, state: str, requests: list[Request], batch_id: str,
                   as_of: dt.date, details: dict[str, dict] | None = None) -> None:
    at = _now()
    rows = []
    for r in requests:
        detail = (details or {}).get(r.request_id, {})
        order = STATES.index(state) if state in STATES else EXTENDED_ORDER
        rows.append((r.request_id, state, order, at, as_of, batch_id, r.source, r.received_at, r.deadline,
                     r.subject_hashes if state == "received" else None, json.dumps(detail, sort_keys=True, default=str)))
        r.states[state] = {"at": at, "as_of": as_of, "batch_id": batch_id, "detail": detail}
    append_rows(spark, lake.state(STATE_TABLE), spark.createDataFrame(rows, STATE_SCHEMA))


# ------------------------------------------------------------------ holds (S13)

@dataclass(frozen=True)
class Hold:
    hold_id: str
    reason: str
    until: dt.date | None


class HoldBook:
    """Which (subject, table) pairs an erasure keeps, and why.

    - a legal hold (policy or legal_holds register, via ``Registers.holds``) on the subject and/or table;
    - the legal_holds register's own rows of a subject under an active hold (deleting them would
      lift the hold);
    - statutory record keeping: a ``record_keeping`` table with its own retention period (provision
      records, APPI art. 29/30: kept 3 years, "never purged early") keeps its rows until its
      retention removes them.
    """

    def __init__(self, policy: Policy, rows: list):
        self.policy = policy
        self.per_subject: dict[str, list[tuple[str | None, Hold]]] = {}
        self.everyone: list[tuple[str | None, Hold]] = []
        for row in sorted(rows, key=lambda r: r.hold_id):
            hold = Hold(row.hold_id, row.reason, row.until)
            if row.subject is None:
                self.everyone.append((row.table_name, hold))
            else:
                self.per_subject.setdefault(row.subject, []).append((row.table_name, hold))

    @classmethod
    def load(cls, spark: SparkSession, policy: Policy, lake: Lake, as_of: dt.date) -> "HoldBook":
        from jobs.subjects import Registers

        return cls(policy, Registers(spark, policy, lake).holds(as_of).collect())

    def hold_for(self, subject: str, table: str) -> Hold | None:
        own = self.per_subject.get(subject, [])
        for table_name, hold in self.everyone + own:
            if table_name is None or table_name == table:
                return hold
        if own and table == self.policy.subject.legal_holds_table:
            return own[0][1]
        spec = self.policy.tables[table]
        if spec.record_keeping and spec.retention is not None:
            return Hold(f"statutory:{table}", f"record keeping: tables.{table} is kept {spec.retention.period_days} days "
                        "by its own retention (never purged early)", None)
        return None


# ------------------------------------------------------------------ planning (counts, files; nothing written)

def _subjects_frame(spark: SparkSession, subjects: list[str], buckets: int) -> DataFrame:
    return (spark.createDataFrame([(s,) for s in subjects], "subject string")
            .withColumn("bucket", subject_bucket(F.col("subject"), buckets)))


def table_hits(spark: SparkSession, lake: Lake, policy: Policy, tables: list[str], subjects: list[str]
               ) -> dict[str, dict[str, dict[tuple[str, int], int]]]:
    """table -> subject -> {(file path, file size): rows} in the current versions, in ONE Spark job;
    the join on (subject, bucket) reads only the subjects' bucket partitions."""
    out: dict[str, dict[str, dict[tuple[str, int], int]]] = {name: {} for name in tables}
    if not subjects or not tables:
        return out
    parts = None
    for name in tables:
        table = policy.tables[name]
        df = read_current(spark, lake.table_path(table)).select(
            F.col(table.subject_key).alias("_s"), F.col(SUBJECT_BUCKET).alias("_b"),
            F.col("_metadata.file_path").alias("file"), F.col("_metadata.file_size").alias("size"))
        keys = F.broadcast(_subjects_frame(spark, subjects, table.subject_buckets))
        part = (df.join(keys, (df["_s"] == keys["subject"]) & (df["_b"] == keys["bucket"]))
                  .select(F.lit(name).alias("table"), "subject", "file", "size"))
        parts = part if parts is None else parts.unionByName(part)
    for row in parts.groupBy("table", "subject", "file", "size").count().collect():
        out[row.table].setdefault(row.subject, {})[(row.file, int(row["size"]))] = int(row["count"])
    return out


def capture_values(spark: SparkSession, policy: Policy, lake: Lake, subjects: list[str], holds: HoldBook) -> dict[str, list[str]]:
    """subject -> the identifying values the verification scan looks for.

    Candidates: values of the subject's rows that will be erased, in columns of class identifying /
    individual_code / property_damage and the subject key. Dropped: values shorter than
    MIN_VALUE_LENGTH, and any value that also occurs (as a cell or a token of a string cell) in a
    row that stays: another subject's row, or a held row of the same subject. What is left is unique
    to erased rows, so finding it anywhere later is residue.

    Two passes: the candidates come from the subjects' bucket partitions only (small, materialized);
    then one scan of the rows that stay keeps, per task, only the tokens that hit a broadcast
    candidate. No shuffle of the lake's tokens: the cost is one read of the string columns."""
    if not subjects:
        return {}
    erasable_by_table = {name: [s for s in subjects if holds.hold_for(s, name) is None] for name in policy.tables}
    candidates: DataFrame | None = None
    for name, table in policy.tables.items():
        if not erasable_by_table[name]:
            continue
        df = read_current(spark, lake.table_path(table))
        key = table.subject_key
        marks = F.broadcast(_subjects_frame(spark, erasable_by_table[name], table.subject_buckets))
        rows = df.join(marks, (df[key] == marks["subject"]) & (df[SUBJECT_BUCKET] == marks["bucket"]))
        value_columns = [c for c in table.columns_of(*VALUE_CLASSES) if c in df.columns] + [key]
        part = rows.select(F.col(key).alias("subject"), F.explode(F.array(*[F.col(c).cast("string") for c in value_columns])).alias("value"))
        candidates = part if candidates is None else candidates.unionByName(part)
    if candidates is None:
        return {}
    candidates = (candidates.where(F.col("value").isNotNull() & (F.length("value") >= MIN_VALUE_LENGTH))
                  .distinct().localCheckpoint(eager=True))
    wanted = F.broadcast(candidates.select("value").distinct())
    blocked: DataFrame | None = None
    for name, table in policy.tables.items():
        df = read_current(spark, lake.table_path(table))
        key = table.subject_key
        if erasable_by_table[name]:
            gone = F.broadcast(spark.createDataFrame([(s,) for s in erasable_by_table[name]], "_subject string"))
            df = df.join(gone, df[key] == gone["_subject"], "left_anti")          # the rows that stay
        strings = [f.name for f in df.schema.fields if f.dataType.typeName() == "string" and not f.name.startswith("_")]
        # A staying row's string cells and their tokens (as the residue scan tokenizes them).
        cells = F.filter(F.array(*[F.col(c) for c in strings]), lambda c: c.isNotNull())
        tokens = F.flatten(F.transform(cells, cell_tokens))
        part = df.select(F.explode(tokens).alias("value")).join(wanted, "value")
        blocked = part if blocked is None else blocked.unionByName(part)
    values = candidates.join(blocked.distinct(), "value", "left_anti")
    out: dict[str, list[str]] = {}
    for row in values.collect():
        out.setdefault(row.subject, []).append(row.value)
    return {s: sorted(v) for s, v in out.items()}


# ------------------------------------------------------------------ history of erasure commits

def erasure_commits(spark: SparkSession, path: str) -> list[tuple[int, dict, dict]]:
    """(version, userMetadata, operationMetrics) of the table's erasure commits."""
    from delta.tables import DeltaTable

    history = (DeltaTable.forPath(spark, path).history().where(F.col("userMetadata").contains(f'"job": "{JOB}"'))
               .select("version", "userMetadata", "operationMetrics").collect())
    out = []
    for row in history:
        meta = json.loads(row.userMetadata)
        if meta.get("job") == JOB:
            out.append((int(row.version), meta, dict(row.operationMetrics or {})))
    return sorted(out, key=lambda c: c[0])


def _plan_rows(spark: SparkSession, lake: Lake, request_ids: list[str] | None = None) -> list:
    path = lake.state(ROWS_TABLE)
    if not is_delta(path):
        return []
    df = read_current(spark, path)
    if request_ids is not None:
        df = df.where(F.col("request_id").isin(request_ids))
    return df.collect()


@dataclass(frozen=True)
class _CommitAuditLake(Lake):
    """The lake as `retention.reconcile` sees it for erasure: its per-commit audit goes to
    ``audit/erasure_commits`` so that ``audit/erasure`` stays one row per request (receipts)."""

    def audit(self, name: str) -> str:
        return super().audit(f"{name}_commits")


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


# ------------------------------------------------------------------ the job

class _Batch:
    """One run: the requests, the keys, the holds, and the per-step actions."""

    def __init__(self, spark, policy, lake, as_of, key_id, key, batch_id, progress, on_state, purpose_keys):
        self.spark, self.policy, self.lake, self.as_of = spark, policy, lake, as_of
        self.key_id, self.key, self.batch_id = key_id, key, batch_id
        self.purpose_keys: dict[str, tuple[str, bytes]] = purpose_keys
        self.progress, self.on_state = progress, on_state
        self._holds: HoldBook | None = None
        self._commits: dict[str, list] = {}

    def commits(self, table: str) -> list[tuple[int, dict, dict]]:
        """The table's erasure commits (cached for the run; dropped when this run commits to it)."""
        if table not in self._commits:
            self._commits[table] = erasure_commits(self.spark, self.lake.table_path(self.policy.tables[table]))
        return self._commits[table]

    def all_commits(self) -> dict[str, list[tuple[int, dict, dict]]]:
        return {name: self.commits(name) for name in self.policy.tables}

    @property
    def holds(self) -> HoldBook:
        if self._holds is None:
            self._holds = HoldBook.load(self.spark, self.policy, self.lake, self.as_of)
        return self._holds

    def _purpose_tables(self, purpose: str) -> list[str]:
        return [n for n, t in self.policy.tables.items()
                if purpose in t.purposes or (keeps_pseudonymized(t) and retained_purpose(t) == purpose)]

    def pseudonym_values(self, request: Request) -> list[tuple[str, str | None]]:
        """(pseudonym, exclude) of each subject under each purpose key the batch holds: what a
        derived copy calls the subject. The pseudonym may stay only where the erasure keeps the
        subject's rows: a closure's retained 仮名加工情報 (S5), and the copies of tables a legal hold
        or statutory record keeping keeps (their staging / quarantine copies included)."""
        out = []
        for purpose, (_key_id, key) in sorted(self.purpose_keys.items()):
            tables = self._purpose_tables(purpose)
            kept_root = []
            if request.source in KEEPS_PSEUDONYMIZED and any(
                    keeps_pseudonymized(self.policy.tables[n]) and retained_purpose(self.policy.tables[n]) == purpose for n in tables):
                kept_root.append(f"pseudonymized/{purpose}/{RETAINED}")
            for s in request.subjects:
                held = [f"pseudonymized/{purpose}/{n}" for n in tables if self.holds.hold_for(s, n)]
                if len(held) == len(tables):
                    continue                  # every copy keeps the subject: nothing to look for
                allowed = sorted(kept_root + held)
                out.append((pseudonym_of(key, s), EXCLUDE_SEPARATOR.join(allowed) if allowed else None))
        return sorted(set(out), key=lambda p: (p[0], p[1] or ""))

    def _advance(self, state: str, requests: list[Request], details: dict[str, dict] | None = None) -> None:
        if not requests:
            return
        _append_states(self.spark, self.lake, state, requests, self.batch_id, self.as_of, details)
        self.on_state(state, [r.request_id for r in requests])

    # -- received
    def receive(self, requests: list[Request]) -> None:
        self.progress("capturing identifying values for verification")
        subjects = sorted({s for r in requests for s in r.subjects})
        values = capture_values(self.spark, self.policy, self.lake, subjects, self.holds)
        hashed = []
        details = {}
        for r in requests:
            r.values = sorted({v for s in r.subjects for v in values.get(s, [])})
            r.pseudonyms = self.pseudonym_values(r)
            write_vault(self.lake, self.key, r.request_id, {"subjects": r.subjects, "values": r.values,
                                                            "pseudonyms": [list(p) for p in r.pseudonyms]})
            hashed += [(r.request_id, value_hash(self.key, v), None) for v in r.values if TOKEN.fullmatch(v)]
            hashed += [(r.request_id, value_hash(self.key, p), exclude) for p, exclude in r.pseudonyms]
            details[r.request_id] = {"subjects": len(r.subjects), "values_for_verification": len(r.values),
                                     "pseudonyms_for_verification": len(r.pseudonyms)}
        if hashed:
            from delta.tables import DeltaTable

            df = self.spark.createDataFrame(hashed, VALUES_SCHEMA)
            path = self.lake.state(VALUES_TABLE)
            create_table(self.spark, path, df, [])
            (DeltaTable.forPath(self.spark, path).alias("t")
                .merge(df.alias("s"), "t.request_id = s.request_id AND t.value_hash = s.value_hash "
                                      "AND t.exclude <=> s.exclude")
                .whenNotMatchedInsertAll().execute())
        self._advance("received", requests, details)

    # -- retained_copy
    def retain(self, requests: list[Request]) -> None:
        from jobs.pseudonymize import retain_pseudonymized

        keeping = [r for r in requests if r.source in KEEPS_PSEUDONYMIZED]
        details = {r.request_id: {"tables": []} for r in requests}
        for name in pseudonymize_tables(self.policy):
            subjects = sorted({s for r in keeping for s in r.subjects if self.holds.hold_for(s, name) is None})
            if not subjects:
                continue
            self.progress(f"keeping 仮名加工情報 of {name}")
            table = self.policy.tables[name]
            keys = _subjects_frame(self.spark, subjects, table.subject_buckets).withColumn("all_rows", F.lit(True))
            retain_pseudonymized(self.spark, self.policy, self.lake, name, keys, None)
            for r in keeping:
                details[r.request_id]["tables"].append(name)
        for r in requests:
            if r.source not in KEEPS_PSEUDONYMIZED:
                details[r.request_id]["why_none"] = f"source {r.source}: pseudonymized data is erased too"
        self._advance("retained_copy", requests, details)

    # -- deleted
    def delete(self, requests: list[Request]) -> None:
        empty_done: dict[str, set[str]] = {}
        for row in _plan_rows(self.spark, self.lake, [r.request_id for r in requests]):
            if row.empty_plan:
                empty_done.setdefault(row.table, set()).add(row.request_id)
        todo: dict[str, list[Request]] = {}
        for name, table in self.policy.tables.items():
            covered = set(empty_done.get(name, set()))
            for _version, meta, _metrics in self.commits(name):
                covered.update(meta.get("requests", []))
            pending = [r for r in requests if r.request_id not in covered]
            if pending:                       # else done by an earlier (killed) run
                todo[name] = pending
        subjects = sorted({s for pending in todo.values() for r in pending for s in r.subjects})
        self.progress("finding the subjects' rows and files")
        hits = table_hits(self.spark, self.lake, self.policy, list(todo), subjects)
        # Every table's plan is written BEFORE the first MERGE, in one commit; a plan counts only
        # once its MERGE committed (its plan_id is in the commit metadata) or if it had nothing to do.
        plans, planned_at = {}, _now()
        rows = []
        for name, pending in todo.items():
            plan_id = uuid.uuid4().hex
            names = sorted({s for r in pending for s in r.subjects})
            erasable = [s for s in names if hits[name].get(s) and self.holds.hold_for(s, name) is None]
            plans[name] = (plan_id, erasable)
            for r in pending:
                for s in r.subjects:
                    hold = self.holds.hold_for(s, name)
                    n = sum(hits[name].get(s, {}).values())
                    rows.append((plan_id, self.batch_id, r.request_id, name, subject_hash(self.key, s),
                                 0 if hold else n, n if hold else 0, hold.hold_id if hold else None,
                                 hold.reason if hold else None, hold.until if hold else None, not erasable, planned_at))
        if rows:
            append_rows(self.spark, self.lake.state(ROWS_TABLE), self.spark.createDataFrame(rows, ROWS_SCHEMA))

        def erase(name: str, plan_id: str, erasable: list[str]) -> None:
            # Its own session: the commit metadata is a session setting, and tables commit concurrently.
            session = self.spark.newSession()
            table = self.policy.tables[name]
            path = self.lake.table_path(table)
            files = {f for s in erasable for f in hits[name][s]}
            held_rows = sum(row[6] for row in rows if row[3] == name)
            due = self.as_of + dt.timedelta(days=self.policy.grace_days(name))
            metadata = {"job": JOB, "run_id": self.batch_id, "plan_id": plan_id, "table": name, "action": "erase",
                        "requests": sorted(r.request_id for r in todo[name]), "subjects": len(erasable),
                        "as_of": self.as_of.isoformat(), "policy_sha256": self.policy.sha256,
                        "rows_before": read_current(session, path).count(), "rows_held": held_rows,
                        "files": len(files), "bytes": sum(size for _f, size in files),
                        "version_before": current_version(session, path), "purge_due": due.isoformat()}
            keys = _subjects_frame(session, erasable, table.subject_buckets).withColumn("all_rows", F.lit(True))
            with commit_metadata(session, metadata):
                delete_keys(session, path, table.subject_key, keys, None, None)

        # One MERGE per table, a few at once: most of a small MERGE is driver-side planning and
        # commit work that overlaps well. A failure stops the state here; a re-run skips the
        # tables whose commit carries their plan_id.
        work = [(name, plan_id, erasable) for name, (plan_id, erasable) in plans.items() if erasable]
        if work:
            self.progress(f"erasing from {', '.join(name for name, _p, _e in work)} ({CONCURRENT_ERASES} at a time)")
        try:
            with ThreadPoolExecutor(max_workers=CONCURRENT_ERASES, thread_name_prefix="erase") as pool:
                for future in [pool.submit(erase, *item) for item in work]:
                    future.result()
        finally:
            for name, _plan_id, _erasable in work:
                self._commits.pop(name, None)
        derived = self.delete_derived(requests)
        inbox = self.lake.state(REQUESTS_TABLE)
        if is_delta(inbox):
            from delta.tables import DeltaTable

            ids = ", ".join(f"'{r.request_id}'" for r in requests)   # request ids are checked: [A-Za-z0-9._-]
            DeltaTable.forPath(self.spark, inbox).delete(f"request_id IN ({ids})")
        self._advance("deleted", requests, derived)

    def delete_derived(self, requests: list[Request]) -> dict[str, dict]:
        """The subjects' rows in every derived copy (jobs.lineage), one MERGE per copy keyed on the
        pseudonym, a few copies at once. Idempotent: a re-run after a kill finds nothing left and
        records the same copies, whose files the purge step then rewrites."""
        copies = derived_copies(self.policy, self.lake)
        details = {r.request_id: {"derived_copies": []} for r in requests}
        work: list[tuple[DerivedCopy, list[str], list[str]]] = []
        for copy in copies:
            _key_id, key = self.purpose_keys[copy.purpose]
            targets, ids = set(), []
            for r in requests:
                if copy.retained and r.source in KEEPS_PSEUDONYMIZED:
                    continue                      # S5: what the closure keeps
                mine = {pseudonym_of(key, s) for s in r.subjects if self.holds.hold_for(s, copy.table) is None}
                if mine:
                    targets |= mine
                    ids.append(r.request_id)
            if targets:
                work.append((copy, sorted(targets), ids))
        if not work:
            return details
        self.progress(f"erasing from {len(work)} derived cop{'y' if len(work) == 1 else 'ies'} (仮名加工情報)")

        def erase(copy: DerivedCopy, pseudonyms: list[str], ids: list[str]) -> int:
            from delta.tables import DeltaTable

            session = self.spark.newSession()
            path = str(self.lake.root / copy.relative)
            keys = F.broadcast(session.createDataFrame([(p,) for p in pseudonyms], "pseudonym string"))
            metadata = {"job": f"{JOB}_derived", "run_id": self.batch_id, "copy": copy.relative,
                        "requests": sorted(ids), "subjects": len(pseudonyms), "policy_sha256": self.policy.sha256}
            with commit_metadata(session, metadata):
                (DeltaTable.forPath(session, path).alias("t")
                    .merge(keys.alias("s"), f"t.`{copy.subject_column}` = s.pseudonym").whenMatchedDelete().execute())
            metrics = DeltaTable.forPath(session, path).history(1).select("operationMetrics").first()[0] or {}
            return int(metrics.get("numTargetRowsDeleted", 0))

        with ThreadPoolExecutor(max_workers=CONCURRENT_ERASES, thread_name_prefix="erase-derived") as pool:
            removed = [pool.submit(erase, *item) for item in work]
            for (copy, _pseudonyms, ids), future in zip(work, removed):
                rows = future.result()
                for request_id in ids:
                    details[request_id]["derived_copies"].append({"copy": copy.relative, "batch_rows_removed": rows})
        return details

    # -- backups_quarantined
    def quarantine_backups(self, requests: list[Request]) -> None:
        days = unexpired_backups(self.policy, self.lake, self.as_of)
        subjects = sorted({s for r in requests for s in r.subjects})
        self.progress(f"looking for the subjects in {len(days)} unexpired backup(s)")
        holding = subjects_in_backups(self.spark, self.policy, self.lake, subjects, days)
        plan = _effective_plan(self.spark, self.lake, self.all_commits(), [r.request_id for r in requests])
        erased_at = _now()
        rows, details = [], {}
        for r in requests:
            held_backups: set[str] = set()
            for s in r.subjects:
                h = subject_hash(self.key, s)
                entries = plan.get((r.request_id, h), {})
                removed = sum(e.rows_removed for e in entries.values())
                tables = sorted(t for t in self.policy.tables if not (entries.get(t) and entries[t].hold_id))
                backups = holding.get(s, [])
                held_backups.update(backups)
                if tables and (removed or backups):
                    until = max(expires_on(self.policy, dt.date.fromisoformat(d)) for d in backups) if backups else None
                    rows.append((h, r.request_id, erased_at, tables, backups, until,
                                 "quarantined" if backups else "released", None if backups else erased_at, self.key_id))
            details[r.request_id] = {"backups": sorted(held_backups)}
        add_to_ledger(self.spark, self.lake, rows)
        self._advance("backups_quarantined", requests, details)

    # -- purged
    def purge(self, requests: list[Request], report: ErasureReport) -> list[Request]:
        self.progress("physical purge of files past their grace (REORG ... APPLY (PURGE) + VACUUM)")
        reconcile(self.spark, self.policy, _CommitAuditLake(self.lake.root), job=JOB, current_run=self.batch_id)
        physical_purge(self.spark, self.policy, self.lake, self.as_of)
        statuses = {(r.table, r.version): (r.status, r.purge_due)
                    for r in read_current(self.spark, self.lake.state("quarantine_ledger")).where(F.col("job") == JOB)
                    .select("table", "version", "status", "purge_due").collect()} if is_delta(self.lake.state("quarantine_ledger")) else {}
        commits = _commits_by_request(self.all_commits())
        done, details = [], {}
        for r in requests:
            mine = commits.get(r.request_id, {})
            pending = {t: statuses.get((t, v), ("pending", None)) for t, v in mine.items()}
            not_yet = {t: s for t, s in pending.items() if s[0] != "purged"}
            if not_yet:
                due = max((s[1] for s in not_yet.values() if s[1] is not None), default=None)
                report.waiting[r.request_id] = f"waiting for the physical purge (due {due})"
                continue
            done.append(r)
            copies = sorted({c["copy"] for c in r.states.get("deleted", {}).get("detail", {}).get("derived_copies", [])})
            details[r.request_id] = {"purged_on": self.as_of.isoformat(), "tables": sorted(mine), "derived_copies": copies}
        if done:
            inbox = self.lake.state(REQUESTS_TABLE)
            if is_delta(inbox):
                _purge_table(self.spark, inbox)
            # The derived copies' superseded files go with the raw tables' (same grace).
            for relative in sorted({c for r in done for c in details[r.request_id]["derived_copies"]}):
                path = str(self.lake.root / relative)
                if is_delta(path):
                    self.progress(f"physical purge of {relative}")
                    _purge_table(self.spark, path)
        self._advance("purged", done, details)
        return done

    # -- verified
    def verify(self, requests: list[Request]) -> None:
        values = {(v, None) for r in requests for v in r.values}
        values |= {tuple(p) for r in requests for p in r.pseudonyms + self.pseudonym_values(r)}
        excluded = _quarantined_backups(self.spark, self.lake, [r.request_id for r in requests])
        findings: list[Finding] = []
        if values:
            self.progress(f"scanning every file under the lake for {len(values)} identifying value(s) and pseudonym(s)")
            frame = self.spark.createDataFrame(sorted(values, key=lambda v: (v[0], v[1] or "")), "value string, exclude string")
            findings = scan_for_values(self.spark, str(self.lake.root), frame,
                                       exclude=tuple(f"backups/{d}" for d in excluded))
        if findings:
            raise CheckFailed("erasure verification found residue of the batch's identifying values in "
                              f"{len(findings)} file(s) (values not shown):\n  " + "\n  ".join(_relative(self.lake, f) for f in findings))
        details = {r.request_id: {"values_checked": len(r.values), "pseudonyms_checked": len(set(r.pseudonyms + self.pseudonym_values(r))),
                                  "backups_excluded": excluded} for r in requests}
        self._advance("verified", requests, details)

    # -- closed
    def close(self, requests: list[Request], report: ErasureReport) -> None:
        receipts = build_receipts(self.spark, self.policy, self.lake, requests, self.as_of, closing=True,
                                  table_commits=self.all_commits())
        audit_path = self.lake.audit(JOB)
        known = set()
        if is_delta(audit_path):
            ids = [rc["request_id"] for rc in receipts]
            known = {row.request_id for row in read_current(self.spark, audit_path)
                     .where(F.col("request_id").isin(ids)).select("request_id").collect()}
        rows = [_audit_row(rc, self.batch_id) for rc in receipts if rc["request_id"] not in known]
        if rows:
            append_rows(self.spark, audit_path, self.spark.createDataFrame(rows, AUDIT_SCHEMA))
        self._advance("closed", requests)
        for r in requests:
            destroy_vault(self.lake, r.request_id)
        report.receipts += receipts


def pseudonymize_tables(policy: Policy) -> list[str]:
    """Tables whose rows are kept as 仮名加工情報 after closure: retention action ``pseudonymize``."""
    return [n for n, t in policy.tables.items() if keeps_pseudonymized(t)]


def _relative(lake: Lake, finding: Finding) -> str:
    path = finding.path.removeprefix("file:")
    try:
        shown = str(Path(path).relative_to(lake.root))
    except ValueError:
        shown = path
    return f"{shown} ({finding.kind}, {finding.matches} match(es))"


def _purge_table(spark: SparkSession, path: str) -> None:
    spark.sql(f"REORG TABLE delta.`{path}` APPLY (PURGE)")
    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    try:
        spark.sql(f"VACUUM delta.`{path}` RETAIN 0 HOURS")
    finally:
        spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "true")


def all_commits(spark: SparkSession, policy: Policy, lake: Lake) -> dict[str, list[tuple[int, dict, dict]]]:
    return {name: erasure_commits(spark, lake.table_path(table)) for name, table in policy.tables.items()}


def _commits_by_request(commits: dict[str, list]) -> dict[str, dict[str, int]]:
    """request id -> {table: version of the erasure commit that removed its rows}."""
    out: dict[str, dict[str, int]] = {}
    for name, table_commits in commits.items():
        for version, meta, _metrics in table_commits:
            for request_id in meta.get("requests", []):
                out.setdefault(request_id, {})[name] = version
    return out


def _effective_plan(spark: SparkSession, lake: Lake, commits: dict[str, list], request_ids: list[str]) -> dict[tuple[str, str], dict]:
    """(request id, subject hash) -> {table: plan row} for plans that took effect (committed, or empty)."""
    committed = {meta.get("plan_id") for table_commits in commits.values() for _v, meta, _m in table_commits}
    out: dict[tuple[str, str], dict] = {}
    for row in _plan_rows(spark, lake, request_ids):
        if row.empty_plan or row.plan_id in committed:
            out.setdefault((row.request_id, row.subject_hash), {})[row.table] = row
    return out


def _quarantined_backups(spark: SparkSession, lake: Lake, request_ids: list[str]) -> list[str]:
    ledger = read_ledger(spark, lake)
    if ledger is None or not request_ids:
        return []
    existing = {d.isoformat() for d in list_backups(lake)}
    days = set()
    for row in ledger.where(F.col("request_id").isin(request_ids)).select("backups").collect():
        days.update(d for d in (row.backups or []) if d in existing)
    return sorted(days)


# ------------------------------------------------------------------ receipts and audit

def build_receipts(spark: SparkSession, policy: Policy, lake: Lake, requests: list[Request], as_of: dt.date,
                   closing: bool = False, table_commits: dict[str, list] | None = None) -> list[dict]:
    """Receipt per request, rebuilt from what is persisted (state, plans, commits, ledger): no personal value."""
    ids = [r.request_id for r in requests]
    table_commits = table_commits if table_commits is not None else all_commits(spark, policy, lake)
    plan = _effective_plan(spark, lake, table_commits, ids)
    commits = {name: {v: m for v, m, _x in found} for name, found in table_commits.items()}
    ledger_rows: dict[tuple[str, str], object] = {}
    ledger = read_ledger(spark, lake)
    if ledger is not None:
        for row in ledger.where(F.col("request_id").isin(ids)).collect():
            ledger_rows[(row.request_id, row.subject_hash)] = row
    existing = {d.isoformat() for d in list_backups(lake)}
    lake.receipts.mkdir(parents=True, exist_ok=True)
    receipts = []
    for r in requests:
        table_versions = {}
        purge_due = None
        for name, by_version in commits.items():
            for version, meta in by_version.items():
                if r.request_id in meta.get("requests", []):
                    table_versions[name] = {"before": meta["version_before"], "erasure_commit": version, "purge_due": meta["purge_due"]}
                    due = dt.date.fromisoformat(meta["purge_due"])
                    purge_due = max(purge_due, due) if purge_due else due
        purged = r.states.get("purged")
        purged_on = dt.date.fromisoformat(str(purged["as_of"])) if purged else None
        subjects, totals = [], {}
        last_gone_all = None
        for h in r.subject_hashes:
            entries = plan.get((r.request_id, h), {})
            removed = {t: int(e.rows_removed) for t, e in sorted(entries.items()) if e.rows_removed}
            held = [{"table": t, "hold_id": e.hold_id, "reason": e.hold_reason,
                     "until": e.hold_until.isoformat() if e.hold_until else None, "rows_kept": int(e.rows_held)}
                    for t, e in sorted(entries.items()) if e.hold_id and e.rows_held]
            for t, n in removed.items():
                totals[t] = totals.get(t, 0) + n
            ledger_row = ledger_rows.get((r.request_id, h))
            backups = [{"date": d, "expires": expires_on(policy, dt.date.fromisoformat(d)).isoformat(),
                        "still_exists": d in existing} for d in (ledger_row.backups if ledger_row else [])]
            ends = []
            if removed:
                ends.append(purged_on or purge_due)
            ends += [dt.date.fromisoformat(b["expires"]) for b in backups]
            ends = [e for e in ends if e is not None]
            last_gone = max(ends) if ends else None
            if last_gone and (last_gone_all is None or last_gone > last_gone_all):
                last_gone_all = last_gone
            found = bool(entries) and any((e.rows_removed or e.rows_held) for e in entries.values())
            subject_table = entries.get(policy.subject.table)
            subjects.append({
                "subject_hash": h,
                "found": found,
                "in_subject_table": bool(subject_table and (subject_table.rows_removed or subject_table.rows_held)),
                "message": None if found else "no data found for this subject in the lake",
                "rows_removed": removed,
                "held": held,
                "backups_holding": backups,
                "last_byte_gone": last_gone.isoformat() if last_gone else None,
            })
        retained = r.states.get("retained_copy", {}).get("detail", {}).get("tables", [])
        met = None
        if purged_on is not None:
            met = purged_on <= r.deadline
        elif as_of > r.deadline:
            met = False
        receipt = {
            "request_id": r.request_id,
            "source": r.source,
            "received_at": r.received_at.isoformat(sep=" "),
            "deadline": r.deadline.isoformat(),
            "deadline_extension": (r.states.get(EXTENDED) or {}).get("detail"),
            "deadline_basis": f"received + defaults.erasure_deadline_days ({policy.defaults.erasure_deadline_days} days; "
                              "CCPA: 45 days), met when the lake's last copy is physically purged",
            "deadline_met": met,
            "state": "closed" if closing else r.state,
            "states": {s: str(v["at"]) for s, v in r.states.items()} | ({"closed": str(_now())} if closing else {}),
            "subject_id_hash": f"HMAC-SHA256 with key {policy.defaults.ledger_key_id}",
            "subjects": subjects,
            "rows_removed": dict(sorted(totals.items())),
            "table_versions": table_versions,
            "retained_pseudonymized": [f"pseudonymized/{retained_purpose(policy.tables[t])}/{RETAINED}/{t}" for t in retained],
            "derived_copies_erased": r.states.get("deleted", {}).get("detail", {}).get("derived_copies", []),
            "scope": "every raw table of the policy, every copy derived from them (仮名加工情報 under pseudonymized/, "
                     "staging/ and quarantine/, see jobs/lineage.py) and the backups holding the subject",
            "purge_due": purge_due.isoformat() if purge_due else None,
            "purged_on": purged_on.isoformat() if purged_on else None,
            "verification": r.states.get("verified", {}).get("detail") or None,
            "last_byte_gone": last_gone_all.isoformat() if last_gone_all else None,
            "policy_sha256": policy.sha256,
        }
        path = lake.receipts / f"{r.request_id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(receipt, indent=2, ensure_ascii=False, sort_keys=False))
        os.replace(tmp, path)
        receipts.append(receipt)
    return receipts


def _audit_row(receipt: dict, batch_id: str) -> tuple:
    held = [{"table": h["table"], "hold_id": h["hold_id"], "reason": h["reason"]} for s in receipt["subjects"] for h in s["held"]]
    backups = sorted({b["date"] for s in receipt["subjects"] for b in s["backups_holding"]})
    return (receipt["request_id"], receipt["source"], dt.datetime.fromisoformat(receipt["received_at"]),
            dt.date.fromisoformat(receipt["deadline"]), _now(), [s["subject_hash"] for s in receipt["subjects"]],
            len(receipt["subjects"]), sum(1 for s in receipt["subjects"] if s["found"]),
            sum(receipt["rows_removed"].values()), json.dumps(receipt["rows_removed"], sort_keys=True),
            json.dumps(held, sort_keys=True, ensure_ascii=False), backups,
            dt.date.fromisoformat(receipt["purged_on"]) if receipt["purged_on"] else None,
            dt.date.fromisoformat(receipt["last_byte_gone"]) if receipt["last_byte_gone"] else None,
            receipt["deadline_met"], receipt["policy_sha256"], batch_id, f"receipts/{receipt['request_id']}.json")


# ------------------------------------------------------------------ run

def needed_purposes(policy: Policy, lake: Lake, sources: Iterable[str]) -> list[str]:
    """The purposes whose keys a batch of these sources needs: every purpose with a derived copy
    in the lake (the subjects' rows there are found by their pseudonyms) and, for requests that keep
    仮名加工情報, the purposes that pseudonymize the retained rows."""
    sources = list(sources)
    if not sources:
        return []
    purposes = {copy.purpose for copy in derived_copies(policy, lake)}
    if any(s in KEEPS_PSEUDONYMIZED for s in sources):
        purposes |= {retained_purpose(policy.tables[t]) for t in pseudonymize_tables(policy)}
    return sorted(purposes)


def check_purpose_keys(policy: Policy, lake: Lake, sources: Iterable[str]) -> dict[str, tuple[str, bytes]]:
    """The purpose keys of ``needed_purposes``: a missing key is exit 2 before any write."""
    from jobs.keys import load_purpose_keys

    return load_purpose_keys(policy, needed_purposes(policy, lake, sources), lake)


def _new_request(policy: Policy, key: bytes, given: RequestInput, now: dt.datetime) -> Request:
    received = given.received_at or now
    return Request(given.request_id, given.source, received,
                   received.date() + dt.timedelta(days=policy.defaults.erasure_deadline_days),
                   [subject_hash(key, s) for s in given.subjects], subjects=list(given.subjects))


@with_lease("erasure")
def run(spark: SparkSession, policy: Policy, lake: Lake, requests: list[RequestInput] | None = None, *,
        as_of: dt.date | None = None, dry_run: bool = False, resume: bool = True,
        progress: Callable[[str], None] = lambda _m: None,
        on_state: Callable[[str, list[str]], None] = lambda _s, _ids: None) -> ErasureReport:
    """Erase the given requests' subjects; with ``resume`` also continue every open request.

    ``on_state(state, request_ids)`` is called after each transition is committed (tests kill runs there)."""
    requests = list(requests or [])
    today = dt.datetime.now(dt.timezone.utc).date()
    as_of = as_of or today
    now = _now() if as_of == today else dt.datetime.combine(as_of, dt.time())
    key_id, key = ledger_key(policy, lake)                 # exit 2 before any write
    check_lake(spark, policy, lake)       # missing tables, schema drift: exit 2 before any write
    for given in requests:
        check_request_id(given.request_id)
        check_source(given.source)
    ids = [g.request_id for g in requests]
    if len(set(ids)) != len(ids):
        raise InputError("the same request id was given twice")
    check_purpose_keys(policy, lake, [g.source for g in requests])
    known = load_states(spark, lake)
    batch_id = f"era-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    report = ErasureReport(batch_id, as_of, dry_run)
    batch: list[Request] = []
    new: list[Request] = []
    for given in requests:
        request = _new_request(policy, key, given, now)
        existing = known.get(given.request_id)
        if existing is None:
            new.append(request)
            continue
        if sorted(existing.subject_hashes) != sorted(request.subject_hashes):
            raise InputError(f"request {given.request_id} was received earlier for other subject(s); use a new --request-id")
        existing.subjects = list(given.subjects)
        if existing.state == "closed":
            report.notes.append(f"request {given.request_id} is already closed (receipt receipts/{given.request_id}.json)")
            continue
        batch.append(existing)
    if dry_run:
        report.plans = _dry_run(spark, policy, lake, new + batch, as_of, key)
        return report
    if resume:
        for request in known.values():
            if request.state != "closed" and request.request_id not in ids:
                batch.append(request)
    for request in batch:                                   # plain ids and values of resumed requests
        vault = read_vault(lake, key, request.request_id)
        if vault is None:
            report.notes.append(f"request {request.request_id} cannot continue: its vault is missing")
            continue
        request.subjects, request.values = vault["subjects"], vault["values"]
        request.pseudonyms = [tuple(p) for p in vault.get("pseudonyms", [])]
    batch = [r for r in batch if r.subjects or not r.subject_hashes]
    # Every open request needs the purpose keys: its rows in derived copies are found, and verified
    # gone, by its pseudonyms (and closures keep theirs under the retained purpose).
    purpose_keys = check_purpose_keys(policy, lake, [r.source for r in batch + new])
    # Closed requests whose vault survived a kill between `closed` and its destruction.
    for request in known.values():
        if request.state == "closed":
            destroy_vault(lake, request.request_id)
    if not batch and not new:
        if not report.notes:
            report.notes.append("no open erasure request: nothing to do")
        return report
    work = _Batch(spark, policy, lake, as_of, key_id, key, batch_id, progress, on_state, purpose_keys)
    if new:
        work.receive(new)
    everyone = batch + new
    steps = [("retained_copy", work.retain), ("deleted", work.delete), ("backups_quarantined", work.quarantine_backups)]
    for state, action in steps:
        todo = [r for r in everyone if r.order == STATES.index(state) - 1]
        if todo:
            action(todo)
    todo = [r for r in everyone if r.state == "backups_quarantined"]
    if todo:
        work.purge(todo, report)
    todo = [r for r in everyone if r.state == "purged"]
    if todo:
        work.verify(todo)
    todo = [r for r in everyone if r.state == "verified"]
    if todo:
        work.close(todo, report)
    still_open = [r for r in everyone if r.state != "closed"]
    if still_open:
        report.receipts += build_receipts(spark, policy, lake, still_open, as_of, table_commits=work.all_commits())
    return report


def _dry_run(spark: SparkSession, policy: Policy, lake: Lake, requests: list[Request], as_of: dt.date, key: bytes) -> list[dict]:
    """What a run would remove, keep (and why) and find in backups, per request; nothing is written."""
    holds = HoldBook.load(spark, policy, lake, as_of)
    subjects = sorted({s for r in requests for s in r.subjects})
    hits = table_hits(spark, lake, policy, list(policy.tables), subjects)
    holding = subjects_in_backups(spark, policy, lake, subjects, unexpired_backups(policy, lake, as_of))
    plans = []
    for r in requests:
        rows, held, files = {}, [], set()
        for name in policy.tables:
            for s in r.subjects:
                n = sum(hits[name].get(s, {}).values())
                if not n:
                    continue
                hold = holds.hold_for(s, name)
                if hold:
                    held.append({"table": name, "hold_id": hold.hold_id, "reason": hold.reason, "rows_kept": n})
                else:
                    rows[name] = rows.get(name, 0) + n
                    files.update((name, f) for f in hits[name][s])
        plans.append({"request_id": r.request_id, "source": r.source, "state": r.state, "subjects": len(r.subjects),
                      "subjects_found": sum(1 for s in r.subjects if any(hits[t].get(s) for t in policy.tables)),
                      "rows_to_remove": rows, "held": held, "files": len(files), "bytes": sum(f[1][1] for f in files),
                      "backups_holding": sorted({d for s in r.subjects for d in holding.get(s, [])}),
                      "retained_pseudonymized": pseudonymize_tables(policy) if r.source in KEEPS_PSEUDONYMIZED else []})
    return plans


# ------------------------------------------------------------------ verify-erasure (auditors)

def scan_for_hashes(spark: SparkSession, root: str, hashes: DataFrame, key: bytes, exclude: tuple[str, ...] = ()) -> list[Finding]:
    """Like ``verify.scan_for_values`` but for keyed hashes of values (after the vault is destroyed):
    every token of every file (Parquet string cells and their tokens, checkpoint rows, raw bytes as
    text) is hashed with the ledger key and joined with ``hashes`` (column ``value_hash``). Finds
    values made of token characters (emails, phones, numbers, card / passport / licence numbers,
    subject ids), not values with spaces or CJK text (names): those only the vault-based scan covers."""
    from collections import defaultdict

    from jobs.verify import _table_root

    files = [p for p in list_files(spark, root) if not any(f"/{e}/" in p for e in exclude)]
    groups: dict[str, list[str]] = defaultdict(list)
    checkpoints, others = [], []
    for path in files:
        if path.endswith(".parquet") and "/_delta_log/" in path:
            checkpoints.append(path)
        elif path.endswith(".parquet"):
            groups[_table_root(path)].append(path)
        else:
            others.append(path)
    parts: list[DataFrame] = []
    for group in groups.values():
        df = spark.read.option("mergeSchema", "true").parquet(*group)
        strings = [f.name for f in df.schema.fields if f.dataType.typeName() == "string"]
        if strings:
            parts.append(df.select(F.input_file_name().alias("path"), F.lit("parquet").alias("kind"),
                                   F.explode(F.array(*[F.col(c) for c in strings])).alias("text")))
    if checkpoints:
        parts.append(spark.read.parquet(*checkpoints).select(F.input_file_name().alias("path"), F.lit("checkpoint").alias("kind"),
                                                             F.to_json(F.struct("*")).alias("text")))
    if others:
        parts.append(spark.read.format("binaryFile").load(others)
                     .select("path", F.lit("file").alias("kind"), F.col("content").cast("string").alias("text")))
    if not parts:
        return []
    text = parts[0]
    for part in parts[1:]:
        text = text.unionByName(part)
    # One Spark job: tokens (as the value scan cuts them), hashed once per file, joined with the hashes.
    tokens = (text.select("path", "kind", F.explode(F.split(F.translate(F.col("text"), FULL_WIDTH, HALF_WIDTH), TOKEN_SPLIT)).alias("value"))
                  .where((F.length("value") >= MIN_VALUE_LENGTH) & (F.length("value") <= 128)))
    hashed = tokens.distinct().withColumn("value_hash", _value_hash_column(F.col("value"), key))
    matches = allowed_elsewhere(hashed.join(F.broadcast(with_exclude(hashes, "value_hash")), "value_hash"))
    hits = matches.groupBy("path", "kind").count().collect()
    return sorted((Finding(r.path, r.kind, r["count"]) for r in hits), key=lambda f: f.path)


@dataclass
class VerifyReport:
    requests: list[str]
    method: dict[str, str]
    excluded_backups: list[str]
    findings: list[str]


@with_lease("verify-erasure")
def verify(spark: SparkSession, policy: Policy, lake: Lake, request_ids: list[str] | None = None,
           progress: Callable[[str], None] = lambda _m: None) -> VerifyReport:
    """The verification scan as its own job: raises CheckFailed naming files (never values) on residue."""
    _key_id, key = ledger_key(policy, lake)
    known = load_states(spark, lake)
    if request_ids:
        for request_id in request_ids:
            check_request_id(request_id)
            if request_id not in known:
                raise InputError(f"--request-id {request_id}: no such erasure request in {lake.state(STATE_TABLE)}")
            if known[request_id].order < STATES.index("purged"):
                raise InputError(f"--request-id {request_id}: state {known[request_id].state}; residue is expected "
                                 "until its physical purge (run `wasure erase` after the grace period)")
        chosen = [known[i] for i in request_ids]
    else:
        chosen = [r for r in known.values() if r.order >= STATES.index("purged")]
    method: dict[str, str] = {}
    plain: set[tuple[str, str | None]] = set()
    hashed_ids: list[str] = []
    for r in chosen:
        vault = read_vault(lake, key, r.request_id)
        if vault is not None:
            plain.update((v, None) for v in vault["values"])
            plain.update(tuple(p) for p in vault.get("pseudonyms", []))
            method[r.request_id] = (f"exact scan of {len(vault['values'])} value(s) and "
                                    f"{len(vault.get('pseudonyms', []))} pseudonym(s) (vault)")
        else:
            hashed_ids.append(r.request_id)
            method[r.request_id] = "keyed-hash scan (vault destroyed at closure)"
    excluded = _quarantined_backups(spark, lake, [r.request_id for r in chosen])
    exclude = tuple(f"backups/{d}" for d in excluded)
    findings: list[Finding] = []
    if plain:
        progress(f"scanning for {len(plain)} value(s)")
        frame = spark.createDataFrame(sorted(plain, key=lambda v: (v[0], v[1] or "")), "value string, exclude string")
        findings += scan_for_values(spark, str(lake.root), frame, exclude)
    values_path = lake.state(VALUES_TABLE)
    if hashed_ids and is_delta(values_path):
        hashes = read_current(spark, values_path).where(F.col("request_id").isin(hashed_ids))
        if hashes.limit(1).count():
            progress(f"keyed-hash scan for {len(hashed_ids)} closed request(s)")
            findings += scan_for_hashes(spark, str(lake.root), hashes, key, exclude)
    paths = sorted({_relative(lake, f) for f in findings})
    report = VerifyReport([r.request_id for r in chosen], method, excluded, paths)
    if paths:
        raise CheckFailed(f"residue of erased subjects found in {len(paths)} file(s) (values not shown):\n  " + "\n  ".join(paths))
    return report


# ------------------------------------------------------------------ spark-submit entry point

def report_dict(report: ErasureReport) -> dict:
    return {"batch_id": report.batch_id, "as_of": report.as_of.isoformat(), "dry_run": report.dry_run,
            "receipts": report.receipts, "plans": report.plans, "waiting": report.waiting, "notes": report.notes}


@entry_point
def main(argv: list[str] | None = None) -> int:
    """`python -m jobs.erasure erase --policy P --lake L [--subject ID ...] [--file F] [--from-requests] ...`
    or `python -m jobs.erasure verify --policy P --lake L [--request-id R ...]`. Exit 0 / 1 / 2 like the CLI."""
    import argparse

    from jobs.policy import load_policy
    from jobs.runtime import get_spark

    parser = argparse.ArgumentParser(prog="jobs.erasure")
    parser.add_argument("action", choices=["erase", "verify"])
    parser.add_argument("--policy", required=True)
    parser.add_argument("--lake", required=True)
    parser.add_argument("--subject", action="append", default=[])
    parser.add_argument("--file")
    parser.add_argument("--from-requests", action="store_true")
    parser.add_argument("--request-id", action="append", default=[])
    parser.add_argument("--source", default="account_closure")
    parser.add_argument("--received-at")
    parser.add_argument("--as-of", type=dt.date.fromisoformat)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    policy, lake = load_policy(args.policy), Lake.at(args.lake)
    if args.action == "verify":
        result = asdict(verify(get_spark("wasure-verify-erasure"), policy, lake, args.request_id or None))
    else:
        spark_holder: dict = {}
        requests = prepare_requests(policy, lake, subjects=args.subject, file=args.file,
                                    from_requests=args.from_requests,
                                    request_id=args.request_id[0] if args.request_id else None,
                                    source=args.source, received_at=args.received_at,
                                    spark=lambda: spark_holder.setdefault("s", get_spark("wasure-erasure")))
        spark = spark_holder.get("s") or get_spark("wasure-erasure")
        result = report_dict(run(spark, policy, lake, requests, as_of=args.as_of, dry_run=args.dry_run))
    print(json.dumps(result, default=str, ensure_ascii=False))
    return 0


def prepare_requests(policy: Policy, lake: Lake, *, subjects: list[str] | None, file: str | Path | None,
                     from_requests: bool, request_id: str | None, source: str, received_at: str | None,
                     spark: Callable[[], SparkSession]) -> list[RequestInput]:
    """Command-line input -> requests, every check done before Spark starts (except the inbox's)."""
    check_source(source)
    received = parse_received_at(received_at)
    if request_id is not None:
        check_request_id(request_id)
    if from_requests and (subjects or file):
        raise InputError("--from-requests cannot be combined with --subject or --file")
    if from_requests:
        if request_id or received_at:
            raise InputError("--request-id and --received-at come from the erasure_requests table with --from-requests")
        ledger_key(policy, lake)
        return requests_from_inbox(spark(), policy, lake)
    entries = [(f"--subject #{i}", s) for i, s in enumerate(subjects or [], 1)]
    if file is not None:
        entries += read_id_file(Path(file))
    if not entries:
        return []
    ids = check_subject_ids(policy, entries)
    _key_id, key = ledger_key(policy, lake)
    return [RequestInput(request_id or default_request_id(key, ids, source), ids, source, received)]


if __name__ == "__main__":
    raise SystemExit(main())
