"""Cross-reference checks pydantic cannot do field by field (tables named by purposes, releases and
statistics exist; columns of the right class; DP budgets; closure order) and the hierarchy files.
Each problem is (key path, message): the policy file names no personal value, and neither do these."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from jobs.policy.classes import AGE_MAX, RELEASE_FORBIDDEN, TREATMENTS, ColumnClass
from jobs.policy.model import DPDomain, Policy, Table


Problems = list[tuple[str, str]]


def _semantic_problems(policy: Policy) -> Problems:
    """Cross-references pydantic cannot check field by field, in the policy file's order."""
    problems = _subject_problems(policy)
    for name, table in policy.tables.items():
        problems += _table_problems(policy, name, table)
    problems += _closure_order_problems(policy)
    problems += _statistic_dp_problems(policy)
    problems += _hierarchy_problems(policy)
    problems += _legal_hold_problems(policy)
    problems += _purpose_key_problems(policy)
    for kind, entries in (("releases", policy.releases), ("statistics", policy.statistics)):
        for name, entry in entries.items():
            problems += _entry_problems(policy, kind, name, entry)
    return problems


def _subject_problems(policy: Policy) -> Problems:
    """The subject block: its table, registers and columns exist; consent purposes have a register."""
    problems: Problems = []
    tables = policy.tables
    if policy.subject.table not in tables:
        return [("subject.table", f"unknown table {policy.subject.table!r}")]
    home = tables[policy.subject.table]
    for key in ("consents_table", "restrictions_table", "legal_holds_table"):
        name = getattr(policy.subject, key)
        if name is not None and name not in tables:
            problems.append((f"subject.{key}", f"unknown table {name!r}"))
    for name, purpose in policy.purposes.items():
        if purpose.requires_consent and policy.subject.consents_table is None:
            problems.append((f"purposes.{name}.requires_consent", "a purpose based on consent needs the consent "
                             "register: set subject.consents_table (or requires_consent: false)"))
    for key in ("closure_column", "birth_date_column", "guardian_consent_column"):
        column = getattr(policy.subject, key)
        if column is not None and column not in home.columns:
            problems.append((f"subject.{key}", f"column {column!r} is not in table {policy.subject.table!r}"))
    return problems


def _table_problems(policy: Policy, name: str, table: Table) -> Problems:
    """One table: its key, date and region columns, purposes, column classes and retention."""
    problems: Problems = []
    base = f"tables.{name}"
    if table.subject_key not in table.columns:
        problems.append((f"{base}.subject_key", f"column {table.subject_key!r} is not classified in columns"))
    elif table.column(table.subject_key).class_ != ColumnClass.linking_code:
        problems.append((f"{base}.columns.{table.subject_key}.class", "the subject key must be class linking_code"))
    elif table.purposes and table.column(table.subject_key).treatment == "drop":
        problems.append((f"{base}.columns.{table.subject_key}.treatment", "the subject key of a table that serves a "
                         "purpose is pseudonymized, not dropped: erasure finds a subject's 仮名加工情報 by it"))
    if table.date_column is not None and table.date_column not in table.columns:
        problems.append((f"{base}.date_column", f"column {table.date_column!r} is not classified in columns"))
    if table.region_column not in table.columns:
        problems.append((f"{base}.region_column", f"column {table.region_column!r} is not classified in columns"))
    for i, purpose in enumerate(table.purposes):
        if purpose not in policy.purposes:
            problems.append((f"{base}.purposes[{i}]", f"unknown purpose {purpose!r}"))
    for column in table.columns:
        spec = table.column(column)
        where = f"{base}.columns.{column}"
        if spec.class_ == ColumnClass.quasi_identifier and spec.hierarchy is None:
            problems.append((f"{where}.hierarchy", "a quasi_identifier needs a generalization hierarchy"))
        if spec.hierarchy is not None and spec.hierarchy not in policy.hierarchies:
            problems.append((f"{where}.hierarchy", f"unknown hierarchy {spec.hierarchy!r}"))
        rule = TREATMENTS[spec.class_]
        if rule.allowed is not None and spec.treatment not in (None, *rule.allowed):
            problems.append((f"{where}.treatment", rule.refusal.format(cls=spec.class_.value, treatment=spec.treatment)))
    return problems + _retention_problems(policy, name, table)


def _retention_problems(policy: Policy, name: str, table: Table) -> Problems:
    """A table's retention: its basis has a date, its action has what it needs (purpose, release)."""
    retention, base = table.retention, f"tables.{name}.retention"
    if retention is None:
        return []
    problems: Problems = []
    if retention.basis == "business_date" and table.date_column is None:
        problems.append((f"{base}.basis", "business_date retention needs the table's date_column"))
    if retention.purpose is not None and retention.purpose not in policy.purposes:
        problems.append((f"{base}.purpose", f"unknown purpose {retention.purpose!r}"))
    if retention.action == "pseudonymize" and not table.purposes:
        problems.append((f"{base}.action", "pseudonymize needs a purpose in the table's purposes"))
    if retention.action == "anonymize":
        if retention.release is None:
            problems.append((f"{base}.release", "action anonymize needs the release whose QIs and k the expired rows are kept as"))
        elif retention.release not in policy.releases:
            problems.append((f"{base}.release", f"unknown release {retention.release!r}"))
        elif policy.releases[retention.release].table != name:
            problems.append((f"{base}.release", f"release {retention.release!r} is built from table "
                                                f"{policy.releases[retention.release].table!r}, not {name!r}"))
    elif retention.release is not None:
        problems.append((f"{base}.release", "only action anonymize takes a release"))
    return problems


def _hierarchy_problems(policy: Policy) -> Problems:
    problems: Problems = []
    for name, hierarchy in policy.hierarchies.items():
        base = f"hierarchies.{name}"
        if hierarchy.type == "tree" and not hierarchy.file:
            problems.append((f"{base}.file", "a tree hierarchy needs its ARX CSV file (';'-separated, relative to the policy file)"))
        elif hierarchy.type != "tree" and hierarchy.file is not None:
            problems.append((f"{base}.file", f"only tree hierarchies read a file; a {hierarchy.type} hierarchy would ignore it"))
        if hierarchy.type == "age_band" and hierarchy.top is not None and not 1 <= hierarchy.top <= AGE_MAX:
            problems.append((f"{base}.top", f"an age between 1 and {AGE_MAX} (ages from it on are one value, e.g. 90+)"))
    return problems


def _legal_hold_problems(policy: Policy) -> Problems:
    problems: Problems = []
    for i, hold in enumerate(policy.legal_holds):
        for j, table in enumerate(hold.tables):
            if table not in policy.tables:
                problems.append((f"legal_holds[{i}].tables[{j}]", f"unknown table {table!r}"))
        for j, subject in enumerate(hold.subjects):
            if not policy.subject_id_regex().fullmatch(subject):
                problems.append((f"legal_holds[{i}].subjects[{j}]", "not a valid subject id (see subject.id_pattern)"))
        if not hold.subjects and not hold.tables:
            problems.append((f"legal_holds[{i}]", "a hold names subjects, tables, or both"))
    return problems


def _purpose_key_problems(policy: Policy) -> Problems:
    """One key per purpose: a shared key would link two purposes' 仮名加工情報."""
    problems: Problems = []
    seen_keys: dict[str, str] = {}
    for name, purpose in policy.purposes.items():
        if purpose.key_id in seen_keys:
            problems.append((f"purposes.{name}.key_id",
                             f"key id already used by purpose {seen_keys[purpose.key_id]!r}: one key per purpose"))
        seen_keys[purpose.key_id] = name
    return problems


def _entry_problems(policy: Policy, kind: str, name: str, entry: Any) -> Problems:
    """A release or a statistic: its table exists and every column it names is in it or in the subject table."""
    tables, base = policy.tables, f"{kind}.{name}"
    if entry.table not in tables:
        return [(f"{base}.table", f"unknown table {entry.table!r}")]
    problems: Problems = []
    subject_columns = tables[policy.subject.table].columns if policy.subject.table in tables else {}
    known = set(tables[entry.table].columns) | set(subject_columns)
    columns = list(entry.quasi_identifiers) + entry.sensitive if kind == "releases" else entry.dimensions + entry.measures
    for column in columns:
        if column not in known:
            problems.append((f"{base}", f"column {column!r} is neither in {entry.table!r} nor in the subject table"))
    return problems + (_release_problems(policy, base, entry) if kind == "releases" else [])


def _release_problems(policy: Policy, base: str, entry: Any) -> Problems:
    """A release: known hierarchies, no forbidden class (rule 34), a known region, rare values coded
    for sensitive attributes only, l-diversity with a sensitive column."""
    problems: Problems = []
    for column, hierarchy in entry.quasi_identifiers.items():
        if hierarchy is not None and hierarchy not in policy.hierarchies:
            problems.append((f"{base}.quasi_identifiers.{column}", f"unknown hierarchy {hierarchy!r}"))
    owner = policy.tables[entry.table]
    for column in list(entry.quasi_identifiers) + entry.sensitive:
        home = owner if column in owner.columns else policy.tables.get(policy.subject.table)
        if home is not None and column in home.columns and home.column(column).class_.value in RELEASE_FORBIDDEN:
            problems.append((f"{base}", f"column {column!r} is {home.column(column).class_.value}: "
                                        "it can never be part of 匿名加工情報 (APPI rule 34)"))
    if entry.region is not None and entry.region not in policy.regions:
        problems.append((f"{base}.region", f"unknown region {entry.region!r}"))
    for column in entry.rare_values:
        if column in entry.quasi_identifiers:
            problems.append((f"{base}.rare_values.{column}",
                             f"{column!r} is a quasi-identifier: rare values are coded for sensitive attributes "
                             "only; a quasi-identifier's rare values are coded by its hierarchy (age_band "
                             "'top', tree levels): remove it here"))
        elif column not in entry.sensitive:
            problems.append((f"{base}.rare_values.{column}",
                             f"{column!r} is not a sensitive attribute of the release (sensitive: "
                             f"{', '.join(entry.sensitive) or 'none'}): rare values are coded for sensitive "
                             "attributes only"))
    if entry.l is not None and not entry.sensitive:
        problems.append((f"{base}.l", "l-diversity needs at least one sensitive column"))
    return problems


def _statistic_dp_problems(policy: Policy) -> list[tuple[str, str]]:
    """A statistic is k-anonymous (k) or differentially private (dp), and a dp block names its
    privacy parameters, a clip bound for every measure and a public domain for every dimension."""
    problems: list[tuple[str, str]] = []
    for name, stat in policy.statistics.items():
        base, dp = f"statistics.{name}", stat.dp
        if dp is None:
            if stat.k is None:
                problems.append((f"{base}.k", "a statistic without dp needs k (k-anonymous cells, suppression below k)"))
            continue
        base = f"{base}.dp"
        if stat.k is not None:
            problems.append((f"statistics.{name}.k", "k applies to k-anonymous statistics; a dp statistic is not "
                                                     "suppressed (its noise replaces suppression): remove k"))
        amount, other = ("epsilon", "rho") if dp.mechanism == "laplace" else ("rho", "epsilon")
        if getattr(dp, amount) is None:
            problems.append((f"{base}.{amount}", f"the {dp.mechanism} mechanism needs {amount} (per release)"))
        elif getattr(dp, amount) > dp.budget:
            problems.append((f"{base}.budget", f"the budget ({dp.budget:g} {amount}) is below one release ({getattr(dp, amount):g})"))
        if getattr(dp, other) is not None:
            problems.append((f"{base}.{other}", f"the {dp.mechanism} mechanism is accounted in {amount}, not {other}"))
        if dp.mechanism == "gaussian" and dp.delta is None:
            problems.append((f"{base}.delta", "the gaussian mechanism needs delta (its rho is also reported as (epsilon, delta))"))
        if dp.mechanism == "laplace" and dp.delta is not None:
            problems.append((f"{base}.delta", "the laplace mechanism is pure epsilon-DP: no delta"))
        for measure in stat.measures:
            if measure not in dp.bounds:
                problems.append((f"{base}.bounds", f"measure {measure!r} needs public clip bounds [low, high]"))
        problems += [(f"{base}.bounds.{m}", "not a measure of the statistic") for m in dp.bounds if m not in stat.measures]
        for column in stat.dimensions:
            if column not in dp.domains:
                problems.append((f"{base}.domains", f"dimension {column!r} needs a public domain (never taken from the data)"))
        for column, domain in dp.domains.items():
            problems += _dp_domain_problems(policy, f"{base}.domains.{column}", column, domain, stat.dimensions)
    return problems


def _dp_domain_problems(policy: Policy, where: str, column: str, domain: DPDomain, dimensions: list[str]) -> list[tuple[str, str]]:
    if column not in dimensions:
        return [(where, "not a dimension of the statistic")]
    given = [key for key in ("values", "hierarchy", "months", "last_months") if getattr(domain, key) is not None]
    if len(given) != 1:
        return [(where, "exactly one of values, hierarchy, months, last_months")]
    if domain.values is not None and (len(set(domain.values)) != len(domain.values) or "(all)" in domain.values):
        return [(f"{where}.values", "distinct labels, without '(all)' (the label of totals)")]
    if domain.months is not None and domain.months.from_ > domain.months.to:
        return [(f"{where}.months", "from must not be after to")]
    if domain.hierarchy is None:
        return []
    hierarchy = policy.hierarchies.get(domain.hierarchy)
    if hierarchy is None:
        return [(f"{where}.hierarchy", f"unknown hierarchy {domain.hierarchy!r}")]
    if hierarchy.type not in ("tree", "age_band"):
        return [(f"{where}.hierarchy", f"a domain comes from a tree (its leaves) or an age_band hierarchy, not {hierarchy.type}")]
    if hierarchy.type == "age_band" and column != policy.subject.birth_date_column:
        return [(f"{where}.hierarchy", "age bands are the domain of the subject's birth date column only")]
    if hierarchy.type == "age_band" and hierarchy.top is None:
        return [(f"{where}.hierarchy", f"age_band hierarchy {domain.hierarchy!r} needs a top: without one the ages are unbounded")]
    return []


def _closure_order_problems(policy: Policy) -> list[tuple[str, str]]:
    """Retention by account closure reads the closure date from the subject table's rows. A table
    whose closure period is longer than the subject table's own would look for closure dates that
    the subject table's retention already removed: its rows of those subjects would never expire.
    Equal periods are safe: one retention run reads the closure dates once, before its first delete."""
    subject_table = policy.subject.table
    home = policy.tables.get(subject_table)
    if home is None or home.retention is None:
        return []       # no rule removes the subject rows: every closure date stays readable
    closure_tables = {name: table.retention for name, table in policy.tables.items()
                      if name != subject_table and table.retention is not None and table.retention.basis == "account_closure"}
    if not closure_tables:
        return []
    own = home.retention
    if own.basis != "account_closure":
        return [(f"tables.{subject_table}.retention.basis",
                 f"tables {', '.join(sorted(closure_tables))} are retained by account_closure and read the closure date "
                 f"({policy.subject.closure_column}) from {subject_table!r}; a business_date rule removes {subject_table!r} rows "
                 "whether or not the account is closed, and their rows would then never expire: use basis account_closure "
                 f"with a period at least as long as theirs here (or no retention for {subject_table!r})")]
    return [(f"tables.{name}.retention.period_days",
             f"{retention.period_days} days after closure is longer than the closure period of the subject table "
             f"{subject_table!r} ({own.period_days} days, tables.{subject_table}.retention.period_days): retention reads "
             f"the closure date from {subject_table}.{policy.subject.closure_column}, which would be gone first, and these "
             f"rows would never expire; use at most {own.period_days} days here or lengthen the period of {subject_table!r}")
            for name, retention in closure_tables.items() if retention.period_days > own.period_days]




def hierarchy_file_problems(hierarchies: Any, base_dir: Path) -> list[tuple[str, str]]:
    """Every tree hierarchy's file, resolved against ``base_dir`` (the policy file's directory, as
    the anonymize job resolves it) and parsed by the loader Mondrian uses. Works on the raw YAML
    mapping, so that a file problem is reported together with the policy's other problems."""
    if not isinstance(hierarchies, dict):
        return []
    problems: list[tuple[str, str]] = []
    for name, spec in hierarchies.items():
        if not isinstance(spec, dict) or spec.get("type") != "tree":
            continue
        file = spec.get("file")
        if not isinstance(file, str) or not file.strip():
            continue        # a missing file is a problem of the policy itself (_semantic_problems)
        where, path = f"hierarchies.{name}.file", base_dir / file
        if not path.exists():
            problems.append((where, f"hierarchy file {file!r} not found (resolved next to the policy file: {path})"))
            continue
        if not path.is_file():
            problems.append((where, f"hierarchy file {file!r} is not a file ({path})"))
            continue
        # The loader's own parsing (no Spark I/O; importing it loads numpy / pandas / pyspark modules).
        from anonymizers.hierarchy import CategoricalHierarchy, HierarchyError

        try:
            CategoricalHierarchy.from_csv(path, name=str(name))
        except UnicodeDecodeError:
            problems.append((where, f"hierarchy file {file!r} is not UTF-8 text"))
        except OSError as exc:
            problems.append((where, f"hierarchy file {file!r} cannot be read ({exc.strerror or exc})"))
        except (HierarchyError, csv.Error) as exc:   # the file's labels (categories), never personal values
            problems.append((where, f"hierarchy file {file!r} is not a valid ARX hierarchy CSV: {exc}"))
    return problems
