"""Negative tests of the re-identification gates: each expectation catches a deliberately broken
tiny dataset, accepts a clean one, and never echoes a planted personal value.

Per-expectation tests validate with result_format COMPLETE, the most verbose GE has (it includes
the rows the SQL metric fetched), so "no value in the result" is checked at its worst case.
"""
from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import itertools
import json
from datetime import date
from pathlib import Path

import pytest

from anonymizers.pseudonym import pseudonym_of

PLANTED = "taro@example.jp"  # a personal value that must never appear in any message or result
PLANTED_NAME = "山田太郎"

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def gx_validate(spark):
    """validate(df, expectation, table) -> ExpectationValidationResult on an ephemeral context."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    counter = itertools.count()

    def validate(df, expectation, table="people"):
        # persist=False: caching a 4-row batch costs more than rescanning it.
        datasource = context.data_sources.add_spark(name=f"test_{next(counter)}", persist=False)
        batch_definition = datasource.add_dataframe_asset(name=table).add_batch_definition_whole_dataframe("all")
        batch = batch_definition.get_batch(batch_parameters={"dataframe": df})
        return batch.validate(expectation, result_format="COMPLETE")

    return validate


def _text(evr) -> str:
    return json.dumps(evr.to_json_dict(), ensure_ascii=False, default=str)


def _assert_caught(evr, *fragments):
    text = _text(evr)
    assert evr.success is False, text
    assert not evr.exception_info.get("raised_exception"), text
    message = evr.result["details"]["message"]
    for fragment in fragments:
        assert fragment in message, message
    for planted in (PLANTED, PLANTED.upper(), PLANTED_NAME):
        assert planted not in text
    return message


def _assert_passed(evr):
    assert evr.success is True, _text(evr)
    assert "passed" in evr.result["details"]["message"]


# --------------------------------------------------------------------------------------------
# k-anonymity and l-diversity
# --------------------------------------------------------------------------------------------


def test_k_anonymity(spark, gx_validate):
    from expectations import ExpectQuasiIdentifierClassesToHaveAtLeastK

    expectation = ExpectQuasiIdentifierClassesToHaveAtLeastK(quasi_identifiers=["age_band", "pref"], k=2)
    # The singleton class's QI value is the planted address: its class must be reported by size only.
    bad = spark.createDataFrame(
        [("30-34", "Tokyo"), ("30-34", "Tokyo"), ("30-34", "Tokyo"), ("35-39", PLANTED)], "age_band string, pref string"
    )
    message = _assert_caught(
        gx_validate(bad, expectation, "release_health"),
        "ExpectQuasiIdentifierClassesToHaveAtLeastK",
        "table 'release_health'",
        "age_band, pref",
        "1 equivalence class has fewer than k=2 rows",
    )
    assert "smallest class 1" in message
    good = spark.createDataFrame([("30-34", "Tokyo")] * 2 + [("35-39", "Osaka")] * 2, "age_band string, pref string")
    _assert_passed(gx_validate(good, expectation))


def test_l_diversity_distinct_and_entropy(spark, gx_validate):
    from expectations import ExpectSensitiveAttributeToBeLDiverse

    def expectation(variant):
        return ExpectSensitiveAttributeToBeLDiverse(
            quasi_identifiers=["age_band"], sensitive_column="diagnosis", l=2, variant=variant
        )

    schema = "age_band string, diagnosis string"
    # Class 35-39 holds one sensitive value only (the planted one): homogeneity attack.
    bad = spark.createDataFrame(
        [("30-34", "flu"), ("30-34", "cold"), ("35-39", PLANTED), ("35-39", PLANTED)], schema
    )
    _assert_caught(
        gx_validate(bad, expectation("distinct")),
        "ExpectSensitiveAttributeToBeLDiverse",
        "column diagnosis",
        "1 equivalence class over (age_band) has fewer than l=2 distinct values (lowest 1)",
    )
    # Two distinct values but skewed 3:1: distinct 2-diverse, yet entropy exp(H)=1.75 < 2.
    skewed = spark.createDataFrame([("30-34", "flu")] * 3 + [("30-34", "cold")], schema)
    _assert_passed(gx_validate(skewed, expectation("distinct")))
    message = _assert_caught(gx_validate(skewed, expectation("entropy")), "entropy below log(l=2)")
    assert "1.755" in message
    # Exactly balanced: H == ln 2, which must pass despite floating point.
    balanced = spark.createDataFrame([("30-34", "flu"), ("30-34", "cold"), ("35-39", "flu"), ("35-39", None), ("35-39", "cold")], schema)
    _assert_passed(gx_validate(balanced, expectation("entropy")))


# --------------------------------------------------------------------------------------------
# Release content: forbidden columns, copied values, unkeyed hashes, rare values
# --------------------------------------------------------------------------------------------


def test_no_forbidden_columns(spark, gx_validate):
    from expectations import ExpectNoForbiddenColumns

    expectation = ExpectNoForbiddenColumns(forbidden_columns={"email": "identifying", "my_number": "individual_code"})
    bad = spark.createDataFrame([(PLANTED, "123456789018", "30-34")], "email string, My_Number string, age_band string")
    _assert_caught(
        gx_validate(bad, expectation, "release_health"),
        "ExpectNoForbiddenColumns",
        "2 forbidden columns present: email (identifying), My_Number (individual_code)",
    )
    good = spark.createDataFrame([("30-34",)], "age_band string")
    _assert_passed(gx_validate(good, ExpectNoForbiddenColumns(forbidden_columns=["email", "my_number"])))


@pytest.fixture(scope="module")
def source_identifiers(spark):
    return spark.createDataFrame(
        [(PLANTED, PLANTED_NAME), ("hanako@example.jp", "佐藤花子"), (None, "  ")], "email string, name_kanji string"
    )


@pytest.mark.parametrize("source_distinct", [False, True])
def test_no_source_values_in_columns(spark, gx_validate, source_identifiers, source_distinct):
    from expectations import ExpectNoSourceValuesInColumns

    expectation = ExpectNoSourceValuesInColumns(
        output_columns=["contact", "note"], source=source_identifiers, source_columns=["email", "name_kanji"],
        source_distinct=source_distinct,
    )
    # A caller that vouches for distinct source values saves the query's DISTINCT (a shuffle).
    assert ("SELECT DISTINCT" in expectation.unexpected_rows_query) is not source_distinct
    # The view name, not the DataFrame, is what the expectation stores and serializes.
    assert expectation.source.startswith("wasure_source_")
    bad = spark.createDataFrame(
        [(f" {PLANTED.upper()}", "fine"), ("p-1", PLANTED_NAME), ("p-2", "")], "contact string, note string"
    )
    _assert_caught(
        gx_validate(bad, expectation, "release_health"),
        "ExpectNoSourceValuesInColumns",
        "columns contact, note",
        "2 columns contain raw identifying values of the source: contact (1 row), note (1 row)",
    )
    # A temp view name works too, and blank source values do not match blank output values.
    source_identifiers.createOrReplaceTempView("test_source_ids")
    by_view = ExpectNoSourceValuesInColumns(output_columns=["contact", "note"], source="test_source_ids")
    assert by_view.source_columns == ["email", "name_kanji"]
    good = spark.createDataFrame([("p-1", "  "), ("p-2", None)], "contact string, note string")
    _assert_passed(gx_validate(good, by_view))


def test_source_values_against_prints_built_once(spark, gx_validate, source_identifiers):
    """The source's fingerprints and lengths built once (``source_prints``, for several purposes'
    outputs) find what the check finds on its own; the join reads them from the cache, partitioned
    as it needs (only the cells shuffle); an empty source matches nothing."""
    from expectations import ExpectNoSourceValuesInColumns
    from expectations.source_prints import source_prints

    prints = source_prints(source_identifiers)
    try:
        assert prints.lengths == tuple(sorted({len(PLANTED), len(PLANTED_NAME), len("hanako@example.jp"), 4}))
        expectation = ExpectNoSourceValuesInColumns(output_columns=["contact", "note"], source=source_identifiers,
                                                    source_prints=prints.frame, source_lengths=list(prints.lengths))
        assert "collect_set" not in expectation.unexpected_rows_query
        bad = spark.createDataFrame([(f" {PLANTED.upper()}", "fine"), ("p-1", PLANTED_NAME), ("p-2", "")],
                                    "contact string, note string")
        _assert_caught(gx_validate(bad, expectation, "release_health"),
                       "2 columns contain raw identifying values of the source: contact (1 row), note (1 row)")
        bad.createOrReplaceTempView("prints_test_batch")
        plan = spark.sql(expectation.unexpected_rows_query.format(batch="prints_test_batch"))._jdf.queryExecution() \
            .executedPlan().toString()
        join = plan[plan.index("ShuffledHashJoin"):plan.index("InMemoryRelation")]
        assert join.count("Exchange hashpartitioning") == 1 and "InMemoryTableScan" in join, plan
    finally:
        prints.frame.unpersist()
    nothing = source_prints(spark.createDataFrame([(None,), (" ",)], "email string"))
    try:
        assert nothing.lengths == ()
        expectation = ExpectNoSourceValuesInColumns(output_columns=["contact"], source=source_identifiers,
                                                    source_prints=nothing.frame, source_lengths=[])
        _assert_passed(gx_validate(spark.createDataFrame([(PLANTED,)], "contact string"), expectation))
    finally:
        nothing.frame.unpersist()


@pytest.mark.parametrize("source_distinct", [False, True])
def test_pseudonyms_not_unkeyed_hashes(spark, gx_validate, source_distinct):
    from expectations import ExpectPseudonymsNotUnkeyedHashes

    # Full-width, padded with an ideographic space: only NFKC + strip + lowercase reach PLANTED.
    messy = "\u3000ＴＡＲＯ＠ｅｘａｍｐｌｅ．ｊｐ "
    source = spark.createDataFrame([(messy, "A000000001"), ("hanako@example.jp", "A000000002")], "email string, account_id string")
    expectation = ExpectPseudonymsNotUnkeyedHashes(pseudonym_columns=["email_pseudonym", "account_pseudonym"], source=source,
                                                   source_distinct=source_distinct)
    assert ("SELECT DISTINCT" in expectation.unexpected_rows_query) is not source_distinct
    assert "SHUFFLE_HASH(d)" in expectation.unexpected_rows_query
    bad = spark.createDataFrame(
        [
            (hashlib.sha256(PLANTED.encode()).hexdigest(), "k1"),  # normalized form, sha256
            (hashlib.md5(b"hanako@example.jp").hexdigest().upper(), "k2"),  # raw, md5, upper-case hex
            ("k3", hashlib.sha1(b"A000000001").hexdigest()),  # linking code, sha1
            ("k4", "k5"),
            # the 128-bit base64url form of wasure's own pseudonyms, but unkeyed: sha256, and md5 whole
            (base64.urlsafe_b64encode(hashlib.sha256(b"hanako@example.jp").digest()[:16]).rstrip(b"=").decode(), "k6"),
            ("k7", base64.urlsafe_b64encode(hashlib.md5(b"A000000002").digest()).rstrip(b"=").decode()),
        ],
        "email_pseudonym string, account_pseudonym string",
    )
    evr = gx_validate(bad, expectation, "pseudonymized_accounts")
    message = _assert_caught(
        evr,
        "ExpectPseudonymsNotUnkeyedHashes",
        "2 pseudonym columns hold unkeyed hashes of source identifiers",
        "email_pseudonym (3 rows)",
        "account_pseudonym (2 rows)",
    )
    assert hashlib.sha256(PLANTED.encode()).hexdigest() not in _text(evr) + message
    key = b"purpose-key-svc-2026-11"
    good = spark.createDataFrame(
        [
            (hmac.new(key, PLANTED.encode(), hashlib.sha256).hexdigest(), hmac.new(key, b"A000000001", hashlib.sha256).hexdigest()),
            (pseudonym_of(key * 2, PLANTED), pseudonym_of(key * 2, "A000000002")),     # keyed, 128-bit base64url
        ],
        "email_pseudonym string, account_pseudonym string",
    )
    _assert_passed(gx_validate(good, expectation))


def test_unkeyed_hashes_against_digests_built_once(spark, gx_validate):
    """Digests built once (``unkeyed_digests``, for several purposes' outputs) find what the check
    finds on its own; a pseudonym of a digest length they were not built for fails as unchecked;
    and the join against them shuffles the pseudonym side only (the digests are pre-partitioned)."""
    from expectations import ExpectPseudonymsNotUnkeyedHashes
    from expectations.digests import unkeyed_digests

    source = spark.createDataFrame([(PLANTED,), ("A000000001",)], "v string")
    hexed = hashlib.sha256(PLANTED.encode()).hexdigest()
    short = base64.urlsafe_b64encode(hashlib.md5(b"A000000001").digest()).rstrip(b"=").decode()
    bad = spark.createDataFrame([(hexed, "k1"), ("k2", short), ("k3", short), ("short", None)], "p string, q string")
    everything = unkeyed_digests(source, [22, 64, 5], source_distinct=True)
    assert everything.lengths == (22, 64) and everything.algorithms == ("md5", "sha1", "sha256")
    everything.frame.persist()
    try:
        check = ExpectPseudonymsNotUnkeyedHashes(pseudonym_columns=["p", "q"], source=source,
                                                 digests=everything.frame, digest_lengths=list(everything.lengths))
        assert check.digests.startswith("wasure_digests_")
        message = _assert_caught(gx_validate(bad, check), "2 pseudonym columns hold unkeyed hashes of source identifiers: "
                                 "p (1 row), q (2 rows)")
        assert "unchecked" not in message
        bad.createOrReplaceTempView("digests_test_batch")
        plan = spark.sql(check.unexpected_rows_query.format(batch="digests_test_batch"))._jdf.queryExecution() \
            .executedPlan().toString()
        join = plan[plan.index("ShuffledHashJoin"):plan.index("InMemoryRelation")]
        # the digests are read from the cache, partitioned as the join needs: only the cells shuffle
        assert join.count("Exchange hashpartitioning") == 1 and "InMemoryTableScan" in join, plan

        only_22 = unkeyed_digests(source, [22], source_distinct=True)
        check = ExpectPseudonymsNotUnkeyedHashes(pseudonym_columns=["p", "q"], source=source,
                                                 digests=only_22.frame, digest_lengths=[22])
        message = _assert_caught(gx_validate(bad, check), "1 pseudonym column holds unkeyed hashes of source identifiers: "
                                 "q (2 rows)", "1 pseudonym column holds values of a digest's length the given digests "
                                 "do not cover (lengths [22]), unchecked: p (1 row)")
        assert hexed not in message
        # Matches and unchecked cells come from ONE read of the batch, and digests that repeat a
        # fingerprint (a lake-wide set need not be distinct) count a matching cell once.
        plan = spark.sql(check.unexpected_rows_query.format(batch="digests_test_batch"))._jdf.queryExecution() \
            .executedPlan().toString()
        assert plan.count("Scan ExistingRDD[p#") == 1 and "ExistenceJoin" in plan, plan
        twice = ExpectPseudonymsNotUnkeyedHashes(pseudonym_columns=["p", "q"], source=source,
                                                 digests=only_22.frame.unionAll(only_22.frame), digest_lengths=[22])
        assert _assert_caught(gx_validate(bad, twice), "q (2 rows)", "unchecked: p (1 row)") == message
        good = spark.createDataFrame([(pseudonym_of(b"k" * 32, PLANTED), None)], "p string, q string")
        _assert_passed(gx_validate(good, check))
        # Digests of every length a digest text has: a semi-join, nothing unchecked; of none: every
        # cell of a digest's length is unchecked.
        from expectations.digests import digest_lengths
        every = unkeyed_digests(source, digest_lengths(), source_distinct=True)
        check = ExpectPseudonymsNotUnkeyedHashes(pseudonym_columns=["p", "q"], source=source,
                                                 digests=every.frame, digest_lengths=list(every.lengths))
        assert "EXISTS" not in check.unexpected_rows_query
        assert "unchecked" not in _assert_caught(gx_validate(bad, check), "p (1 row), q (2 rows)")
        none = unkeyed_digests(source, [5], source_distinct=True)
        assert none.lengths == ()
        check = ExpectPseudonymsNotUnkeyedHashes(pseudonym_columns=["p", "q"], source=source,
                                                 digests=none.frame, digest_lengths=[])
        _assert_caught(gx_validate(bad, check), "unchecked: p (1 row), q (2 rows)")
    finally:
        everything.frame.unpersist()


def test_unkeyed_hash_candidates_are_every_normalized_form(spark):
    """The 8 forms the check hashes equal NFKC / strip / lowercase done in Python (strip = the ASCII
    whitespace of Java's \\s, U+3000 and NBSP; U+2003 is not stripped)."""
    import unicodedata

    from expectations.digests import forms_sql

    def strip(x):
        return x.strip(" \t\n\x0b\x0c\r\u3000\xa0")

    values = ["\tＡbc\x0c", "\xa0x Y\u3000", "\u2003em ", "plain", "Ｆｆ\x0b", "f\x0cf", " ", ""]
    spark.createDataFrame([(v,) for v in values], "v string").createOrReplaceTempView("form_values")
    got = {r.f for r in spark.sql(forms_sql("form_values")).collect()}
    expected = set()
    for v in values:
        for n in (v, unicodedata.normalize("NFKC", v)):
            for s in (n, strip(n)):
                expected |= {s, s.lower()}
    assert got == expected


def test_digest_texts_are_the_lowercased_hex_and_base64url_forms_python_writes(spark):
    """Every text form the unkeyed-hash check compares with, for every algorithm: lowercase hex,
    unpadded base64url of the whole digest and of its first 16 bytes, lowercased, exactly as
    hashlib + base64 write them. The values give digests whose base64 holds both '+' and '/' (the
    characters base64url swaps); the algorithms' lengths give every padding length, and sha512's
    text is longer than a MIME line of Spark's base64()."""
    from expectations.digests import DIGESTS, digest_lengths, digests_sql

    values = [f"v{i}" for i in range(40)]
    spark.createDataFrame([(v,) for v in values], "v string").createOrReplaceTempView("digest_values")
    expected, alphabet = set(), set()
    for v in values:
        for name in DIGESTS:
            digest = hashlib.new(name, v.encode()).digest()
            for part in (digest, digest[:16]):
                encoded = base64.b64encode(part).decode().rstrip("=")
                alphabet |= set(encoded) & {"+", "/"}
                expected.add(base64.urlsafe_b64encode(part).decode().rstrip("=").lower())
            expected.add(digest.hex())
    assert alphabet == {"+", "/"}
    query = digests_sql("SELECT v FROM digest_values", True, list(DIGESTS), digest_lengths(DIGESTS))
    assert {r.h for r in spark.sql(query).collect()} == expected


def test_the_jvm_digests_write_the_texts_the_sql_writes(spark):
    """wasure-udf.jar's UnkeyedDigests (``jvm_digests``) writes, for every algorithm and every choice
    of lengths, the texts the SQL forms write, for ASCII and non-ASCII values (UTF-8 bytes), padded
    and empty ones, and a value whose sha512 base64 is longer than a MIME line; ``unkeyed_digests``
    builds its set with it."""
    from expectations.digests import DIGESTS, digest_lengths, digests_sql, jvm_digests, unkeyed_digests

    values = [f"v{i}" for i in range(40)] + ["山田　太郎", "ＡＢＣ１２３", " é\t", "", "x" * 200, "\u00a0Mixed-Case_01"]
    source = spark.createDataFrame([(v,) for v in values], "v string")
    source.createOrReplaceTempView("jvm_digest_values")
    for algorithms, lengths in ((list(DIGESTS), digest_lengths(DIGESTS)), (["md5", "sha1", "sha256"], [22]),
                                (["sha256"], [64, 43]), (["sha1"], [40])):
        function = jvm_digests(spark, algorithms, lengths)
        assert function is not None
        sql, jvm = (spark.sql(digests_sql("SELECT v FROM jvm_digest_values", False, algorithms, lengths, "", f))
                    for f in (None, function))
        assert sorted(r.h for r in jvm.collect()) == sorted(r.h for r in sql.collect()), (algorithms, lengths)
    digests = unkeyed_digests(source, [22])
    assert "unkeyed_digests_" in digests.frame._jdf.queryExecution().analyzed().toString()
    expected = spark.sql(f"SELECT xxhash64(h) AS fa, hash(h) AS fb FROM ("
                         f"{digests_sql('SELECT v FROM jvm_digest_values', False, ['md5', 'sha1', 'sha256'], [22])}) d")
    assert digests.frame.exceptAll(expected).count() == 0 and expected.exceptAll(digests.frame).count() == 0


def test_no_rare_values(spark, gx_validate):
    from expectations import ExpectNoRareValues

    expectation = ExpectNoRareValues(numeric_bounds={"age": (0, 89)}, category_min_counts={"occupation": 2})
    schema = "age int, occupation string"
    bad = spark.createDataFrame([(30, "clerk"), (31, "clerk"), (104, "clerk"), (40, PLANTED)], schema)
    _assert_caught(
        gx_validate(bad, expectation, "release_health"),
        "ExpectNoRareValues",
        "columns age, occupation",
        "age: 1 row outside [0.0, 89.0]",
        "occupation: 1 value seen in fewer than 2 rows (1 row)",
    )
    good = spark.createDataFrame([(30, "clerk"), (89, "clerk"), (0, None)], schema)
    _assert_passed(gx_validate(good, expectation))


# --------------------------------------------------------------------------------------------
# Lake tables: retention, erasure, region
# --------------------------------------------------------------------------------------------


def test_no_rows_past_retention_with_holds(spark, gx_validate):
    from expectations import ExpectNoRowsPastRetention

    held = spark.createDataFrame([("A000000007",)], "account_id string")
    expectation = ExpectNoRowsPastRetention(
        date_column="created_at", cutoff=date(2020, 1, 1), subject_column="account_id", held_subjects=held
    )
    schema = "account_id string, email string, created_at date"
    rows = [
        ("A000000007", "held@example.jp", date(2019, 1, 1)),  # expired but under legal hold
        ("A000000002", PLANTED, date(2019, 12, 31)),  # expired
        ("A000000003", "new@example.jp", date(2020, 1, 1)),  # on the cutoff: kept
    ]
    _assert_caught(
        gx_validate(spark.createDataFrame(rows, schema), expectation, "accounts"),
        "ExpectNoRowsPastRetention",
        "column created_at",
        "1 row older than the cutoff 2020-01-01 (1 older row kept for held subjects)",
    )
    _assert_passed(gx_validate(spark.createDataFrame([rows[0], rows[2]], schema), expectation))


def test_no_erased_subjects(spark, gx_validate):
    from expectations import ExpectNoErasedSubjects

    key = b"erasure-ledger-key"

    def keyed(subject):
        return hmac.new(key, subject.encode(), hashlib.sha256).hexdigest()

    ledger = spark.createDataFrame([(keyed("A000000002"),)], "subject_hash string")
    expectation = ExpectNoErasedSubjects(hash_column="subject_hash", ledger=ledger)
    schema = "subject_hash string, email string"
    bad = spark.createDataFrame([(keyed("A000000002"), PLANTED), (keyed("A000000002"), PLANTED), (keyed("A000000003"), "x")], schema)
    _assert_caught(
        gx_validate(bad, expectation, "events"),
        "ExpectNoErasedSubjects",
        "column subject_hash",
        "2 rows of 1 erased subject still present",
    )
    _assert_passed(gx_validate(spark.createDataFrame([(keyed("A000000003"), "x")], schema), expectation))


def test_region_column_to_equal(spark, gx_validate):
    from expectations import ExpectRegionColumnToEqual

    expectation = ExpectRegionColumnToEqual(region_column="region", region="JP")
    schema = "email string, region string"
    bad = spark.createDataFrame([(PLANTED, "JP"), ("a", "US"), ("b", None), ("c", "EU")], schema)
    _assert_caught(
        gx_validate(bad, expectation, "accounts_jp"),
        "ExpectRegionColumnToEqual",
        "3 rows not of region JP (2 other regions, 1 null)",
    )
    _assert_passed(gx_validate(spark.createDataFrame([("a", "JP")], schema), expectation))


# --------------------------------------------------------------------------------------------
# Parameters, serialization, package boundaries (no Spark job)
# --------------------------------------------------------------------------------------------


def test_expectations_are_registered_and_round_trip():
    from great_expectations.expectations.registry import get_expectation_impl

    import expectations as ex

    samples = [
        ex.ExpectQuasiIdentifierClassesToHaveAtLeastK(quasi_identifiers=["a", "b"], k=5),
        ex.ExpectSensitiveAttributeToBeLDiverse(quasi_identifiers=["a"], sensitive_column="s", l=3, variant="entropy"),
        ex.ExpectNoForbiddenColumns(forbidden_columns=["email"]),
        ex.ExpectNoSourceValuesInColumns(output_columns=["x"], source="src", source_columns=["email"]),
        ex.ExpectPseudonymsNotUnkeyedHashes(pseudonym_columns=["p"], source="src", source_columns=["email"]),
        ex.ExpectNoRareValues(numeric_bounds={"age": (None, 90)}),
        ex.ExpectNoRowsPastRetention(date_column="d", cutoff="2026-01-31 12:00:00"),
        ex.ExpectNoErasedSubjects(hash_column="h", ledger="ledger"),
        ex.ExpectRegionColumnToEqual(region_column="region", region="JP"),
    ]
    assert {type(s) for s in samples} == set(ex.WASURE_EXPECTATIONS)
    for sample in samples:
        assert get_expectation_impl(sample.expectation_type) is type(sample)
        config = sample.configuration
        json.dumps(config.to_json_dict())  # parameters serialize: no DataFrame inside
        assert config.to_domain_obj() == sample
        assert sample.description


@pytest.mark.parametrize(
    "build",
    [
        lambda ex: ex.ExpectRegionColumnToEqual(region_column="region", region="JP' OR '1'='1"),
        lambda ex: ex.ExpectNoErasedSubjects(hash_column="h", ledger="ledger; DROP TABLE x"),
        lambda ex: ex.ExpectNoRowsPastRetention(date_column="d", cutoff="last tuesday"),
        lambda ex: ex.ExpectNoRowsPastRetention(date_column="d", cutoff="2026-01-01", held_subjects="holds"),
        lambda ex: ex.ExpectNoRareValues(),
        lambda ex: ex.ExpectNoRareValues(numeric_bounds={"age": (90, 10)}),
        lambda ex: ex.ExpectSensitiveAttributeToBeLDiverse(quasi_identifiers=["a"], sensitive_column="a", l=2),
        lambda ex: ex.ExpectPseudonymsNotUnkeyedHashes(pseudonym_columns=["p"], source="s", source_columns=["e"], algorithms=["crc32"]),
        lambda ex: ex.ExpectQuasiIdentifierClassesToHaveAtLeastK(quasi_identifiers=[], k=2),
    ],
)
def test_bad_parameters_are_rejected(build):
    import expectations as ex
    from great_expectations.compatibility.pydantic import ValidationError

    with pytest.raises((ValueError, ValidationError)):
        build(ex)


def test_suite_builders_and_forbidden_classes():
    import expectations as ex
    from jobs.policy import PSEUDONYMIZED_FORBIDDEN, RELEASE_FORBIDDEN

    classes = {"email": "identifying", "my_number": "individual_code", "card_number": "property_damage",
               "account_id": "linking_code", "birth_date": "quasi_identifier", "body_temp_c": "sensitive"}
    release = ex.release_suite(
        ["birth_date", "gender"], 5, ["body_temp_c"], 2,
        ex.columns_of_classes(classes, RELEASE_FORBIDDEN),
        {"numeric_bounds": {"body_temp_c": (34.0, 42.0)}},
    )
    assert [type(e).__name__ for e in release] == [
        "ExpectNoForbiddenColumns",
        "ExpectQuasiIdentifierClassesToHaveAtLeastK",
        "ExpectSensitiveAttributeToBeLDiverse",
        "ExpectNoRareValues",
    ]
    assert set(release[0].forbidden_columns) == {"email", "my_number", "card_number", "account_id"}
    pseudo = ex.pseudonymized_suite(["email"], "accounts_view", ["email"],
                                    ex.columns_of_classes(classes, PSEUDONYMIZED_FORBIDDEN),
                                    output_columns=["email"], region_column="region", region="JP")
    assert [type(e).__name__ for e in pseudo] == [
        "ExpectNoForbiddenColumns", "ExpectPseudonymsNotUnkeyedHashes",
        "ExpectNoSourceValuesInColumns", "ExpectRegionColumnToEqual",
    ]
    retention = ex.retention_suite("created_at", "2026-01-01", "account_id", "holds",
                                   hash_column="subject_hash", deletion_ledger="ledger", region_column="region", region="JP")
    assert [type(e).__name__ for e in retention] == [
        "ExpectNoRowsPastRetention", "ExpectNoErasedSubjects", "ExpectRegionColumnToEqual"]
    assert ex.retention_suite(None, None) == []


def test_expectations_package_does_not_import_jobs():
    package = Path(__file__).resolve().parent.parent / "expectations"
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n == "jobs" or n.startswith("jobs.") for n in names), f"{path.name} imports {names}"


# --------------------------------------------------------------------------------------------
# run_gate: Data Docs, failure report, no values on disk
# --------------------------------------------------------------------------------------------


def test_run_gate_reports_failures_and_writes_data_docs(spark, tmp_path):
    import great_expectations as gx

    from expectations import ExpectRegionColumnToEqual, release_suite, retention_suite, run_gate

    release = spark.createDataFrame(
        [("30-34", "Tokyo", "flu"), ("30-34", "Tokyo", "cold"), ("35-39", PLANTED, "flu")],
        "age_band string, pref string, diagnosis string",
    )
    accounts = spark.createDataFrame(
        [("A000000001", PLANTED, date(2026, 1, 5), "JP")], "account_id string, email string, created_at date, region string"
    )
    checks = [
        ("release_health_k5", release, release_suite(["age_band", "pref"], 2, ["diagnosis"], 2, ["email"])
         # a GE built-in expectation in the same gate: its unexpected values must not be written
         + [gx.expectations.ExpectColumnValuesToBeInSet(column="pref", value_set=["Tokyo", "Osaka"])]),
        ("accounts_jp", accounts, retention_suite("created_at", "2020-01-01", region_column="region", region="JP")
         + [ExpectRegionColumnToEqual(region_column="no_such_column", region="JP")]),
    ]
    docs_dir = tmp_path / "gate-docs"
    result = run_gate("release_health", checks, str(docs_dir))

    assert result.success is False
    assert Path(result.docs_index) == docs_dir.resolve() / "index.html"
    assert Path(result.docs_index).is_file()
    pages = list((docs_dir / "validations").rglob("*.html"))
    assert len(pages) == 2  # one page per checked table

    found = {(f.expectation, f.table, f.column) for f in result.failures}
    assert ("ExpectQuasiIdentifierClassesToHaveAtLeastK", "release_health_k5", "age_band, pref") in found
    assert ("ExpectSensitiveAttributeToBeLDiverse", "release_health_k5", "diagnosis") in found
    assert ("ExpectColumnValuesToBeInSet", "release_health_k5", "pref") in found
    crashed = [f for f in result.failures if f.table == "accounts_jp"]
    assert [f.expectation for f in crashed] == ["ExpectRegionColumnToEqual"]
    assert "could not run: UNRESOLVED_COLUMN" in crashed[0].message
    assert len(result.failures) == 4  # retention and the real region check passed
    assert "gate release_health: FAILED" in result.report()

    # The planted value is in the data, never in the report, the results or the Data Docs.
    everything = result.report() + "".join(json.dumps(r.to_json_dict(), default=str, ensure_ascii=False) for r in result.results)
    for path in docs_dir.rglob("*"):
        if path.is_file():
            everything += path.read_text(encoding="utf-8", errors="replace")
    assert PLANTED not in everything
    # ...while the Data Docs do show the failure messages (counts only).
    page_text = "".join(p.read_text(encoding="utf-8") for p in pages)
    assert "1 equivalence class has fewer than k=2 rows" in page_text


def test_run_gate_caches_a_batch_only_when_it_is_not_in_memory_already(spark, tmp_path):
    """GE's queries rescan a batch: a file scan is cached for a check that reads rows and released
    afterwards; a persisted DataFrame, or columns of one, is read from memory as it is (no second copy)."""
    from pyspark.sql import functions as F

    from expectations import ExpectRegionColumnToEqual, run_gate
    from expectations.gates import _served_from_cache

    path = str(tmp_path / "rows")
    spark.createDataFrame([(1, "JP"), (2, "JP")], "id int, region string").write.parquet(path)
    on_disk = spark.read.parquet(path)
    staged = spark.read.parquet(path).withColumn("extra", F.lit(1)).persist()
    staged.count()
    columns_of_staged = staged.drop("extra")
    assert not _served_from_cache(on_disk)
    assert _served_from_cache(staged) and _served_from_cache(columns_of_staged)

    cache_manager = spark._jsparkSession.sharedState().cacheManager()

    def cached(df) -> bool:
        return cache_manager.lookupCachedData(df._jdf).isDefined()

    seen = []

    class Probing(ExpectRegionColumnToEqual):
        def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
            seen.append((cached(on_disk), cached(columns_of_staged)))
            return super()._validate(metrics, runtime_configuration, execution_engine)

    check = [Probing(region_column="region", region="JP")]
    result = run_gate("caching", [("on_disk", on_disk, check), ("staged", columns_of_staged, check)], str(tmp_path / "docs"))
    assert result.success, result.report()
    # the file scan is cached during its own check only; the staged columns are never cached again
    assert seen == [(True, False), (False, False)], seen
    assert not cached(on_disk) and not cached(columns_of_staged) and cached(staged)
    staged.unpersist()


def test_a_gate_of_schema_checks_only_runs_no_spark_job(spark, tmp_path):
    """A check that reads only the schema (forbidden columns, GE's column-exists) is answered without a
    Spark job: its Delta batch is neither cached nor planned (a snapshot and a file listing each)."""
    import great_expectations as gx

    from expectations import ExpectNoForbiddenColumns, ExpectRegionColumnToEqual, run_gate
    from expectations.gates import _reads_rows
    from jobs.lake.layout import read_current

    path = str(tmp_path / "published")
    spark.createDataFrame([(1, "x")], "id int, phone string").write.format("delta").save(path)
    dag = spark.sparkContext._jsc.sc().dagScheduler()
    schema_only = [ExpectNoForbiddenColumns(forbidden_columns={"phone": "identifying"}),
                   gx.expectations.ExpectColumnToExist(column="id")]
    assert not _reads_rows(schema_only)
    assert _reads_rows(schema_only + [ExpectRegionColumnToEqual(region_column="id", region="JP")])
    assert _reads_rows([gx.expectations.ExpectColumnValuesToNotBeNull(column="id")])   # declares no metric: reads rows
    batch = read_current(spark, path)
    before = int(dag.numTotalJobs())
    result = run_gate("schema", [("published", batch, schema_only)], str(tmp_path / "docs"))
    assert int(dag.numTotalJobs()) == before
    # still a real check: the forbidden column is found, named with its class and no value
    assert not result.success and "phone (identifying)" in result.report()
