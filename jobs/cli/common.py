"""What every `wasure` command module shares: the Typer app, the --policy / --lake options, the one
map from wasure's errors to exit codes (0 ok, 1 a check failed, 2 bad input with nothing written),
and how an option becomes a policy or a lake. jobs/cli/__init__.py, jobs/cli/erasure.py and
jobs/cli/statistics.py register their commands on this app; none of them imports another.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Optional

import typer

from jobs.runtime.console import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, CheckFailed, InputError, console
from jobs.policy import PolicyError, default_policy_path, load_policy

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
LakeOpt = typer.Option(None, "--lake", "-l", help="Lake root: a directory or a URI such as hdfs://127.0.0.1:8020/lake "
                       "or s3a://bucket/lake (default: $WASURE_LAKE or ./lake).")


def handles_errors(func: Callable) -> Callable:
    """Map wasure's error types to exit codes and one readable message (never a personal value)."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from jobs.runtime.spark import SparkSetupError

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


def policy_from_option(path: Optional[Path]):
    """The policy of --policy (default: $WASURE_POLICY or policies/example.yaml), validated."""
    return load_policy(path or default_policy_path())


def lake_from_option(root: Optional[str], must_exist: bool = True):
    """The lake of --lake; a remote one (hdfs://, s3a://) must answer before anything starts."""
    from jobs.lake.layout import Lake
    from jobs.lake.storage import check_reachable

    lake = Lake.at(root)
    if not lake.is_local:
        check_reachable(lake.uri, must_exist=must_exist)
    return lake


def date_option(value: Optional[str], option: str = "--as-of"):
    """An optional YYYY-MM-DD option as a date; anything else is exit 2 naming the option."""
    import datetime as dt

    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InputError(f"{option} must be a date YYYY-MM-DD, got {value!r}") from None
