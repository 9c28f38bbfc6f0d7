"""仮名加工情報 (`wasure pseudonymize`): APPI Enforcement Rules art. 31, per purpose.

For every purpose and every table that serves it, writes ``pseudonymized/<purpose>/<table>``:
- identifying descriptions -> keyed pseudonym (HMAC-SHA256, the purpose's key) or dropped;
- 個人識別符号 and property-damage columns -> always dropped (the policy cannot keep them);
- linking codes (member / device ids) -> keyed pseudonym, so tables of one purpose still join and
  tables of two purposes do not (one key per purpose);
- free text -> scrubbed or dropped; other classes as the policy says.
Restricted subjects and subjects who withdrew consent for the purpose are left out (S11).

Each output is built once and persisted (HMAC pseudonyms: deterministic), checked by the gate (no
source identifier in the output, no unkeyed hash of one, no dropped class present, one pseudonym
per subject), then published in ONE Delta transaction (readers see the old version or the new one,
never a missing table); a failing output is written under ``quarantine/`` instead.
A table is skipped when neither its source version, nor the purpose's key id, nor the version of a
register that decides eligibility (restrictions; consents for a consent purpose) changed since the last
run (the increment is the table: Delta does not tell which rows an overwrite changed without the
change feed, which we keep off for personal tables). A new key id re-pseudonymizes the purpose.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from anonymizers.pseudonym import PSEUDONYM_LENGTH
from anonymizers.registry import get_operator
from jobs.runtime.console import CheckFailed
from jobs.runtime.keys import load_purpose_keys
from jobs.runtime.concurrency import for_each_table
from jobs.lake.layout import SUBJECT_BUCKET, Lake, check_lake, is_delta, read_now, rows_of_keys, table_version
from jobs.lake.lease import with_lease
from jobs.lake.lineage import KEY_ID_COLUMN, key_ids_property, record_key_id, retained_path, retained_purpose
from jobs.policy import PSEUDONYMIZED_FORBIDDEN, PSEUDONYMIZED_OPERATORS, TREATMENTS, ColumnClass, Policy, Table
from jobs.lake.storage import join
from jobs.lake.subjects import Registers
from jobs.lake.table import LakeTable

# The layout of what a run writes, part of every skip check: outputs of an older layout are rewritten
# once by the next run (2: tables without deletion vectors, readable by delta-rs; 3: 128-bit base64url
# pseudonyms, anonymizers/pseudonym.py).
OUTPUT_FORMAT = 3


@dataclass(frozen=True)
class TableOutcome:
    """One (purpose, table) of a run: ``published`` (with its rows and key id), ``unchanged`` (its
    inputs did not change since it was published) or ``quarantined: <URI>`` (its gate failed)."""
    purpose: str
    table: str
    status: str
    rows: int | None = None
    key_id: str | None = None


@dataclass
class PseudonymizeReport:
    """What ``run`` did, per purpose and table; the gates' Data Docs; the failures (no value in them)."""
    tables: list[TableOutcome] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    docs: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for t in self.tables if t.status == status)


@dataclass
class Rule31Plan:
    """What the APPI rule 31 profile does to each column of one table."""
    pseudonymize: list[str] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)
    scrub: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)


def rule31_plan(table: Table) -> Rule31Plan:
    """Each column's fate in 仮名加工情報: the class's treatment (jobs.policy.TREATMENTS), or `drop`
    when the policy asks for it (the policy validated that the class allows it)."""
    plan = Rule31Plan()
    for name in table.columns:
        spec = table.column(name)
        treatment = "drop" if spec.treatment == "drop" else TREATMENTS[spec.class_].pseudonymized
        {"drop": plan.drop, "pseudonymize": plan.pseudonymize, "scrub": plan.scrub}.get(treatment, plan.keep).append(name)
    return plan


@dataclass(frozen=True)
class Owners:
    """Each subject's own identifying values (the subject table's identifying columns), joined to
    their free text to remove them there: a name or address the detectors cannot recognize is still
    that person's (rule 31 item 1). Read before any delete of the run, so retained rows get it too."""
    rows: DataFrame               # OWNER_KEY + the value columns
    value_columns: dict[str, str]  # column -> placeholder
    name_columns: list[str]        # also matched by their parts (surname, given name)


OWNER_KEY = "_owner_subject"


def owner_values(spark: SparkSession, policy: Policy, lake: Lake) -> Owners | None:
    subject = policy.tables[policy.subject.table]
    columns = subject.columns_of(ColumnClass.identifying)
    if not columns:
        return None
    rows = read_now(spark, lake.table_path(subject)).select(F.col(subject.subject_key).alias(OWNER_KEY), *columns)
    names = [c for c in columns if "name" in c.lower()]      # name_kanji, name_kana, full_name, ...
    return Owners(rows, {c: "[NAME]" if c in names else "[OWN]" for c in columns}, names)


def drop_and_scrub(df: DataFrame, plan: Rule31Plan, owners: Owners | None = None, subject_key: str | None = None) -> DataFrame:
    """The rule-31 profile before pseudonymization: dropped columns gone, free text scrubbed (the
    detectors, then the row's own subject's values when ``owners`` is given)."""
    df = get_operator(PSEUDONYMIZED_OPERATORS["drop"])(df, [c for c in plan.drop + [SUBJECT_BUCKET] if c in df.columns])
    if not plan.scrub:
        return df
    df = get_operator(PSEUDONYMIZED_OPERATORS["scrub"])(df, plan.scrub)
    if owners is not None and subject_key is not None:
        df = get_operator("scrub_own_values")(df, plan.scrub, owners.rows.withColumnRenamed(OWNER_KEY, subject_key), subject_key,
                              owners.value_columns, owners.name_columns)
    return df


def apply_rule31(df: DataFrame, table: Table, key: bytes, key_id: str, owners: Owners | None = None) -> DataFrame:
    plan = rule31_plan(table)
    pseudonymize = get_operator(PSEUDONYMIZED_OPERATORS["pseudonymize"])
    return pseudonymize(drop_and_scrub(df, plan, owners, table.subject_key), plan.pseudonymize, key=key,
                        key_id=key_id, key_id_column=KEY_ID_COLUMN)


def eligible_rows(spark: SparkSession, policy: Policy, lake: Lake, table_name: str, purpose: str,
                  registers: Registers) -> DataFrame:
    """Source rows minus restricted subjects and, for consent-based purposes, withdrawn consents."""
    table = policy.tables[table_name]
    df = read_now(spark, lake.table_path(table))
    excluded = registers.restricted(purpose)
    if policy.purposes[purpose].requires_consent:
        excluded = excluded.unionByName(registers.withdrawn([purpose]))
    return df.join(excluded.distinct(), df[table.subject_key] == excluded["subject"], "left_anti")


# ------------------------------------------------------------------ gate

SOURCE_IDENTIFIER = "source_identifier"


def source_identifiers(spark: SparkSession, lake: Lake, table: Table) -> DataFrame:
    """Distinct identifying values of the whole source table, one column ``source_identifier``.

    Every column the profile transforms or drops is an identifier the output must not reveal. All
    rows count, not only the purpose's eligible ones: a stricter check, and one set that every
    purpose's gate and both source-joining expectations share (the caller persists it once).
    """
    plan = rule31_plan(table)
    df = read_now(spark, lake.table_path(table))
    identifiers = [c for c in plan.pseudonymize + plan.drop if c in df.columns]
    values = F.explode(F.array(*[F.col(c).cast("string") for c in identifiers])).alias(SOURCE_IDENTIFIER)
    return df.select(values).where(F.col(SOURCE_IDENTIFIER).isNotNull()).distinct()


def gate_checks(policy: Policy, table_name: str, identifiers: DataFrame, output: DataFrame, digests=None,
                prints=None) -> list:
    """The Great Expectations suite of one pseudonymized table (see expectations.suites);
    ``digests``: the unkeyed digests of ``identifiers`` (``unkeyed_digests``), ``prints``: their
    fingerprints (``source_prints``), both shared by purposes."""
    from expectations.suites import columns_of_classes, pseudonymized_suite

    table = policy.tables[table_name]
    plan = rule31_plan(table)
    classes = {name: table.column(name).class_.value for name in table.columns}
    strings = [f.name for f in output.schema.fields if f.dataType.typeName() == "string" and f.name != KEY_ID_COLUMN]
    return pseudonymized_suite(
        pseudonym_columns=[c for c in plan.pseudonymize if c in output.columns],
        source=identifiers, source_columns=[SOURCE_IDENTIFIER], source_distinct=True,
        forbidden_columns=columns_of_classes(classes, PSEUDONYMIZED_FORBIDDEN)
        | {c: classes[c] for c in plan.drop},
        output_columns=strings, digests=digests, source_prints=prints)


# The subject's own key beside its pseudonyms in a staged output, for the one-pseudonym check: the
# staged rows are held in memory only; what the gate checks and what is written leave it out.
RAW_SUBJECT = "_wasure_raw_subject"


def with_raw_subject(table: Table, source: DataFrame) -> DataFrame:
    return source.withColumn(RAW_SUBJECT, F.col(table.subject_key))


def subject_counts(table: Table, staged: DataFrame):
    """Distinct subjects, distinct pseudonyms and rows of a staged output, in one pass over it."""
    key = table.subject_key
    return staged.agg(F.countDistinct(RAW_SUBJECT).alias("subjects"), F.countDistinct(key).alias("pseudonyms"),
                      F.count(F.lit(1)).alias("rows")).first()


def one_pseudonym_per_subject(table: Table, counts) -> str | None:
    """Distinct pseudonyms = distinct subjects (a collision or a split would break joins)."""
    if counts.pseudonyms != counts.subjects:
        return (f"{counts.pseudonyms} distinct pseudonyms for {counts.subjects} distinct subjects in column "
                f"{table.subject_key}")
    return None


# ------------------------------------------------------------------ writing

def _state_path(lake: Lake) -> str:
    return lake.state("pseudonymize.json")


def _load_state(lake: Lake) -> dict:
    files, path = lake.files, _state_path(lake)
    return json.loads(files.read_text(path)) if files.exists(path) else {}


def _save_state(lake: Lake, state: dict) -> None:
    lake.files.write_text(_state_path(lake), json.dumps(state, indent=2, sort_keys=True))   # atomic replace


@dataclass(frozen=True)
class PseudonymizeRequest:
    """The purposes to publish and ``full`` (rewrite every table, changed or not); built by ``checked``."""
    purposes: tuple[str, ...]
    full: bool = False

    @classmethod
    def checked(cls, policy: Policy, lake: Lake, purposes: list[str] | None = None,
                full: bool = False) -> PseudonymizeRequest:
        """The purposes asked for (default: every purpose of the policy), known and with their keys
        present, long enough and outside the lake: InputError (exit 2) before Spark starts."""
        chosen = tuple(purposes or policy.purposes)
        load_purpose_keys(policy, list(chosen), lake)      # names an unknown purpose, a missing or short key
        return cls(chosen, bool(full))


@with_lease("pseudonymize")
def run(spark: SparkSession, policy: Policy, lake: Lake, request: PseudonymizeRequest,
        progress=lambda _msg: None) -> PseudonymizeReport:
    """Publish each purpose's 仮名加工情報 of every table that changed since its last publication
    (``full``: every table), each behind its purpose's gate; a table that fails is quarantined."""
    keys = load_purpose_keys(policy, list(request.purposes), lake)     # checked by the request; loaded here
    check_lake(spark, policy, lake)       # missing tables, schema drift: exit 2 before any write
    work = _Run(spark, policy, lake, progress)
    try:
        for purpose in request.purposes:
            work.publish_purpose(purpose, *keys[purpose], full=request.full)
    finally:
        work.release()
    report = work.report
    if report.failures:
        raise CheckFailed("pseudonymization gate failed (outputs quarantined, Data Docs: "
                          f"{', '.join(report.docs)}): " + "; ".join(report.failures))
    return report


@dataclass(frozen=True)
class _Staged:
    """One table's output for a purpose, persisted (``rows``, with the subject key beside its
    pseudonyms) and counted; ``output`` is what the gate checks and what is written."""
    name: str
    table: Table
    inputs: dict
    rows: DataFrame
    counts: object          # Row(subjects, pseudonyms, rows)

    @property
    def output(self) -> DataFrame:
        return self.rows.drop(RAW_SUBJECT)


class _Run:
    """One pseudonymize run: what it read once (registers, owners' values, table versions, source
    identifiers) and what it persisted, shared by its purposes."""

    def __init__(self, spark: SparkSession, policy: Policy, lake: Lake, progress) -> None:
        self.spark, self.policy, self.lake, self.progress = spark, policy, lake, progress
        self.registers = Registers(spark, policy, lake)
        self.owners = owner_values(spark, policy, lake)
        self.state = _load_state(lake)
        self.run_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        self.report = PseudonymizeReport()
        self.identifier_sets: dict[str, DataFrame] = {}
        self.digest_sets: dict[str, object] = {}         # table -> UnkeyedDigests
        self.print_sets: dict[str, object] = {}          # table -> SourcePrints
        self.versions: dict[str, int] = {}
        self.outputs: list[DataFrame] = []     # persisted outputs, released when the run ends

    def identifiers_of(self, name: str, table: Table) -> DataFrame:
        if name not in self.identifier_sets:
            self.identifier_sets[name] = source_identifiers(self.spark, self.lake, table).persist(StorageLevel.MEMORY_AND_DISK)
        return self.identifier_sets[name]

    def digests_of(self, name: str, table: Table):
        """The unkeyed digests of a table's source identifiers, built and persisted once for every
        purpose's gate (they were most of each gate), for the length of the pseudonyms this job
        writes: a pseudonym of another digest length fails the gate as unchecked."""
        from expectations.digests import unkeyed_digests

        if name not in self.digest_sets:
            digests = unkeyed_digests(self.identifiers_of(name, table), [PSEUDONYM_LENGTH], source_distinct=True)
            digests.frame.persist(StorageLevel.MEMORY_AND_DISK)
            self.digest_sets[name] = digests
        return self.digest_sets[name]

    def prints_of(self, name: str, table: Table):
        """The fingerprints of a table's source identifiers, built and persisted once for every
        purpose's source-value check (each check shuffled them again)."""
        from expectations.source_prints import source_prints

        if name not in self.print_sets:
            self.print_sets[name] = source_prints(self.identifiers_of(name, table), source_distinct=True)
        return self.print_sets[name]

    def version_of(self, name: str) -> int:
        if name not in self.versions:
            self.versions[name] = table_version(self.spark, self.lake.table_path(self.policy.tables[name]))
        return self.versions[name]

    def inputs_of(self, purpose: str, name: str, table: Table, key_id: str) -> dict:
        """What a published table was built from: a change in any of it publishes the table again.
        The registers that decide who is eligible for the purpose (S11) are part of it, so a new
        restriction or a consent change re-publishes every table of the purpose."""
        registers = [self.policy.subject.restrictions_table]
        if self.policy.purposes[purpose].requires_consent:
            registers.append(self.policy.subject.consents_table)
        inputs = {"format": OUTPUT_FORMAT, "source_version": self.version_of(name), "key_id": key_id,
                  "registers": {n: self.version_of(n) for n in registers if n},
                  "profile": hashlib.sha256(repr(rule31_plan(table)).encode()).hexdigest()[:16]}
        if rule31_plan(table).scrub:       # the authors' own values come from the subject table
            inputs["owners_version"] = self.version_of(self.policy.subject.table)
        return inputs

    def publish_purpose(self, purpose: str, key_id: str, key: bytes, full: bool) -> None:
        todo = []
        for name, table in self.policy.tables.items():
            if purpose not in table.purposes:
                continue
            inputs = self.inputs_of(purpose, name, table, key_id)
            if not full and self.state.get(f"{purpose}/{name}") == inputs and is_delta(self.lake.pseudonymized(purpose, name)):
                self.report.tables.append(TableOutcome(purpose, name, "unchanged"))
                continue
            todo.append((name, table, inputs, purpose, key, key_id))
        staged = for_each_table(todo, self.stage)
        if not staged:
            return
        self.progress(f"gate for {purpose}")
        from expectations.gates import run_gate

        checks = []
        for item in staged:
            output = item.output
            checks.append((item.name, output, gate_checks(self.policy, item.name, self.identifiers_of(item.name, item.table),
                                                          output, self.digests_of(item.name, item.table),
                                                          self.prints_of(item.name, item.table))))
        gate = run_gate(f"pseudonymize-{purpose}", checks, join(self.lake.docs, "pseudonymize", self.run_id, purpose))
        self.report.docs.append(gate.docs_index)
        failed = {f.table: f"{f.expectation} on {f.table}.{f.column or '*'}: {f.message}" for f in gate.failures}
        outcomes = for_each_table(staged, lambda item: self.settle(item, purpose, failed))
        for item, (problem, rows, where) in zip(staged, outcomes):
            item.rows.unpersist()
            if problem:
                self.report.failures.append(f"{purpose}/{item.name}: {problem}")
                self.report.tables.append(TableOutcome(purpose, item.name, f"quarantined: {where}"))
                continue
            self.state[f"{purpose}/{item.name}"] = item.inputs
            _save_state(self.lake, self.state)
            self.report.tables.append(TableOutcome(purpose, item.name, "published", rows, key_id))

    def stage(self, item: tuple[str, Table, dict, str, bytes, str]) -> _Staged:
        """Build and persist one table's 仮名加工情報 (several tables at once: jobs.runtime.concurrency).
        Persisted once, the gate, the checks after it and the publish all read the same rows; the
        rows are deterministic (HMAC pseudonyms), so a recomputed lost block is the same too."""
        name, table, inputs, purpose, key, key_id = item
        self.progress(f"pseudonymizing {name} for {purpose}")
        source = with_raw_subject(table, eligible_rows(self.spark, self.policy, self.lake, name, purpose, self.registers))
        staged = apply_rule31(source, table, key, key_id, self.owners if rule31_plan(table).scrub else None)
        staged = staged.persist(StorageLevel.MEMORY_AND_DISK)
        self.outputs.append(staged)
        # Materialized here, in this table's thread, not by the one-at-a-time gate; the same pass
        # counts subjects and pseudonyms, so the check after the gate reads the source no more.
        return _Staged(name, table, inputs, staged, subject_counts(table, staged))

    def settle(self, item: _Staged, purpose: str, failed: dict[str, str]) -> tuple[str | None, int | None, str | None]:
        """After the gate: the one-pseudonym check, then ONE Delta transaction that publishes the
        table, or the output written under quarantine/. Returns (problem, rows, quarantine URI)."""
        name, table, output = item.name, item.table, item.output
        problem = failed[name] if name in failed else one_pseudonym_per_subject(table, item.counts)
        # No repartition by region: a few regions hold most rows, and one task per region would
        # write (and shuffle) most of the largest table alone.
        layout = dict(partition_by=[table.region_column], stats_columns=table.stats_columns(), published=True,
                      properties=key_ids_property(item.inputs["key_id"]))
        if problem:
            where = self.lake.quarantine("pseudonymized", purpose, name, self.run_id)
            LakeTable(self.spark, where).write_new(output, **layout)
            return problem, None, where
        LakeTable(self.spark, self.lake.pseudonymized(purpose, name)).publish(output, **layout)
        return None, item.counts.rows, None

    def release(self) -> None:
        for output in self.outputs:
            output.unpersist()
        for shared in (*self.digest_sets.values(), *self.print_sets.values()):
            shared.frame.unpersist()
        for identifiers in self.identifier_sets.values():
            identifiers.unpersist()


def retain_pseudonymized(spark: SparkSession, policy: Policy, lake: Lake, table_name: str, keys: DataFrame,
                         cutoff: dt.date | None) -> int:
    """Before rows are deleted, keep their 仮名加工情報 (S5: after closure only pseudonymized data stays).

    Writes to ``pseudonymized/<purpose>/retained/<table>``, which regular pseudonymize runs never
    overwrite; inserts are keyed on a hash of the pseudonymized row, so a re-run adds nothing twice.
    Returns the rows added (0 on a re-run), from the MERGE's metrics: counting the output again
    would re-read and re-pseudonymize the source rows.
    """
    table = policy.tables[table_name]
    purpose = retained_purpose(table)
    key_id, key = load_purpose_keys(policy, [purpose], lake)[purpose]
    source = read_now(spark, lake.table_path(table))
    owners = owner_values(spark, policy, lake) if rule31_plan(table).scrub else None
    output = apply_rule31(rows_of_keys(source, table, keys, cutoff), table, key, key_id, owners)
    output = output.withColumn("_row_hash", F.sha2(F.to_json(F.struct(*[F.col(c) for c in output.columns])), 256))
    path = retained_path(lake, purpose, table_name)
    retained = LakeTable(spark, path).create(output, [table.region_column], stats_columns=table.stats_columns(),
                                             published=True, properties=key_ids_property(key_id))
    record_key_id(retained, key_id)          # a copy from before the property, or rows under a rotated key
    return retained.insert_new(output, "t._row_hash = s._row_hash")
