"""k-anonymity / l-diversity on Spark: hierarchies, Mondrian, privacy checks, metrics, Adult reference.

The Adult figures are checked independently with pycanon on the collected *output* (30k rows).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycanon import anonymity

from anonymizers.hierarchy import CategoricalHierarchy, HierarchyError, IntervalHierarchy
from anonymizers.mondrian import AnonymizationError, mondrian_anonymize
from anonymizers.mondrian_local import partition_tuples
from anonymizers.privacy_models import (
    ClassStats,
    DistinctLDiversity,
    EntropyLDiversity,
    KAnonymity,
    check_distinct_l_diversity,
    check_entropy_l_diversity,
    check_k_anonymity,
    sensitive_stats,
)
from anonymizers.risk import risk_report
from anonymizers.utility import gcp, utility_report

ADULT = Path(__file__).parent / "data" / "adult"
ADULT_QIS = ["age", "education", "marital-status", "native-country", "occupation", "race",
             "salary-class", "sex", "workclass"]

# Bounds actually reached (docs/anonymization.md); ARX 3.9 local recoding reaches 0.065 at k=5.
ADULT_K5_GCP_BOUND = 0.056
ADULT_K100_GCP_BOUND = 0.25
ADULT_K100_DISTRIBUTED_GCP_BOUND = 0.27

COLOR = CategoricalHierarchy.from_mapping("color", {
    "red": ["warm", "*"], "orange": ["warm", "*"], "yellow": ["warm", "*"],
    "blue": ["cool", "*"], "green": ["cool", "*"], "purple": ["cool", "*"]})
CITY = CategoricalHierarchy.from_mapping("city", {
    "Shinjuku": ["Tokyo", "Kanto", "*"], "Shibuya": ["Tokyo", "Kanto", "*"],
    "Yokohama": ["Kanagawa", "Kanto", "*"], "Kawasaki": ["Kanagawa", "Kanto", "*"],
    "Osaka": ["Osaka-fu", "Kansai", "*"], "Sakai": ["Osaka-fu", "Kansai", "*"],
    "Kyoto": ["Kyoto-fu", "Kansai", "*"]})
SMALL_H = {"age": IntervalHierarchy("age"), "color": COLOR, "city": CITY}
SMALL_QIS = ["age", "color", "city"]
SMALL_SCHEMA = "id INT, age INT, color STRING, city STRING, disease STRING"
DISEASES = ["flu", "cold", "covid", "asthma", "diabetes"]

row_strategy = st.tuples(
    st.integers(18, 80), st.sampled_from(COLOR.leaves), st.sampled_from(CITY.leaves),
    # skewed sensitive values, so that l-diversity actually constrains the partitioning
    st.sampled_from(DISEASES[:2] * 4 + DISEASES))
SLOW = settings(deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])


def small_frame(spark, rows):
    return spark.createDataFrame([(i, *r) for i, r in enumerate(rows)], SMALL_SCHEMA)


def assert_truthful(original: pd.DataFrame, released: pd.DataFrame, qis, hierarchies):
    """Every released cell generalizes the original value of the same row (joined on id)."""
    both = original.merge(released, on="id", suffixes=("", "_out"))
    assert len(both) == len(released)
    for q in qis:
        h = hierarchies[q]
        for value, label in zip(both[q], both[f"{q}_out"]):
            if h.kind == "categorical":
                assert label in h.ancestors_of(value), (q, value, label)
            else:
                low, high = IntervalHierarchy.parse(label)
                assert low <= value <= high, (q, value, label)


# --- hierarchies --------------------------------------------------------------------------------
def test_arx_hierarchy_ancestors_leaf_counts_and_lca():
    h = CategoricalHierarchy.from_csv(ADULT / "adult_hierarchy_education.csv", name="education")
    assert h.ancestors_of("Masters") == ["Masters", "Graduate", "Higher education", "*"]
    assert h.generalize("9th", 1) == "High School"
    assert h.leaf_count("*") == h.domain_size == 16
    assert h.leaf_count("Higher education") == 7 and h.leaf_count("Masters") == 1
    # DFS numbering: every node covers a contiguous code range, so LCA(min, max) is the class node.
    codes = h.encode(pd.Series(["Masters", "Doctorate"]))
    assert h.labels(np.array([codes.min()]), np.array([codes.max()]))[0] == "Graduate"
    codes = h.encode(pd.Series(["Masters", "Bachelors", "Doctorate"]))
    assert h.labels(np.array([codes.min()]), np.array([codes.max()]))[0] == "Higher education"
    assert h.cost(np.array([codes.min()]), np.array([codes.max()]))[0] == pytest.approx(6 / 15)
    with pytest.raises(HierarchyError):
        h.encode(pd.Series(["Kindergarten"]))
    # A hierarchy whose top level has several values gets an implicit "*" root.
    flat = CategoricalHierarchy("x", [["a", "A"], ["b", "B"]])
    assert flat.ancestors_of("a") == ["a", "A", "*"] and flat.leaf_count("*") == 2


def test_interval_hierarchy_labels_cost_parse():
    h = IntervalHierarchy("age").with_domain(17, 90)
    assert list(h.labels(np.array([25.0, 31.0]), np.array([29.0, 31.0]))) == ["[25-29]", "31"]
    assert h.cost(np.array([17.0]), np.array([90.0]))[0] == 1.0
    assert IntervalHierarchy.parse("[25-29]") == (25, 29)
    assert IntervalHierarchy.parse("[-5--1]") == (-5, -1)


# --- the local algorithm, in memory: cheap enough for many examples -----------------------------
@settings(max_examples=40, deadline=None)
@given(rows=st.lists(row_strategy, min_size=1, max_size=120), k=st.integers(1, 8),
       l=st.sampled_from([None, ("distinct", 2), ("entropy", 2.0), ("distinct", 3)]))
def test_partition_tuples_classes_satisfy_models(rows, k, l):
    frame = pd.DataFrame(rows, columns=["age", "color", "city", "disease"])
    tuples = frame.groupby(["age", "color", "city", "disease"]).size().reset_index(name="w")
    hierarchies = [IntervalHierarchy("age").with_domain(18, 80), COLOR, CITY]
    codes = np.column_stack([h.encode(tuples[q]) for q, h in zip(SMALL_QIS, hierarchies)])
    sensitive = pd.factorize(tuples["disease"], sort=True)[0]
    models = [KAnonymity(k)]
    if l:
        models.append(DistinctLDiversity("disease", l[1]) if l[0] == "distinct" else EntropyLDiversity("disease", l[1]))
    weights = tuples["w"].to_numpy(dtype=float)
    labels = partition_tuples(codes, weights, hierarchies, models, sensitive)
    whole = ClassStats(*sensitive_stats(np.bincount(sensitive, weights=weights)))
    if not all(m.holds(whole) for m in models):
        assert (labels == -1).all()  # nothing can be released
        return
    assert (labels >= 0).all()  # no suppression budget: every tuple is in a class
    for c in np.unique(labels):
        members = labels == c
        stats = ClassStats(*sensitive_stats(np.bincount(sensitive[members], weights=weights[members])))
        assert all(m.holds(stats) for m in models)


# --- Mondrian on Spark: properties on small random data ------------------------------------------
def check_release(spark, rows, k, l_model=None, suppression=0.0, threshold=50_000):
    """Run Mondrian on ``rows`` and check the release with pycanon / pandas, not with our checks:
    every class has >= k rows (and is l-diverse), every released cell generalizes its original
    value, at most floor(suppression * n) rows are suppressed, and eq_class matches the QIs."""
    df = small_frame(spark, rows)
    counts = pd.Series([r[3] for r in rows]).value_counts().to_numpy()
    whole = ClassStats(*sensitive_stats(counts))
    if len(rows) < k or (l_model is not None and not l_model.holds(whole)):
        with pytest.raises(AnonymizationError):
            mondrian_anonymize(df, SMALL_QIS, SMALL_H, k, l_diversity=l_model)
        return
    released = mondrian_anonymize(df, SMALL_QIS, SMALL_H, k, l_diversity=l_model, suppression=suppression,
                                  local_threshold=threshold).toPandas()
    assert list(released.columns) == ["id", "age", "color", "city", "disease", "eq_class"]
    assert len(rows) - math.floor(suppression * len(rows)) <= len(released) <= len(rows)
    assert_truthful(pd.DataFrame([(i, *r) for i, r in enumerate(rows)], columns=released.columns[:-1]),
                    released, SMALL_QIS, SMALL_H)
    if not len(released):
        return
    assert anonymity.k_anonymity(released, SMALL_QIS) >= k
    assert released.groupby("eq_class")[SMALL_QIS].nunique().max().max() == 1
    if isinstance(l_model, DistinctLDiversity):
        assert anonymity.l_diversity(released, SMALL_QIS, ["disease"]) >= l_model.l
    elif isinstance(l_model, EntropyLDiversity):
        # pycanon truncates exp(entropy) to an int (1.9999 fails l=2), so recomputed here
        for _, members in released.groupby(SMALL_QIS):
            p = members["disease"].value_counts(normalize=True).to_numpy()
            assert -(p * np.log(p)).sum() >= math.log(l_model.l) - 1e-9


l_models = st.sampled_from([DistinctLDiversity("disease", 2), EntropyLDiversity("disease", 2),
                            DistinctLDiversity("disease", 3)])


@settings(SLOW, max_examples=6)
@given(rows=st.lists(row_strategy, min_size=8, max_size=80), k=st.integers(2, 6),
       suppression=st.sampled_from([0.0, 0.1]))
def test_mondrian_output_is_k_anonymous_and_truthful(spark, rows, k, suppression):
    check_release(spark, rows, k, suppression=suppression)


@settings(SLOW, max_examples=5)
@given(rows=st.lists(row_strategy, min_size=10, max_size=80), k=st.integers(2, 4), l_model=l_models)
def test_mondrian_output_is_l_diverse(spark, rows, k, l_model):
    check_release(spark, rows, k, l_model)


@settings(SLOW, max_examples=4)
@given(rows=st.lists(row_strategy, min_size=40, max_size=80), k=st.integers(2, 5),
       l_model=st.one_of(st.none(), l_models), suppression=st.sampled_from([0.0, 0.1]))
def test_distributed_phase_output_is_k_anonymous_l_diverse_and_truthful(spark, rows, k, l_model, suppression):
    # 40-80 rows over a threshold of 30: one or two summary rounds with broadcast split tables
    # run before the local phase.
    check_release(spark, rows, k, l_model, suppression, threshold=30)


def test_suppression_drops_an_outlier_instead_of_generalizing_its_class(spark):
    rows = [(30, "red", "Kyoto", "flu")] * 5 + [(31, "red", "Kyoto", "cold")] * 5 + [(80, "blue", "Sakai", "flu")]
    kept = mondrian_anonymize(small_frame(spark, rows), SMALL_QIS, SMALL_H, 5).toPandas()
    assert len(kept) == 11 and "*" in set(kept["color"])  # the outlier forces a "*" class
    released = mondrian_anonymize(small_frame(spark, rows), SMALL_QIS, SMALL_H, 5, suppression=0.1).toPandas()
    assert sorted(released["id"]) == list(range(10))  # row 10 suppressed (budget: 1 row)
    assert set(released["color"]) == {"red"} and set(released["city"]) == {"Kyoto"}


def test_invalid_inputs_are_rejected(spark):
    df = small_frame(spark, [(30, "red", "Kyoto", "flu"), (31, "mauve", "Kyoto", "flu")])
    with pytest.raises(AnonymizationError, match="color"):
        mondrian_anonymize(df, SMALL_QIS, SMALL_H, 2)
    ok = small_frame(spark, [(30, "red", "Kyoto", "flu"), (31, "blue", "Kyoto", "flu")])
    with pytest.raises(AnonymizationError, match="does not satisfy"):
        mondrian_anonymize(ok, SMALL_QIS, SMALL_H, 3)
    with pytest.raises(ValueError, match="hierarchy"):
        mondrian_anonymize(ok, ["age", "disease"], SMALL_H, 2)
    with pytest.raises(ValueError, match="already exists"):
        mondrian_anonymize(ok, SMALL_QIS, SMALL_H, 2, class_column="disease")


# --- metrics on a hand-made release --------------------------------------------------------------
def test_metrics_on_a_known_release(spark):
    released = spark.createDataFrame([
        ("[20-29]", "warm", "Tokyo"), ("[20-29]", "warm", "Tokyo"),
        ("[30-30]", "red", "*"), ("30", "red", "*"), ("30", "red", "*"),
    ], "age STRING, color STRING, city STRING")
    h = {"age": IntervalHierarchy("age", 20, 40), "color": COLOR, "city": CITY}
    report = utility_report(released, SMALL_QIS, h, k=2)
    # age: 2 rows * 9/20; color: warm covers 3 of 6 leaves -> 2/5 for 2 rows; city: Tokyo 1/6, * 1.
    assert report["ncp_age"] == pytest.approx(2 * 9 / 20 / 5)
    assert report["ncp_color"] == pytest.approx(2 * (2 / 5) / 5)
    assert report["ncp_city"] == pytest.approx((2 * 1 / 6 + 3) / 5)
    assert report["gcp"] == pytest.approx((report["ncp_age"] + report["ncp_color"] + report["ncp_city"]) / 3)
    # "[30-30]" and "30" are different strings: three classes of sizes 2, 1, 2.
    assert report["classes"] == 3 and report["discernibility"] == 9
    assert gcp(released, SMALL_QIS, h, suppressed=5) == pytest.approx((report["gcp"] * 5 + 5) / 10)
    risk = risk_report(released, SMALL_QIS, k=2)
    assert risk["max_prosecutor_risk"] == 1.0 and risk["sample_uniques"] == 1
    assert risk["records_below_k_share"] == pytest.approx(1 / 5)
    assert risk["mean_prosecutor_risk"] == pytest.approx(3 / 5)
    assert check_k_anonymity(released, SMALL_QIS, 2) == (False, 1)


def test_privacy_checks_on_a_known_release(spark):
    released = spark.createDataFrame([
        ("a", "flu"), ("a", "flu"), ("a", "cold"),                  # 2 distinct, entropy 0.64 < log 2
        ("b", "flu"), ("b", "cold"), ("b", "flu"), ("b", "cold"),   # 2 distinct, entropy log 2
        ("c", "flu"), ("c", "flu"),                                 # 1 distinct
    ], "q STRING, s STRING")
    assert check_k_anonymity(released, ["q"], 2) == (True, 0)
    assert check_k_anonymity(released, ["q"], 3) == (False, 1)
    assert check_distinct_l_diversity(released, ["q"], "s", 2) == (False, 1)
    assert check_entropy_l_diversity(released, ["q"], "s", 2) == (False, 2)
    assert check_entropy_l_diversity(released, ["q"], "s", 1.5) == (False, 1)


# --- UCI Adult reference -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def adult(spark):
    schema = ("sex STRING, age INT, race STRING, `marital-status` STRING, education STRING, "
              "`native-country` STRING, workclass STRING, occupation STRING, `salary-class` STRING")
    df = spark.read.csv(str(ADULT / "adult.csv"), sep=";", header=True, schema=schema).cache()
    assert df.count() == 30162
    yield df
    df.unpersist()


@pytest.fixture(scope="module")
def adult_hierarchies():
    return {q: IntervalHierarchy(q) if q == "age"
            else CategoricalHierarchy.from_csv(ADULT / f"adult_hierarchy_{q}.csv", name=q) for q in ADULT_QIS}


def anonymize_adult(adult, hierarchies, k, **options):
    start = time.perf_counter()
    out = mondrian_anonymize(adult, ADULT_QIS, hierarchies, k, **options).cache()
    rows = out.count()
    seconds = time.perf_counter() - start
    report = utility_report(out, ADULT_QIS, hierarchies, k=k, suppressed=30162 - rows)
    risk = risk_report(out, ADULT_QIS, k)
    assert check_k_anonymity(out, ADULT_QIS, k) == (True, 0)
    released = out.toPandas()
    out.unpersist()
    print(f"\nAdult k={k} {options}: {seconds:.1f}s {report} {risk}")
    return released, report, risk


def assert_adult_release(released, report, risk, k, gcp_bound):
    """No suppression, k confirmed by pycanon, metrics in range, risk consistent with k."""
    assert len(released) == 30162  # no suppression
    assert anonymity.k_anonymity(released, ADULT_QIS) >= k  # independent check
    assert 0.0 <= report["gcp"] <= gcp_bound
    assert all(0.0 <= report[f"ncp_{q}"] <= 1.0 for q in ADULT_QIS)
    assert report["discernibility"] >= 30162 * k
    assert report["avg_class_size"] >= k
    assert risk["max_prosecutor_risk"] <= 1 / k and risk["records_below_k_share"] == 0
    assert risk["sample_uniques"] == 0


def test_adult_k5(adult, adult_hierarchies):
    released, report, risk = anonymize_adult(adult, adult_hierarchies, 5)
    assert_adult_release(released, report, risk, 5, ADULT_K5_GCP_BOUND)


def test_adult_k100(adult, adult_hierarchies):
    released, report, risk = anonymize_adult(adult, adult_hierarchies, 100)
    assert_adult_release(released, report, risk, 100, ADULT_K100_GCP_BOUND)


def test_adult_k100_through_the_distributed_phase(adult, adult_hierarchies):
    # local_threshold=16000 forces a summary round and a broadcast split table before the local
    # phase (the default, 50,000, keeps Adult in one local partition). Splits chosen from marginal
    # histograms cost utility: 0.263 instead of 0.247 (k=5: 0.0561 instead of 0.0553).
    released, report, risk = anonymize_adult(adult, adult_hierarchies, 100, local_threshold=16000)
    assert_adult_release(released, report, risk, 100, ADULT_K100_DISTRIBUTED_GCP_BOUND)
