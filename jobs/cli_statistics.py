"""CLI command of the statistics job: `wasure statistics`.

Imported by jobs/cli.py at its bottom; the command registers on the same Typer app.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Optional

import typer

from jobs.cli import LakeOpt, PolicyOpt, _lake, _policy, app, handles_errors
from jobs.console import InputError, console, step, summary_table


@app.command("statistics")
@handles_errors
def statistics(
    name: Optional[list[str]] = typer.Option(None, "--name", "-n", help="Only these statistics (repeatable; default: every `statistics.<name>` of the policy)."),
    region: Optional[list[str]] = typer.Option(None, "--region", "-r", help="Only these regions (repeatable; default: every region with rows)."),
    epsilon: Optional[float] = typer.Option(None, "--epsilon", help="Add differential-privacy noise with this epsilon per statistic and region (default: no noise)."),
    budget: Optional[float] = typer.Option(None, "--budget", help="Total epsilon per statistic and region (default 1.0, or the budget already recorded; it can be tightened, never raised)."),
    mechanism: str = typer.Option("laplace", "--mechanism", help="laplace, or gaussian (needs --delta)."),
    delta: Optional[float] = typer.Option(None, "--delta", help="Gaussian mechanism: delta of this release."),
    max_rows: Optional[int] = typer.Option(None, "--max-rows-per-subject", help="DP contribution bound: rows one subject may add (default 20)."),
    bound: Optional[list[str]] = typer.Option(None, "--bound", help="DP: public clipping bounds of a measure, measure=LOW:HIGH (repeatable, one per measure)."),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="Date ages are computed at (YYYY-MM-DD, default today UTC)."),
    policy: Optional[Path] = PolicyOpt,
    lake: Optional[Path] = LakeOpt,
):
    """Publish k-anonymous aggregate tables (counts, sums, means) per region to statistics/<name>/region=<R>.

    Cells and marginal totals of fewer than k subjects are suppressed, then further cells so that no
    suppressed value can be recovered by subtraction from published totals; a Great Expectations
    gate checks both before a table is promoted (else it is quarantined, exit 1). With --epsilon,
    counts and sums get Laplace (or Gaussian) noise and the release is charged to the budget ledger
    <lake>/state/dp_budget; a release that would exceed the budget is refused (exit 2, nothing written).

    Examples: `wasure statistics`, `wasure statistics --name network_usage --region JP`,
    `wasure statistics --epsilon 0.5 --bound bytes_down=0:50000000`
    """
    from jobs.statistics import dp_options, parse_bounds, run
    from jobs.runtime import get_spark

    loaded, where = _policy(policy), _lake(lake)
    day = None
    if as_of is not None:
        try:
            day = dt.date.fromisoformat(as_of)
        except ValueError:
            raise InputError("--as-of must be a date YYYY-MM-DD") from None
    bounds = parse_bounds(bound)
    dp_options(epsilon, mechanism, delta, budget, None, max_rows, bounds)     # exit 2 before Spark starts
    unknown = [n for n in name or [] if n not in loaded.statistics]
    if unknown:
        raise InputError(f"unknown statistic(s): {', '.join(unknown)} (the policy has {', '.join(loaded.statistics) or 'none'})")
    with step("starting Spark"):
        spark = get_spark("wasure-statistics")
    with console.status("statistics") as status:
        result = run(spark, loaded, where, name, epsilon, progress=lambda msg: status.update(msg), regions=region,
                     mechanism=mechanism, delta=delta, budget=budget, max_rows_per_subject=max_rows, bounds=bounds, as_of=day)
    rows = []
    for s in result["statistics"]:
        spent = f"{s['epsilon_spent']:g} of {s['budget']:g}" if "epsilon_spent" in s else "-"
        rows.append((s["statistic"], s["region"], s.get("k"), s.get("cells"), s.get("published"), s.get("primary"),
                     s.get("complementary"), spent, s["status"]))
    summary_table(f"statistics as of {result['as_of']} (run {result['run_id']})",
                  ["statistic", "region", "k", "cells + totals", "published", "suppressed < k", "suppressed (complementary)",
                   "epsilon spent", "status"], rows)
    for docs in result["docs"]:
        console.print(f"Data Docs: {docs}")
