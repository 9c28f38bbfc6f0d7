"""The generator's deterministic building blocks: options, seeded pseudo-random Columns, Faker pools,
and the per-subject attributes every table derives from (``jobs.generate`` builds the tables)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from anonymizers.frames import local_frame

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
    schema = ", ".join([f"{name}_idx long"] + [f"{name}_{i} string" for i in range(len(rows[0]))])
    return F.broadcast(local_frame(spark, [(i, *row) for i, row in enumerate(rows)], schema))


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



# ---------------------------------------------------------------- subject attributes

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


