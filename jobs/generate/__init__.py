"""Synthetic lake, deterministic by seed, modeled on the five seed privacy policies.

Faker (ja_JP, en_US) builds small pools once in Python; Spark expands them to any size. Every
value of a row is a pure function of (seed, row index) computed with Spark SQL functions (hashes,
substrings, pool look-ups via broadcast joins), so the same seed gives the same lake on any
cluster size, and 1M subjects / 100M events never loop in Python per row.

Identifiers that an erasure scan looks for (email, phone, My Number, card, passport, licence,
MAC, serial) are unique per subject: they are bijections of the subject index plus a check digit.
"""
from __future__ import annotations

from typing import Callable

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from anonymizers.checkdigits import (
    licence_check_digit_col, luhn_check_digit_col, my_number_check_digit_col, passport_check_digit_col,
)
from jobs.runtime.console import InputError
from jobs.lake.layout import Lake, read_now, write_policy_table
from jobs.policy import Policy, check_table_schema
# The building blocks and the tickets live beside this module; their public names are part of
# jobs.generate's API (tests and the bench import them from here).
from jobs.generate.draw import (  # noqa: F401 - re-exported
    AS_OF, REGION_SHARES, SUBJECT_PREFIX, Draw, GenerateOptions, _digits, _per_subject, _pick, _pool_df,
    _subject_attributes, _timestamp_within, build_pools, subject_id,
)
from jobs.generate.tickets import SLOT_KINDS, TICKET_TEMPLATES, support_tickets  # noqa: F401 - re-exported

# ---------------------------------------------------------------- tables

def accounts(spark: SparkSession, options: GenerateOptions, pools: dict) -> DataFrame:
    base = spark.range(options.subjects).withColumnRenamed("id", "subject_index")
    idx = F.col("subject_index")
    draw = Draw(options.seed, idx)
    attrs = _subject_attributes(draw, idx, options.as_of)
    df = base.select(idx, *[c.alias(n) for n, c in attrs.items()],
                     draw.hash("name").alias("name_key"), draw.hash("address").alias("address_key"))
    df = df.withColumn("is_ja", F.col("region") == "JP")
    for kind in ("ja", "en"):
        df = _pick(df, _pool_df(spark, f"name_{kind}", pools[f"name_{kind}"]), f"name_{kind}", len(pools[f"name_{kind}"]), F.col("name_key"))
        df = _pick(df, _pool_df(spark, f"address_{kind}", pools[f"address_{kind}"]), f"address_{kind}", len(pools[f"address_{kind}"]), F.col("address_key"))
    df = _pick(df, _pool_df(spark, "mail_domain", pools["mail_domain"]), "mail_domain", len(pools["mail_domain"]), draw.hash("mail"))

    def by_locale(column: str) -> Column:
        return F.when(F.col("is_ja"), F.col(column.format("ja"))).otherwise(F.col(column.format("en")))

    mobile_prefix = F.element_at(F.array(F.lit("070"), F.lit("080"), F.lit("090")), (F.pmod(draw.hash("mobile"), F.lit(3)) + 1).cast("int"))
    phone_digits = _digits(idx, 61_803_397, 27_182_818 + options.seed, 8)
    my_number_payload = _digits(idx, 6_180_339_887, 31_415_926_535 + options.seed, 11)
    card_payload = F.concat(F.lit("4"), _digits(idx, 6_180_339_887, 14_142_135_623_73 + options.seed, 14))
    passport_payload = F.concat(
        F.element_at(F.array(*[F.lit(p) for p in ("TK", "TR", "TZ", "MU", "MZ")]), (F.pmod(draw.hash("pp"), F.lit(5)) + 1).cast("int")),
        _digits(idx, 618_033, 141_421 + options.seed, 6))
    licence_payload = F.concat(F.lpad(draw.integer("licence_pref", 10, 97).cast("string"), 2, "0"),
                               _digits(idx, 61_803_397, 17_320_508 + options.seed, 8))
    age_years = F.floor(F.months_between(F.lit(options.as_of), F.col("birth_date")) / 12)
    created_days_ago = draw.integer("created", 0, 1500)
    closed = draw.uniform("closed") < 0.15
    closed_at = F.when(closed, F.date_sub(F.lit(options.as_of), F.floor(created_days_ago * draw.uniform("closed_when")).cast("int")))
    return df.select(
        "account_id",
        by_locale("name_{}_0").alias("name_kanji"),
        by_locale("name_{}_1").alias("name_kana"),
        F.concat(by_locale("name_{}_2"), F.lit("."), F.col("subject_index").cast("string"), F.lit("@"), F.col("mail_domain_0")).alias("email"),
        F.when(F.col("is_ja"), F.concat(mobile_prefix, F.lit("-"), F.substring(phone_digits, 1, 4), F.lit("-"), F.substring(phone_digits, 5, 4)))
         .otherwise(F.concat(F.lit("+1-555-"), F.substring(phone_digits, 1, 3), F.lit("-"), F.substring(phone_digits, 4, 4))).alias("phone"),
        by_locale("address_{}_0").alias("postal_code"),
        by_locale("address_{}_1").alias("prefecture"),
        by_locale("address_{}_2").alias("city"),
        by_locale("address_{}_3").alias("address_line"),
        "birth_date",
        draw.choice("gender", [("F", 0.49), ("M", 0.49), ("X", 0.02)]).alias("gender"),
        F.when(F.col("is_ja"), F.lit("ja_JP")).otherwise(F.lit("en_US")).alias("locale"),
        "region",
        F.concat(my_number_payload, my_number_check_digit_col(my_number_payload)).alias("my_number"),
        F.when(draw.uniform("has_passport") < 0.4, F.concat(passport_payload, passport_check_digit_col(passport_payload))).alias("passport_no"),
        F.when(age_years >= 18, F.concat(licence_payload, licence_check_digit_col(licence_payload),
                                        draw.integer("reissue", 0, 2).cast("string"))).alias("licence_no"),
        F.concat(card_payload, luhn_check_digit_col(card_payload, 15)).alias("card_number"),
        F.when(age_years < 18, draw.uniform("guardian") < 0.5).alias("guardian_consent"),
        F.when(closed, F.lit("closed")).otherwise(F.lit("open")).alias("status"),
        F.date_sub(F.lit(options.as_of), created_days_ago.cast("int")).cast("timestamp").alias("created_at"),
        closed_at.cast("timestamp").alias("closed_at"),
    )



def devices(spark: SparkSession, options: GenerateOptions, pools: dict) -> DataFrame:
    df, draw, row = _per_subject(spark, options, 2)
    mac = F.lpad(F.hex(F.pmod(row * F.lit(2654435761) + F.lit(options.seed), F.lit(2 ** 40))), 10, "0")
    df = _pick(df, _pool_df(spark, "model", pools["model"]), "model", len(pools["model"]), draw.hash("model"))
    df = _pick(df, _pool_df(spark, "firmware", pools["firmware"]), "firmware", len(pools["firmware"]), draw.hash("fw"))
    return df.select(
        F.concat(F.lit("D"), F.lpad(F.col("row_index").cast("string"), 10, "0")).alias("device_id"),
        "account_id",
        F.regexp_replace(F.concat(F.lit("a4"), mac), "(..)(?!$)", "$1:").alias("mac_address"),
        F.concat(F.lit("SN"), _digits(row, 6_180_339_887, 2_236_067_977 + options.seed, 10)).alias("serial_number"),
        F.concat_ws(".", F.lit("10"), draw.integer("ip2", 0, 255), draw.integer("ip3", 0, 255), draw.integer("ip4", 1, 254)).alias("ip_address"),
        F.col("model_0").alias("model"),
        F.col("firmware_0").alias("firmware"),
        _timestamp_within(draw, "registered_at", options.as_of, 1400),
        "region",
    )


def network_events(spark: SparkSession, options: GenerateOptions, pools: dict) -> DataFrame:
    df, draw, row = _per_subject(spark, options, options.events_per_subject)
    subject_draw = Draw(options.seed, F.col("subject_index"))
    df = _pick(df, _pool_df(spark, "ssid", pools["ssid"]), "ssid", len(pools["ssid"]), subject_draw.hash("ssid"))
    df = _pick(df, _pool_df(spark, "dns_domain", pools["dns_domain"]), "dns_domain", len(pools["dns_domain"]), draw.hash("dns"))
    return df.select(
        F.col("row_index").alias("event_id"),
        "account_id",
        F.concat(F.lit("D"), F.lpad((F.col("subject_index") * 2 + F.pmod(draw.hash("dev"), F.lit(2))).cast("string"), 10, "0")).alias("device_id"),
        _timestamp_within(draw, "event_ts", options.as_of, 730),
        F.col("ssid_0").alias("ssid"),
        F.substring(F.sha2(F.concat(F.lit(str(options.seed)), F.lit("wifi"), F.col("account_id")), 256), 1, 12).alias("wifi_password"),
        draw.integer("rssi", -90, -30).cast("int").alias("rssi"),
        F.col("dns_domain_0").alias("dns_domain"),
        draw.integer("up", 100, 5_000_000).alias("bytes_up"),
        draw.integer("down", 1_000, 50_000_000).alias("bytes_down"),
        "region",
    )


def health_measurements(spark: SparkSession, options: GenerateOptions, pools: dict) -> DataFrame:
    df, draw, row = _per_subject(spark, options, options.measurements_per_subject)
    subject_draw = Draw(options.seed, F.col("subject_index"))
    df = df.where(subject_draw.uniform("wearable") < 0.6)   # 60% of subjects use a wearable
    base_weight = 45 + subject_draw.uniform("weight") * 50
    fever = draw.uniform("fever") < 0.03
    return df.select(
        F.concat(F.lit("M"), F.col("row_index").cast("string")).alias("measurement_id"),
        "account_id",
        _timestamp_within(draw, "measured_at", options.as_of, 1400),
        F.round(base_weight + (draw.uniform("w") - 0.5) * 3, 1).alias("weight_kg"),
        F.round(F.when(fever, 37.8 + draw.uniform("t") * 1.7).otherwise(35.9 + draw.uniform("t") * 1.2), 1).alias("body_temp_c"),
        draw.integer("pulse", 48, 120).cast("int").alias("pulse_bpm"),
        draw.choice("ecg", [("normal sinus rhythm", 0.9), ("sinus tachycardia", 0.06),
                            ("premature ventricular contractions", 0.03), ("atrial fibrillation suspected", 0.01)]).alias("ecg_summary"),
        draw.integer("resp", 10, 22).cast("int").alias("respiration_rate"),
        "region",
    )


def consents(spark: SparkSession, options: GenerateOptions, pools: dict) -> DataFrame:
    df, draw, row = _per_subject(spark, options, 2)
    purpose = F.when(F.pmod(F.col("row_index"), F.lit(2)) == 0, F.lit("analytics")).otherwise(F.lit("research"))
    return df.select(
        "account_id", purpose.alias("purpose"),
        F.when(draw.uniform("withdrawn") < 0.12, F.lit("withdrawn")).otherwise(F.lit("granted")).alias("status"),
        _timestamp_within(draw, "changed_at", options.as_of, 1000), "region",
    )


def third_party_provisions(spark: SparkSession, options: GenerateOptions, pools: dict) -> DataFrame:
    df, draw, row = _per_subject(spark, options, 1)
    df = df.where(draw.uniform("provided") < 0.2)
    df = _pick(df, _pool_df(spark, "recipient", pools["recipient"]), "recipient", len(pools["recipient"]), draw.hash("recipient"))
    return df.select(
        F.concat(F.lit("P"), F.col("row_index").cast("string")).alias("provision_id"), "account_id",
        F.col("recipient_0").alias("recipient"), _timestamp_within(draw, "provided_at", options.as_of, 1400),
        draw.choice("categories", [("name,address", 0.5), ("purchase history", 0.3), ("device usage", 0.2)]).alias("categories"),
        "region",
    )


def restrictions(spark: SparkSession, options: GenerateOptions, pools: dict) -> DataFrame:
    df, draw, row = _per_subject(spark, options, 1)
    df = df.where(draw.uniform("restricted") < 0.03)
    return df.select("account_id", draw.choice("scope", [("all_processing", 0.4), ("analytics", 0.6)]).alias("scope"),
                     _timestamp_within(draw, "requested_at", options.as_of, 400), "region")


def legal_holds(spark: SparkSession, options: GenerateOptions, pools: dict) -> DataFrame:
    df, draw, row = _per_subject(spark, options, 1)
    df = df.where(draw.uniform("held") < 0.01)
    df = _pick(df, _pool_df(spark, "hold_reason", pools["hold_reason"]), "hold_reason", len(pools["hold_reason"]), draw.hash("reason"))
    return df.select(
        F.concat(F.lit("LH-"), F.col("row_index").cast("string")).alias("hold_id"), "account_id",
        F.when(draw.uniform("scope") < 0.5, F.lit("support_tickets")).alias("table_name"),
        F.col("hold_reason_0").alias("reason"),
        _timestamp_within(draw, "placed_at", options.as_of, 300),
        F.date_add(F.lit(options.as_of), draw.integer("until", 30, 500).cast("int")).alias("until"),
        "region",
    )


BUILDERS: dict[str, Callable[..., DataFrame]] = {
    "devices": devices, "network_events": network_events, "health_measurements": health_measurements,
    "consents": consents, "third_party_provisions": third_party_provisions,
    "restrictions": restrictions, "legal_holds": legal_holds,
}


def generate_lake(spark: SparkSession, policy: Policy, lake: Lake, options: GenerateOptions,
                  progress: Callable[[str], None] = lambda _: None) -> dict[str, int]:
    """Build every policy table and write it as Delta; returns row counts per table."""
    pools = build_pools(options.seed)
    frames: dict[str, DataFrame] = {"accounts": accounts(spark, options, pools)}
    frames["support_tickets"] = support_tickets(spark, options, frames["accounts"])
    for name, builder in BUILDERS.items():
        frames[name] = builder(spark, options, pools)
    # The policy is the contract: check every generated schema before the first write.
    for name, df in frames.items():
        if name not in policy.tables:
            raise InputError(f"generated table {name!r} is not in the policy {policy.source}")
        check_table_schema(policy, name, df.columns)
    counts: dict[str, int] = {}
    for name in policy.tables:
        if name not in frames:
            continue
        progress(f"writing {name}")
        write_policy_table(spark, lake, policy.tables[name], frames[name])
        counts[name] = read_now(spark, lake.table_path(policy.tables[name])).count()
    return counts
