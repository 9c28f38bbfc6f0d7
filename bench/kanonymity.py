"""k-anonymity (distributed Mondrian): scaling on synthetic tables and UCI Adult beside ARX and anjana.

    .venv/bin/python -m bench.kanonymity --rows 100000 --k 5 50 --adult

**Synthetic** (``--rows``): one table per size with 8 quasi-identifiers drawn independently from
UCI Adult's marginal distributions (age as an interval attribute; education, marital-status,
native-country, occupation, race, sex, workclass with ARX's hierarchies from ``tests/data/adult``),
plus an id column; written once as Delta (untimed). Timed: ``mondrian_anonymize`` of the Delta table
+ writing the release as Delta. Information loss (GCP, classes) and the smallest class come from
``anonymizers.utility`` / ``anonymizers.risk`` on the written release (untimed). Independent
attributes are a hard case: almost every row is a distinct QI tuple.

**Adult** (``--adult``): 30,162 records, all 9 attributes as QIs (as in docs/anonymization.md), k=5
and k=100 (the k values of ARX's published results), medians of >= 3 runs each of

* wasure: ``mondrian_anonymize`` + ``count()`` (age as an interval, local recoding);
* anjana (PyPI), in this process on the same pandas rows, same 9 QIs and k, ARX's hierarchies
  (including ARX's age hierarchy: anjana generalizes full-domain, level by level);
* ARX: its published optimal transformations for this file (ARX test suite, below); no runtime is
  published, so none is shown. Their GCP is computed here by applying the published levels.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import (bench_env, command_line, current_rss_mib, last_stage_id, peak_memory, side_by_side,
                          stage_profile, summarize, write)

ADULT = Path(__file__).resolve().parent.parent / "tests" / "data" / "adult"
ADULT_COLUMNS = ["sex", "age", "race", "marital-status", "education", "native-country", "workclass", "occupation",
                 "salary-class"]
ADULT_QIS = ["age", "education", "marital-status", "native-country", "occupation", "race", "salary-class", "sex",
             "workclass"]
SYNTH_QIS = ["age", "education", "marital-status", "native-country", "occupation", "race", "sex", "workclass"]

# ARX's published optimal full-domain transformations for this adult.csv (levels in the file's
# column order sex, age, race, marital-status, education, native-country, workclass, occupation,
# salary-class), from arx-deidentifier/arx, src/test/org/deidentifier/arx/test/
# TestExecutionTimeKAnonymity.java (same cases in TestAnonymizationKAnonymity), metric: entropy.
ARX_PUBLISHED = [
    {"k": 5, "suppression": 0.0, "levels": [1, 2, 1, 1, 3, 2, 2, 1, 1], "arx_entropy_loss": 407289.5388925293},
    {"k": 100, "suppression": 0.0, "levels": [0, 4, 1, 1, 3, 2, 2, 1, 1], "arx_entropy_loss": 453196.8932458743},
    {"k": 5, "suppression": 0.04, "levels": [1, 0, 1, 1, 3, 2, 2, 0, 1], "arx_entropy_loss": 255559.85455731067},
]
ARX_SOURCE = ("arx-deidentifier/arx src/test/org/deidentifier/arx/test/TestExecutionTimeKAnonymity.java "
              "(commit 40a6e0f606b49266f5b369662bd439bfdd71b7b5)")


def hierarchy_frame(qi: str) -> pd.DataFrame:
    return pd.read_csv(ADULT / f"adult_hierarchy_{qi}.csv", sep=";", header=None, dtype=str)


def leaf_counts(qi: str) -> tuple[dict[str, int], int]:
    """label -> number of leaves it covers (any level), and the number of leaves."""
    h = hierarchy_frame(qi)
    counts: dict[str, int] = {}
    for j in h.columns:
        for label, n in h.groupby(j)[0].nunique().items():
            counts[label] = max(counts.get(label, 0), int(n))
    counts["*"] = len(h)
    return counts, len(h)


def full_domain_gcp(released: pd.DataFrame, qis: list[str], suppressed: int = 0) -> dict:
    """GCP of a release whose cells are hierarchy labels: (leaves - 1) / (all leaves - 1) per cell,
    1 per cell of a suppressed row (ARX's Loss / docs/anonymization.md's definition)."""
    ncp = {}
    rows = len(released) + suppressed
    for qi in qis:
        counts, n = leaf_counts(qi)
        cells = released[qi].astype(str).map(lambda v: counts.get(v, 1)).to_numpy(dtype=float)
        ncp[qi] = float(((cells - 1) / (n - 1)).sum() + suppressed) / rows
    classes = released.groupby(qis).size()
    return {"gcp": float(np.mean(list(ncp.values()))), "ncp": ncp, "classes": int(len(classes)),
            "min_class": int(classes.min()) if len(classes) else 0, "suppressed": suppressed}


def arx_levels_release(adult: pd.DataFrame, levels: list[int]) -> pd.DataFrame:
    out = adult.copy()
    for column, level in zip(ADULT_COLUMNS, levels):
        h = hierarchy_frame(column)
        mapping = dict(zip(h[0], h[level]))
        out[column] = out[column].astype(str).map(mapping)
    return out


# ------------------------------------------------------------------ synthetic tables

def synthetic_table(spark, rows: int, seed: int = 7):
    """rows x 8 QIs, each drawn from Adult's marginal (inverse CDF over 4096 slots), pure Spark."""
    from pyspark.sql import functions as F

    adult = pd.read_csv(ADULT / "adult.csv", sep=";")
    slots = 4096
    columns = [F.col("id")]
    for qi in SYNTH_QIS:
        values = adult[qi].value_counts(normalize=True).sort_index()
        cdf = np.cumsum(values.to_numpy())
        picks = [values.index[min(int(np.searchsorted(cdf, (i + 0.5) / slots)), len(values) - 1)] for i in range(slots)]
        lookup = F.array(*[F.lit(int(v) if qi == "age" else str(v)) for v in picks])
        slot = F.pmod(F.xxhash64(F.lit(seed), F.lit(qi), F.col("id")), F.lit(slots)).cast("int")
        columns.append(F.element_at(lookup, slot + 1).alias(qi))
    return spark.range(rows).select(*columns)


def synthetic_hierarchies():
    from anonymizers.hierarchy import CategoricalHierarchy, IntervalHierarchy

    return {q: IntervalHierarchy(q) if q == "age" else
            CategoricalHierarchy.from_csv(ADULT / f"adult_hierarchy_{q}.csv", name=q) for q in SYNTH_QIS}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="*", default=[100_000])
    parser.add_argument("--k", type=int, nargs="+", default=[5, 50])
    parser.add_argument("--adult", action="store_true", help="also the UCI Adult comparison (ARX, anjana)")
    parser.add_argument("--adult-k", type=int, nargs="+", default=[5, 100])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--name", default="kanonymity_small")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="wasure-bench-kanon-"))
    bench_env(work)
    from anonymizers.hierarchy import CategoricalHierarchy, IntervalHierarchy
    from anonymizers.mondrian import mondrian_anonymize
    from anonymizers.risk import risk_report
    from anonymizers.utility import utility_report
    from jobs.runtime.spark import get_spark

    spark = get_spark("wasure-bench-kanonymity")
    payload: dict = {"command": command_line("bench.kanonymity", argv),
                     "parameters": {"rows": args.rows, "k": args.k, "adult": args.adult, "adult_k": args.adult_k,
                                    "repeats": args.repeats, "qis": SYNTH_QIS,
                                    "data": "independent draws from UCI Adult marginals (bench.kanonymity.synthetic_table)"},
                     "synthetic": [], "adult": None}

    hierarchies = synthetic_hierarchies()
    for rows in args.rows:
        source = str(work / f"synthetic_{rows}")
        synthetic_table(spark, rows).write.format("delta").mode("overwrite").save(source)
        distinct = spark.read.format("delta").load(source).select(*SYNTH_QIS).distinct().count()
        for k in args.k:
            out = str(work / f"release_{rows}_{k}")
            profile = {}

            def run_once(round_: int, k=k, out=out, source=source, profile=profile):
                stage0 = last_stage_id(spark)
                df = spark.read.format("delta").load(source)
                mondrian_anonymize(df, SYNTH_QIS, hierarchies, k).write.format("delta").mode("overwrite").save(out)
                if round_ == args.repeats - 1:
                    profile.update(stage_profile(spark, stage0))
                return current_rss_mib()

            timing = side_by_side({"wasure": run_once}, args.repeats)["wasure"]
            released = spark.read.format("delta").load(out)
            report = utility_report(released, SYNTH_QIS, hierarchies, k=k, suppressed=rows - released.count())
            risk = risk_report(released, SYNTH_QIS, k)
            entry = {"rows": rows, "k": k, "distinct_qi_tuples": distinct,
                     "time": {key: v for key, v in timing.items() if key != "results"},
                     "rss_after_run_mib": timing["results"], "peak_memory_mib": peak_memory(),
                     "gcp": report["gcp"], "utility": report, "risk": risk, "profile": profile}
            payload["synthetic"].append(entry)
            print(f"synthetic {rows:,} rows k={k}: {timing['median_s']:.1f} s, GCP {report['gcp']:.4f}, "
                  f"{int(report['classes']):,} classes, max risk {risk['max_prosecutor_risk']:.3f}", flush=True)
            shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(source, ignore_errors=True)

    if args.adult:
        schema = ("sex STRING, age INT, race STRING, `marital-status` STRING, education STRING, "
                  "`native-country` STRING, workclass STRING, occupation STRING, `salary-class` STRING")
        adult_df = spark.read.csv(str(ADULT / "adult.csv"), sep=";", header=True, schema=schema).cache()
        n = adult_df.count()
        adult_h = {q: IntervalHierarchy(q) if q == "age" else
                   CategoricalHierarchy.from_csv(ADULT / f"adult_hierarchy_{q}.csv", name=q) for q in ADULT_QIS}
        adult_pd = pd.read_csv(ADULT / "adult.csv", sep=";", dtype=str)
        try:
            from anjana.anonymity import k_anonymity as anjana_k_anonymity

            anjana_version = importlib.metadata.version("anjana")
            anjana_h = {q: dict(hierarchy_frame(q)) for q in ADULT_QIS}
        except Exception as exc:  # noqa: BLE001 - recorded in the result and the doc
            anjana_k_anonymity, anjana_version = None, f"not available: {type(exc).__name__}: {exc}"
        adult_out: dict = {"rows": n, "qis": ADULT_QIS, "anjana_version": anjana_version, "runs": [],
                           "arx_published": [], "arx_source": ARX_SOURCE}
        for k in args.adult_k:
            holder: dict = {}

            def wasure_adult(_round: int, k=k):
                out = mondrian_anonymize(adult_df, ADULT_QIS, adult_h, k).cache()
                out.count()
                holder["wasure"] = out
                return None

            def anjana_adult(_round: int, k=k):
                holder["anjana"] = anjana_k_anonymity(adult_pd, [], ADULT_QIS, k, 0, anjana_h)
                return None

            sides = {"wasure": wasure_adult}
            if anjana_k_anonymity is not None:
                sides["anjana"] = anjana_adult

            def release(side, _round):
                if side == "wasure" and _round < args.repeats - 1:
                    holder["wasure"].unpersist()

            timing = side_by_side(sides, args.repeats, reset=release)
            released = holder["wasure"]
            report = utility_report(released, ADULT_QIS, adult_h, k=k, suppressed=n - released.count())
            risk = risk_report(released, ADULT_QIS, k)
            released.unpersist()
            row = {"k": k, "wasure": {"time": {key: v for key, v in timing["wasure"].items() if key != "results"},
                                      "gcp": report["gcp"], "classes": report["classes"],
                                      "avg_class_size": report["avg_class_size"],
                                      "discernibility": report["discernibility"], "suppressed": report["suppressed"],
                                      "min_class": int(round(1 / risk["max_prosecutor_risk"])),
                                      "min_class_ok": risk["records_below_k_share"] == 0}}
            if "anjana" in timing:
                a = holder["anjana"]
                loss = full_domain_gcp(a, ADULT_QIS, suppressed=n - len(a))
                row["anjana"] = {"time": {key: v for key, v in timing["anjana"].items() if key != "results"},
                                 "gcp": loss["gcp"], "classes": loss["classes"], "min_class": loss["min_class"],
                                 "suppressed": loss["suppressed"], "ncp": loss["ncp"]}
            adult_out["runs"].append(row)
            print(f"adult k={k}: wasure {timing['wasure']['median_s']:.1f} s GCP {report['gcp']:.4f}"
                  + (f"; anjana {timing['anjana']['median_s']:.1f} s GCP {row['anjana']['gcp']:.4f}" if "anjana" in row else ""),
                  flush=True)
        for case in ARX_PUBLISHED:
            t0 = time.perf_counter()
            rel = arx_levels_release(adult_pd, case["levels"])
            sizes = rel.groupby(ADULT_QIS)[ADULT_QIS[0]].transform("size")
            kept = rel[sizes >= case["k"]]          # ARX suppresses the records of classes smaller than k
            loss = full_domain_gcp(kept, ADULT_QIS, suppressed=len(rel) - len(kept))
            within = (len(rel) - len(kept)) <= case["suppression"] * len(rel)
            adult_out["arx_published"].append({**case, "gcp_of_published_levels": loss["gcp"], "classes": loss["classes"],
                                               "min_class": loss["min_class"], "ncp": loss["ncp"],
                                               "suppressed": loss["suppressed"], "within_budget": within,
                                               "note": "levels published by ARX; GCP computed here, records of classes < k suppressed",
                                               "compute_s": summarize([time.perf_counter() - t0])["median_s"]})
        adult_df.unpersist()
        payload["adult"] = adult_out
    payload["peak_memory_mib"] = peak_memory()
    print(write(args.name, payload))
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
