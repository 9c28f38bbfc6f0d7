"""Pipeline steps for schedulers (the Airflow DAGs in dags/): thin, importable, JSON results.

Every step takes a policy path, a lake root and a run date (plus a few step options), loads and
validates the policy, calls the job entry points in-process (``retention.run``, ``pseudonymize.run``,
``backup.run_backup``, ``erasure.run``, ...) and returns a small JSON-able dict for XCom: counts,
versions, paths and ids of requests/runs, never a personal value (no subject id, no identifier).

The same steps run in two ways:

- in-process (Airflow "embedded" mode): ``run_step("retention", policy=..., lake=..., run_date=...)``;
- under ``spark-submit`` (Airflow "cluster" mode): this file is the application,
  ``spark-submit ... jobs/pipeline.py retention --policy P --lake L --date 2026-11-22 [--options JSON]``;
  ``main`` prints the result as one JSON line and exits 0 ok, 1 a check failed, 2 bad input,
  3 the step's job module is not deployed.

Steps whose job module may not exist yet (``anonymize``, ``statistics``) raise ``StepUnavailable``
naming the missing module; the DAGs turn that into a visible skip, never a silent success.
"""
from __future__ import annotations

import sys

if __name__ == "__main__" and not __package__:          # run as a file by spark-submit
    from pathlib import Path as _Path

    sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))

import datetime as dt
import importlib
import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any, Callable

from jobs.console import CheckFailed, InputError, entry_point
from jobs.storage import join, name_of, parent_of, relative

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_UNAVAILABLE = 0, 1, 2, 3
CLOSURE_SOURCES = ("account_closure", "ccpa", "appi", "gdpr")
DEFAULT_DEADLINE_WARN_DAYS = 14


class StepUnavailable(RuntimeError):
    """The job module a step needs is not part of this deployment: the step did not run."""


class DeadlineAlert(CheckFailed):
    """Erasure requests are close to (or past) their legal due date."""


# ------------------------------------------------------------------ shared helpers

def run_date(value: Any = None) -> dt.date:
    """The business date of a run: a date, a datetime (its UTC date), 'YYYY-MM-DD', or None (today UTC)."""
    if value is None or value == "":
        return dt.datetime.now(dt.timezone.utc).date()
    if isinstance(value, dt.datetime):
        return (value.astimezone(dt.timezone.utc) if value.tzinfo else value).date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise InputError(f"run date must be YYYY-MM-DD, got {value!r}") from None


def load(policy_path: str | os.PathLike | None, lake_root: str | os.PathLike | None):
    """(policy, lake) from explicit values, else $WASURE_POLICY / $WASURE_LAKE (the CLI's defaults)."""
    from jobs.lake import Lake
    from jobs.policy import default_policy_path, load_policy

    policy_path = policy_path or None
    lake_root = lake_root or os.environ.get("WASURE_LAKE")
    if not lake_root:
        raise InputError("no lake root: pass the lake (DAG param `lake`) or set WASURE_LAKE")
    policy, lake = load_policy(policy_path or default_policy_path()), Lake.at(lake_root)
    if not lake.is_local:                # hdfs:// or s3a:// down or mistyped: exit 2 naming it, before any write
        from jobs.storage import check_reachable

        check_reachable(lake.uri)
    return policy, lake


def _spark(step: str):
    from jobs.runtime import get_spark

    return get_spark(f"wasure-{step}")


def available(module: str) -> bool:
    """Whether ``jobs.<module>`` is deployed (no import: safe at DAG parse time)."""
    return importlib.util.find_spec(f"jobs.{module}") is not None


def _optional(module: str, step: str):
    if not available(module):
        raise StepUnavailable(f"step {step!r} skipped: jobs/{module}.py is not part of this deployment yet "
                              f"(the job was not run; nothing was produced)")
    return importlib.import_module(f"jobs.{module}")


def _jsonable(value: Any, depth: int = 0) -> Any:
    """A result object as JSON-able data (dataclasses, dates); bounded so XComs stay small."""
    from dataclasses import asdict, is_dataclass

    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        items = list(value)
        return [_jsonable(v, depth + 1) for v in items[:200]] + ([f"... {len(items) - 200} more"] if len(items) > 200 else [])
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _versions(spark, policy, lake) -> dict[str, int]:
    from jobs.lake import is_delta
    from jobs.lake import table_version

    return {n: table_version(spark, lake.table_path(t)) for n, t in policy.tables.items() if is_delta(lake.table_path(t))}


# ------------------------------------------------------------------ nightly steps

def backup(policy: str | None, lake: str | None, run_date_: Any = None) -> dict:
    """Today's backup (idempotent per day: a second run finds it and writes nothing)."""
    from jobs.backup import run_backup

    pol, lk = load(policy, lake)
    day = run_date(run_date_)
    manifest = run_backup(_spark("backup"), pol, lk, day)
    return {"step": "backup", "date": manifest["date"], "status": manifest["status"], "expires": manifest["expires"],
            "path": str(lk.backups / manifest["date"]),
            "tables": {n: {"source_version": t["source_version"], "rows": t["rows"]} for n, t in manifest["tables"].items()}}


def retention(policy: str | None, lake: str | None, run_date_: Any = None, force: bool = False, dry_run: bool = False) -> dict:
    """Retention as of the run date. The physical purge is its own step (``physical_purge``)."""
    from jobs.retention import run

    pol, lk = load(policy, lake)
    day = run_date(run_date_)
    report = run(_spark("retention"), pol, lk, day, dry_run=bool(dry_run), force=bool(force), purge=False)
    return {"step": "retention", "run_id": report.run_id, "as_of": day.isoformat(), "dry_run": report.dry_run,
            "policy_sha256": report.policy_sha256, "policy_changes": len(report.policy_changes),
            "tables": {p.table: {"action": p.action, "rows_before": p.rows_before, "removed": p.to_remove,
                                 "held": p.held, "held_by": dict(p.held_by), "reasons": dict(p.reasons),
                                 **{k: _jsonable(v) for k, v in report.results.get(p.table, {}).items()}}
                       for p in report.plans},
            "removed": sum(p.to_remove for p in report.plans)}


def pseudonymize(policy: str | None, lake: str | None, run_date_: Any = None, purposes: list[str] | None = None,
                 full: bool = False) -> dict:
    """仮名加工情報 per purpose; tables whose source did not change are skipped (idempotent)."""
    from jobs.pseudonymize import run

    pol, lk = load(policy, lake)
    result = run(_spark("pseudonymize"), pol, lk, list(purposes) if purposes else None, bool(full))
    return {"step": "pseudonymize",
            "tables": [{k: t.get(k) for k in ("purpose", "table", "status", "rows", "key_id")} for t in result["tables"]],
            "published": sum(1 for t in result["tables"] if t["status"] == "published"),
            "unchanged": sum(1 for t in result["tables"] if t["status"] == "unchanged")}


def _pipeline_state(lake) -> str:
    return lake.state("pipeline")


def _fingerprint(spark, policy, lake, day: dt.date) -> dict:
    """What a derived output depends on: the policy, the business date and every raw table's version."""
    return {"policy_sha256": policy.sha256, "as_of": day.isoformat(), "sources": _versions(spark, policy, lake)}


def _step_state(lake, step: str) -> dict:
    path = join(_pipeline_state(lake), f"{step}.json")
    return json.loads(lake.files.read_text(path)) if lake.files.is_file(path) else {}


def _already_done(lake, step: str, key: str, fingerprint: dict) -> bool:
    return _step_state(lake, step).get(key) == fingerprint


def _record_done(lake, step: str, key: str, fingerprint: dict) -> None:
    state = _step_state(lake, step)
    state[key] = fingerprint
    lake.files.write_text(join(_pipeline_state(lake), f"{step}.json"), json.dumps(state, indent=2, sort_keys=True))


def anonymize(policy: str | None, lake: str | None, run_date_: Any = None, releases: list[str] | None = None) -> dict:
    """匿名加工情報: every release of the policy (``jobs.anonymize.run``: Mondrian, its own GE gate,
    promotion, manifest, catalog). A release whose inputs (raw table versions, policy, business
    date) did not change since its last successful run is not rebuilt (a re-run of a day does no
    double work)."""
    from jobs.lake import is_delta

    module = _optional("anonymize", "anonymize")
    pol, lk = load(policy, lake)
    day = run_date(run_date_)
    names = list(releases) if releases else list(pol.releases)
    unknown = [n for n in names if n not in pol.releases]
    if unknown:
        raise InputError(f"unknown release(s): {', '.join(unknown)} (the policy has: {', '.join(pol.releases) or 'none'})")
    for name in names:               # every release's hierarchies, before the first one publishes
        module.check_release(pol, name)
    spark = _spark("anonymize")
    fingerprint = _fingerprint(spark, pol, lk, day)
    out = []
    for name in names:
        if _already_done(lk, "anonymize", name, fingerprint) and is_delta(lk.anonymized(name)):
            out.append({"release": name, "status": "unchanged", "path": lk.anonymized(name)})
            continue
        result = module.run(spark, pol, lk, name, as_of=day)
        _record_done(lk, "anonymize", name, fingerprint)
        out.append({"release": name, "status": "published", "path": lk.anonymized(name),
                    **{k: _jsonable(result.get(k)) for k in ("rows", "suppressed", "table", "manifest", "docs", "gate")},
                    "metrics": {k: v for k, v in (result.get("metrics") or {}).items() if isinstance(v, (int, float))}})
    return {"step": "anonymize", "as_of": day.isoformat(), "releases": out,
            **({} if names else {"note": "the policy defines no releases"})}


def statistics(policy: str | None, lake: str | None, run_date_: Any = None) -> dict:
    """k-anonymous statistics tables (``jobs.statistics.run``: cube, suppression, its own GE gate,
    promotion). Differentially private statistics are not released nightly: each release spends a
    finite budget, so they are released on purpose (``wasure statistics --name``). Not recomputed
    when its inputs did not change since the last successful run (so a re-run of a day does no double work)."""
    module = _optional("statistics", "statistics")
    pol, lk = load(policy, lake)
    day = run_date(run_date_)
    names = [name for name, stat in pol.statistics.items() if stat.dp is None]
    if not names:
        return {"step": "statistics", "as_of": day.isoformat(), "statistics": [],
                "note": "the policy defines no statistics" if not pol.statistics else "the policy defines no k-anonymous statistics"}
    spark = _spark("statistics")
    fingerprint = _fingerprint(spark, pol, lk, day)
    outputs = [lk.path("statistics", name) for name in names]
    if _already_done(lk, "statistics", "all", fingerprint) and all(lk.files.is_dir(p) for p in outputs):
        return {"step": "statistics", "as_of": day.isoformat(), "status": "unchanged",
                "statistics": [{"statistic": name, "status": "unchanged"} for name in names]}
    result = module.run(spark, pol, lk, names, as_of=day)
    _record_done(lk, "statistics", "all", fingerprint)
    keys = ("statistic", "region", "status", "cells", "published", "primary", "complementary", "path")
    return {"step": "statistics", "as_of": day.isoformat(), "status": "published", "run_id": result.get("run_id"),
            "statistics": [{k: s.get(k) for k in keys if k in s} for s in result.get("statistics", [])],
            "docs": result.get("docs", [])}


def _published_datasets(spark, policy, lake) -> list[dict]:
    """Every dataset a consumer may read: pseudonymized/<purpose>/<table>, anonymized/<release>/<table>
    and statistics/<statistic>/region=<R>."""
    from jobs.lake import is_delta
    from jobs.lake import table_version

    out = []
    for kind in ("pseudonymized", "anonymized", "statistics"):
        for path in lake.files.glob(join(lake.path(kind), "*", "*")):
            if is_delta(path):
                out.append({"kind": kind, "group": name_of(parent_of(path)), "name": name_of(path),
                            "path": relative(path, lake.uri), "version": table_version(spark, path)})
    return out


def gates(policy: str | None, lake: str | None, run_date_: Any = None) -> dict:
    """Great Expectations gate over what the night produced, before anything is published:

    - every raw table with a business-date retention: no row older than its cutoff except rows of
      subjects under legal hold (``ExpectNoRowsPastRetention``);
    - every raw table, once a deletion ledger exists: no erased subject is back
      (``ExpectNoErasedSubjects`` on keyed hashes);
    - every pseudonymized and anonymized dataset: no column of a class that must be gone
      (``ExpectNoForbiddenColumns``: 個人識別符号, property-damage data, dropped columns; for
      匿名加工情報 also identifying columns and linking codes).
    Data Docs go to <lake>/docs/gates/nightly-<date>/. Raises CheckFailed (no value in the message).
    """
    from pyspark.sql import functions as F

    from expectations import (
        PSEUDONYMIZED_FORBIDDEN_CLASSES, RELEASE_FORBIDDEN_CLASSES, columns_of_classes, retention_suite, run_gate,
    )
    from expectations.custom import ExpectNoForbiddenColumns
    from jobs.backup import hash_column, ledger_key, read_ledger
    from jobs.lake import is_delta, read_current
    from jobs.pseudonymize import rule31_plan
    from jobs.subjects import Registers

    pol, lk = load(policy, lake)
    day = run_date(run_date_)
    spark = _spark("gates")
    registers = Registers(spark, pol, lk)
    checks = []
    ledger = read_ledger(spark, lk)
    key = ledger_key(pol, lk)[1] if ledger is not None else None
    for name, table in pol.tables.items():
        path = lk.table_path(table)
        if not is_delta(path):
            continue
        df, suite = read_current(spark, path), []
        retention_rule = table.retention
        holds = registers.holds_for(name, day)
        whole_table_held = registers.table_level_hold(name, day) is not None   # keeps every row, as retention does
        if retention_rule is not None and retention_rule.basis == "business_date" and table.date_column and not whole_table_held:
            held = holds.where(F.col("subject").isNotNull()).select(F.col("subject").alias("held_subject"))
            cutoff = day - dt.timedelta(days=retention_rule.period_days)
            suite += retention_suite(table.date_column, cutoff.isoformat(), table.subject_key, held, "held_subject")
        if ledger is not None:
            # No erased subject is back (e.g. restored around the ledger): keyed hashes, never raw ids.
            erased = ledger.where(F.array_contains("tables", name)).select("subject_hash")
            df = df.withColumn("_wasure_subject_hash", hash_column(F.col(table.subject_key), key))
            suite += retention_suite(None, None, hash_column="_wasure_subject_hash", deletion_ledger=erased,
                                     ledger_hash_column="subject_hash")
        if suite:
            checks.append((f"raw.{name}", df, suite))
    classes_of = {name: {c: t.column(c).class_.value for c in t.columns} for name, t in pol.tables.items()}
    for dataset in _published_datasets(spark, pol, lk):
        source = dataset["name"] if dataset["name"] in pol.tables else None
        if dataset["kind"] == "pseudonymized":
            if source is None:                   # pseudonymized/<purpose>/retained/<table> is a group of tables
                continue
            forbidden = columns_of_classes(classes_of[source], PSEUDONYMIZED_FORBIDDEN_CLASSES)
            forbidden.update({c: "dropped by policy" for c in rule31_plan(pol.tables[source]).drop if c not in forbidden})
        elif dataset["kind"] == "anonymized":
            release = pol.releases.get(dataset["group"])
            base = release.table if release else source
            if base is None:
                continue
            forbidden = columns_of_classes({**classes_of.get(pol.subject.table, {}), **classes_of[base]},
                                           RELEASE_FORBIDDEN_CLASSES)
        else:
            continue                             # statistics tables: gated by jobs.statistics before promotion
        checks.append((f"{dataset['kind']}.{dataset['group']}.{dataset['name']}", read_current(spark, lk.path(dataset["path"])),
                       [ExpectNoForbiddenColumns(forbidden_columns=forbidden)]))
    for path in lk.files.glob(join(lk.path("pseudonymized"), "*", "retained", "*")):
        table = name_of(path)
        if table in pol.tables and is_delta(path):
            forbidden = columns_of_classes(classes_of[table], PSEUDONYMIZED_FORBIDDEN_CLASSES)
            forbidden.update({c: "dropped by policy" for c in rule31_plan(pol.tables[table]).drop if c not in forbidden})
            checks.append((f"pseudonymized.{name_of(parent_of(parent_of(path)))}.retained.{table}", read_current(spark, path),
                           [ExpectNoForbiddenColumns(forbidden_columns=forbidden)]))
    result = run_gate(f"nightly-{day.isoformat()}", checks, join(lk.docs, "gates", f"nightly-{day.isoformat()}"))
    summary = {"step": "gates", "as_of": day.isoformat(), "success": result.success, "checks": len(checks),
               "labels": [label for label, _df, _e in checks], "docs_index": result.docs_index,
               "failures": [f.message for f in result.failures]}
    if not result.success:
        raise CheckFailed(result.report())
    return summary


def publish(policy: str | None, lake: str | None, run_date_: Any = None) -> dict:
    """Write the day's release manifest: every pseudonymized / anonymized dataset that passed the
    night's gate, with its Delta version and the policy hash, to <lake>/state/published/<date>.json
    (and latest.json). Consumers read datasets at the versions listed there. Idempotent: the same
    datasets at the same versions leave the manifest unchanged."""
    pol, lk = load(policy, lake)
    day = run_date(run_date_)
    spark = _spark("publish")
    docs = join(lk.docs, "gates", f"nightly-{day.isoformat()}", "index.html")
    if not lk.files.is_file(docs):
        raise CheckFailed(f"no gate result for {day.isoformat()} ({docs} is missing): run the gates step first; nothing was published")
    datasets = _published_datasets(spark, pol, lk)
    manifest = {"date": day.isoformat(), "policy": pol.name, "policy_sha256": pol.sha256,
                "gate_docs": relative(docs, lk.uri), "datasets": datasets}
    folder = lk.state("published")
    target = join(folder, f"{day.isoformat()}.json")
    status = "unchanged"
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False)
    if not lk.files.is_file(target) or lk.files.read_text(target) != text:
        for path in (target, join(folder, "latest.json")):
            lk.files.write_text(path, text)
        status = "written"
    return {"step": "publish", "date": day.isoformat(), "manifest": str(target), "status": status,
            "datasets": len(datasets)}


def physical_purge(policy: str | None, lake: str | None, run_date_: Any = None) -> dict:
    """REORG ... APPLY (PURGE) + VACUUM of every table with a quarantine-ledger entry past its grace."""
    from jobs.retention import physical_purge as purge

    pol, lk = load(policy, lake)
    day = run_date(run_date_)
    purged = purge(_spark("purge"), pol, lk, day)
    return {"step": "physical_purge", "as_of": day.isoformat(), "purged": _jsonable(purged)}


# ------------------------------------------------------------------ closure (erasure on request)

def validate_closure(policy: str | None, lake: str | None, subject_ids: Any, request_id: Any, source: Any,
                     dry_run: Any) -> dict:
    """Check a closure/erasure trigger before any data is touched (no Spark, nothing written).

    subject_ids: a non-empty list of ids matching policy.subject.id_pattern, no duplicates;
    request_id: 1-80 characters [A-Za-z0-9._-] (names the receipt), or empty to derive one from the
    ids (keyed, deterministic); source: one of account_closure, ccpa, appi, gdpr; dry_run: a bool.
    Also checks the lake has every policy table and the keys the erasure needs are available.
    Raises InputError listing every problem (positions, never the ids)."""
    from jobs.erasure import check_request_id, check_subject_ids, default_request_id
    from jobs.lake import is_delta

    problems: list[str] = []
    if not isinstance(subject_ids, (list, tuple)):
        problems.append("subject_ids: must be a list of subject ids")
        subject_ids = []
    elif not subject_ids:
        problems.append("subject_ids: at least one subject id is required")
    if not isinstance(dry_run, bool):
        problems.append("dry_run: must be true or false")
    if source not in CLOSURE_SOURCES:
        problems.append(f"source: must be one of {', '.join(CLOSURE_SOURCES)}")
    if request_id not in (None, "") and not isinstance(request_id, str):
        problems.append("request_id: must be a string")
    try:
        pol, lk = load(policy, lake)
    except InputError as exc:
        raise InputError("; ".join(problems + [str(exc)])) from None
    ids: list[str] = []
    if subject_ids:
        non_strings = [i for i, s in enumerate(subject_ids, 1) if not isinstance(s, str)]
        if non_strings:
            problems.append(f"subject_ids: entries {', '.join(map(str, non_strings[:20]))} are not strings")
        else:
            try:
                ids = check_subject_ids(pol, [(f"subject_ids[{i}]", s) for i, s in enumerate(subject_ids, 1)])
            except InputError as exc:
                problems.append(str(exc))
    if isinstance(request_id, str) and request_id:
        try:
            check_request_id(request_id, "request_id")
        except InputError as exc:
            problems.append(str(exc))
    missing = [n for n, t in pol.tables.items() if not is_delta(lk.table_path(t))]
    if missing:
        problems.append(f"lake {lk.uri}: no table(s) {', '.join(missing)}")
    if problems:
        raise InputError("bad closure request (nothing was touched):\n  " + "\n  ".join(problems))
    from jobs.backup import ledger_key

    _key_id, key = ledger_key(pol, lk)                     # the erasure cannot run without it
    from jobs.erasure import check_purpose_keys

    check_purpose_keys(pol, lk, [source])
    resolved = request_id or default_request_id(key, ids, source)
    return {"step": "validate", "request_id": resolved, "source": source, "subjects": len(ids), "dry_run": dry_run,
            "policy": pol.source, "lake": lk.uri, "receipt": join(lk.receipts, f"{resolved}.json")}


def _subjects_from_env() -> list[str]:
    raw = os.environ.get("WASURE_ERASE_SUBJECTS", "")
    return [s for s in re.split(r"[\s,]+", raw) if s]


def closure(policy: str | None, lake: str | None, run_date_: Any = None, subject_ids: list[str] | None = None,
            request_id: str | None = None, source: str = "account_closure", dry_run: bool = False) -> dict:
    """Erase the subjects of one closure / erasure request (``jobs.erasure.run``): checks first, then
    the state machine up to where the grace period lets it go; the receipt is written under
    <lake>/receipts/<request id>.json. Also continues every other open request (erasure's resume).
    Subject ids come from the argument or, under spark-submit, from $WASURE_ERASE_SUBJECTS."""
    from jobs.erasure import RequestInput, run

    subject_ids = list(subject_ids) if subject_ids else _subjects_from_env()
    checked = validate_closure(policy, lake, subject_ids, request_id, source, bool(dry_run))
    pol, lk = load(policy, lake)
    day = run_date(run_date_)
    ids = [s.strip() for s in subject_ids]
    report = run(_spark("erasure"), pol, lk, [RequestInput(checked["request_id"], ids, source)], as_of=day, dry_run=bool(dry_run))
    mine = [r for r in report.receipts if r["request_id"] == checked["request_id"]]
    out = {"step": "closure", "request_id": checked["request_id"], "source": source, "dry_run": bool(dry_run),
           "batch_id": report.batch_id, "as_of": day.isoformat(), "subjects": len(ids),
           "waiting": report.waiting, "notes": report.notes,
           "other_requests_advanced": sorted({r["request_id"] for r in report.receipts} - {checked["request_id"]})}
    if dry_run:
        out["plans"] = [{k: p[k] for k in ("request_id", "subjects", "subjects_found", "rows_to_remove", "files",
                                           "backups_holding", "retained_pseudonymized")} | {"held": len(p["held"])}
                        for p in report.plans]
        out["receipt"] = None
    else:
        out.update(receipt_summary(lk, checked["request_id"], mine[0] if mine else None))
    return out


def receipt_summary(lake_or_root, request_id: str, receipt: dict | None = None) -> dict:
    """Receipt path and its non-personal headline (state, deadline, rows removed) for XCom."""
    from jobs.lake import Lake

    lk = lake_or_root if isinstance(lake_or_root, Lake) else Lake.at(lake_or_root)
    path = join(lk.receipts, f"{request_id}.json")
    if receipt is None:
        if not lk.files.is_file(path):
            raise CheckFailed(f"no receipt at {path}: the erasure of request {request_id} did not record one")
        receipt = json.loads(lk.files.read_text(path))
    return {"receipt": path, "state": receipt["state"], "deadline": receipt["deadline"],
            "deadline_met": receipt["deadline_met"], "purge_due": receipt["purge_due"],
            "rows_removed": sum(receipt["rows_removed"].values()),
            "held": sum(len(s["held"]) for s in receipt["subjects"]),
            "subjects_found": sum(1 for s in receipt["subjects"] if s["found"]),
            "last_byte_gone": receipt["last_byte_gone"]}


# ------------------------------------------------------------------ backup lifecycle and deadlines

def expire_backups(policy: str | None, lake: str | None, run_date_: Any = None) -> dict:
    """Delete expired backups (and end the quarantines they held)."""
    from jobs.backup import expire_backups as expire

    pol, lk = load(policy, lake)
    result = expire(_spark("backup-expire"), pol, lk, run_date(run_date_))
    return {"step": "expire_backups", **_jsonable(result)}


def end_quarantines(policy: str | None, lake: str | None, run_date_: Any = None) -> dict:
    """Release deletion-ledger subjects whose last backup is gone (derived from the disk: heals killed runs)."""
    from jobs.backup import read_ledger, sync_ledger

    _pol, lk = load(policy, lake)
    spark = _spark("backup-quarantine")
    released = sync_ledger(spark, lk)
    ledger = read_ledger(spark, lk)
    counts = {r.status: r["count"] for r in ledger.groupBy("status").count().collect()} if ledger is not None else {}
    return {"step": "end_quarantines", "released_now": released, "ledger": counts}


def advance_erasures(policy: str | None, lake: str | None, run_date_: Any = None) -> dict:
    """Continue every open erasure request: those whose grace has passed are purged, verified
    (scan of every file for their identifying values) and closed with a receipt."""
    from jobs.erasure import STATES, load_states, run

    pol, lk = load(policy, lake)
    day = run_date(run_date_)
    spark = _spark("erasure-resume")
    before = {r.request_id: r.state for r in load_states(spark, lk).values()}
    report = run(spark, pol, lk, [], as_of=day)
    after = {r.request_id: r.state for r in load_states(spark, lk).values()}
    return {"step": "advance_erasures", "as_of": day.isoformat(),
            "closed_now": sorted(i for i, s in after.items() if s == "closed" and before.get(i) != "closed"),
            "open": {i: s for i, s in sorted(after.items()) if s != "closed"},
            "waiting": report.waiting, "receipts": [f"receipts/{r['request_id']}.json" for r in report.receipts],
            "states": {s: sum(1 for v in after.values() if v == s) for s in STATES if any(v == s for v in after.values())}}


def reverify_erasures(policy: str | None, lake: str | None, run_date_: Any = None) -> dict:
    """Re-run the residue scan for every erasure whose grace has passed (state purged or later):
    a restore or a stray copy that brought data back fails this task (files named, never values)."""
    from jobs.erasure import STATES, load_states, verify

    pol, lk = load(policy, lake)
    spark = _spark("verify-erasure")
    done = sorted(r.request_id for r in load_states(spark, lk).values() if r.order >= STATES.index("purged"))
    if not done:
        return {"step": "reverify_erasures", "requests": [], "note": "no erasure past its grace yet: nothing to verify"}
    report = verify(spark, pol, lk, done)
    return {"step": "reverify_erasures", "requests": report.requests, "method": report.method,
            "excluded_backups": report.excluded_backups, "findings": len(report.findings)}


def erasure_deadlines(policy: str | None, lake: str | None, run_date_: Any = None, warn_days: int | None = None) -> dict:
    """Erasure requests not yet physically purged whose due date (received + policy
    defaults.erasure_deadline_days, 45 for CCPA) is within ``warn_days`` days (default
    $WASURE_DEADLINE_WARN_DAYS or 14) or already past. Raises DeadlineAlert listing them."""
    from jobs.erasure import STATES, load_states

    pol, lk = load(policy, lake)
    day = run_date(run_date_)
    if warn_days in (None, ""):
        warn_days = int(os.environ.get("WASURE_DEADLINE_WARN_DAYS", DEFAULT_DEADLINE_WARN_DAYS))
    warn_days = int(warn_days)
    if warn_days < 0:
        raise InputError("warn_days must be >= 0")
    requests = load_states(_spark("erasure-deadlines"), lk).values()
    open_requests = [r for r in requests if r.order < STATES.index("purged")]
    near = sorted(({"request_id": r.request_id, "source": r.source, "state": r.state,
                    "received_at": r.received_at.isoformat(sep=" "), "due": r.deadline.isoformat(),
                    "days_left": (r.deadline - day).days, "extended": "extended" in r.states}
                   for r in open_requests if (r.deadline - day).days <= warn_days), key=lambda x: x["days_left"])
    result = {"step": "erasure_deadlines", "as_of": day.isoformat(), "warn_days": warn_days,
              "deadline_days": pol.defaults.erasure_deadline_days, "open": len(open_requests), "approaching": near}
    if near:
        lines = [f"{n['request_id']} ({n['source']}, state {n['state']}): due {n['due']}"
                 + (" (deadline extended once)" if n["extended"] else "") + ", "
                 + (f"{n['days_left']} day(s) left" if n['days_left'] >= 0 else f"OVERDUE by {-n['days_left']} day(s)")
                 for n in near]
        raise DeadlineAlert(f"{len(near)} erasure request(s) due within {warn_days} day(s) "
                            f"(deadline {pol.defaults.erasure_deadline_days} days from receipt):\n  " + "\n  ".join(lines))
    return result


# ------------------------------------------------------------------ access requests

def exports_dir(lake) -> str:
    """Where access exports go (a local folder: the export is handed to the subject, it is not lake
    data): $WASURE_EXPORTS, else `wasure-exports` beside (never inside) a local lake, else in the
    home folder of the machine running the job."""
    if os.environ.get("WASURE_EXPORTS"):
        return os.environ["WASURE_EXPORTS"]
    return str((lake.root.parent if lake.is_local else Path.home()) / "wasure-exports")


def validate_access(policy: str | None, lake: str | None, subject_ids: Any, request_id: Any, formats: Any) -> dict:
    """Check an access-request trigger before any data is touched (no Spark, nothing written):
    exactly one subject id matching the policy, a request id, formats among json / csv / html, an
    export folder outside the lake. Raises InputError listing every problem (never the id)."""
    from jobs.access import check_formats, check_out_dir
    from jobs.erasure import check_request_id, check_subject_ids

    pol, lk = load(policy, lake)
    problems: list[str] = []

    def attempt(check, *args) -> None:
        try:
            check(*args)
        except InputError as exc:
            problems.append(str(exc))

    ids = subject_ids if isinstance(subject_ids, (list, tuple)) else []
    if len(ids) == 1 and isinstance(ids[0], str):
        attempt(check_subject_ids, pol, [("subject_id", ids[0])])
    else:
        problems.append("subject_id: exactly one subject id is required")
    attempt(check_request_id, request_id if isinstance(request_id, str) else "", "request_id")
    attempt(check_formats, list(formats or []))
    if isinstance(request_id, str) and request_id:
        attempt(check_out_dir, lk, exports_dir(lk), request_id)
    if problems:
        raise InputError("bad access request (nothing was touched):\n  " + "\n  ".join(problems))
    return {"step": "validate", "request_id": request_id, "formats": check_formats(list(formats or [])),
            "lake": lk.uri, "receipt": join(lk.receipts, f"access-{request_id}.json")}


def access(policy: str | None, lake: str | None, run_date_: Any = None, subject_ids: list[str] | None = None,
           request_id: str | None = None, formats: list[str] | None = None) -> dict:
    """Answer one access / portability request (``jobs.access.run``); the export goes to
    ``exports_dir`` outside the lake. Ids come from the argument or $WASURE_ERASE_SUBJECTS."""
    from jobs.access import run

    ids = list(subject_ids) if subject_ids else _subjects_from_env()
    checked = validate_access(policy, lake, ids, request_id, formats)
    pol, lk = load(policy, lake)
    report = run(_spark("access"), pol, lk, ids[0].strip(), checked["request_id"], exports_dir(lk), checked["formats"])
    return {"step": "access", "request_id": report.request_id, "directory": report.directory, "files": report.files,
            "rows_by_table": report.rows, "legal_holds": report.holds, "deadline": report.deadline.isoformat(),
            "receipt": report.receipt, "notes": report.notes}


# ------------------------------------------------------------------ registry and spark-submit launcher

STEPS: dict[str, Callable[..., dict]] = {
    "backup": backup, "retention": retention, "pseudonymize": pseudonymize, "anonymize": anonymize,
    "statistics": statistics, "gates": gates, "publish": publish, "physical_purge": physical_purge,
    "closure": closure, "expire_backups": expire_backups, "end_quarantines": end_quarantines,
    "advance_erasures": advance_erasures, "reverify_erasures": reverify_erasures,
    "erasure_deadlines": erasure_deadlines, "access": access,
}
# Job module each step needs beyond retention/pseudonymize (checked without importing).
STEP_MODULES: dict[str, str] = {
    "backup": "backup", "expire_backups": "backup", "end_quarantines": "backup", "anonymize": "anonymize",
    "statistics": "statistics", "closure": "erasure", "advance_erasures": "erasure", "reverify_erasures": "erasure",
    "erasure_deadlines": "erasure", "access": "access",
}


def step_available(step: str) -> bool:
    module = STEP_MODULES.get(step)
    return module is None or available(module)


def unavailable_reason(step: str) -> str:
    return (f"step {step!r} skipped: jobs/{STEP_MODULES[step]}.py is not part of this deployment yet "
            "(the job was not run; nothing was produced)")


def run_step(step: str, policy: str | None, lake: str | None, run_date_: Any = None, **options) -> dict:
    if step not in STEPS:
        raise InputError(f"unknown step {step!r} (steps: {', '.join(STEPS)})")
    if not step_available(step):
        raise StepUnavailable(unavailable_reason(step))
    return STEPS[step](policy, lake, run_date_, **options)


@entry_point
def main(argv: list[str] | None = None) -> int:
    """spark-submit application: `pipeline.py STEP [--policy P] [--lake L] [--date D] [--options JSON]`."""
    import argparse

    parser = argparse.ArgumentParser(prog="jobs.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=sorted(STEPS))
    parser.add_argument("--policy", default="", help="policy YAML (default $WASURE_POLICY or policies/example.yaml)")
    parser.add_argument("--lake", default="", help="lake root (default $WASURE_LAKE)")
    parser.add_argument("--date", default="", help="run date YYYY-MM-DD (default today UTC)")
    parser.add_argument("--options", default="{}", help="step options as a JSON object")
    args = parser.parse_args(argv)
    try:
        options = json.loads(args.options or "{}")
        if not isinstance(options, dict):
            raise ValueError
    except ValueError:
        print("error: --options must be a JSON object", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        result = run_step(args.step, args.policy or None, args.lake or None, args.date or None, **options)
    except StepUnavailable as exc:
        print(f"unavailable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(json.dumps(result, default=str, ensure_ascii=False))
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
