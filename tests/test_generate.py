"""Synthetic lake on real Spark + Delta: determinism, valid identifiers, realistic shares, layout."""
import datetime as dt
import json

import pytest
from pyspark.sql import functions as F

from anonymizers.checkdigits import licence_valid, luhn_valid, my_number_valid, passport_valid
from jobs.generate import GenerateOptions, accounts, build_pools, network_events
from jobs.lake.layout import is_delta, read_current


def _sample(df, key, n=50):
    rows = df.orderBy(key).limit(n).collect()
    return json.dumps([r.asDict() for r in rows], default=str, ensure_ascii=False, sort_keys=True).encode()


def test_every_policy_table_is_a_readable_delta_table(spark, policy, generated_lake):
    for name, table in policy.tables.items():
        path = generated_lake.table_path(table)
        assert is_delta(path), name
        df = spark.read.format("delta").load(path)
        assert df.count() == generated_lake.counts[name]
        assert set(df.columns) - {"subject_bucket"} == set(table.columns), name
    assert generated_lake.counts["accounts"] == 400
    assert generated_lake.counts["network_events"] == 4000


def test_same_seed_same_bytes_other_seed_differs(spark):
    pools = build_pools(7)
    first = _sample(accounts(spark, GenerateOptions(subjects=120, seed=7), pools), "account_id")
    again = _sample(accounts(spark, GenerateOptions(subjects=120, seed=7), build_pools(7)), "account_id")
    other = _sample(accounts(spark, GenerateOptions(subjects=120, seed=8), build_pools(8)), "account_id")
    assert first == again
    assert first != other
    events = GenerateOptions(subjects=30, events_per_subject=5, seed=7)
    assert _sample(network_events(spark, events, pools), "event_id") == _sample(network_events(spark, events, build_pools(7)), "event_id")


def test_identifiers_have_valid_check_digits_and_are_unique(spark, policy, generated_lake):
    df = read_current(spark, generated_lake.table_path(policy.tables["accounts"]))
    rows = df.select("my_number", "card_number", "passport_no", "licence_no", "email", "phone").collect()
    assert all(my_number_valid(r.my_number) for r in rows)
    assert all(luhn_valid(r.card_number) for r in rows)
    passports = [r.passport_no for r in rows if r.passport_no]
    licences = [r.licence_no for r in rows if r.licence_no]
    assert passports and all(passport_valid(p) for p in passports)
    assert licences and all(licence_valid(x) for x in licences)
    for column in ("my_number", "card_number", "email", "phone"):
        values = [getattr(r, column) for r in rows]
        assert len(set(values)) == len(values), f"{column} must be unique per subject"
    # A corrupted digit must fail the check (the validators can fail).
    bad = rows[0].my_number[:-1] + str((int(rows[0].my_number[-1]) + 1) % 10)
    assert not my_number_valid(bad)


def test_shares_of_minors_closed_accounts_and_regions(spark, policy, generated_lake):
    df = read_current(spark, generated_lake.table_path(policy.tables["accounts"]))
    total = df.count()
    as_of = dt.date(2026, 11, 1)
    age = F.floor(F.months_between(F.lit(as_of), F.col("birth_date")) / 12)
    minors = df.where(age < 18).count() / total
    centenarians = df.where(age >= 100).count()
    closed = df.where(F.col("status") == "closed").count() / total
    jp = df.where(F.col("region") == "JP").count() / total
    regions = {r.region for r in df.select("region").distinct().collect()}
    assert 0.04 <= minors <= 0.13, minors
    assert centenarians >= 1
    assert 0.09 <= closed <= 0.21, closed
    assert 0.62 <= jp <= 0.78, jp
    assert regions == {"JP", "US", "EU", "CN", "RU"}
    assert df.where(F.col("closed_at").isNotNull() != (F.col("status") == "closed")).count() == 0
    # Guardian consent is recorded for minors only.
    assert df.where((age >= 18) & F.col("guardian_consent").isNotNull()).count() == 0
    assert df.where((age < 18) & F.col("guardian_consent").isNull()).count() == 0


def test_events_follow_their_account_region_and_cover_two_years(spark, policy, generated_lake):
    events = read_current(spark, generated_lake.table_path(policy.tables["network_events"]))
    accounts_df = read_current(spark, generated_lake.table_path(policy.tables["accounts"]))
    mismatched = events.join(accounts_df.select("account_id", F.col("region").alias("home")), "account_id") \
        .where(F.col("region") != F.col("home")).count()
    assert mismatched == 0
    span = events.select(F.datediff(F.max("event_ts"), F.min("event_ts")).alias("days")).first().days
    assert span > 600


def test_layout_keeps_personal_columns_out_of_delta_statistics(spark, policy, generated_lake):
    table = policy.tables["accounts"]
    props = spark.sql(f"DESCRIBE DETAIL delta.`{generated_lake.table_path(table)}`").first().properties
    assert props["delta.enableDeletionVectors"] == "true"
    stats_columns = props.get("delta.dataSkippingStatsColumns", "")
    for personal in ("email", "name_kanji", "phone", "my_number", "card_number"):
        assert personal not in stats_columns
    # And no email value appears anywhere in the log files.
    email = read_current(spark, generated_lake.table_path(table)).select("email").first().email
    log_text = "".join(p.read_text() for p in (generated_lake.root / table.path / "_delta_log").glob("*.json"))
    assert email not in log_text
    partitions = spark.sql(f"DESCRIBE DETAIL delta.`{generated_lake.table_path(table)}`").first().partitionColumns
    assert partitions == ["region", "subject_bucket"]


def test_support_tickets_quote_identifiers(spark, policy, generated_lake):
    tickets = read_current(spark, generated_lake.table_path(policy.tables["support_tickets"]))
    with_ids = tickets.where(F.col("body").rlike("@|[0-9０-９]{4}")).count()
    assert with_ids / tickets.count() > 0.5
    assert tickets.where(F.col("body").rlike("[０-９]")).count() > 0   # full-width digits
