"""`wasure verify-erasure`: the verification scan as its own job, for auditors (keyed hashes after closure)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from anonymizers.frames import local_frame
from jobs.lake.backup_crypto import reading_backups
from jobs.lake.backup_ledger import ledger_key
from jobs.runtime.console import CheckFailed, InputError
from jobs.erasure.intake import check_request_id
from jobs.erasure.model import MIN_VALUE_LENGTH, STATE_TABLE, STATES, VALUES_TABLE, load_states
from jobs.erasure.plan import quarantined_backups, relative_finding
from jobs.erasure.vault import read_vault, value_hash_column
from jobs.lake.layout import Lake, is_delta, read_now
from jobs.lake.lease import with_lease
from jobs.policy import Policy
from jobs.lake.residue import (
    FULL_WIDTH, HALF_WIDTH, TOKEN_SPLIT, Finding, allowed_elsewhere, lake_files, scan_for_values, with_exclude,
)

# ------------------------------------------------------------------ verify-erasure (auditors)

def scan_for_hashes(spark: SparkSession, root: str, hashes: DataFrame, key: bytes, exclude: tuple[str, ...] = ()) -> list[Finding]:
    """Like ``verify.scan_for_values`` but for keyed hashes of values (after the vault is destroyed):
    every token of every file (Parquet string cells and their tokens, checkpoint rows, raw bytes as
    text) is hashed with the ledger key and joined with ``hashes`` (column ``value_hash``). Finds
    values made of token characters (emails, phones, numbers, card / passport / licence numbers,
    subject ids), not values with spaces or CJK text (names): those only the vault-based scan covers."""
    groups, checkpoints, others = lake_files(spark, root, exclude)
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
    hashed = tokens.distinct().withColumn("value_hash", value_hash_column(F.col("value"), key))
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
    excluded = quarantined_backups(spark, lake, [r.request_id for r in chosen])
    exclude = tuple(f"backups/{d}" for d in excluded)
    findings: list[Finding] = []
    with reading_backups(spark, lake):          # the backups scanned are encrypted: their keys, for this read only
        if plain:
            progress(f"scanning for {len(plain)} value(s)")
            frame = local_frame(spark, sorted(plain, key=lambda v: (v[0], v[1] or "")), "value string, exclude string")
            findings += scan_for_values(spark, lake.uri, frame, exclude)
        values_path = lake.state(VALUES_TABLE)
        if hashed_ids and is_delta(values_path):
            hashes = read_now(spark, values_path).where(F.col("request_id").isin(hashed_ids))
            if hashes.limit(1).count():
                progress(f"keyed-hash scan for {len(hashed_ids)} closed request(s)")
                findings += scan_for_hashes(spark, lake.uri, hashes, key, exclude)
    paths = sorted({relative_finding(lake, f) for f in findings})
    report = VerifyReport([r.request_id for r in chosen], method, excluded, paths)
    if paths:
        raise CheckFailed(f"residue of erased subjects found in {len(paths)} file(s) (values not shown):\n  " + "\n  ".join(paths))
    return report
