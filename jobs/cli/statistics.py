"""CLI command of the statistics job: `wasure statistics`.

Imported by jobs/cli/__init__.py at its bottom; the command registers on the same Typer app.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from jobs.cli.common import LakeOpt, PolicyOpt, app, date_option, handles_errors, lake_from_option, policy_from_option
from jobs.runtime.console import console, step, summary_table


@app.command("statistics")
@handles_errors
def statistics(
    name: Optional[list[str]] = typer.Option(None, "--name", "-n", help="Only these statistics (repeatable; default: every `statistics.<name>` of the policy)."),
    region: Optional[list[str]] = typer.Option(None, "--region", "-r", help="Only these regions (repeatable; default: every region with rows, and every region of the policy for a dp statistic)."),
    epsilon: Optional[float] = typer.Option(None, "--epsilon", help="Tighten the epsilon per release of the selected laplace dp statistics (at most the policy's)."),
    rho: Optional[float] = typer.Option(None, "--rho", help="Tighten the rho per release of the selected gaussian (zCDP) dp statistics (at most the policy's)."),
    budget: Optional[float] = typer.Option(None, "--budget", help="Tighten the total budget (epsilon or rho) per statistic and region of dp statistics (at most the policy's; a budget recorded in the ledger is never raised)."),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="Date ages are computed at (YYYY-MM-DD, default today UTC)."),
    policy: Optional[Path] = PolicyOpt,
    lake: Optional[str] = LakeOpt,
):
    """Publish aggregate tables (counts, sums, means) per region to statistics/<name>/region=<R>.

    A k-anonymous statistic (policy `k`): cells and totals of fewer than k subjects are suppressed,
    then further cells so that no suppressed value can be recovered by subtraction; a Great
    Expectations gate checks both before a table is promoted (else it is quarantined, exit 1).
    A differentially private statistic (policy `dp:`): every key of the policy's public domains with
    OpenDP's discrete noise; the release is charged to the budget ledger <lake>/state/dp_budget, and
    one that would exceed the policy's budget is refused (exit 2, nothing written).

    Examples: `wasure statistics`, `wasure statistics --name network_usage --region JP`,
    `wasure statistics --name network_usage_dp --epsilon 0.25`
    """
    from jobs.statistics import StatisticsRequest, run
    from jobs.runtime.spark import get_spark

    loaded, where = policy_from_option(policy), lake_from_option(lake)
    request = StatisticsRequest.checked(loaded, name, region, epsilon=epsilon, rho=rho, budget=budget,
                                        as_of=date_option(as_of))
    with step("starting Spark"):
        spark = get_spark("wasure-statistics")
    with console.status("statistics") as status:
        result = run(spark, loaded, where, request, progress=lambda msg: status.update(msg))
    rows = []
    for s in result.statistics:
        spent = f"{s['spent']:g} of {s['budget']:g} {s['unit']}" if "spent" in s else "-"
        rows.append((s["statistic"], s["region"], s.get("k"), s.get("cells"), s.get("published"), s.get("primary"),
                     s.get("complementary"), spent, s["status"]))
    summary_table(f"statistics as of {result.as_of} (run {result.run_id})",
                  ["statistic", "region", "k", "cells + totals", "published", "suppressed < k", "suppressed (complementary)",
                   "privacy spent (dp)", "status"], rows)
    for docs in result.docs:
        console.print(f"Data Docs: {docs}")
