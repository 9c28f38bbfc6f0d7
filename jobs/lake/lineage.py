"""Which datasets under the lake are derived from a policy table and still hold its subjects.

仮名加工情報 is personal data (APPI art. 2(5); GDPR recital 26): an erasure request reaches it like the
raw rows (REQUIREMENTS S4). The copies are found from the policy, not listed in the erasure code:

    pseudonymized/<purpose>/<table>                 one per purpose the table serves (`wasure pseudonymize`)
    pseudonymized/<purpose>/retained/<table>        rows kept past deletion (retention action pseudonymize, S5)
    staging/pseudonymized/<purpose>/<table>         an output waiting for its gate (a killed run leaves one)
    quarantine/pseudonymized/<purpose>/<table>/<t>  outputs that failed their gate

In every copy the subject key is the keyed pseudonym of the subject id under the purpose's key,
which is how erasure finds a subject's rows there. Anonymized releases (匿名加工情報: per-release
surrogates, k-anonymous classes) and statistics (aggregates with small-cell suppression) keep no
subject row and no linking code, by construction and by their gates, so they are not copies here.
A job that adds a per-subject output adds its location to ``derived_copies``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession

from jobs.lake.layout import Lake, is_delta, read_now
from jobs.lake.table import LakeTable
from jobs.policy import Policy, Table
from jobs.lake.storage import join, name_of, relative

RETAINED = "retained"
KEY_ID_COLUMN = "pseudonym_key_id"   # which key made a row's pseudonyms (written by jobs.pseudonymize)
KEY_IDS_PROPERTY = "wasure.pseudonymKeyIds"   # the table property listing a copy's key ids


@dataclass(frozen=True)
class DerivedCopy:
    table: str            # the policy table it is derived from
    purpose: str          # whose key pseudonymizes the subject key in it
    relative: str         # path under the lake root
    subject_column: str   # holds the pseudonym of the subject id
    retained: bool        # 仮名加工情報 kept after an account closure (S5)


def retained_purpose(table: Table) -> str:
    """The purpose whose key pseudonymizes the rows a table keeps past deletion."""
    return table.retention.purpose if table.retention and table.retention.purpose else table.purposes[0]


def keeps_pseudonymized(table: Table) -> bool:
    """Tables whose rows are kept as 仮名加工情報 after closure: retention action ``pseudonymize``."""
    return table.retention is not None and table.retention.action == "pseudonymize"


def retained_path(lake: Lake, purpose: str, table_name: str) -> str:
    return join(lake.pseudonymized(purpose, RETAINED), table_name)


def derived_copies(policy: Policy, lake: Lake) -> list[DerivedCopy]:
    """Every existing copy of every policy table's subject rows outside raw/, found on disk under the
    layouts of the module docstring for ANY purpose folder there (a purpose the policy no longer
    gives a table still left its copy behind)."""
    files = lake.files
    out: list[DerivedCopy] = []

    def add(name: str, purpose: str, uri: str, retained: bool = False) -> None:
        if is_delta(uri):
            out.append(DerivedCopy(name, purpose, relative(uri, lake.uri), policy.tables[name].subject_key, retained))

    def folders(uri: str) -> list[str]:
        return [child for child in files.list(uri) if files.is_dir(child)]    # sorted; [] when missing

    for purpose_dir in folders(lake.path("pseudonymized")):
        for name in policy.tables:
            add(name, name_of(purpose_dir), join(purpose_dir, name))
            add(name, name_of(purpose_dir), join(purpose_dir, RETAINED, name), retained=True)
    for purpose_dir in folders(lake.staging("pseudonymized")):
        for name in policy.tables:
            add(name, name_of(purpose_dir), join(purpose_dir, name))
    for purpose_dir in folders(lake.quarantine("pseudonymized")):
        for name in policy.tables:
            for attempt in folders(join(purpose_dir, name)):
                add(name, name_of(purpose_dir), attempt)
    return out


def key_ids_property(*key_ids: str) -> dict[str, str]:
    """The table property that names every key id a copy's rows carry (a JSON list), written with
    each write that adds rows: erasure reads it from the table's checksum file instead of scanning
    the copy (``copy_key_ids``)."""
    return {KEY_IDS_PROPERTY: json.dumps(sorted(set(key_ids)))}


def recorded_key_ids(table: LakeTable) -> list[str] | None:
    """The key ids of ``KEY_IDS_PROPERTY``; None for a copy written before wasure recorded them."""
    value = table.properties().get(KEY_IDS_PROPERTY)
    if value is None:
        return None
    try:
        ids = json.loads(value)
    except ValueError:
        return None                      # not ours: scanned instead
    return sorted({str(i) for i in ids if i}) if isinstance(ids, list) else None


def record_key_id(table: LakeTable, key_id: str) -> None:
    """Before rows pseudonymized under ``key_id`` are added to an existing copy (the retained
    copies, which grow across key rotations): add the id to its property, so that the property is
    never narrower than the rows. A copy from before the property gets its scanned ids too."""
    recorded = recorded_key_ids(table)
    if recorded is None:
        recorded = _scanned_key_ids({table.uri: table.read()})[table.uri]
    elif key_id in recorded:
        return
    table.set_properties(key_ids_property(key_id, *recorded))


def copy_key_ids(spark: SparkSession, lake: Lake, copies: list[DerivedCopy]) -> dict[str, list[str]]:
    """copy -> the key ids its rows were pseudonymized with (``KEY_ID_COLUMN``). A retained or
    quarantined copy keeps the key id of its day: after a key rotation, erasure must look the
    subject up under the old key too. Read from each copy's ``KEY_IDS_PROPERTY`` (no Spark job:
    this ran one file listing and scan per copy, ~2 Spark jobs each, in every erasure run); copies
    written before the property are scanned, together in one Spark job."""
    out: dict[str, list[str]] = {}
    unrecorded = []
    for copy in copies:
        recorded = recorded_key_ids(LakeTable(spark, lake.path(copy.relative)))
        if recorded is None:
            unrecorded.append(copy.relative)
        else:
            out[copy.relative] = recorded
    return out | _scanned_key_ids({rel: read_now(spark, lake.path(rel)) for rel in unrecorded})


def _scanned_key_ids(tables: dict[str, DataFrame]) -> dict[str, list[str]]:
    """name -> the distinct non-empty ``KEY_ID_COLUMN`` values of its table, in one Spark job."""
    from pyspark.sql import functions as F

    parts = None
    for rel, df in tables.items():
        if KEY_ID_COLUMN not in df.columns:
            continue
        part = df.select(F.lit(rel).alias("copy"), F.col(KEY_ID_COLUMN).alias("key_id")).distinct()
        parts = part if parts is None else parts.unionByName(part)
    out: dict[str, list[str]] = {rel: [] for rel in tables}
    for row in (parts.distinct().collect() if parts is not None else []):
        if row.key_id:
            out[row.copy].append(row.key_id)
    return {k: sorted(v) for k, v in out.items()}
