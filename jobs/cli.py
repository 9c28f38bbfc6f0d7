"""`wasure`: the command line of the retention and anonymization engine.

Every command loads and validates the policy before it touches data. Exit codes: 0 ok,
1 a check failed, 2 bad input (policy, subject ids, keys, options) with nothing written.
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Callable, Optional

import typer

from jobs.console import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, CheckFailed, InputError, console, human_bytes, step, summary_table
from jobs.policy import PERSONAL_CLASSES, PolicyError, default_policy_path, json_schema, load_policy

app = typer.Typer(
    name="wasure",
    help=(
        "wasure (忘れ, 'forget'): data retention and anonymization on Spark + Delta Lake.\n\n"
        "Start with `wasure demo`: it builds a small synthetic lake under ./lake and runs every "
        "pipeline step. The policy (policies/example.yaml, or --policy / $WASURE_POLICY) is the "
        "contract; the lake root is ./lake, or --lake / $WASURE_LAKE.\n\n"
        "Exit codes: 0 ok, 1 a check failed, 2 bad input (nothing written)."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)

PolicyOpt = typer.Option(None, "--policy", "-p", help="Policy YAML (default: $WASURE_POLICY or policies/example.yaml).")
LakeOpt = typer.Option(None, "--lake", "-l", help="Lake root directory (default: $WASURE_LAKE or ./lake).")


def handles_errors(func: Callable) -> Callable:
    """Map wasure's error types to exit codes and one readable message (never a personal value)."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from jobs.runtime import SparkSetupError

        try:
            return func(*args, **kwargs)
        except PolicyError as exc:
            console.print(f"[red]invalid policy[/] {exc.source}")
            for path, message in exc.problems:
                console.print(f"  [bold]{path}[/]: {message}")
            console.print("Nothing was written.")
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except (InputError, SparkSetupError) as exc:
            console.print(f"[red]error:[/] {exc}\nNothing was written.")
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except CheckFailed as exc:
            console.print(f"[red]check failed:[/] {exc}")
            raise typer.Exit(EXIT_CHECK_FAILED) from None
    return wrapper


def _policy(path: Optional[Path]):
    return load_policy(path or default_policy_path())


def _lake(root: Optional[Path]):
    from jobs.lake import Lake

    return Lake.at(root)


@app.command("validate-policy")
@handles_errors
def validate_policy(
    policy: Optional[Path] = typer.Argument(None, help="Policy YAML to check (default: the active policy)."),
    write_schema: Optional[Path] = typer.Option(None, help="Also write the policy JSON Schema (for editors) here."),
):
    """Check a policy file; every error names the file and the key path.

    Example: `wasure validate-policy policies/example.yaml`
    """
    if write_schema is not None:
        write_schema.write_text(json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n")
        console.print(f"JSON Schema written to {write_schema}")
    loaded = _policy(policy)
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
    lake: Optional[Path] = LakeOpt,
):
    """Generate the synthetic lake (Faker ja_JP/en_US pools expanded by Spark) as Delta tables.

    Example: `wasure generate --subjects 100000 --lake /data/lake`
    """
    from jobs.generate import GenerateOptions, generate_lake
    from jobs.lake import is_delta
    from jobs.runtime import get_spark

    loaded, where = _policy(policy), _lake(lake)
    existing = [n for n, t in loaded.tables.items() if is_delta(where.table_path(t))]
    if existing and not overwrite:
        raise InputError(f"the lake {where.root} already has tables ({', '.join(existing)}); pass --overwrite to replace them")
    with step("starting Spark"):
        spark = get_spark("wasure-generate")
    options = GenerateOptions(subjects=subjects, events_per_subject=events_per_subject, seed=seed)
    with console.status("generating") as status:
        counts = generate_lake(spark, loaded, where, options, progress=lambda msg: status.update(msg))
    summary_table(f"lake {where.root}", ["table", "rows"], counts.items())


@app.command()
@handles_errors
def status(policy: Optional[Path] = PolicyOpt, lake: Optional[Path] = LakeOpt):
    """Show every policy table of the lake: Delta version, files, size and rows.

    Example: `wasure status --lake ./lake`
    """
    from jobs.lake import is_delta, table_summary
    from jobs.runtime import get_spark

    loaded, where = _policy(policy), _lake(lake)
    spark = get_spark("wasure-status")
    rows = []
    for name, table in loaded.tables.items():
        path = where.table_path(table)
        if not is_delta(path):
            rows.append((name, "missing", None, None, None))
            continue
        info = table_summary(spark, path)
        rows.append((name, info["version"], info["files"], human_bytes(info["bytes"]), info["rows"]))
    summary_table(f"lake {where.root}", ["table", "version", "files", "size", "rows"], rows)


@app.command()
@handles_errors
def demo(
    subjects: int = typer.Option(300, min=10, help="Subjects in the demo lake (only when it is created)."),
    policy: Optional[Path] = PolicyOpt,
    lake: Optional[Path] = LakeOpt,
):
    """Run the whole pipeline on a small lake (created under ./lake if there is none).

    Example: `wasure demo` then `wasure status`
    """
    from jobs.demo import run_demo

    run_demo(_policy(policy), _lake(lake), subjects=subjects)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
