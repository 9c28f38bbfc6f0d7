"""匿名加工情報 (`wasure anonymize --release NAME`): APPI Enforcement Rules art. 34, per release.

A release keeps ONLY its quasi-identifiers (generalized by distributed Mondrian to k-anonymous,
l-diverse classes) and its sensitive attributes. Everything else is left out by construction:
identifying descriptions, 個人識別符号, property-damage items and linking codes (member / device /
record ids, persistent pseudonyms) never reach the output (rule 34 items 1-5). When rows need an
id, a per-release random surrogate (``uuid()``, no key, nothing stored) is added: the release's
random material is gone when the job ends. Rare values (特異な記述) are top/bottom-coded first:
ages at the hierarchy's ``top`` (90+), sensitive values at the release's ``rare_values`` bounds.

The Mondrian result is persisted, checked by the Great Expectations release suite (k, l, no
forbidden column, no source identifier value, no rare value), then published to
``anonymized/<release>/data`` in ONE Delta transaction (or written under ``quarantine/`` when the
gate fails), with a manifest (JSON + Markdown) stating that it is 匿名加工情報, the categories of
personal information it contains, the method, k, l, suppression and metrics.
Releases are per region: rows of two regions are never mixed (S15).
"""
from __future__ import annotations

import datetime as dt
import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from anonymizers.hierarchy import CategoricalHierarchy, HierarchyError, IntervalHierarchy
from anonymizers.mondrian import AnonymizationError, mondrian_anonymize
from anonymizers.privacy_models import DistinctLDiversity
from anonymizers.risk import risk_report
from anonymizers.utility import utility_report
from jobs.runtime.console import CheckFailed, InputError
from jobs.lake.layout import Lake, check_lake, read_now, with_registers
from jobs.lake.lease import with_lease
from jobs.policy import ColumnClass, Policy, Release
from jobs.lake.storage import join, parent_of
from jobs.lake.subjects import Registers
from jobs.lake.table import LakeTable

STATEMENT_JA = "本データは、個人情報の保護に関する法律に基づく匿名加工情報です。特定の個人を識別することはできず、作成に用いた個人情報を復元することもできません。"
STATEMENT_EN = ("This dataset is anonymously processed information (匿名加工情報) under the Act on the "
                "Protection of Personal Information: no individual can be identified in it and the personal "
                "information it was made from cannot be restored.")
MONTH_ORIGIN = 2000 * 12


def _released_name(column: str, hierarchy_type: str) -> str:
    return {"age_band": "age", "date": f"{column}_month"}.get(hierarchy_type, column)


def _tree_hierarchy(policy: Policy, hierarchy_name: str, out: str) -> CategoricalHierarchy:
    spec = policy.hierarchies[hierarchy_name]
    base = Path(policy.source).resolve().parent if policy.source != "<memory>" else Path.cwd()
    path = (base / spec.file) if spec.file else None
    if path is None or not path.is_file():
        raise InputError(f"hierarchies.{hierarchy_name}.file: hierarchy file {spec.file!r} not found next to {policy.source}")
    try:
        return CategoricalHierarchy.from_csv(path, name=out)
    except (HierarchyError, csv.Error) as exc:     # the file's labels (categories), never personal values
        raise InputError(f"hierarchies.{hierarchy_name}.file ({spec.file}): {exc}") from None
    except UnicodeDecodeError:
        raise InputError(f"hierarchies.{hierarchy_name}.file ({spec.file}): not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"hierarchies.{hierarchy_name}.file ({spec.file}): cannot be read ({exc.strerror})") from None


def check_release(policy: Policy, name: str) -> None:
    """What a release needs besides its data (supported hierarchy types, readable hierarchy files),
    checked before a job's first write: a bad file must not stop a run half-way."""
    release = policy.releases[name]
    for column, hierarchy_name in release.quasi_identifiers.items():
        kind = policy.hierarchies[hierarchy_name].type if hierarchy_name else "keep"
        if kind == "tree":
            _tree_hierarchy(policy, hierarchy_name, _released_name(column, kind))
        elif kind not in ("age_band", "date"):
            raise InputError(f"releases.{name}.quasi_identifiers.{column}: hierarchy type {kind!r} is not supported for releases "
                             "(use age_band, date or tree)")


def prepare_source(spark: SparkSession, policy: Policy, lake: Lake, name: str, as_of: dt.date,
                   registers: Registers, rows: DataFrame | None = None) -> tuple[DataFrame, dict, list[str]]:
    """Rows of the release's region with QIs coded for Mondrian; returns (df, hierarchies, qis).
    ``rows``: only these rows of the release's table (retention's expired rows) instead of all.
    The release was checked before (``release_requests``; retention: ``_check_keep_actions``)."""
    release = policy.releases[name]
    table = policy.tables[release.table]
    df = rows if rows is not None else read_now(spark, lake.table_path(table))
    from_subject = [c for c in list(release.quasi_identifiers) + release.sensitive if c not in table.columns]
    if from_subject:
        accounts = registers.accounts().select(F.col(policy.subject.key).alias(table.subject_key), *from_subject)
        df = df.join(accounts, table.subject_key)
    if release.region:
        df = df.where(F.col(table.region_column) == release.region)
    excluded = registers.restricted(release.purpose)
    if release.purpose and policy.purposes[release.purpose].requires_consent:
        excluded = excluded.unionByName(registers.withdrawn([release.purpose]))
    df = df.join(excluded.distinct(), df[table.subject_key] == excluded["subject"], "left_anti")
    hierarchies, qis, columns = {}, [], []
    for column, hierarchy_name in release.quasi_identifiers.items():
        spec = policy.hierarchies[hierarchy_name] if hierarchy_name else None
        kind = spec.type if spec else "keep"
        out = _released_name(column, kind)
        if kind == "age_band":
            age = F.floor(F.months_between(F.lit(as_of), F.col(column)) / 12).cast("int")
            if spec.top is not None:
                age = F.least(age, F.lit(spec.top))          # 特異な記述: 90+ is one value
            columns.append(age.alias(out))
            hierarchies[out] = IntervalHierarchy(out)
        elif kind == "date":
            columns.append((F.year(column) * 12 + F.month(column) - 1 - MONTH_ORIGIN).cast("int").alias(out))
            hierarchies[out] = IntervalHierarchy(out)
        else:                              # tree (check_release refused every other type)
            columns.append(F.col(column).cast("string").alias(out))
            hierarchies[out] = _tree_hierarchy(policy, hierarchy_name, out)
        qis.append(out)
    for column in release.sensitive:
        value = F.col(column)
        low, high = release.rare_values.get(column, (None, None))
        if low is not None or high is not None:
            # Top/bottom coding as labels: the extreme values themselves never reach the release.
            label = value.cast("string")
            if high is not None:
                label = F.when(value >= high, F.lit(f"{high:g}+")).otherwise(label)
            if low is not None:
                label = F.when(value <= low, F.lit(f"<={low:g}")).otherwise(label)
            value = label
        columns.append(value.cast("string").alias(column))
    return df.select(*columns), hierarchies, qis


def _month_label(column: str) -> F.Column:
    """'[311-313]' month offsets back to '2025-12..2026-02'; a single value to '2025-12'."""
    numbers = F.regexp_extract_all(F.col(column), F.lit(r"(\d+)"), 1)   # offsets are positive

    def as_month(n):
        total = n.cast("int") + MONTH_ORIGIN
        return F.format_string("%04d-%02d", F.floor(total / 12).cast("int"), (total % 12 + 1).cast("int"))
    return (F.when(F.col(column) == "*", F.lit("*"))
            .when(F.size(numbers) == 1, as_month(numbers[0]))
            .otherwise(F.concat(as_month(numbers[0]), F.lit(".."), as_month(numbers[1]))))


def manifest(policy: Policy, name: str, release: Release, qis: list[str], metrics: dict, rows: int,
             suppressed: int, as_of: dt.date) -> dict:
    table = policy.tables[release.table]
    subject_table = policy.tables[policy.subject.table]

    def klass(column: str) -> str:
        owner = table if column in table.columns else subject_table
        return owner.column(column).class_.value

    categories = []
    for column, hierarchy in release.quasi_identifiers.items():
        kind = policy.hierarchies[hierarchy].type if hierarchy else "keep"
        categories.append({"category": column, "released_as": _released_name(column, kind), "class": klass(column),
                           "method": {"age_band": "age at the release date, Mondrian intervals, top-coded (90+)",
                                      "date": "year-month, Mondrian intervals",
                                      "tree": f"generalized along hierarchy {hierarchy!r}"}.get(kind, kind)})
    for column in release.sensitive:
        low, high = release.rare_values.get(column, (None, None))
        categories.append({"category": column, "released_as": column, "class": "sensitive",
                           "method": "sensitive attribute of k-anonymous, l-diverse classes"
                                     + (f"; bottom/top-coded at {low} / {high}" if (low, high) != (None, None) else "")})
    return {
        "release": name, "statement_ja": STATEMENT_JA, "statement_en": STATEMENT_EN,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "as_of": as_of.isoformat(),
        "source_table": release.table, "region": release.region, "purpose": release.purpose,
        "categories_of_personal_information": categories,
        "removed": ["identifying descriptions", "個人識別符号", "property-damage items",
                    "linking codes (member, device, record ids, pseudonyms)"],
        "method": {"algorithm": "distributed multidimensional Mondrian with taxonomy splits (anonymizers/mondrian.py)",
                   "quasi_identifiers": qis, "k": release.k, "l": release.l, "l_variant": "distinct",
                   "suppression_budget": release.suppression_budget, "surrogate_ids": "none (no row id is released)"},
        "rows": rows, "suppressed_rows": suppressed, "metrics": metrics,
        "policy_sha256": policy.sha256,
    }


def manifest_markdown(doc: dict) -> str:
    lines = [f"# Release `{doc['release']}` — 匿名加工情報", "", doc["statement_ja"], "", doc["statement_en"], "",
             f"- created: {doc['created']} (data as of {doc['as_of']}), region: {doc['region']}, purpose: {doc['purpose']}",
             f"- source table: {doc['source_table']}; rows released: {doc['rows']}, suppressed: {doc['suppressed_rows']}",
             f"- method: {doc['method']['algorithm']}; k = {doc['method']['k']}, l = {doc['method']['l']}, "
             f"suppression budget {doc['method']['suppression_budget']:.0%}", "",
             "## Categories of personal information contained", "", "| category | released as | class | processing |", "|---|---|---|---|"]
    lines += [f"| {c['category']} | {c['released_as']} | {c['class']} | {c['method']} |" for c in doc["categories_of_personal_information"]]
    lines += ["", "Removed entirely: " + ", ".join(doc["removed"]) + ".", "", "## Metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in doc["metrics"].items()]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ReleaseReport:
    """One published release: rows kept and suppressed, utility and risk metrics, the catalog table,
    the manifest and the gate's Data Docs (counts and names only)."""
    release: str
    rows: int
    suppressed: int
    table: str
    manifest: str
    docs: str
    metrics: dict = field(default_factory=dict)
    gate: str = "passed"


@dataclass(frozen=True)
class ReleaseRequest:
    """One release to build: its name in the policy and the date ages are computed at (default today
    UTC). ``rows`` and ``output`` are retention's alone (keep-as-anonymized): only its expired rows,
    published as ``output`` (anonymized/<output>/) with the release's QIs, k, l and gate."""
    release: str
    as_of: dt.date | None = None
    rows: DataFrame | None = field(default=None, compare=False, repr=False)
    output: str | None = None

    @classmethod
    def checked(cls, policy: Policy, release: str, as_of: dt.date | None = None) -> ReleaseRequest:
        """One release, checked as ``release_requests`` checks several."""
        return release_requests(policy, [release], as_of)[0]


def release_requests(policy: Policy, names: list[str] | None = None, as_of: dt.date | None = None) -> list[ReleaseRequest]:
    """The releases asked for (default: every release of the policy), each known and with its
    hierarchy files loading: exit 2 before Spark starts and before the first one publishes."""
    names = list(names or policy.releases)
    unknown = [n for n in names if n not in policy.releases]
    if unknown:
        raise InputError(f"unknown release(s): {', '.join(unknown)} (the policy has: {', '.join(policy.releases) or 'none'})")
    for name in names:
        check_release(policy, name)
    return [ReleaseRequest(name, as_of) for name in names]


@with_lease("anonymize")
def run(spark: SparkSession, policy: Policy, lake: Lake, request: ReleaseRequest,
        progress=lambda _msg: None) -> ReleaseReport:
    """Build the request's release, gate it, publish it with its manifest and catalog table."""
    name, rows = request.release, request.rows
    release = policy.releases[name]
    check_lake(spark, policy, lake, with_registers(policy, [release.table]))   # missing, drift: exit 2
    as_of = request.as_of or dt.datetime.now(dt.timezone.utc).date()
    registers = Registers(spark, policy, lake)
    progress("preparing quasi-identifiers")
    source, hierarchies, qis = prepare_source(spark, policy, lake, name, as_of, registers, rows)
    source = source.localCheckpoint(eager=True)
    total = source.count()
    if total < release.k:
        raise CheckFailed(f"release {name}: {total} eligible rows, fewer than k = {release.k}")
    name = request.output or name           # where it is published; `release` keeps the rules
    progress("k-anonymity (distributed Mondrian)")
    l_model = DistinctLDiversity(release.sensitive[0], release.l) if release.l and release.l > 1 else None
    try:
        released = mondrian_anonymize(source, qis, hierarchies, release.k, l_diversity=l_model,
                                      suppression=release.suppression_budget).drop("eq_class")
        released = released.localCheckpoint(eager=True)
    except AnonymizationError as exc:   # counts and names only; nothing is published
        raise CheckFailed(f"release {name}: {exc}; nothing was published") from None
    rows = released.count()
    metrics = {**utility_report(released, qis, hierarchies, k=release.k, suppressed=total - rows),
               **risk_report(released, qis, k=release.k)}
    for qi in qis:
        if qi.endswith("_month"):
            released = released.withColumn(qi, _month_label(qi))
    # Persisted: the gate and the publish read the same rows (Mondrian's result, checkpointed above).
    released = released.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        progress("gate")
        gate = _gate(spark, policy, lake, name, release, qis, released)
        if not gate.success:
            target = lake.quarantine("anonymized", name, dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S"))
            LakeTable(spark, target).write_new(released, [], stats_columns=[], published=True)
            raise CheckFailed(f"release {name} not published (quarantined at {target}; Data Docs {gate.docs_index}): "
                              + "; ".join(f"{f.expectation} on {f.table}.{f.column or '*'}: {f.message}" for f in gate.failures))
        final = lake.anonymized(name)
        LakeTable(spark, final).publish(released, [], stats_columns=[], published=True)
    finally:
        released.unpersist()
    doc = manifest(policy, name, release, qis, metrics, rows, total - rows, as_of)
    files, folder = lake.files, parent_of(final)
    files.write_text(join(folder, "manifest.json"), json.dumps(doc, ensure_ascii=False, indent=2))
    files.write_text(join(folder, "manifest.md"), manifest_markdown(doc))
    from jobs.lake.catalog import register_release

    table_name = register_release(spark, lake, name)
    return ReleaseReport(release=name, rows=rows, suppressed=total - rows, metrics=metrics, table=table_name,
                         manifest=join(folder, "manifest.md"), docs=gate.docs_index)


def _gate(spark, policy: Policy, lake: Lake, name: str, release: Release, qis: list[str], staged: DataFrame):
    from expectations.gates import run_gate
    from expectations.suites import columns_of_classes, release_suite
    from jobs.policy import RELEASE_FORBIDDEN

    table = policy.tables[release.table]
    subject_table = policy.tables[policy.subject.table]
    classes = {**{c: subject_table.column(c).class_.value for c in subject_table.columns},
               **{c: table.column(c).class_.value for c in table.columns}}
    identifiers = [c for c in table.columns if table.column(c).class_ in
                   (ColumnClass.identifying, ColumnClass.linking_code, ColumnClass.individual_code)]
    source = read_now(spark, lake.table_path(table)).select(*identifiers)
    suite = release_suite(qis, release.k, sensitive=release.sensitive, l=release.l,
                          forbidden_columns=columns_of_classes(classes, RELEASE_FORBIDDEN),
                          # 特異な記述: after top/bottom coding no numeric value lies beyond the release's bounds.
                          rare_thresholds={"numeric_bounds": {c: b for c, b in release.rare_values.items() if c in staged.columns}},
                          output_columns=[c for c in staged.columns], source=source, source_columns=identifiers)
    run_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return run_gate(f"anonymize-{name}", [(f"{name}", staged, suite)], join(lake.docs, "anonymize", run_id, name))


def demo_step(spark: SparkSession, policy: Policy, lake: Lake) -> dict:
    from jobs.runtime.console import summary_table

    results = [run(spark, policy, lake, request) for request in release_requests(policy)]
    summary_table("anonymized releases (匿名加工情報)", ["release", "table", "rows", "suppressed", "GCP", "max risk", "manifest"],
                  [(r.release, r.table, r.rows, r.suppressed, r.metrics.get("gcp"),
                    r.metrics.get("max_prosecutor_risk"), r.manifest) for r in results])
    return {"gate": "passed", "docs": ", ".join(r.docs for r in results)}
