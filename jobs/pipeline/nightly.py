"""The nightly steps (dags/wasure_nightly.py): backup, retention, pseudonymize, anonymize, statistics,
the night's gate, the release manifest and the physical purge. Each returns counts and paths for XCom."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict
from typing import Any

from jobs.runtime.console import CheckFailed
from jobs.pipeline.common import _jsonable, _optional, _spark, _versions, load, run_date
from jobs.lake.storage import join, name_of, parent_of, relative


# ------------------------------------------------------------------ nightly steps

def backup(policy: str | None, lake: str | None, run_date_: Any = None) -> dict:
    """Today's backup (idempotent per day: a second run finds it and writes nothing)."""
    from jobs.backup import run_backup

    pol, lk = load(policy, lake)
    day = run_date(run_date_)
    report = run_backup(_spark("backup"), pol, lk, day)
    return {"step": "backup", "date": report.date, "status": report.status, "expires": report.expires,
            "path": join(lk.backups, report.date),
            "tables": {n: {"source_version": t.source_version, "rows": t.rows} for n, t in report.tables.items()}}


def retention(policy: str | None, lake: str | None, run_date_: Any = None, force: bool = False, dry_run: bool = False) -> dict:
    """Retention as of the run date. The physical purge is its own step (``physical_purge``)."""
    from jobs.retention import RetentionRequest, run

    pol, lk = load(policy, lake)
    day = run_date(run_date_)
    request = RetentionRequest(day, dry_run=bool(dry_run), force=bool(force), purge=False)
    report = run(_spark("retention"), pol, lk, request)
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
    from jobs.pseudonymize import PseudonymizeRequest, run

    pol, lk = load(policy, lake)
    request = PseudonymizeRequest.checked(pol, lk, list(purposes) if purposes else None, bool(full))
    report = run(_spark("pseudonymize"), pol, lk, request)
    return {"step": "pseudonymize", "tables": [asdict(t) for t in report.tables],
            "published": report.count("published"), "unchanged": report.count("unchanged")}


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
    from jobs.lake.layout import is_delta

    module = _optional("anonymize", "anonymize")
    pol, lk = load(policy, lake)
    day = run_date(run_date_)
    requests = module.release_requests(pol, list(releases) if releases else None, day)   # all, before the first publishes
    spark = _spark("anonymize")
    fingerprint = _fingerprint(spark, pol, lk, day)
    out = []
    for request in requests:
        name = request.release
        if _already_done(lk, "anonymize", name, fingerprint) and is_delta(lk.anonymized(name)):
            out.append({"release": name, "status": "unchanged", "path": lk.anonymized(name)})
            continue
        result = module.run(spark, pol, lk, request)
        _record_done(lk, "anonymize", name, fingerprint)
        out.append({"release": name, "status": "published", "path": lk.anonymized(name),
                    **{k: _jsonable(getattr(result, k)) for k in ("rows", "suppressed", "table", "manifest", "docs", "gate")},
                    "metrics": {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}})
    return {"step": "anonymize", "as_of": day.isoformat(), "releases": out,
            **({} if requests else {"note": "the policy defines no releases"})}


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
    request = module.StatisticsRequest.checked(pol, names, as_of=day)
    spark = _spark("statistics")
    fingerprint = _fingerprint(spark, pol, lk, day)
    outputs = [lk.path("statistics", name) for name in names]
    if _already_done(lk, "statistics", "all", fingerprint) and all(lk.files.is_dir(p) for p in outputs):
        return {"step": "statistics", "as_of": day.isoformat(), "status": "unchanged",
                "statistics": [{"statistic": name, "status": "unchanged"} for name in names]}
    result = module.run(spark, pol, lk, request)
    _record_done(lk, "statistics", "all", fingerprint)
    keys = ("statistic", "region", "status", "cells", "published", "primary", "complementary", "path")
    return {"step": "statistics", "as_of": day.isoformat(), "status": "published", "run_id": result.run_id,
            "statistics": [{k: s.get(k) for k in keys if k in s} for s in result.statistics],
            "docs": result.docs}


def _published_datasets(spark, policy, lake) -> list[dict]:
    """Every dataset a consumer may read: pseudonymized/<purpose>/<table>, anonymized/<release>/<table>
    and statistics/<statistic>/region=<R>."""
    from jobs.lake.layout import is_delta
    from jobs.lake.layout import table_version

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
      匿名加工情報 also identifying columns, linking codes and free text: jobs.policy.TREATMENTS).
    Data Docs go to <lake>/docs/gates/nightly-<date>/. Raises CheckFailed (no value in the message).
    """
    from expectations import run_gate

    pol, lk = load(policy, lake)
    day = run_date(run_date_)
    spark = _spark("gates")
    checks = _raw_table_checks(spark, pol, lk, day) + _published_checks(spark, pol, lk)
    result = run_gate(f"nightly-{day.isoformat()}", checks, join(lk.docs, "gates", f"nightly-{day.isoformat()}"))
    summary = {"step": "gates", "as_of": day.isoformat(), "success": result.success, "checks": len(checks),
               "labels": [label for label, _df, _e in checks], "docs_index": result.docs_index,
               "failures": [f.message for f in result.failures]}
    if not result.success:
        raise CheckFailed(result.report())
    return summary


def _raw_table_checks(spark, pol, lk, day: dt.date) -> list[tuple]:
    """The gate's checks of the raw tables: retention kept, no erased subject back."""
    from pyspark.sql import functions as F

    from expectations import retention_suite
    from jobs.lake.backup_ledger import hash_column, ledger_key, read_ledger
    from jobs.lake.layout import is_delta, read_now
    from jobs.lake.subjects import Registers

    registers = Registers(spark, pol, lk)
    checks = []
    ledger = read_ledger(spark, lk)
    key = ledger_key(pol, lk)[1] if ledger is not None else None
    for name, table in pol.tables.items():
        path = lk.table_path(table)
        if not is_delta(path):
            continue
        df, suite = read_now(spark, path), []
        retention_rule = table.retention
        whole_table_held = registers.table_level_hold(name, day) is not None   # keeps every row, as retention does
        if retention_rule is not None and retention_rule.basis == "business_date" and table.date_column and not whole_table_held:
            held = registers.held_subjects(name, day).select(F.col("subject").alias("held_subject"))
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
    return checks


def _published_checks(spark, pol, lk) -> list[tuple]:
    """The gate's checks of every pseudonymized and anonymized dataset: no column of a class that must be gone."""
    from expectations import columns_of_classes
    from expectations.custom import ExpectNoForbiddenColumns
    from jobs.lake.layout import is_delta, read_now
    from jobs.policy import PSEUDONYMIZED_FORBIDDEN, RELEASE_FORBIDDEN
    from jobs.pseudonymize import rule31_plan

    checks = []
    classes_of = {name: {c: t.column(c).class_.value for c in t.columns} for name, t in pol.tables.items()}

    def pseudonymized_forbidden(table: str) -> dict[str, str]:
        forbidden = columns_of_classes(classes_of[table], PSEUDONYMIZED_FORBIDDEN)
        forbidden.update({c: "dropped by policy" for c in rule31_plan(pol.tables[table]).drop if c not in forbidden})
        return forbidden

    for dataset in _published_datasets(spark, pol, lk):
        source = dataset["name"] if dataset["name"] in pol.tables else None
        if dataset["kind"] == "pseudonymized":
            if source is None:                   # pseudonymized/<purpose>/retained/<table> is a group of tables
                continue
            forbidden = pseudonymized_forbidden(source)
        elif dataset["kind"] == "anonymized":
            release = pol.releases.get(dataset["group"])
            base = release.table if release else source
            if base is None:
                continue
            forbidden = columns_of_classes({**classes_of.get(pol.subject.table, {}), **classes_of[base]},
                                           RELEASE_FORBIDDEN)
        else:
            continue                             # statistics tables: gated by jobs.statistics before promotion
        checks.append((f"{dataset['kind']}.{dataset['group']}.{dataset['name']}", read_now(spark, lk.path(dataset["path"])),
                       [ExpectNoForbiddenColumns(forbidden_columns=forbidden)]))
    for path in lk.files.glob(join(lk.path("pseudonymized"), "*", "retained", "*")):
        table = name_of(path)
        if table in pol.tables and is_delta(path):
            checks.append((f"pseudonymized.{name_of(parent_of(parent_of(path)))}.retained.{table}", read_now(spark, path),
                           [ExpectNoForbiddenColumns(forbidden_columns=pseudonymized_forbidden(table))]))
    return checks


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
    """The physical purge (rewrite of files with deleted rows, superseded files deleted) of every table with a quarantine-ledger
    entry past its grace."""
    from jobs.lake.quarantine import physical_purge as purge

    pol, lk = load(policy, lake)
    day = run_date(run_date_)
    purged = purge(_spark("purge"), pol, lk, day)
    return {"step": "physical_purge", "as_of": day.isoformat(), "purged": _jsonable(purged)}
