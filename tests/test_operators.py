"""The pseudonymization operators of anonymizers/ on a real Spark session (small frames)."""
from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import io
import math
import unicodedata

import pytest
from pyspark.sql import functions as F

import anonymizers
from anonymizers import OPERATORS, OperatorError, get_operator, register
from anonymizers.drop import drop
from anonymizers.generalize import age_band, bin_numeric, generalize_address, generalize_date
from anonymizers.mask import mask
from anonymizers.pseudonym import keyed_pseudonym, normalize_value
from anonymizers.topcode import top_bottom_code

KEY = b"wasure-test-purpose-key-0123456789-abcdef"      # printable, so a leak would be visible
OTHER_KEY = b"another-purpose-key-9876543210-zyxwvutsrq"
LONG_TEXT = ("山田太郎🙂 taro@example.com ｱｲｳ " * 2000)[:50_000]


def values(df, column):
    return [row[column] for row in df.collect()]


# ---- registry ----

def test_every_operator_is_registered_by_name():
    expected = {"drop", "keyed_pseudonym", "generalize_date", "age_band", "generalize_address",
                "bin_numeric", "top_bottom_code", "mask", "scrub"}
    assert expected <= set(OPERATORS)
    assert get_operator("mask") is mask
    assert get_operator("keyed_pseudonym") is keyed_pseudonym
    assert anonymizers.get_operator is get_operator


def test_unknown_operator_and_duplicate_name_are_errors():
    with pytest.raises(OperatorError, match="unknown operator 'hash_it'"):
        get_operator("hash_it")
    with pytest.raises(OperatorError, match="already registered"):
        register("mask")(lambda df: df)


# ---- drop ----

def test_drop(spark):
    df = spark.createDataFrame([(1, "a", "b")], "id int, email string, phone string")
    assert drop(df, ["email", "phone"]).columns == ["id"]
    assert drop(df, "email").columns == ["id", "phone"]
    with pytest.raises(OperatorError, match="columns: column 'emial' is not in the DataFrame"):
        drop(df, ["emial"])
    with pytest.raises(OperatorError, match="non-empty list"):
        drop(df, [])


# ---- keyed pseudonym ----

def reference(key: bytes, value: str) -> str:
    """The pseudonym format (issue 22): the first 16 bytes of HMAC-SHA256, base64url, no padding."""
    digest = hmac.new(key, value.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode("ascii")


@pytest.fixture(scope="module")
def people(spark):
    rows = [(1, "taro@example.com", "山田太郎"), (2, None, ""), (3, "  ＴＡＲＯ@Example.COM ", "🙂👍"),
            (4, "hanako@example.jp", LONG_TEXT)]
    return spark.createDataFrame(rows, "id int, email string, note string")


def test_pseudonym_matches_python_hmac_and_keeps_nulls(people):
    out = keyed_pseudonym(people, ["email", "note"], key=KEY, key_id="k2024-marketing")
    rows = {r["id"]: r for r in out.collect()}
    assert rows[1]["email"] == reference(KEY, "taro@example.com")
    assert rows[1]["note"] == reference(KEY, "山田太郎")
    assert rows[2]["email"] is None
    assert rows[2]["note"] == reference(KEY, "")
    # NFKC + strip + lowercase for emails: the full-width, padded, upper-case spelling is the same person.
    assert rows[3]["email"] == rows[1]["email"]
    assert rows[3]["note"] == reference(KEY, "🙂👍")
    assert rows[4]["note"] == reference(KEY, unicodedata.normalize("NFKC", LONG_TEXT).strip())  # ｱ -> ア
    assert {r["pseudonym_key_id"] for r in rows.values()} == {"k2024-marketing"}
    assert all(len(r["note"]) == 22 for r in rows.values())      # 128 bits, base64url without padding


def test_same_key_links_tables_and_another_key_does_not(spark, people):
    orders = spark.createDataFrame([("taro@example.com", 100), (None, 5)], "buyer string, amount int")
    a = values(keyed_pseudonym(people.filter("id = 1"), "email", key=KEY, key_id="k1"), "email")[0]
    b = values(keyed_pseudonym(orders.filter("amount = 100"), "buyer", key=KEY, key_id="k1"), "buyer")[0]
    c = values(keyed_pseudonym(orders.filter("amount = 100"), "buyer", key=OTHER_KEY, key_id="k2"), "buyer")[0]
    assert a == b
    assert c != a and c == reference(OTHER_KEY, "taro@example.com")


def test_pseudonym_options_and_non_string_columns(spark):
    df = spark.createDataFrame([(12345, " Taro@Example.com")], "member_id bigint, email string")
    raw = keyed_pseudonym(df, ["member_id", "email"], key=KEY, key_id="k", normalize=False,
                          key_id_column="kid").collect()[0]
    assert raw["member_id"] == reference(KEY, "12345")
    assert raw["email"] == reference(KEY, " Taro@Example.com")
    assert raw["kid"] == "k"
    b64 = values(keyed_pseudonym(df, "email", key=KEY, key_id="k", encoding="base64url"), "email")[0]
    digest = hmac.new(KEY, b"taro@example.com", hashlib.sha256).digest()
    assert b64 == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# Values where the two engines could part ways: Python's whitespace set (\x1c-\x1f, \x85, NBSP,
# U+3000 ...) at either end, e-mail look-alikes (two @, blank inside), case, NFKC-sensitive text.
EDGE_VALUES = ["Taro@Example.COM", " taro@example.com\t", "\x1ftaro@EXAMPLE.com\x0b", "a@b@c", "@x", "x@",
               "a b@c.d", "ID-0042 ", "\x85id\u3000", "ＴＡＲＯ@Example.COM", "İstanbul@Example.com",
               "ΣΑΣ@x.y", "ﬁle\u00a0", "\U00010780x", "e\u0301", "㍿", "", " ", None]


@pytest.mark.parametrize("normalize, encoding", [(True, "base64url128"), (False, "base64url128"), (True, "hex"),
                                                 (False, "hex"), (True, "base64url")])
def test_jvm_and_python_engines_give_identical_pseudonyms(spark, normalize, encoding):
    """The JVM UDF (make jars builds it, so it must be there) and the Python twin agree byte for byte."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    edge = st.sampled_from([v for v in EDGE_VALUES if v is not None])
    text = st.one_of(edge, st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
                     st.text(alphabet=" \t\x0b\x0c\x1c\x1f@.aZ\u3000", max_size=8))

    @settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.lists(text, min_size=1, max_size=300))
    def check(generated):
        df = spark.createDataFrame([(i, v) for i, v in enumerate(EDGE_VALUES + generated)], "id int, v string")
        by_engine = {engine: {r["id"]: r["v"] for r in keyed_pseudonym(
            df, "v", key=KEY, key_id="k", normalize=normalize, encoding=encoding, engine=engine).collect()}
            for engine in ("jvm", "python")}
        assert by_engine["jvm"] == by_engine["python"]

    check()


def _executed_plan(df) -> str:
    df.collect()
    return df._jdf.queryExecution().executedPlan().toString()


def test_jvm_normalizes_every_code_point_as_python(spark):
    """The JVM engine normalizes non-ASCII text itself (ICU4J, UnicodeText.java), as Python's
    ``normalize_value`` does, for every code point of planes 0-3 (every character of Unicode 14 to
    17 but the private-use planes, and plane 14's few, also listed): alone (NFKC, strip), in an
    e-mail (lowercase), and in two e-mail probes whose final sigma depends on the character being
    cased or case-ignorable. (This found U+0295 and U+1171E, whose case properties changed after
    Unicode 14.) The JVM's text comes from the function its UDF hashes, through Spark's ``reflect``;
    the UDF itself is compared with Python on random text above and has no Python UDF in its plan."""
    from anonymizers.frames import local_frame
    from anonymizers.pseudonym import keyed_hash

    code_points = [c for c in range(0x40000) if not 0xD800 <= c <= 0xDFFF]
    code_points += [c for c in range(0x40000, 0x110000) if unicodedata.category(chr(c)) not in ("Cn", "Co")]
    probes = [(i, text, normalize_value(text)) for i, c in enumerate(code_points)
              for text in (chr(c), f"A{chr(c)}@b", f"AΣ{chr(c)}Σ@a", f"1{chr(c)}Σ@a")]
    df = local_frame(spark, probes, "id int, v string, python string")
    jvm = F.expr(f"reflect('wasure.udf.KeyedPseudonym', 'normalized', '{unicodedata.unidata_version}', v)")
    wrong = sorted({f"U+{code_points[r['id']]:04X}" for r in df.filter(~jvm.eqNullSafe(df["python"])).limit(20).collect()})
    assert not wrong, f"the JVM normalizes these code points unlike Python: {wrong}"
    udf = keyed_hash(spark, KEY, normalize=True, encoding="base64url128", engine="jvm")
    assert "ArrowEvalPython" not in _executed_plan(df.limit(3).select(udf(df["v"])))


def test_python_twin_takes_non_ascii_text_for_a_unicode_pair_the_jvm_does_not_know(spark, monkeypatch):
    """A Python of another Unicode version than the one UnicodeText knows keeps the twin: non-ASCII
    values are normalized in Python, and the pseudonyms stay the same."""
    import anonymizers.pseudonym as pseudonym

    df = spark.createDataFrame([(i, v) for i, v in enumerate(EDGE_VALUES)], "id int, v string")
    expected = {r["id"]: r["v"] for r in keyed_pseudonym(df, "v", key=KEY, key_id="k", engine="python").collect()}
    monkeypatch.setattr(pseudonym.unicodedata, "unidata_version", "99.0.0")
    out = keyed_pseudonym(df, "v", key=KEY, key_id="k", engine="jvm")
    assert "ArrowEvalPython" in _executed_plan(out)
    assert {r["id"]: r["v"] for r in out.collect()} == expected


def test_jvm_memo_keeps_each_value_its_own_pseudonym(spark):
    """The JVM UDF remembers recent pseudonyms by the value's hash: values whose Java hashCode
    collides ("Aa", "BB", ...) take turns in one slot, repeats hit it, and each keeps its own
    pseudonym; a value and its normalized form, each remembered in its own slot (the memo is keyed
    on the value as given), get the one pseudonym of the normalized form."""
    colliding = ["AaAa", "BBBB", "AaBB", "BBAa"]
    texts = [colliding[(i * 7) % 4] for i in range(400)] + [" Taro@Example.com", "taro@example.com"] * 50
    df = spark.createDataFrame([(i, v) for i, v in enumerate(texts)], "id int, v string").coalesce(1)
    got = {r["id"]: r["v"] for r in keyed_pseudonym(df, "v", key=KEY, key_id="k", engine="jvm").collect()}
    expected = {v: reference(KEY, normalize_value(v)) for v in set(texts)}
    assert got == {i: expected[v] for i, v in enumerate(texts)}
    assert len(set(got.values())) == 5


@pytest.mark.parametrize("key_length", [32, 63, 64, 65, 200])
def test_jvm_hmac_equals_hmac_new_for_every_key_length(spark, key_length):
    """The JVM UDF's HMAC (javax.crypto.Mac): keys up to the 64-byte block are padded, longer ones
    hashed first (RFC 2104), exactly like Python's hmac.new."""
    key = bytes((7 * i + key_length) % 256 for i in range(key_length))
    texts = ["", "12345", "taro@example.com", "x" * 55, "y" * 56, "z" * 64, "w" * 300]
    df = spark.createDataFrame([(i, v) for i, v in enumerate(texts)], "id int, v string")
    got = {r["id"]: r["v"] for r in keyed_pseudonym(df, "v", key=key, key_id="k", normalize=False,
                                                    engine="jvm").collect()}
    assert got == {i: reference(key, v) for i, v in enumerate(texts)}
    assert all(len(p) == 22 for p in got.values())


@pytest.mark.parametrize("engine", ["jvm", "python"])
def test_key_never_appears_in_plans(people, engine):
    out = keyed_pseudonym(people, ["email"], key=KEY, key_id="k1", engine=engine).filter("id > 0")
    out.collect()  # the executed plan is part of the query execution afterwards
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        out.explain(True)
        out.explain(mode="formatted")
    plans = buf.getvalue() + str(out._jdf.queryExecution()) + out._jdf.queryExecution().toString()
    assert "keyed_pseudonym" in plans                       # the UDF is there, by name only
    for leak in (KEY.decode(), KEY.hex(), base64.b64encode(KEY).decode(), KEY.decode()[:16]):
        assert leak not in plans


@pytest.mark.parametrize("bad_key, message", [
    (b"short-secret-key", "at least 32 bytes long (got 16 bytes)"),
    ("a-string-key-that-is-long-enough-0123456789", "key must be bytes, not str"),
])
def test_bad_keys_are_rejected_without_echoing_them(people, bad_key, message):
    with pytest.raises(OperatorError) as info:
        keyed_pseudonym(people, ["email"], key=bad_key, key_id="k1")
    assert message in str(info.value)
    assert str(bad_key.decode() if isinstance(bad_key, bytes) else bad_key) not in str(info.value)
    assert "secret" not in str(info.value) and "long-enough" not in str(info.value)


def test_pseudonym_parameter_errors(people):
    with pytest.raises(OperatorError, match="engine must be one of auto, jvm, python"):
        keyed_pseudonym(people, ["email"], key=KEY, key_id="k1", engine="gpu")
    with pytest.raises(OperatorError, match="key_id must be a non-empty string"):
        keyed_pseudonym(people, ["email"], key=KEY, key_id="")
    with pytest.raises(OperatorError, match="must not contain the key") as info:
        keyed_pseudonym(people, ["email"], key=KEY, key_id="id-" + KEY.decode())
    assert KEY.decode() not in str(info.value)
    with pytest.raises(OperatorError, match="encoding must be one of"):
        keyed_pseudonym(people, ["email"], key=KEY, key_id="k", encoding="base32")
    with pytest.raises(OperatorError, match="key_id_column"):
        keyed_pseudonym(people, ["email"], key=KEY, key_id="k", key_id_column="email")
    with pytest.raises(OperatorError, match="'mail' is not in the DataFrame"):
        keyed_pseudonym(people, ["mail"], key=KEY, key_id="k")


# ---- generalize ----

def test_generalize_date_from_dates_timestamps_and_strings(spark):
    df = spark.createDataFrame(
        [(dt.date(1985, 7, 4), dt.datetime(2024, 12, 31, 23, 59), "2023-02-28"),
         (None, None, "not a date"), (dt.date(2000, 1, 1), None, ""), (dt.date(1999, 12, 31), None, None)],
        "d date, ts timestamp, s string")
    month = generalize_date(generalize_date(generalize_date(df, "d", "month"), "ts", "month"), "s", "month")
    assert [tuple(r) for r in month.collect()] == [
        ("1985-07", "2024-12", "2023-02"), (None, None, None), ("2000-01", None, None), ("1999-12", None, None)]
    assert values(generalize_date(df, "d", "year"), "d") == ["1985", None, "2000", "1999"]
    with pytest.raises(OperatorError, match="level must be one of month, year"):
        generalize_date(df, "d", "day")
    with pytest.raises(OperatorError, match="must be a date, timestamp or ISO date string"):
        generalize_date(spark.createDataFrame([(1,)], "n int"), "n", "year")


def test_age_band(spark):
    as_of = dt.date(2025, 6, 15)
    births = [dt.date(1990, 6, 15), dt.date(1990, 6, 16), dt.date(1985, 1, 1), dt.date(1930, 1, 1),
              dt.date(1935, 6, 16), dt.date(2025, 6, 15), None, dt.date(2030, 1, 1), dt.date(2000, 2, 29)]
    df = spark.createDataFrame([(i, b) for i, b in enumerate(births)], "id int, birth date")
    out = age_band(df, "birth", as_of=as_of)
    assert out.columns == ["id", "age_band"]                 # the birth date is gone
    assert values(out, "age_band") == [
        "35-39", "30-34", "40-44", "90+", "85-89", "0-4", None, None, "25-29"]
    wide = age_band(df, "birth", as_of=as_of, width=10, top=None, output="birth")
    assert values(wide, "birth")[:4] == ["30-39", "30-39", "40-49", "90-99"]
    capped = age_band(df, "birth", as_of=as_of, width=7, top=90)    # last band stops below the top code
    assert values(capped, "age_band")[4] == "84-89"
    with pytest.raises(OperatorError, match="width must be a positive integer"):
        age_band(df, "birth", as_of=as_of, width=0)
    with pytest.raises(OperatorError, match="as_of must be a datetime.date"):
        age_band(df, "birth", as_of="2025-06-15")


ADDRESSES = [
    ("東京都千代田区千代田1-1", "東京都", "東京都千代田区"),
    ("〒100-0001 東京都　千代田区 千代田１－１", "東京都", "東京都千代田区"),
    ("〒１００－０００１東京都港区芝公園4-2-8", "東京都", "東京都港区"),
    ("北海道虻田郡倶知安町南1条東1丁目", "北海道", "北海道虻田郡倶知安町"),
    ("京都府京都市左京区吉田本町", "京都府", "京都府京都市"),
    ("神奈川県横浜市中区日本大通1", "神奈川県", "神奈川県横浜市"),
    ("和歌山県和歌山市七番丁23", "和歌山県", "和歌山県和歌山市"),
    ("三重県四日市市諏訪町1-5", "三重県", "三重県四日市市"),
    ("東京都東村山市本町1-2-3", "東京都", "東京都東村山市"),
    ("東京都府中市宮西町2-24", "東京都", "東京都府中市"),
    ("福島県郡山市朝日1-23-7", "福島県", "福島県郡山市"),
    ("沖縄県島尻郡座間味村座間味", "沖縄県", "沖縄県島尻郡座間味村"),
    ("大阪市都島区中野町", None, "大阪市"),          # no prefecture written
    ("1600 Amphitheatre Pkwy 🙂", None, None),
    ("", None, None),
    (None, None, None),
]


@pytest.mark.parametrize("level, index", [("prefecture", 1), ("city", 2)])
def test_generalize_address(spark, level, index):
    df = spark.createDataFrame([(i, a[0]) for i, a in enumerate(ADDRESSES)], "id int, address string")
    got = values(generalize_address(df, "address", level), "address")
    assert got == [a[index] for a in ADDRESSES]


def test_generalize_address_errors(spark):
    df = spark.createDataFrame([(1,)], "n int")
    with pytest.raises(OperatorError, match="level must be one of prefecture, city"):
        generalize_address(df, "n", "town")
    with pytest.raises(OperatorError, match="must be a string column, not int"):
        generalize_address(df, "n", "city")


def test_bin_numeric(spark):
    df = spark.createDataFrame([(1, 5, 5.0), (2, 10, 10.0), (3, 19, 19.99), (4, 20, 20.0), (5, 100, 1e9),
                                (6, None, None), (7, -3, float("nan"))], "id int, n int, x double")
    out = bin_numeric(bin_numeric(df, "n", [10, 20, 50, 100]), "x", [10.0, 20, 2.5e1])
    assert [(r["n"], r["x"]) for r in out.collect()] == [
        ("<10", "<10"), ("[10,20)", "[10,20)"), ("[10,20)", "[10,20)"), ("[20,50)", "[20,25)"),
        (">=100", ">=25"), (None, None), ("<10", None)]
    assert values(bin_numeric(df, "x", [0.5, 12.25]), "x")[0] == "[0.5,12.25)"
    for edges, message in [([10], "at least two"), ([20, 10], "strictly increasing"),
                           ([1, math.inf], "finite"), ("10,20", "at least two"), ([1, True], "finite")]:
        with pytest.raises(OperatorError, match=message):
            bin_numeric(df, "n", edges)


def test_top_bottom_code(spark):
    df = spark.createDataFrame([(1, 104, 3.5), (2, 90, 40.0), (3, 42, 150.0), (4, 10, None),
                                (5, None, float("nan")), (6, 11, 39.9)], "id int, age int, kg double")
    out = top_bottom_code(top_bottom_code(df, "age", top=90, bottom=10), "kg", bottom=40)
    assert [(r["age"], r["kg"]) for r in out.collect()] == [
        ("90+", "<=40"), ("90+", "<=40"), ("42", "150.0"), ("<=10", None), (None, None), ("11", "<=40")]
    with pytest.raises(OperatorError, match="give top, bottom or both"):
        top_bottom_code(df, "age")
    with pytest.raises(OperatorError, match="bottom must be smaller than top"):
        top_bottom_code(df, "age", top=10, bottom=90)
    with pytest.raises(OperatorError, match="must be numeric, not string"):
        top_bottom_code(spark.createDataFrame([("1",)], "s string"), "s", top=1)


# ---- mask ----

def test_mask_counts_characters_not_bytes(spark):
    texts = ["4111111111111111", "山田太郎様の番号", "🙂👍🎉🍣🍺🚀", "abcd", "abc", "", None, LONG_TEXT,
             "ｶｰﾄﾞ１２３４５６"]
    df = spark.createDataFrame([(i, t) for i, t in enumerate(texts)], "id int, t string")
    got = values(mask(df, "t"), "t")
    assert got[:7] == ["************1111", "****様の番号", "**🎉🍣🍺🚀", "****", "***", "", None]
    assert got[7] == "*" * (50_000 - 4) + LONG_TEXT[-4:]
    assert got[8] == "******３４５６"
    assert values(mask(df, "t", keep_last=0, char="＊"), "t")[1] == "＊" * 8


def test_mask_non_string_column_and_errors(spark):
    df = spark.createDataFrame([(4111111111111111,)], "card bigint")
    assert values(mask(df, "card", keep_last=2, char="#"), "card") == ["##############11"]
    with pytest.raises(OperatorError, match="char must be exactly one character"):
        mask(df, "card", char="**")
    with pytest.raises(OperatorError, match="keep_last must be a non-negative integer"):
        mask(df, "card", keep_last=-1)


@pytest.mark.parametrize("engine", ["jvm", "python"])
def test_keyed_hash_columns_equal_the_ledger_hashes(spark, engine):
    """The Spark columns the gates and the erasure scan hash with (deletion ledger subject hashes,
    residue value hashes) are the plain-Python HMACs, whatever engine runs them; auto picks the JVM."""
    from anonymizers.pseudonym import keyed_hash
    from jobs.lake.backup_ledger import hash_column, subject_hash
    from jobs.erasure import value_hash_column, value_hash

    values = [v for v in EDGE_VALUES if v is not None] + ["山田 太郎", "12345", "a\u0000b"]
    df = spark.createDataFrame([(i, v) for i, v in enumerate(values + [None])], "id int, v string")
    by_id = {r["id"]: r for r in df.select(
        "id", keyed_hash(spark, KEY, engine=engine)(df["v"]).alias("h"),
        hash_column(df["v"], KEY).alias("ledger"), value_hash_column(df["v"], KEY).alias("value")).collect()}
    for i, v in enumerate(values):
        assert by_id[i]["h"] == by_id[i]["ledger"] == subject_hash(KEY, v)
        assert by_id[i]["value"] == value_hash(KEY, v)
    assert by_id[len(values)]["h"] is None and by_id[len(values)]["ledger"] is None
    with pytest.raises(OperatorError, match="at least 32 bytes"):
        keyed_hash(spark, b"short")
