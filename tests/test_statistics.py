"""Statistics (S7) per region (S15): primary and complementary suppression checked by an independent
differencing attack, region separation, restricted subjects left out, the gate quarantining a table
that fails it; differentially private statistics (OpenDP): the public key set, discrete noise, the
policy's dp block, the budget ledger across runs and the CLI."""
import datetime as dt
import json
import math
import random
import threading
import time
from collections import defaultdict
from itertools import product
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.runtime.console import CheckFailed, InputError
from jobs.lake.layout import Lake, is_delta, read_current
from jobs.policy import parse_policy
from jobs import statistics as stats

AS_OF = dt.date(2026, 11, 1)
K = 3

POLICY = {
    "version": 1, "name": "stats-test", "regions": ["JP", "US", "EU"],
    "subject": {"key": "account_id", "id_pattern": "^A[0-9]{9}$", "table": "accounts", "closure_column": "closed_at",
                "birth_date_column": "birth_date", "consents_table": "consents", "restrictions_table": "restrictions"},
    "hierarchies": {"age": {"type": "age_band", "width": 5, "top": 90}, "birth_date": {"type": "date", "levels": ["month", "year"]},
                    "address": {"type": "address", "levels": ["prefecture"]}, "gender": {"type": "keep"}},
    "purposes": {"service": {"key_id": "svc"}, "analytics": {"key_id": "ana", "requires_consent": True}},
    "tables": {
        "accounts": {"path": "raw/accounts", "subject_key": "account_id", "subject_buckets": 1, "purposes": ["service"],
                     "columns": {"account_id": "linking_code", "email": "identifying",
                                 "prefecture": {"class": "quasi_identifier", "hierarchy": "address"},
                                 "gender": {"class": "quasi_identifier", "hierarchy": "gender"},
                                 "birth_date": {"class": "quasi_identifier", "hierarchy": "birth_date"},
                                 "region": "other", "closed_at": "other"}},
        "events": {"path": "raw/events", "subject_key": "account_id", "date_column": "event_ts", "subject_buckets": 2,
                   "purposes": ["service", "analytics"],
                   "columns": {"event_id": "other", "account_id": "linking_code", "event_ts": "other",
                               "bytes_down": "other", "region": "other"}},
        "restrictions": {"path": "raw/restrictions", "subject_key": "account_id", "subject_buckets": 1, "record_keeping": True,
                         "columns": {"account_id": "linking_code", "scope": "other", "region": "other"}},
        "consents": {"path": "raw/consents", "subject_key": "account_id", "subject_buckets": 1, "record_keeping": True,
                     "columns": {"account_id": "linking_code", "purpose": "other", "status": "other", "region": "other"}},
    },
    "statistics": {"usage": {"table": "events", "dimensions": ["prefecture", "gender", "birth_date", "event_ts"],
                             "measures": ["bytes_down"], "k": K}},
}

# JP: many subjects in Tokyo, a few in Osaka, one in Tottori; US: a dozen; EU: no events.
# bytes_down is 1 in JP and 1000 in US, so a sum shows at once whether regions were mixed.
RESTRICTED = {"A000000001": "all_processing", "A000000002": "analytics"}
WITHDRAWN = {"A000000003"}


def _accounts():
    rng = random.Random(7)
    rows = []
    for i in range(1, 41):
        region = "JP" if i <= 28 else "US"
        pref = ("東京都" if i <= 18 else "大阪府" if i <= 27 else "鳥取県") if region == "JP" else rng.choice(["CA", "NY"])
        birth = dt.date(1990 - rng.choice([0, 0, 7, 30]), rng.randint(1, 12), rng.randint(1, 28))
        rows.append((f"A{i:09d}", f"p{i}@example.jp", pref, rng.choice(["F", "M"]), birth, region, None))
    return rows


def _events():
    rng = random.Random(11)
    rows, n = [], 0
    for account in _accounts():
        for _ in range(rng.randint(1, 3)):
            n += 1
            month = rng.choice([1, 2])
            rows.append((n, account[0], dt.datetime(2026, month, rng.randint(1, 28), 12), 1 if account[5] == "JP" else 1000, account[5]))
    return rows


@pytest.fixture(scope="module")
def tiny_policy():
    return parse_policy(POLICY, "stats-test.yaml")


@pytest.fixture(scope="module")
def tiny_lake(spark, tiny_policy, tmp_path_factory):
    """The source tables, written once per module; tests that publish copy it (tiny_copy)."""
    lake = Lake.at(tmp_path_factory.mktemp("stats") / "lake")
    accounts = spark.createDataFrame(_accounts(), "account_id string, email string, prefecture string, gender string, "
                                                  "birth_date date, region string, closed_at timestamp")
    events = spark.createDataFrame(_events(), "event_id long, account_id string, event_ts timestamp, bytes_down long, region string")
    regions = {a[0]: a[5] for a in _accounts()}
    restrictions = spark.createDataFrame([(s, scope, regions[s]) for s, scope in RESTRICTED.items()], "account_id string, scope string, region string")
    consents = spark.createDataFrame([(s, "analytics", "withdrawn", regions[s]) for s in WITHDRAWN],
                                     "account_id string, purpose string, status string, region string")
    for name, df in (("accounts", accounts), ("events", events), ("restrictions", restrictions), ("consents", consents)):
        # Plain Delta writes (one commit each): the layout of write_policy_table is not under test.
        df.coalesce(1).write.format("delta").partitionBy("region").save(lake.table_path(tiny_policy.tables[name]))
    return lake


@pytest.fixture
def tiny_copy(tiny_lake, tmp_path):
    import shutil

    target = tmp_path / "lake"
    shutil.copytree(tiny_lake.root, target)
    return Lake.at(target)


# ------------------------------------------------------------------ an independent attacker

def attack(rows, dims, additive=("count",)):
    """Differencing by subtraction over the published table (plain Python, not the job's code).

    Returns the groups (total, dimension) with exactly one suppressed member and the (group, column)
    pairs where total - published children (or the children's sum) equals a suppressed cell's true value.
    """
    by_key = {(tuple(r[d] for d in dims), r["margin_over"]): r for r in rows}
    groups = defaultdict(list)
    for (labels, margin), row in by_key.items():
        summed = set(filter(None, margin.split(",")))
        for i, d in enumerate(dims):
            parent_labels = tuple(stats.ALL if j == i else v for j, v in enumerate(labels))
            parent_margin = ",".join(x for x in dims if x in summed | {d})
            groups[(i, parent_labels, parent_margin)].append((row, d in summed))
    single, recovered = [], []
    for group, members in groups.items():
        unknown = [(r, is_parent) for r, is_parent in members if r["suppressed"]]
        if len(unknown) == 1:
            single.append(group)
        parent = [r for r, is_parent in members if is_parent]
        for column in additive:
            published_children = sum(r[column] for r, p in members if not p and not r["suppressed"])
            if parent and not parent[0]["suppressed"]:
                residual = parent[0][column] - published_children
                for r, p in unknown:
                    true = r.get("_true", {}).get(column)
                    if not p and true is not None and abs(residual - true) < 1e-9:
                        recovered.append((group, column))
    return single, recovered


def _plan(dims, measures=(), k=K):
    return stats.StatPlan(name="t", table="t", k=k, dimensions=tuple(stats.Dimension(d, d, "value", "source") for d in dims),
                          measures=tuple((m, "source") for m in measures))


def _publish(spark, data, dims, measures=(), k=K, complementary=True):
    schema = T.StructType([T.StructField("_subject", T.StringType())] + [T.StructField(d, T.StringType()) for d in dims]
                          + [T.StructField(m, T.LongType()) for m in measures])
    plan = _plan(dims, measures, k)
    cube = stats.build_cube(spark.createDataFrame(data, schema), plan.dims, plan.measure_names)
    sup = stats.suppress(cube, plan.dims, k, complementary=complementary)
    table = stats.published_table(cube, sup, plan, "JP")
    truth = {(tuple(r[d] for d in dims), r["margin_over"]): r.asDict() for r in cube.collect()}
    rows = []
    for r in table.collect():
        row = r.asDict()
        row["_true"] = truth[(tuple(row[d] for d in dims), row["margin_over"])]
        rows.append(row)
    return plan, cube, table, sup, rows


# ------------------------------------------------------------------ suppression

def test_primary_suppression_below_k_counts_subjects_not_rows(spark):
    dims = ["pref", "gender"]
    data = ([(f"s{i}", "東京都", "F", 1) for i in range(5)] + [(f"t{i}", "東京都", "M", 1) for i in range(4)]
            + [(f"o{g}{i}", "大阪府", g, 1) for i in range(3) for g in "FM"]
            + [("u0", "鳥取県", "F", 1)] * 7          # 7 rows of ONE subject: not k-anonymous
            + [(f"v{i}", "鳥取県", "M", 1) for i in range(2)])
    plan, cube, table, sup, rows = _publish(spark, data, dims, ["bytes"])
    cells = {(r["pref"], r["gender"]): r for r in rows if r["margin_over"] == ""}
    assert cells[("鳥取県", "F")]["suppressed"] and cells[("鳥取県", "M")]["suppressed"]
    assert sup.primary == 2
    # Complementary: the smallest other cell of each gender column (Osaka), not Tokyo.
    assert cells[("大阪府", "F")]["suppressed"] and cells[("大阪府", "M")]["suppressed"] and sup.complementary == 2
    assert not cells[("東京都", "F")]["suppressed"] and cells[("東京都", "F")]["count"] == 5
    for r in rows:
        if r["suppressed"]:
            assert r["count"] is None and r["sum_bytes"] is None and r["mean_bytes"] is None
        else:
            assert r["_true"]["subjects"] >= K and r["count"] == r["_true"]["count"]
    # The total over gender in Tottori has 3 subjects: published, and true (computed from all rows).
    tottori = next(r for r in rows if r["margin_over"] == "gender" and r["pref"] == "鳥取県")
    assert not tottori["suppressed"] and tottori["count"] == 9
    grand = next(r for r in rows if r["margin_over"] == "pref,gender")
    assert grand["count"] == len(data) and grand["sum_bytes"] == len(data)


def _sparse_rows(seed: int) -> list[tuple]:
    """(subject, a, b, c, v) rows of a 3 x 3 x 2 cube whose cells hold 0-8 subjects each."""
    rng = random.Random(seed)
    data, n = [], 0
    for a, b, c in product(["a1", "a2", "a3"], ["b1", "b2", "b3"], ["c1", "c2"]):
        for _ in range(rng.choice([0, 1, 2, 3, 4, 6, 8])):
            n += 1
            data.append((f"s{n}", a, b, c, rng.randint(1, 100)))
    return data


def test_complementary_suppression_cannot_be_undone_by_subtraction(spark):
    dims = ["a", "b", "c"]
    data = _sparse_rows(3)
    plan, cube, table, sup, rows = _publish(spark, data, dims, ["v"])
    assert sup.primary > 0 and sup.complementary > 0
    single, recovered = attack(rows, dims, ("count", "sum_v"))
    assert single == [] and recovered == []
    # Without complementary suppression the same attack recovers primary-suppressed cells.
    _, _, _, _, naive = _publish(spark, data, dims, ["v"], complementary=False)
    single, recovered = attack(naive, dims, ("count", "sum_v"))
    assert single and recovered
    # The job's own attack (used by the gate) agrees on both tables.
    findings = stats.differencing_attack(table, cube, plan)
    assert findings.where("unknowns = 1 OR recovers").count() == 0


def test_suppression_joins_a_large_suppressed_set_with_a_shuffle_and_suppresses_the_same(spark, monkeypatch):
    """The suppressed cells are broadcast while few; past ``BROADCAST_SUPPRESSED_MAX`` they are
    joined with a shuffle (Spark's own broadcast threshold is off here, so nothing else broadcasts
    them). Both plans suppress the same cells in the same iterations."""
    from anonymizers import cube as cubes

    dims = ["a", "b", "c"]
    rows = spark.createDataFrame(_sparse_rows(3), "_subject string, a string, b string, c string, v int")
    cube = cubes.build_cube(rows, dims, ["v"])
    broadcasts = []
    real_broadcast = cubes.F.broadcast
    monkeypatch.setattr(cubes.F, "broadcast", lambda df: broadcasts.append(1) or real_broadcast(df))

    def run():
        sup = cubes.suppress(cube, dims, K)
        return sorted(r.cell_id for r in sup.suppressed.collect()), sup.primary, sup.complementary, sup.iterations

    threshold = spark.conf.get("spark.sql.autoBroadcastJoinThreshold")
    spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
    try:
        broadcast = run()
        assert broadcasts, "the few suppressed cells are broadcast"
        broadcasts.clear()
        monkeypatch.setattr(cubes, "BROADCAST_SUPPRESSED_MAX", 0)
        shuffled = run()
        assert not broadcasts
    finally:
        spark.conf.set("spark.sql.autoBroadcastJoinThreshold", threshold)
    assert broadcast == shuffled
    assert broadcast[1] > 0 and broadcast[2] > 0          # both kinds of suppression happened


def test_the_cube_from_per_subject_rows_is_the_general_cube(spark, monkeypatch):
    """Dimensions of the subject table hold one value per subject: the cube built from rows summed per
    (subject, cell), which counts subjects without a distinct count, is the general cube, cell for
    cell, with rows without a subject and null measures among them. A subject with two values of
    such a dimension (a duplicated subject row, say) would be counted twice in a total over it:
    there, the general cube is built."""
    from anonymizers import cube as cubes

    rng = random.Random(7)
    people = {f"s{i}": (rng.choice(["東京都", "大阪府", "鳥取県"]), rng.choice("FM")) for i in range(40)}
    data = [(subject, pref, rng.choice(["2026-01", "2026-02", "2026-03"]), gender, rng.choice(["pc", "phone"]),
             rng.choice([None, 1, 2, 5, 40]))
            for subject, (pref, gender) in people.items() for _ in range(rng.randint(1, 6))]
    data += [(None, "東京都", "2026-01", "F", "pc", 3), (None, "大阪府", "2026-02", "M", "pc", None)]
    schema = "_subject string, pref string, month string, gender string, device string, v long"
    dims, per_subject = ["pref", "month", "gender", "device"], ["pref", "gender"]
    built = []
    real = cubes._cube_by_subject
    monkeypatch.setattr(cubes, "_cube_by_subject", lambda *args: built.append(real(*args)) or built[-1])

    def both(rows):
        general = cubes.build_cube(rows, dims, ["v"]).drop("cell_id")
        by_subject = cubes.build_cube(rows, dims, ["v"], per_subject).drop("cell_id")
        return general, by_subject

    rows = spark.createDataFrame(data, schema)
    general, by_subject = both(rows)
    assert built[-1] is not None, "the cube was built from per-subject rows"
    assert [(f.name, f.dataType) for f in general.schema] == [(f.name, f.dataType) for f in by_subject.schema]
    assert general.count() == by_subject.count() > 0
    assert general.exceptAll(by_subject).count() == 0 and by_subject.exceptAll(general).count() == 0
    grand = by_subject.where(F.col("_gid") == 15).first()
    assert (grand["count"], grand["subjects"]) == (len(data), len(people))
    assert by_subject.where(F.col("avg_v").isNull()).count() > 0          # groups with no measure value

    built.clear()                                 # every dimension per subject; three varying: not this way
    only_people = cubes.build_cube(rows, ["pref", "gender"], ["v"], ["pref", "gender"]).drop("cell_id")
    assert len(built) == 1 and built[0] is not None
    general_people = cubes.build_cube(rows, ["pref", "gender"], ["v"]).drop("cell_id")
    assert general_people.exceptAll(only_people).count() == 0 and only_people.exceptAll(general_people).count() == 0
    built.clear()
    cubes.build_cube(rows, dims, ["v"], ["pref"])
    assert built == []

    moved = next(iter(people))                    # a second row of one subject, in another prefecture
    twice = data + [(moved, "沖縄県", "2026-01", people[moved][1], "pc", 1)]
    general, by_subject = both(spark.createDataFrame(twice, schema))
    assert built[-1] is None, "a subject with two prefectures falls back to the general cube"
    assert by_subject.where(F.col("_gid") == 15).first()["subjects"] == len(people)


# ------------------------------------------------------------------ the job on a lake

@pytest.fixture(scope="module")
def published(spark, tiny_policy, tiny_lake, tmp_path_factory):
    import shutil

    lake = Lake.at(tmp_path_factory.mktemp("stats-run") / "lake")
    shutil.copytree(tiny_lake.root, lake.root)
    real_stage = stats._stage_region
    STAGED.clear()

    def timed_stage(*args, **kwargs):
        start = time.monotonic()
        try:
            return real_stage(*args, **kwargs)
        finally:
            STAGED.append((threading.current_thread().name, start, time.monotonic()))

    stats._stage_region = timed_stage
    try:
        result = stats.run(spark, tiny_policy, lake, stats.StatisticsRequest.checked(tiny_policy, as_of=AS_OF))
    finally:
        stats._stage_region = real_stage
    return lake, result


STAGED: list = []      # (thread, start, end) of each region's build in the run above


def test_the_regions_of_a_statistic_are_built_a_few_at_once(published):
    assert len(STAGED) == 2                          # JP and US (EU has no rows: not built)
    assert len({thread for thread, _s, _e in STAGED}) > 1
    assert any(a[1] < b[2] and b[1] < a[2] for i, a in enumerate(STAGED) for b in STAGED[i + 1:])


def test_run_publishes_one_table_per_region_without_mixing(spark, published):
    lake, result = published
    by_region = {s["region"]: s for s in result.statistics}
    assert set(by_region) == {"JP", "US"}               # EU has no events: nothing published
    assert all(s["status"] == "published" for s in result.statistics)
    events = _events()
    excluded = set(RESTRICTED) | WITHDRAWN
    for region, bytes_each in (("JP", 1), ("US", 1000)):
        path = stats.output_path(lake, "usage", region)
        assert path.endswith(f"statistics/usage/region={region}") and is_delta(path)
        df = read_current(spark, path)
        assert {r[0] for r in df.select("region").distinct().collect()} == {region}
        grand = df.where(F.col("margin_over") == "prefecture,gender,age_band,event_ts_month").first()
        rows = [e for e in events if e[4] == region and e[1] not in excluded]
        assert grand["count"] == len(rows) and grand["sum_bytes_down"] == len(rows) * bytes_each
        assert grand["mean_bytes_down"] == bytes_each
        assert set(df.columns) >= {"prefecture", "gender", "age_band", "event_ts_month", "suppressed"}
        assert "account_id" not in df.columns and "birth_date" not in df.columns
        months = {r[0] for r in df.select("event_ts_month").distinct().collect()}
        assert months <= {"2026-01", "2026-02", stats.ALL}
        bands = {r[0] for r in df.select("age_band").distinct().collect()}
        assert bands <= {"35-39", "25-29", "65-69", "30-34", "60-64", "40-44", stats.ALL} and len(bands) > 1
        rows_out = [r.asDict() for r in df.collect()]
        single, _ = attack(rows_out, ["prefecture", "gender", "age_band", "event_ts_month"])
        assert single == []
    assert result.docs and all(Path(d).is_file() for d in result.docs)
    assert read_current(spark, lake.audit("statistics")).count() == 2
    assert not is_delta(stats.ledger_path(lake))         # no DP: no budget spent


def test_a_large_source_gets_the_cube_by_subject_and_the_same_cells(spark, tiny_policy, tiny_copy, published, monkeypatch):
    """Below CUBE_BY_SUBJECT_MIN_BYTES (every test lake) the general cube; from it on, the cube from
    per-subject rows: the same cells and primary suppression per region, the gate passed."""
    from anonymizers import cube as cubes

    plan = stats.plan_statistic(spark, tiny_policy, tiny_copy, "usage", AS_OF)
    assert stats.cube_dims_per_subject(spark, tiny_policy, tiny_copy, plan) == []
    monkeypatch.setattr(stats, "CUBE_BY_SUBJECT_MIN_BYTES", 1)
    assert stats.cube_dims_per_subject(spark, tiny_policy, tiny_copy, plan) == ["prefecture", "gender", "age_band"]
    built = []
    real = cubes._cube_by_subject
    monkeypatch.setattr(cubes, "_cube_by_subject", lambda *args: built.append(real(*args)) or built[-1])
    result = stats.run(spark, tiny_policy, tiny_copy, stats.StatisticsRequest.checked(tiny_policy, as_of=AS_OF))
    assert len(built) == 2 and all(cube is not None for cube in built)            # JP and US
    cells = lambda report: {(s["region"], s["cells"], s["primary"], s["status"]) for s in report.statistics}
    assert cells(result) == cells(published[1])


def test_restricted_and_withdrawn_subjects_are_the_excluded_set(spark, tiny_policy, tiny_lake):
    excluded = stats.excluded_subjects(spark, tiny_policy, tiny_lake, "events")
    assert {r[0] for r in excluded.collect()} == set(RESTRICTED) | WITHDRAWN


def test_gate_quarantines_when_complementary_suppression_is_missing(spark, tiny_policy, tiny_copy):
    with pytest.raises(CheckFailed, match="exposed_by_subtraction.*recovered_by_subtraction"):
        stats.run(spark, tiny_policy, tiny_copy, stats.StatisticsRequest.checked(tiny_policy, regions=["JP"], as_of=AS_OF, complementary=False))
    assert not is_delta(stats.output_path(tiny_copy, "usage", "JP"))
    quarantined = list((tiny_copy.root / "quarantine" / "statistics" / "usage" / "region=JP").iterdir())
    assert len(quarantined) == 1 and is_delta(quarantined[0])


def test_bad_input_exits_2_before_writing(spark, tiny_policy, tiny_copy):
    with pytest.raises(InputError, match="unknown statistic"):
        stats.run(spark, tiny_policy, tiny_copy, stats.StatisticsRequest.checked(tiny_policy, names=["nope"]))
    with pytest.raises(InputError, match="none of the selected statistics is differentially private"):
        stats.run(spark, tiny_policy, tiny_copy, stats.StatisticsRequest.checked(tiny_policy, epsilon=0.5))     # DP is chosen in the policy, not by an option
    bad = parse_policy({**POLICY, "statistics": {"leak": {"table": "events", "dimensions": ["email"], "k": 3}}}, "bad.yaml")
    with pytest.raises(InputError, match="class identifying"):
        stats.run(spark, bad, tiny_copy, stats.StatisticsRequest.checked(bad))
    assert not (tiny_copy.root / "statistics").exists() and not is_delta(stats.ledger_path(tiny_copy))


# ------------------------------------------------------------------ differential privacy (OpenDP)

DP_PREFECTURES = ["東京都", "大阪府"]          # 鳥取県 has events in JP but is not in the public domain
DP_MONTHS = ["2026-01", "2026-02", "2026-03"]  # 2026-03 has no events: its cells are released as noisy zeros
DP_STATISTICS = {
    "usage_dp": {"table": "events", "dimensions": ["prefecture", "gender", "event_ts"], "measures": ["bytes_down"],
                 "dp": {"mechanism": "laplace", "epsilon": 4.0, "budget": 6.0, "max_rows_per_subject": 3,
                        "bounds": {"bytes_down": [0, 1000]},
                        "domains": {"prefecture": {"values": DP_PREFECTURES}, "gender": {"values": ["F", "M", "X"]},
                                    "event_ts": {"months": {"from": "2026-01", "to": "2026-03"}}}}},
    "ages_zcdp": {"table": "events", "dimensions": ["gender", "birth_date"],
                  "dp": {"mechanism": "gaussian", "rho": 0.5, "delta": 1e-6, "budget": 1.0, "max_rows_per_subject": 3,
                         "domains": {"gender": {"values": ["F", "M"]}, "birth_date": {"hierarchy": "age"}}}},
}
DP_POLICY = {**POLICY, "statistics": {**POLICY["statistics"], **DP_STATISTICS}}


def _dp_truth(region):
    """True counts and sums of usage_dp per key, from the test's own rows (plain Python)."""
    accounts = {a[0]: a for a in _accounts()}
    excluded = set(RESTRICTED) | WITHDRAWN
    truth = defaultdict(lambda: [0, 0])
    for _, account, ts, down, row_region in _events():
        pref, gender = accounts[account][2], accounts[account][3]
        if row_region != region or account in excluded or pref not in DP_PREFECTURES:
            continue
        labels = (pref, gender, ts.strftime("%Y-%m"))
        for mask in product([False, True], repeat=3):
            key = tuple(stats.ALL if summed else v for v, summed in zip(labels, mask))
            truth[key][0] += 1
            truth[key][1] += down
    return truth


def _lake_files(lake):
    return sorted(str(p.relative_to(lake.root)) for p in lake.root.rglob("*") if p.name != "_wasure_lease")


def test_dp_release_is_the_public_key_set_with_discrete_noise(spark, tiny_copy):
    policy = parse_policy(DP_POLICY, "dp.yaml")
    result = stats.run(spark, policy, tiny_copy, stats.StatisticsRequest.checked(policy, names=["usage_dp"], regions=["JP"], as_of=AS_OF))
    (info,) = result.statistics
    assert info["status"] == "published" and info["mechanism"] == "laplace" and info["k"] is None
    rows = [r.asDict() for r in read_current(spark, stats.output_path(tiny_copy, "usage_dp", "JP")).collect()]
    keys = [(r["prefecture"], r["gender"], r["event_ts_month"]) for r in rows]
    # Exactly the public key set: no 鳥取県 (in the data only), every zero cell (gender X, March) present.
    expected = set(product(DP_PREFECTURES + [stats.ALL], ["F", "M", "X", stats.ALL], DP_MONTHS + [stats.ALL]))
    assert len(keys) == len(expected) == 48 and set(keys) == expected
    truth = _dp_truth("JP")
    assert truth[("大阪府", "F", "2026-01")][0] > 0 and ("東京都", "X", "2026-03") not in truth
    assert all(isinstance(r["count"], int) and isinstance(r["sum_bytes_down"], int) and not r["suppressed"] for r in rows)
    assert {r["region"] for r in rows} == {"JP"} and "account_id" not in rows[0]
    # Noise scale b = sensitivity / (epsilon / 2): 2^3 groupings x 3 rows for the count, x 1000 for the sum.
    ledger = read_current(spark, stats.ledger_path(tiny_copy)).collect()
    assert len(ledger) == 1 and ledger[0]["statistic"] == "usage_dp" and ledger[0]["region"] == "JP"
    assert (ledger[0]["mechanism"], ledger[0]["epsilon"], ledger[0]["delta"], ledger[0]["budget_unit"]) == ("laplace", 4.0, 0.0, "epsilon")
    scales = json.loads(ledger[0]["parameters"])["scales"]
    assert scales == {"count": pytest.approx(12.0), "sum_bytes_down": pytest.approx(12000.0)}
    for column, index in (("count", 0), ("sum_bytes_down", 1)):
        noise = [r[column] - truth.get(k, [0, 0])[index] for r, k in zip(rows, keys)]
        assert sum(n != 0 for n in noise) >= 0.8 * len(noise)                 # noise is there
        assert max(abs(n) for n in noise) < 20 * scales[column]               # P(|X| > 20 b) ~ e^-20
        assert 0.3 * scales[column] < sum(abs(n) for n in noise) / len(noise) < 2.5 * scales[column]   # E|X| ~ b
    assert result.docs and not (tiny_copy.root / "statistics" / "usage").exists()   # only the named statistic


def test_dp_gaussian_release_records_rho_and_its_epsilon_delta(spark, tiny_copy):
    from anonymizers import dp

    policy = parse_policy(DP_POLICY, "dp.yaml")
    result = stats.run(spark, policy, tiny_copy, stats.StatisticsRequest.checked(policy, names=["ages_zcdp"], regions=["US", "EU"], as_of=AS_OF))
    by_region = {s["region"]: s for s in result.statistics}
    # EU has no events: a dp statistic is released for it anyway (region presence is not published).
    assert set(by_region) == {"US", "EU"} and all(s["status"] == "published" for s in by_region.values())
    bands = dp.age_band_labels(5, 90)
    for region in ("US", "EU"):
        rows = read_current(spark, stats.output_path(tiny_copy, "ages_zcdp", region)).collect()
        assert {(r["gender"], r["age_band"]) for r in rows} == set(product(["F", "M", stats.ALL], bands + [stats.ALL]))
        assert all(isinstance(r["count"], int) for r in rows)
    ledger = stats.read_ledger(spark, tiny_copy)
    assert ledger[("ages_zcdp", "US")]["rho"] == pytest.approx(0.5) and ledger[("ages_zcdp", "US")]["approximate"]
    row = read_current(spark, stats.ledger_path(tiny_copy)).where("region = 'US'").first()
    assert (row["mechanism"], row["budget_unit"], row["delta"]) == ("gaussian", "rho", 1e-6)
    # OpenDP's conversion is tighter than the classic rho + 2 sqrt(rho ln(1/delta)).
    assert row["epsilon"] == pytest.approx(dp.zcdp_epsilon(0.5, 1e-6)) and 0.5 < row["epsilon"] < 0.5 + 2 * math.sqrt(0.5 * math.log(1e6))
    assert by_region["US"]["spent"] == pytest.approx(0.5) and by_region["US"]["unit"] == "rho"


def test_dp_budget_is_policy_driven_and_options_only_tighten_via_cli(spark, tiny_copy, tmp_path):
    import yaml
    from typer.testing import CliRunner

    import jobs.cli.statistics  # noqa: F401 - registers the command
    from jobs.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["statistics", "--help"])
    assert out.exit_code == 0 and "--epsilon" in out.output and "--rho" in out.output and "--bound" not in out.output
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(DP_POLICY, allow_unicode=True))
    base = ["statistics", "--policy", str(policy_file), "--lake", str(tiny_copy.root), "--region", "US",
            "--as-of", "2026-11-01", "--name", "usage_dp"]
    first = runner.invoke(app, base + ["--epsilon", "3", "--budget", "5"])      # both tighter than the policy
    assert first.exit_code == 0, first.output
    assert "3 of 5 epsilon" in " ".join(first.output.split())
    files = read_current(spark, stats.output_path(tiny_copy, "usage_dp", "US")).inputFiles()
    before = _lake_files(tiny_copy)

    def refused(args, message):
        result = runner.invoke(app, base + args)
        text = " ".join(result.output.split())
        assert result.exit_code == 2 and message in text and "Nothing was written" in text, result.output
        assert _lake_files(tiny_copy) == before

    refused([], "spent 3 of 5")                  # the policy's epsilon 4: 3 + 4 > the budget recorded (5)
    refused(["--epsilon", "2.5"], "spent 3 of 5")   # the policy's budget (6) does not lift the recorded 5
    refused(["--epsilon", "5"], "only tighten")     # above the policy's epsilon
    refused(["--budget", "10"], "only tighten")     # above the policy's budget
    refused(["--rho", "0.1"], "none of the selected statistics")
    assert read_current(spark, stats.output_path(tiny_copy, "usage_dp", "US")).inputFiles() == files
    last = runner.invoke(app, base + ["--epsilon", "2"])      # what is left
    assert last.exit_code == 0 and "5 of 5 epsilon" in " ".join(last.output.split()), last.output
    spent = stats.read_ledger(spark, tiny_copy)[("usage_dp", "US")]
    assert spent["epsilon"] == pytest.approx(5.0) and spent["releases"] == 2 and spent["budgets"]["epsilon"] == 5.0
    assert "seed" not in read_current(spark, stats.ledger_path(tiny_copy)).first()["parameters"]


def test_dp_domain_above_the_cap_is_refused_before_anything_is_written(spark, tiny_copy):
    huge = {**DP_STATISTICS["usage_dp"], "dp": {**DP_STATISTICS["usage_dp"]["dp"], "domains": {
        "prefecture": {"values": [f"p{i}" for i in range(1000)]}, "gender": {"values": ["F", "M", "X"]},
        "event_ts": {"months": {"from": "1950-01", "to": "2049-12"}}}}}
    policy = parse_policy({**POLICY, "statistics": {"huge": huge}}, "huge.yaml")
    before = _lake_files(tiny_copy)
    with pytest.raises(InputError, match=r"statistics.huge.dp.domains: .*4808804 cells and totals, more than 1000000"):
        stats.run(spark, policy, tiny_copy, stats.StatisticsRequest.checked(policy, as_of=AS_OF))
    assert _lake_files(tiny_copy) == before


@pytest.mark.parametrize("change, path", [
    ({"domains": {"prefecture": {"values": ["東京都"]}, "gender": {"values": ["F"]}}}, "statistics.s.dp.domains"),
    ({"bounds": {}}, "statistics.s.dp.bounds"),
    ({"k": 5}, "statistics.s.k"),
    ({"mechanism": "gaussian"}, "statistics.s.dp.rho"),
    ({"mechanism": "gaussian", "epsilon": None, "rho": 0.1}, "statistics.s.dp.delta"),
    ({"epsilon": 7.0}, "statistics.s.dp.budget"),
    ({"domains": {**DP_STATISTICS["usage_dp"]["dp"]["domains"], "gender": {"values": ["F"], "last_months": 3}}},
     "statistics.s.dp.domains.gender"),
    ({"domains": {**DP_STATISTICS["usage_dp"]["dp"]["domains"], "gender": {"values": ["F", "(all)"]}}},
     "statistics.s.dp.domains.gender.values"),
    ({"domains": {**DP_STATISTICS["usage_dp"]["dp"]["domains"], "gender": {"hierarchy": "age"}}},
     "statistics.s.dp.domains.gender.hierarchy"),
    ({"bounds": {"bytes_down": [0, 0.5]}}, "statistics.s.dp.bounds.bytes_down"),
])
def test_dp_block_is_validated_with_its_key_path(change, path):
    from jobs.policy import PolicyError

    stat = json.loads(json.dumps(DP_STATISTICS["usage_dp"]))
    dp_block = {**stat["dp"], **{k: v for k, v in change.items() if k != "k"}}
    stat = {**stat, "dp": {k: v for k, v in dp_block.items() if v is not None}, **({"k": change["k"]} if "k" in change else {})}
    with pytest.raises(PolicyError) as info:
        parse_policy({**POLICY, "statistics": {"s": stat}})
    assert any(p == path or p.startswith(path + ".") for p, _ in info.value.problems), info.value.problems
    assert parse_policy({**POLICY, "statistics": {"s": DP_STATISTICS["usage_dp"]}}).statistics["s"].k is None


def test_opendp_calibration_sensitivity_and_noise_scale():
    from anonymizers import dp
    from anonymizers.registry import OperatorError

    spec = dp.DPSpec("laplace", epsilon=1.0, rho=None, delta=None, budget=2.0, max_rows_per_subject=5,
                     bounds={"v": (-10, 1000)})
    cal = dp.calibrate(spec, n_dims=2)
    assert cal.sensitivities == {"count": 20, "sum_v": 20000}        # 2^2 groupings x 5 rows (x max |bound|)
    assert cal.epsilon == pytest.approx(1.0) and cal.scales["count"] == pytest.approx(40.0)
    # The noise OpenDP draws on a public key set with no data at all: integers, E|X| ~ b.
    domains = [[f"a{i}" for i in range(60)], ["x", "y"]]
    rows = dp.noisy_rows({}, ["a", "b"], domains, spec, cal, "JP")
    counts = [r[5] for r in rows]
    assert len(rows) == dp.cube_size(domains) == 183 and all(isinstance(c, int) for c in counts)
    assert 0.7 * 40 < sum(abs(c) for c in counts) / len(counts) < 1.4 * 40
    assert all(r[7] is None or -10 <= r[7] <= 1000 for r in rows)      # means post-processed into the bounds
    with pytest.raises(OperatorError, match="only tighten"):
        spec.tightened(epsilon=1.5, rho=None, budget=None)
    assert spec.tightened(epsilon=0.5, rho=0.1, budget=1.0).epsilon == 0.5    # rho does not apply to laplace
    # A pure-epsilon budget cannot count a zCDP release; a rho budget counts a laplace one (eps^2/2).
    spent = {"epsilon": 0.5, "rho": 0.125, "approximate": True, "rho_known": True}
    assert "cannot count" in dp.refusal(spent, spec, cal, 2.0)
    gauss = dp.DPSpec("gaussian", None, 0.2, 1e-6, 0.35, 5, {"v": (-10, 1000)})
    assert dp.refusal(spent, gauss, dp.calibrate(gauss, 2), 0.35) is None          # 0.125 + 0.2 <= 0.35
    assert "exceed" in dp.refusal({**spent, "rho": 0.2}, gauss, dp.calibrate(gauss, 2), 0.35)
