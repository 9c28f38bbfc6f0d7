"""`wasure`: the command line of the retention and anonymization engine.

Every command loads and validates the policy before it touches data. Exit codes: 0 ok,
1 a check failed, 2 bad input (policy, subject ids, keys, options) with nothing written.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from jobs.cli.common import LakeOpt, PolicyOpt, app, date_option, handles_errors, lake_from_option, policy_from_option
from jobs.runtime.console import InputError, console, human_bytes, step, summary_table
from jobs.cli.render import print_retention
from jobs.policy import PERSONAL_CLASSES, json_schema

@app.command("validate-policy")
@handles_errors
def validate_policy(
    policy: Optional[Path] = typer.Argument(None, help="Policy YAML to check (default: the active policy)."),
    write_schema: Optional[Path] = typer.Option(None, help="Also write the policy JSON Schema (for editors) here."),
):
    """Check a policy file; every error names the file and the key path.

    Example: `wasure validate-policy policies/example.yaml`
    """
    loaded = policy_from_option(policy)                # an invalid policy is exit 2 before the schema is written
    if write_schema is not None:
        write_schema.write_text(json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n")
        console.print(f"JSON Schema written to {write_schema}")
    summary_table(f"policy {loaded.name} ({loaded.source})", ["table", "columns", "personal columns", "retention"],
                  [(name, len(t.columns), len(t.columns_of(*PERSONAL_CLASSES)),
                    f"{t.retention.basis} {t.retention.period_days} d -> {t.retention.action}" if t.retention else "kept")
                   for name, t in loaded.tables.items()])
    console.print(f"[green]valid[/]  sha256 {loaded.sha256[:16]}…  purposes: {', '.join(loaded.purposes)}  "
                  f"releases: {', '.join(loaded.releases) or '-'}  legal holds: {len(loaded.legal_holds)}")


@app.command()
@handles_errors
def generate(
    subjects: int = typer.Option(500, min=1, help="Number of subjects (accounts)."),
    events_per_subject: int = typer.Option(20, min=1, help="network_events rows per subject (100 x 1M subjects = 100M rows)."),
    seed: int = typer.Option(42, help="Same seed, same lake."),
    overwrite: bool = typer.Option(False, help="Replace tables that already exist."),
    policy: Optional[Path] = PolicyOpt,
    lake: Optional[str] = LakeOpt,
):
    """Generate the synthetic lake (Faker ja_JP/en_US pools expanded by Spark) as Delta tables.

    Example: `wasure generate --subjects 100000 --lake /data/lake`
    """
    from jobs.generate import GenerateOptions, generate_lake
    from jobs.lake.layout import is_delta
    from jobs.runtime.spark import get_spark

    loaded, where = policy_from_option(policy), lake_from_option(lake, must_exist=False)
    existing = [n for n, t in loaded.tables.items() if is_delta(where.table_path(t))]
    if existing and not overwrite:
        raise InputError(f"the lake {where.uri} already has tables ({', '.join(existing)}); pass --overwrite to replace them")
    with step("starting Spark"):
        spark = get_spark("wasure-generate")
    options = GenerateOptions(subjects=subjects, events_per_subject=events_per_subject, seed=seed)
    with console.status("generating") as status:
        counts = generate_lake(spark, loaded, where, options, progress=lambda msg: status.update(msg))
    summary_table(f"lake {where.uri}", ["table", "rows"], counts.items())


@app.command()
@handles_errors
def status(policy: Optional[Path] = PolicyOpt, lake: Optional[str] = LakeOpt):
    """Show every policy table of the lake: Delta version, files, size and rows.

    Example: `wasure status --lake ./lake`
    """
    from jobs.lake.layout import is_delta, table_summary
    from jobs.runtime.spark import get_spark

    loaded, where = policy_from_option(policy), lake_from_option(lake)
    spark = get_spark("wasure-status")
    rows = []
    for name, table in loaded.tables.items():
        path = where.table_path(table)
        if not is_delta(path):
            rows.append((name, "missing", None, None, None))
            continue
        info = table_summary(spark, path)
        rows.append((name, info["version"], info["files"], human_bytes(info["bytes"]), info["rows"]))
    summary_table(f"lake {where.uri}", ["table", "version", "files", "size", "rows"], rows)


@app.command()
@handles_errors
def retention(
    dry_run: bool = typer.Option(False, "--dry-run", help="Change nothing; print what would be removed, held, rewritten."),
    force: bool = typer.Option(False, help="Allow removing more than defaults.max_delete_share of a table."),
    as_of: Optional[str] = typer.Option(None, help="Business date of the run (YYYY-MM-DD, default today UTC)."),
    no_purge: bool = typer.Option(False, "--no-purge", help="Skip the physical purge of files past their grace."),
    policy: Optional[Path] = PolicyOpt,
    lake: Optional[str] = LakeOpt,
):
    """Remove what has expired (date, closure, minors without consent, withdrawn consent), except legal holds.

    One Delta transaction per table; superseded files are purged physically after the grace period
    (REORG ... APPLY (PURGE), then every superseded file deleted). Example: `wasure retention --dry-run`
    """
    from jobs.retention import RetentionRequest, run as run_retention
    from jobs.runtime.spark import get_spark

    loaded, where = policy_from_option(policy), lake_from_option(lake)
    request = RetentionRequest(date_option(as_of), dry_run=dry_run, force=force, purge=not no_purge)
    with step("starting Spark"):
        spark = get_spark("wasure-retention")
    with console.status("retention") as status:
        report = run_retention(spark, loaded, where, request, progress=lambda msg: status.update(msg))
    print_retention(report)


@app.command()
@handles_errors
def pseudonymize(
    purpose: Optional[list[str]] = typer.Option(None, help="Only these purposes (repeatable; default: all)."),
    full: bool = typer.Option(False, help="Rewrite every table even if its source did not change."),
    policy: Optional[Path] = PolicyOpt,
    lake: Optional[str] = LakeOpt,
):
    """Write 仮名加工情報 per purpose to `pseudonymized/PURPOSE/TABLE` (APPI rule 31), gated.

    Keys come from $WASURE_KEY_<ID> or the key file ($WASURE_KEYS, mode 0600, outside the lake).
    Example: `wasure keys init && wasure pseudonymize --purpose analytics`
    """
    from jobs.pseudonymize import PseudonymizeRequest, run as run_pseudonymize
    from jobs.runtime.spark import get_spark

    loaded, where = policy_from_option(policy), lake_from_option(lake)
    request = PseudonymizeRequest.checked(loaded, where, purpose, full)
    with step("starting Spark"):
        spark = get_spark("wasure-pseudonymize")
    with console.status("pseudonymizing") as status:
        result = run_pseudonymize(spark, loaded, where, request, progress=lambda msg: status.update(msg))
    summary_table("pseudonymized (仮名加工情報)", ["purpose", "table", "status", "rows"],
                  [(t.purpose, t.table, t.status, t.rows) for t in result.tables])


keys_app = typer.Typer(help="Pseudonymization keys (削除情報等), stored apart from the lake.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("init")
@handles_errors
def keys_init(policy: Optional[Path] = PolicyOpt, lake: Optional[str] = LakeOpt):
    """Create the missing key of every purpose in the key file (32 random bytes, mode 0600).

    Example: `WASURE_KEYS=~/.config/wasure/keys.json wasure keys init`
    """
    from jobs.runtime.keys import init_keys, key_file_path

    loaded = policy_from_option(policy)
    created = init_keys([p.key_id for p in loaded.purposes.values()] + [loaded.defaults.ledger_key_id], lake_from_option(lake))
    console.print(f"key file {key_file_path()}: " + (f"created {', '.join(created)}" if created else "every key already exists"))


@app.command()
@handles_errors
def anonymize(
    release: Optional[list[str]] = typer.Option(None, help="Release name from the policy (repeatable; default: every release)."),
    as_of: Optional[str] = typer.Option(None, help="Date ages are computed at (YYYY-MM-DD, default today UTC)."),
    policy: Optional[Path] = PolicyOpt,
    lake: Optional[str] = LakeOpt,
):
    """Publish 匿名加工情報 (APPI rule 34): k-anonymous, l-diverse releases with a manifest, gated.

    Distributed Mondrian on Spark; staged, checked by Great Expectations, promoted to
    `anonymized/RELEASE/` and registered as `anonymized.RELEASE_data`. Example: `wasure anonymize --release health_k5`
    """
    from jobs.anonymize import release_requests, run as run_anonymize
    from jobs.runtime.spark import get_spark

    loaded, where = policy_from_option(policy), lake_from_option(lake)
    requests = release_requests(loaded, release, date_option(as_of))   # every one, before the first publishes
    with step("starting Spark"):
        spark = get_spark("wasure-anonymize")
    rows = []
    for request in requests:
        name = request.release
        with console.status(f"release {name}") as status:
            result = run_anonymize(spark, loaded, where, request, progress=lambda msg: status.update(f"{name}: {msg}"))
        m = result.metrics
        rows.append((name, result.table, result.rows, result.suppressed, m.get("gcp"), m.get("avg_class_size"),
                     m.get("max_prosecutor_risk"), result.manifest))
    summary_table("匿名加工情報 releases", ["release", "catalog table", "rows", "suppressed", "GCP", "avg class", "max risk", "manifest"], rows)


@app.command()
@handles_errors
def releases(lake: Optional[str] = LakeOpt):
    """List what data scientists may read: promoted releases with their manifests, and statistics.

    Each comes with two lines that read it with pandas or polars (docs/reading.md). Example:
    `wasure releases`, then in Spark: `from jobs.lake.catalog import analyst_session;
    analyst_session().table('anonymized.health_k5_data')`
    """
    from jobs.lake.catalog import reading_example, releases as list_releases, statistics_tables, table_name

    where = lake_from_option(lake)
    docs, statistics = list_releases(where), statistics_tables(where)
    if not docs and not statistics:
        console.print("nothing has been published yet: run `wasure anonymize` and `wasure statistics`")
        return
    if docs:
        summary_table("releases (匿名加工情報)", ["release", "catalog table", "created", "region", "rows", "k", "l", "categories", "manifest"],
                      [(d["release"], table_name(d["release"]), d["created"], d["region"], d["rows"], d["method"]["k"], d["method"]["l"],
                        ", ".join(c["released_as"] for c in d["categories_of_personal_information"]), d["path"] + "/manifest.md")
                       for d in docs])
    for d in docs:
        console.print(f"[bold]{d['release']}[/bold]  {d['path']}/data  (manifest {d['path']}/manifest.json)")
        for line in reading_example(d["path"] + "/data"):
            console.print("  " + line, markup=False, highlight=False, soft_wrap=True)
    for name, region, path in statistics:
        console.print(f"[bold]statistic {name}[/bold] region {region}  {path}")
        for line in reading_example(path):
            console.print("  " + line, markup=False, highlight=False, soft_wrap=True)


@app.command()
@handles_errors
def docs(lake: Optional[str] = LakeOpt):
    """Print where the Great Expectations Data Docs of every gate run are (HTML to open in a browser).

    Example: `wasure docs` then open the newest index.html
    """
    from jobs.lake.storage import join, parent_of, relative

    where = lake_from_option(lake)
    files = where.files
    # A gate run's site: docs/<job>/<run id>/<gate>/index.html (the nightly's: docs/gates/nightly-<date>/).
    indexes = [p for depth in range(1, 5) for p in files.glob(join(where.docs, *["*"] * depth, "index.html"))]
    if not indexes:
        console.print(f"no Data Docs yet under {where.docs}: run `wasure demo` or a publishing job first")
        return
    indexes.sort(key=files.modified)
    summary_table(f"Data Docs under {where.docs}", ["gate run", "open"],
                  [(relative(parent_of(p), where.docs), f"file://{p}" if where.is_local else p) for p in indexes])


@app.command()
@handles_errors
def demo(
    subjects: int = typer.Option(300, min=10, help="Subjects in the demo lake (only when it is created)."),
    policy: Optional[Path] = PolicyOpt,
    lake: Optional[str] = LakeOpt,
):
    """Run the whole pipeline on a small lake (created under ./lake if there is none).

    Example: `wasure demo` then `wasure status`
    """
    from jobs.cli.demo import run_demo

    run_demo(policy_from_option(policy), lake_from_option(lake), subjects=subjects)


# Commands contributed by job modules that own their CLI (kept out of this file; they import
# jobs.cli.common, never this module).
for _module in ("jobs.cli.erasure", "jobs.cli.statistics"):
    try:
        __import__(_module)
    except ModuleNotFoundError as _exc:
        if _exc.name != _module:
            raise


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
