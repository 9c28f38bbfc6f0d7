"""A batch of 1,000 subjects (of 4,000) erased in one run: one DELETE per table, touching only the
files that hold them, writing deletion vectors worth a small share of the lake's bytes."""
import datetime as dt
import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs import erasure
from jobs.erasure import steps
from jobs.erasure.plan import scan_subject_rows, table_hits
from jobs.generate import GenerateOptions, generate_lake, subject_id
from jobs.lake.layout import Lake, read_current

AS_OF = dt.date(2026, 11, 22)
SUBJECTS = [subject_id(i) for i in range(1000, 2000)]


def _relative(table_root: str, file_uri: str) -> str:
    return file_uri.removeprefix("file:").removeprefix(str(Path(table_root).resolve()) + "/")


@pytest.fixture(scope="module")
def batch(spark, policy, keys_env, tmp_path_factory):
    lake = Lake.at(tmp_path_factory.mktemp("batch1000") / "lake")
    generate_lake(spark, policy, lake, GenerateOptions(subjects=4000, events_per_subject=3, measurements_per_subject=2))
    holding = {}
    for name, table in policy.tables.items():
        path = lake.table_path(table)
        rows = read_current(spark, path).where(F.col(table.subject_key).isin(SUBJECTS))
        holding[name] = {_relative(path, r.f) for r in rows.select(F.col("_metadata.file_path").alias("f")).distinct().collect()}
    lake_bytes = sum(p.stat().st_size for p in (lake.root / "raw").rglob("*.parquet") if "_delta_log" not in p.parts)
    scans, progress = [], []
    real_scan = steps.scan_subject_rows               # counted, not replaced: the run uses the real one

    def counted_scan(*args, **kwargs):
        scans.append(args[3])
        return real_scan(*args, **kwargs)

    steps.scan_subject_rows = counted_scan
    try:
        report = erasure.run(spark, policy, lake, [erasure.RequestInput("batch-1000", SUBJECTS, "gdpr")], as_of=AS_OF,
                             progress=progress.append)
    finally:
        steps.scan_subject_rows = real_scan
    return {"lake": lake, "holding": holding, "lake_bytes": lake_bytes, "report": report, "scans": scans,
            "progress": progress}


def test_a_batch_of_1000_subjects_rewrites_only_files_that_hold_them(spark, policy, batch):
    lake, written, merges = batch["lake"], 0, 0
    for name, table in policy.tables.items():
        path = lake.table_path(table)
        commits = erasure.erasure_commits(spark, path)
        assert len(commits) <= 1, name                               # one rewrite per table for the whole batch
        for version, meta, _metrics in commits:
            merges += 1
            actions = [json.loads(line) for line in Path(path, "_delta_log", f"{version:020d}.json").read_text().splitlines()]
            touched = {a["remove"]["path"] for a in actions if "remove" in a}
            assert touched and touched <= batch["holding"][name], name
            assert meta["subjects"] <= len(SUBJECTS) and meta["requests"] == ["batch-1000"]
            for add in (a["add"] for a in actions if "add" in a):
                written += add["deletionVector"]["sizeInBytes"] if add.get("deletionVector") and add["path"] in touched else add["size"]
    assert merges >= 5
    share = written / batch["lake_bytes"]
    print(f"\nerasing 1,000 of 4,000 subjects wrote {written} bytes = {share:.3%} of {batch['lake_bytes']} data bytes")
    assert 0 < share < 0.02


def test_the_batch_is_gone_except_held_rows(spark, policy, batch):
    receipt = next(r for r in batch["report"].receipts if r["request_id"] == "batch-1000")
    assert receipt["state"] == "backups_quarantined" and len(receipt["subjects"]) == len(SUBJECTS)
    held = {name: sum(h["rows_kept"] for s in receipt["subjects"] for h in s["held"] if h["table"] == name) for name in policy.tables}
    for name, table in policy.tables.items():
        left = read_current(spark, batch["lake"].table_path(table)).where(F.col(table.subject_key).isin(SUBJECTS)).count()
        assert left == held[name], name
    assert sum(receipt["rows_removed"].values()) > 4000


def test_the_run_reads_the_subjects_rows_once_for_capture_and_deletes(batch, policy):
    """Received and deleted in one run with no commit between: the DELETE plans use the scan the
    value capture made (one read of each table's subject partitions, not two)."""
    assert batch["scans"] == [list(policy.tables)]
    assert not any("finding the subjects' rows" in line for line in batch["progress"])


def test_a_subject_scan_answers_only_while_no_table_changed(spark, policy, lake_copy):
    subjects = [subject_id(3), subject_id(7)]
    names = list(policy.tables)
    scan = scan_subject_rows(spark, policy, lake_copy, names, subjects)
    assert scan.files == table_hits(spark, lake_copy, policy, names, subjects)
    assert any(scan.values[name].get(subject_id(3)) for name in names)
    assert scan.still_answers(spark, lake_copy, policy, names, subjects[:1])
    assert not scan.still_answers(spark, lake_copy, policy, names, [subject_id(9)])     # not scanned for
    table = policy.tables[policy.subject.table]
    path = lake_copy.table_path(table)
    read_current(spark, path).where(F.col(table.subject_key) == subject_id(3)).write.format("delta").mode("append").save(path)
    assert not scan.still_answers(spark, lake_copy, policy, names, subjects)
    assert scan.still_answers(spark, lake_copy, policy, [n for n in names if n != policy.subject.table], subjects)
