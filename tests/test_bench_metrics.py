"""bench/metrics.py: the overhead counter charges Spark jobs, Delta commits and snapshots to the step
(and the table) that caused them, and nothing that ran outside the step."""
import threading


def test_counter_attributes_jobs_commits_and_snapshots_to_the_step_and_table(spark, tmp_path):
    from bench.metrics import SETUP_SEGMENT, OverheadCounter

    lake = tmp_path / "lake"
    one, two = str(lake / "raw" / "t_one"), str(lake / "raw" / "t_two")
    spark.range(3).write.format("delta").save(str(lake / "raw" / "before"))     # outside any step
    with OverheadCounter(spark, lake, {"t_one": "raw/t_one", "t_two": "raw/t_two"},
                         wrap_gates=False, hook_progress=False) as counter:
        with counter.step("write") as step:
            counter.progress("writing t_one")
            spark.range(10).write.format("delta").save(one)
            spark.range(10).write.format("delta").mode("append").save(one)
            counter.progress("writing t_two")
            spark.range(5).write.format("delta").save(two)
            # a Python thread does not inherit the step's job group: counted by id range, not by group
            worker = threading.Thread(target=lambda: spark.range(4).count())
            worker.start()
            worker.join()
        jobs_after_step = counter.job_counter()
        spark.range(7).write.format("delta").mode("append").save(one)          # outside any step
        spark.range(7).count()
        with counter.step("empty") as empty:
            pass
    result = step.result
    assert result["commits"] == 3
    assert result["commits_by_operation"] == {"WRITE": 3}
    assert result["jobs"] >= 4 and result["stages"] >= result["stages_run"] >= 1
    assert result["jobs_outside_group"] >= 1
    assert result["jobs_in_group"] == result["jobs"] - result["jobs_outside_group"]
    assert result["jobs_not_in_status_store"] == 0
    per_table = result["per_table"]
    assert per_table["t_one"]["commits"] == 2 and per_table["t_two"]["commits"] == 1
    assert per_table["t_one"]["jobs"] >= 2 and per_table["t_two"]["jobs"] >= 1
    assert per_table["t_one"]["jobs"] + per_table["t_two"]["jobs"] + result["per_phase"][SETUP_SEGMENT]["jobs"] \
        == result["jobs"]
    assert result["progress_messages"] == 2
    if "snapshots" in result:              # Delta's log lines were captured
        assert result["snapshots"] >= 3 and per_table["t_one"]["snapshots"] >= 2
    # nothing that ran after the step (a commit, two jobs) leaked into it, nor into an empty step
    assert counter.job_counter() > jobs_after_step
    assert empty.result["jobs"] == 0 and empty.result["commits"] == 0 and empty.result.get("snapshots", 0) == 0
    assert spark.sparkContext.getLocalProperty("spark.jobGroup.id") is None


def test_table_names_match_whole_names_paths_labels_and_aliases():
    from bench.metrics import TableNames

    names = TableNames({"devices": "raw/devices", "devices_002": "raw/devices_002", "network_events": "raw/network_events"},
                       aliases={"network_usage": "network_events"})
    assert names.of_message("pseudonymizing devices_002 for analytics") == "devices_002"
    assert names.of_message("planning devices") == "devices"
    assert names.of_message("network_usage: region JP") == "network_events"
    assert names.of_message("gate for analytics") is None
    assert names.of_path("/l/backups/2026-11-22/raw/devices_002/_delta_log/00000000000000000000.json") == "devices_002"
    assert names.of_path("/l/pseudonymized/service/devices", "/l") == "devices"
    assert names.of_label("nightly-2026-11-22.pseudonymized.service.devices_002") == "devices_002"
    assert names.of_label("JP") is None


def test_scaled_policy_clones_tables_releases_and_statistics_into_a_valid_policy(tmp_path):
    from bench.tables_scaling import scaled_policy
    from jobs.policy import load_policy

    path, origin = scaled_policy(18, tmp_path)
    policy = load_policy(str(path))
    assert len(policy.tables) == 18 and origin["devices_002"] == ("devices", "raw/devices_002")
    assert policy.tables["devices_002"].path == "raw/devices_002"
    assert policy.releases["health_k5_002"].table == "health_measurements_002"
    assert policy.statistics["network_usage_002"].table == "network_events_002"
    assert policy.subject.table == "accounts"


def test_job_sites_credits_a_call_s_jobs_to_wasure_s_code_on_the_stack(spark):
    """bench.job_sites: the jobs a py4j call starts, and the seconds it took, land on the lines of
    jobs/, expectations/ or anonymizers/ that made it (here: anonymizers.risk.risk_report's collect),
    and unwrapping restores py4j."""
    import py4j.java_gateway as gateway

    from bench.job_sites import count_jobs_by_site

    original = gateway.JavaMember.__call__
    sites, seconds, unwrap = count_jobs_by_site(spark)
    try:
        spark.range(5).count()                                    # from a test: no wasure frame
        from anonymizers.risk import risk_report

        risk_report(spark.createDataFrame([("a", 1), ("a", 2), ("b", 3)], "zip string, n int"), ["zip"])
    finally:
        unwrap()
    assert gateway.JavaMember.__call__ is original
    assert sites[("count", "(outside)")] >= 1
    ours = {site: n for (method, site), n in sites.items() if site.startswith("anonymizers/risk.py")}
    assert ours and all(n >= 1 for n in ours.values()), dict(sites)
    # The same calls' wall time is on the same sites (any call that started a job is timed).
    waited = {site: s for (method, site), s in seconds.items() if site.startswith("anonymizers/risk.py")}
    assert set(ours) <= set(waited) and all(s > 0 for s in waited.values()), dict(seconds)
