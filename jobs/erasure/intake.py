"""Erasure input, checked before any write: subject ids, request ids, sources, the inbox table."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from anonymizers.frames import local_frame
from jobs.lake.backup_ledger import ledger_key
from jobs.runtime.console import InputError
from jobs.erasure.model import REQUEST_ID, REQUESTS_SCHEMA, REQUESTS_TABLE, SOURCES
from jobs.lake.layout import Lake, create_table, is_delta, read_now
from jobs.policy import Policy

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
    df = local_frame(spark, rows, REQUESTS_SCHEMA)
    path = lake.state(REQUESTS_TABLE)
    create_table(spark, path, df, [], stats_columns=["request_id", "received_at", "source"])
    df.coalesce(1).write.format("delta").mode("append").save(path)


def requests_from_inbox(spark: SparkSession, policy: Policy, lake: Lake) -> list[RequestInput]:
    """Requests of the inbox, checked like command-line input (positions, never ids, in errors)."""
    path = lake.state(REQUESTS_TABLE)
    if not is_delta(path):
        raise InputError(f"--from-requests: no erasure_requests table at {path}")
    df = read_now(spark, path)
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
