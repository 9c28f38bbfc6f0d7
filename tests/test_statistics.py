"""k-anonymous statistics (S7) per region (S15): primary and complementary suppression checked by an
independent differencing attack, region separation, restricted subjects left out, the DP budget
ledger across runs, DP noise, the gate quarantining a table that fails it, and the CLI."""
import datetime as dt
import random
from collections import defaultdict
from itertools import product
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.console import CheckFailed, InputError
from jobs.lake import Lake, is_delta, read_current
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


def test_complementary_suppression_cannot_be_undone_by_subtraction(spark):
    dims = ["a", "b", "c"]
    rng = random.Random(3)
    data, n = [], 0
    for a, b, c in product(["a1", "a2", "a3"], ["b1", "b2", "b3"], ["c1", "c2"]):
        for _ in range(rng.choice([0, 1, 2, 3, 4, 6, 8])):
            n += 1
            data.append((f"s{n}", a, b, c, rng.randint(1, 100)))
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


# ------------------------------------------------------------------ the job on a lake

@pytest.fixture(scope="module")
def published(spark, tiny_policy, tiny_lake, tmp_path_factory):
    import shutil

    lake = Lake.at(tmp_path_factory.mktemp("stats-run") / "lake")
    shutil.copytree(tiny_lake.root, lake.root)
    result = stats.run(spark, tiny_policy, lake, as_of=AS_OF)
    return lake, result


def test_run_publishes_one_table_per_region_without_mixing(spark, published):
    lake, result = published
    by_region = {s["region"]: s for s in result["statistics"]}
    assert set(by_region) == {"JP", "US"}               # EU has no events: nothing published
    assert all(s["status"] == "published" for s in result["statistics"])
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
    assert result["docs"] and all(Path(d).is_file() for d in result["docs"])
    assert read_current(spark, lake.audit("statistics")).count() == 2
    assert not is_delta(stats.ledger_path(lake))         # no DP: no budget spent


def test_restricted_and_withdrawn_subjects_are_the_excluded_set(spark, tiny_policy, tiny_lake):
    excluded = stats.excluded_subjects(spark, tiny_policy, tiny_lake, "events")
    assert {r[0] for r in excluded.collect()} == set(RESTRICTED) | WITHDRAWN


def test_dp_noise_and_budget_ledger_across_runs_via_cli(spark, tiny_policy, tiny_copy, published, tmp_path):
    import yaml
    from typer.testing import CliRunner

    import jobs.cli_statistics  # noqa: F401 - registers the command
    from jobs.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["statistics", "--help"])
    assert out.exit_code == 0 and "--epsilon" in out.output and "wasure statistics" in out.output
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(POLICY, allow_unicode=True))
    args = ["statistics", "--policy", str(policy_file), "--lake", str(tiny_copy.root), "--region", "US",
            "--as-of", "2026-11-01", "--epsilon", "0.6", "--budget", "1", "--bound", "bytes_down=0:1000",
            "--max-rows-per-subject", "5"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "usage" in first.output and "0.6 of 1" in first.output
    ledger = stats.read_ledger(spark, tiny_copy)
    assert ledger == {("usage", "US"): {"epsilon": pytest.approx(0.6), "delta": 0.0, "budget": 1.0,
                                        "delta_budget": stats.DEFAULT_DELTA_BUDGET, "releases": 1}}
    files = read_current(spark, stats.output_path(tiny_copy, "usage", "US")).inputFiles()

    # The ledger persists: the same release again would exceed the budget -> exit 2, nothing written.
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "budget" in again.output and "Nothing was written" in again.output
    # Raising the budget does not lift the one recorded; what is left (0.4) is still allowed.
    with pytest.raises(InputError, match="spent 0.6 of 1"):
        stats.run(spark, tiny_policy, tiny_copy, epsilon=0.6, regions=["US"], budget=5.0,
                  bounds={"bytes_down": (0, 1000)}, as_of=AS_OF)
    dp = stats.dp_options(0.4, bounds={"bytes_down": (0, 1000)})
    assert stats.check_budget(stats.read_ledger(spark, tiny_copy), dp, [("usage", "US"), ("usage", "JP")])
    with pytest.raises(InputError):
        stats.check_budget(stats.read_ledger(spark, tiny_copy), stats.dp_options(0.41, bounds={"bytes_down": (0, 1)}), [("usage", "US")])
    assert read_current(spark, stats.output_path(tiny_copy, "usage", "US")).inputFiles() == files
    assert read_current(spark, stats.ledger_path(tiny_copy)).count() == 1
    assert "seed" not in read_current(spark, stats.ledger_path(tiny_copy)).first()["parameters"]

    # DP noise changed published counts, but not which cells are suppressed (L=5 and the bounds
    # keep every row and value of this lake).
    def cells(lake):
        return {(r["prefecture"], r["gender"], r["age_band"], r["event_ts_month"]): r
                for r in read_current(spark, stats.output_path(lake, "usage", "US")).collect()}
    plain, noisy = cells(published[0]), cells(tiny_copy)
    assert plain.keys() == noisy.keys()
    assert all(plain[key]["suppressed"] == noisy[key]["suppressed"] for key in plain)
    shown = [key for key in plain if not plain[key]["suppressed"]]
    assert shown and any(plain[key]["count"] != noisy[key]["count"] for key in shown)
    assert all(noisy[key]["count"] is None and noisy[key]["sum_bytes_down"] is None for key in plain if plain[key]["suppressed"])
    assert all(noisy[key]["count"] >= 0 for key in shown)


def test_gate_quarantines_when_complementary_suppression_is_missing(spark, tiny_policy, tiny_copy):
    with pytest.raises(CheckFailed, match="exposed_by_subtraction.*recovered_by_subtraction"):
        stats.run(spark, tiny_policy, tiny_copy, regions=["JP"], as_of=AS_OF, complementary=False)
    assert not is_delta(stats.output_path(tiny_copy, "usage", "JP"))
    quarantined = list((tiny_copy.root / "quarantine" / "statistics" / "usage" / "region=JP").iterdir())
    assert len(quarantined) == 1 and is_delta(quarantined[0])


def test_bad_input_exits_2_before_writing(spark, tiny_policy, tiny_copy):
    with pytest.raises(InputError, match="unknown statistic"):
        stats.run(spark, tiny_policy, tiny_copy, names=["nope"])
    with pytest.raises(InputError, match="bounds"):
        stats.run(spark, tiny_policy, tiny_copy, epsilon=0.5)
    with pytest.raises(InputError, match="delta"):
        stats.dp_options(0.5, "gaussian")
    bad = parse_policy({**POLICY, "statistics": {"leak": {"table": "events", "dimensions": ["email"], "k": 3}}}, "bad.yaml")
    with pytest.raises(InputError, match="class identifying"):
        stats.run(spark, bad, tiny_copy)
    assert not (tiny_copy.root / "statistics").exists() and not is_delta(stats.ledger_path(tiny_copy))


def test_laplace_noise_has_the_right_scale(spark):
    df = spark.range(20000).select(stats.laplace_noise(123, 2.0).alias("x"))
    row = df.select(F.avg("x").alias("m"), F.avg(F.abs("x")).alias("a")).first()
    assert abs(row["m"]) < 0.1 and row["a"] == pytest.approx(2.0, rel=0.05)    # E|X| = b
