"""Synthetic lake, deterministic by seed, modeled on the five seed privacy policies.

Faker (ja_JP, en_US) builds small pools once in Python; Spark expands them to any size. Every
value of a row is a pure function of (seed, row index) computed with Spark SQL functions (hashes,
substrings, pool look-ups via broadcast joins), so the same seed gives the same lake on any
cluster size, and 1M subjects / 100M events never loop in Python per row.

Identifiers that an erasure scan looks for (email, phone, My Number, card, passport, licence,
MAC, serial) are unique per subject: they are bijections of the subject index plus a check digit.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from anonymizers.checkdigits import (
    licence_check_digit_col, luhn_check_digit_col, my_number_check_digit_col, passport_check_digit_col,
)
from jobs.console import InputError
from jobs.lake import Lake, read_current, write_policy_table
from jobs.policy import Policy, check_table_schema

REGION_SHARES = [("JP", 0.70), ("US", 0.12), ("EU", 0.10), ("CN", 0.04), ("RU", 0.04)]
SUBJECT_PREFIX = "A"


def subject_id(index: int) -> str:
    """The id the generator gives subject number ``index`` (A000000042)."""
    return f"{SUBJECT_PREFIX}{index:09d}"

AS_OF = dt.date(2026, 11, 1)


@dataclass(frozen=True)
class GenerateOptions:
    subjects: int = 500
    events_per_subject: int = 20
    measurements_per_subject: int = 6
    seed: int = 42
    as_of: dt.date = AS_OF


# ---------------------------------------------------------------- deterministic column helpers

class Draw:
    """Deterministic pseudo-random Columns from (seed, salt, index)."""

    def __init__(self, seed: int, index: Column):
        self.seed = seed
        self.index = index

    def hash(self, salt: str) -> Column:
        return F.xxhash64(F.lit(self.seed), F.lit(salt), self.index)

    def uniform(self, salt: str) -> Column:
        return F.pmod(self.hash(salt), F.lit(1_000_003)) / F.lit(1_000_003.0)

    def integer(self, salt: str, low: int, high: int) -> Column:
        """Uniform integer in [low, high]."""
        return (F.pmod(self.hash(salt), F.lit(high - low + 1)) + F.lit(low)).cast("long")

    def choice(self, salt: str, options: list[tuple[str, float]]) -> Column:
        u = self.uniform(salt)
        expr, cumulative = None, 0.0
        for value, share in options[:-1]:
            cumulative += share
            expr = (F.when(u < cumulative, F.lit(value)) if expr is None
                    else expr.when(u < cumulative, F.lit(value)))
        return expr.otherwise(F.lit(options[-1][0]))


def _digits(index: Column, multiplier: int, offset: int, width: int) -> Column:
    """A bijection of the index onto `width`-digit strings (multiplier coprime with 10, and
    index * multiplier stays below 2**63 for up to 10**8 indexes)."""
    modulus = 10 ** width
    return F.lpad(F.pmod(index * F.lit(multiplier) + F.lit(offset), F.lit(modulus)).cast("string"), width, "0")


def _pool_df(spark: SparkSession, name: str, rows: list[tuple]) -> DataFrame:
    columns = [f"{name}_idx"] + [f"{name}_{i}" for i in range(len(rows[0]))]
    return F.broadcast(spark.createDataFrame([(i, *row) for i, row in enumerate(rows)], columns))


def _pick(df: DataFrame, pool: DataFrame, name: str, size: int, key: Column) -> DataFrame:
    return df.withColumn(f"{name}_idx", F.pmod(key, F.lit(size)).cast("long")).join(pool, f"{name}_idx").drop(f"{name}_idx")


# ---------------------------------------------------------------- pools (Faker, small)

def build_pools(seed: int) -> dict[str, list[tuple]]:
    from faker import Faker

    ja, en = Faker("ja_JP"), Faker("en_US")
    ja.seed_instance(seed)
    en.seed_instance(seed)
    names_ja = []
    for _ in range(800):
        last, first = ja.last_name_pair(), ja.first_name_pair()
        names_ja.append((f"{last[0]} {first[0]}", f"{last[1]} {first[1]}", f"{first[2]}.{last[2]}".lower()))
    names_en = []
    for _ in range(300):
        first, last = en.first_name(), en.last_name()
        names_en.append((f"{first} {last}", f"{last.upper()} {first.upper()}", f"{first}.{last}".lower()))
    addresses_ja = []
    for _ in range(800):
        prefecture, city = ja.prefecture(), ja.city()
        line = f"{ja.town()}{ja.chome()}{ja.ban()}{ja.gou()}"
        addresses_ja.append((ja.zipcode(), prefecture, city, line))
    addresses_en = []
    for _ in range(300):
        addresses_en.append((en.zipcode(), en.state(), en.city(), en.street_address()))
    return {
        "name_ja": names_ja, "name_en": names_en,
        "address_ja": addresses_ja, "address_en": addresses_en,
        "mail_domain": [(d,) for d in ["example.jp", "example.com", "mail.example.ne.jp", "example.org"]],
        "ssid": [(f"{ja.last_romanized_name()}-home-{ja.random_int(10, 99)}",) for _ in range(60)]
                + [(s,) for s in ["aterm-5g", "Buffalo-G-1234", "eduroam", "cafe-free-wifi", "HOME-NET"]],
        "dns_domain": [(d,) for d in ["news.example.jp", "shop.example.com", "video.example.net",
                                      "health.example.jp", "bank.example.co.jp", "sns.example.com",
                                      "maps.example.com", "game.example.jp", "mail.example.jp", "cdn.example.net"]],
        "model": [(m,) for m in ["SmartPlug S1", "Hub H2", "Camera C3", "Thermo T1", "Band W5", "Scale B2"]],
        "firmware": [(f"{a}.{b}.{c}",) for a in (1, 2) for b in range(4) for c in (0, 3, 7)],
        "recipient": [(r,) for r in ["Logistics KK", "Payment Processor Inc.", "Cloud Analytics GK",
                                     "Insurance Partner KK", "Advertising Network Ltd."]],
        "hold_reason": [(r,) for r in ["Litigation hold: contract dispute", "Regulator inquiry",
                                       "Fraud investigation", "Tax audit"]],
    }


# ---------------------------------------------------------------- tables

def _subject_attributes(draw: Draw, subject_index: Column, as_of: dt.date) -> dict[str, Column]:
    """Attributes every table derives from the subject index alone (no join needed)."""
    region = draw.choice("region", REGION_SHARES)
    age_kind = draw.uniform("age_kind")
    age = (F.when(age_kind < 0.08, draw.integer("age_minor", 10, 17))
           .when(age_kind < 0.09, draw.integer("age_old", 100, 116))
           .otherwise(draw.integer("age_adult", 18, 95)))
    birth_date = F.date_sub(F.lit(as_of), (age * 365 + draw.integer("birth_day", 0, 364)).cast("int"))
    return {
        "account_id": F.concat(F.lit(SUBJECT_PREFIX), F.lpad(subject_index.cast("string"), 9, "0")),
        "region": region,
        "birth_date": birth_date,
    }


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


def _per_subject(spark: SparkSession, options: GenerateOptions, per_subject: int) -> tuple[DataFrame, Draw, Column]:
    rows = spark.range(options.subjects * per_subject).withColumnRenamed("id", "row_index")
    row = F.col("row_index")
    subject_index = F.floor(row / per_subject).cast("long")
    rows = rows.withColumn("subject_index", subject_index)
    attrs = _subject_attributes(Draw(options.seed, F.col("subject_index")), F.col("subject_index"), options.as_of)
    rows = rows.withColumn("account_id", attrs["account_id"]).withColumn("region", attrs["region"])
    return rows, Draw(options.seed, row), row


def _timestamp_within(draw: Draw, salt: str, as_of: dt.date, days: int) -> Column:
    epoch = int(dt.datetime.combine(as_of, dt.time(), tzinfo=dt.timezone.utc).timestamp())
    return F.timestamp_seconds(F.lit(epoch) - draw.integer(salt, 0, days * 86400)).alias(salt)


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


# Ticket bodies quote their author's own values (name, kana, address, phone, email) and the
# identifiers the scrubber detects, in the forms people type: the recall of `scrub` and
# `scrub_own_values` is measured on them. Each {slot} is a column below; SLOT_KINDS says what it is.
TICKET_TEMPLATES = [
    "電話番号は{phone}です。折り返しご連絡ください。",
    "登録メール {email} にパスワード再設定のメールが届きません",
    "カード番号 {card} の請求が二重になっています。",
    "マイナンバー{my_number}を誤って入力しました。削除してください。",
    "Please call me back at {phone}, the hub keeps disconnecting.",
    "My email is {email}; I cannot log in since the update 🙏",
    "Charged twice on card {card_spaced}. Order ref 1234-5678-9012-3456.",
    "携帯：{phone_fullwidth}　までお願いします。",
    "デバイスの温度表示がおかしいです。再起動しても直りません。",
    "The scale shows wrong weight after firmware update.",
    "住民票コード：{juminhyo}。住所変更の手続きをお願いします。{name}（{phone}）",
    "住基カードの住民票コード {juminhyo_spaced} の登録を取り消してください（{kana}）",
    "引っ越しました。新住所は〒{postal} {prefecture}{city}{address_line}です。{name_nospace}",
    "{name}です。住所は{prefecture}{city}{address_hyphen}、電話は{phone_plain}です。",
    "基礎年金番号 {pension} を登録したいのですが、{surname}と申します。",
    "年金番号は{pension_plain}です。連絡先：{phone}",
    "保険証の記号は{hi_symbol}、番号は{hi_number}です（{kana}）",
    "保険者番号：{insurer}／被保険者 {name_fullwidth_space}／連絡先 {email}",
    "返金先口座：{bank}銀行 本店営業部 普通 {account} 名義 {kana_halfwidth}",
    "口座番号 {branch}-{account}（当座）にお願いします。メール：{email}",
    "ゆうちょ銀行 記号{yucho_symbol} 番号{yucho_number}に返金してください。{kana_hiragana}（{phone}）",
    "Router WAN IP is {ipv4} and the hub's MAC address is {mac}. — {name}",
    "IPv6 {ipv6} から接続できません。MAC：{mac_dash}　連絡先 {phone}",
    "The switch shows {mac_cisco} on port 3; last IP {ipv4}. Regards, {surname}",
    "This is {name} ({email_upper}). My phone number changed to {phone_intl}.",
    "{kana}様より入電。折り返し先 {phone_paren}",
    "連絡先メール {email_fullwidth}、お名前 {name}",
    "アカウント名義が{name_nospace}のままです。{kana_nospace}に変更できますか",
    "I am {name}, my postcode is {postal} and my pension number is {pension}. Email: {email}",
    "Health insurance card: insurer number {insurer}. Bank account: {branch} {account}.",
    "〒{postal}　{prefecture}{city}{address_line}　{name}様宛に交換品を送ってください。",
    "{surname}です。保険証（記号・番号 {hi_symbol}・{hi_number}）の写しを送ります。",
]
SLOT_KINDS = {
    "phone": "OWN_PHONE", "phone_fullwidth": "OWN_PHONE", "phone_plain": "OWN_PHONE", "phone_intl": "OWN_PHONE",
    "phone_paren": "OWN_PHONE", "email": "OWN_EMAIL", "email_upper": "OWN_EMAIL", "email_fullwidth": "OWN_EMAIL",
    "name": "OWN_NAME", "name_nospace": "OWN_NAME", "name_fullwidth_space": "OWN_NAME", "surname": "OWN_NAME",
    "kana": "OWN_KANA", "kana_nospace": "OWN_KANA", "kana_hiragana": "OWN_KANA", "kana_halfwidth": "OWN_KANA",
    "address_line": "OWN_ADDRESS", "address_hyphen": "OWN_ADDRESS",
    "card": "CARD", "card_spaced": "CARD", "my_number": "MYNUMBER",
    "juminhyo": "JUMINHYO", "juminhyo_spaced": "JUMINHYO", "pension": "PENSION", "pension_plain": "PENSION",
    "hi_symbol": "HEALTH_INSURANCE", "hi_number": "HEALTH_INSURANCE", "insurer": "HEALTH_INSURANCE",
    "account": "BANK_ACCOUNT", "yucho_symbol": "BANK_ACCOUNT", "yucho_number": "BANK_ACCOUNT",
    "postal": "POSTAL", "ipv4": "IP", "ipv6": "IP", "mac": "MAC", "mac_dash": "MAC", "mac_cisco": "MAC",
    # context, not identifying on its own
    "prefecture": None, "city": None, "branch": None, "bank": None,
}
_BANKS = ["みずほ", "三菱UFJ", "三井住友", "りそな", "横浜", "千葉", "福岡", "静岡"]


def _halfwidth_kana(column: Column) -> Column:
    """Katakana as half-width katakana (ヤマダ -> ﾔﾏﾀﾞ): a voiced kana becomes its base and a mark."""
    import unicodedata

    single, voiced, semi = {}, [], []
    for cp in range(0xFF66, 0xFF9E):
        full = unicodedata.normalize("NFKC", chr(cp))
        single[full] = chr(cp)
        for mark, marked in (("\u3099", voiced), ("\u309a", semi)):
            composed = unicodedata.normalize("NFC", full + mark)
            if len(composed) == 1:
                single[composed] = chr(cp)
                marked.append(composed)
    column = F.regexp_replace(column, f"([{''.join(voiced)}])", "$1ﾞ")
    column = F.regexp_replace(column, f"([{''.join(semi)}])", "$1ﾟ")
    return F.translate(column, "".join(single), "".join(single.values()))


def _ticket_slots(draw: Draw) -> dict[str, Column]:
    """The Column of every template slot (account columns and deterministic draws)."""
    phone, email = F.col("phone"), F.col("email")
    name, kana = F.col("name_kanji"), F.col("name_kana")
    is_ja = F.col("region") == "JP"
    parts = F.split(name, " ")
    # Surname for Japanese names, last name for the others; too short to be told apart: the full name.
    surname = F.when(is_ja, F.element_at(parts, 1)).otherwise(F.element_at(parts, -1))
    surname = F.when(F.length(surname) >= F.when(is_ja, 2).otherwise(3), surname).otherwise(F.regexp_replace(name, " ", ""))
    hira = "".join(chr(cp) for cp in range(0x3041, 0x3097))
    kata = "".join(chr(cp + 0x60) for cp in range(0x3041, 0x3097))

    def digits(salt: str, width: int, first_nonzero: bool = False) -> Column:
        low = 10 ** (width - 1) if first_nonzero else 0
        return F.lpad(draw.integer(salt, low, 10 ** width - 1).cast("string"), width, "0")

    def hex_group(salt: str) -> Column:
        return F.lower(F.hex(draw.integer(salt, 1, 65535)))

    juminhyo = digits("juminhyo", 11, first_nonzero=True)
    insurer_payload = F.concat(draw.choice("hobetsu", [("01", 0.4), ("06", 0.3), ("31", 0.1), ("39", 0.2)]),
                               F.lpad(draw.integer("hi_pref", 1, 47).cast("string"), 2, "0"), digits("hi_insurer", 3))
    mac = F.concat(F.lit("a4"), F.lpad(F.lower(F.hex(draw.integer("mac", 0, 2 ** 40 - 1))), 10, "0"))
    mac_colon = F.regexp_replace(mac, "(..)(?!$)", "$1:")
    pension = F.concat(digits("pension_office", 4, first_nonzero=True), F.lit("-"), digits("pension_serial", 6))
    return {
        "phone": phone, "email": email, "card": F.col("card_number"), "my_number": F.col("my_number"),
        "phone_fullwidth": F.translate(phone, "0123456789-+", "０１２３４５６７８９－＋"),
        "phone_plain": F.regexp_replace(phone, "[^0-9+]", ""),
        "phone_intl": F.when(phone.startswith("0"), F.concat(F.lit("+81 "), F.substring(phone, 2, 20))).otherwise(phone),
        "phone_paren": F.when(phone.startswith("0"), F.regexp_replace(phone, "^(0[0-9]+)-", "($1)"))
                        .otherwise(F.regexp_replace(phone, "^\\+1-([0-9]{3})-", "+1 ($1) ")),
        "email_upper": F.upper(email),
        "email_fullwidth": F.translate(email, "0123456789@.abcdefghijklmnopqrstuvwxyz",
                                       "０１２３４５６７８９＠．ａｂｃｄｅｆｇｈｉｊｋｌｍｎｏｐｑｒｓｔｕｖｗｘｙｚ"),
        "card_spaced": F.regexp_replace(F.col("card_number"), "(\\d{4})(?!$)", "$1 "),
        "name": name, "name_nospace": F.regexp_replace(name, " ", ""),
        "name_fullwidth_space": F.regexp_replace(name, " ", "　"), "surname": surname,
        "kana": kana, "kana_nospace": F.regexp_replace(kana, " ", ""),
        "kana_hiragana": F.translate(kana, kata, hira), "kana_halfwidth": _halfwidth_kana(kana),
        "prefecture": F.col("prefecture"), "city": F.col("city"), "address_line": F.col("address_line"),
        "address_hyphen": F.regexp_replace(F.col("address_line"), "([0-9]+)丁目([0-9]+)番([0-9]+)号", "$1-$2-$3"),
        "juminhyo": juminhyo,
        "juminhyo_spaced": F.concat_ws(" ", F.substring(juminhyo, 1, 4), F.substring(juminhyo, 5, 4), F.substring(juminhyo, 9, 3)),
        "pension": pension, "pension_plain": F.regexp_replace(pension, "-", ""),
        "hi_symbol": digits("hi_symbol", 4, first_nonzero=True), "hi_number": draw.integer("hi_number", 100, 9_999_999).cast("string"),
        "insurer": F.concat(insurer_payload, luhn_check_digit_col(insurer_payload, 7)),
        "bank": draw.choice("bank", [(b, 1 / len(_BANKS)) for b in _BANKS]),
        "branch": digits("branch", 3), "account": digits("account", 7),
        "yucho_symbol": F.concat(F.lit("1"), digits("yucho_symbol", 3), F.lit("0")),
        "yucho_number": F.concat(digits("yucho_number", 7, first_nonzero=True), F.lit("1")),
        "postal": F.concat(digits("postal3", 3, first_nonzero=True), F.lit("-"), digits("postal4", 4)),
        "ipv4": F.concat_ws(".", draw.integer("ip1", 1, 223), draw.integer("ip2", 0, 255), draw.integer("ip3", 0, 255),
                            draw.integer("ip4", 1, 254)),
        "ipv6": F.concat(F.lit("2001:db8:"), hex_group("ip6a"), F.lit(":"), hex_group("ip6b"), F.lit("::"), hex_group("ip6c")),
        "mac": F.upper(mac_colon), "mac_dash": F.regexp_replace(mac_colon, ":", "-"),
        "mac_cisco": F.regexp_replace(mac, "(....)(?!$)", "$1."),
    }


def support_tickets(spark: SparkSession, options: GenerateOptions, account_df: DataFrame,
                    with_planted: bool = False) -> DataFrame:
    """One ticket for ~30% of subjects. ``with_planted`` adds ``planted`` (array of kind/value: what
    the body quotes, for recall tests); the lake table never has it."""
    from string import Formatter

    df = account_df.select("account_id", "email", "phone", "card_number", "my_number", "name_kanji", "name_kana",
                           "prefecture", "city", "address_line", "region",
                           F.col("created_at").alias("account_created_at"))
    draw = Draw(options.seed, F.xxhash64(F.col("account_id")))
    df = df.where(draw.uniform("has_ticket") < 0.3)
    template_index = F.pmod(draw.hash("template"), F.lit(len(TICKET_TEMPLATES)))
    template = F.element_at(F.array(*[F.lit(t) for t in TICKET_TEMPLATES]), (template_index + 1).cast("int"))
    slots = {name: F.coalesce(column, F.lit("")) for name, column in _ticket_slots(draw).items()}
    used = {field for t in TICKET_TEMPLATES for _, field, _, _ in Formatter().parse(t) if field}
    # Every slot once, whatever the template (a template without it is left as it is): the
    # generated code stays small, one expression per slot rather than one per template and slot.
    body = template
    for name in sorted(used):
        body = F.replace(body, F.lit("{" + name + "}"), slots[name])
    planted = F.transform(
        F.filter(F.array(*[F.struct(F.lit("{" + n + "}").alias("slot"), F.lit(SLOT_KINDS[n]).alias("kind"),
                                    slots[n].alias("value")) for n in sorted(used) if SLOT_KINDS[n]]),
                 lambda s: template.contains(s["slot"])),
        lambda s: F.struct(s["kind"].alias("kind"), s["value"].alias("value")))
    return df.select(
        F.concat(F.lit("T"), F.substring(F.sha2(F.col("account_id"), 256), 1, 12)).alias("ticket_id"),
        "account_id",
        _timestamp_within(draw, "created_at", options.as_of, 900),
        draw.choice("channel", [("web", 0.6), ("phone", 0.25), ("store", 0.15)]).alias("channel"),
        body.alias("body"),
        "region",
        *([planted.alias("planted")] if with_planted else []),
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
        counts[name] = read_current(spark, lake.table_path(policy.tables[name])).count()
    return counts
