"""Terminal output shared by every command: progress on long steps, summary tables, exit codes."""
from __future__ import annotations

import contextlib
import functools
import sys
import time
from typing import Callable, Iterable, Iterator

from rich.console import Console
from rich.table import Table

# Piped output (CI logs, Airflow task logs) gets a wide console so summary tables stay readable.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class InputError(ValueError):
    """Bad input (subject ids, requests, keys, options): exit 2, nothing written."""


class CheckFailed(RuntimeError):
    """A gate or verification failed: exit 1."""


def entry_point(main: Callable[..., int]) -> Callable[..., int]:
    """The exit codes of the spark-submit entry point (``jobs/pipeline/submit.py STEP``): an invalid policy or bad
    input is 2 and a failed check 1, each with its message on stderr, never a traceback."""
    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        from jobs.policy import PolicyError      # both import this module
        from jobs.runtime.spark import SparkSetupError

        try:
            return main(argv)
        except PolicyError as exc:
            print(f"invalid policy {exc.source}: " + "; ".join(f"{p}: {m}" for p, m in exc.problems), file=sys.stderr)
            return EXIT_BAD_INPUT
        except (InputError, SparkSetupError) as exc:
            print(f"error: {exc}\nNothing was written.", file=sys.stderr)
            return EXIT_BAD_INPUT
        except CheckFailed as exc:
            print(f"check failed: {exc}", file=sys.stderr)
            return EXIT_CHECK_FAILED
    return wrapper


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    """Show a spinner while a long step runs, then its duration."""
    start = time.monotonic()
    with console.status(f"[bold]{title}[/]…", spinner="dots"):
        yield
    console.print(f"[green]✓[/] {title} [dim]({time.monotonic() - start:.1f} s)[/]")


def summary_table(title: str, columns: list[str], rows: Iterable[Iterable[object]]) -> None:
    table = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*[_fmt(value) for value in row])
    console.print(table)


def _fmt(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}"
    return "" if value is None else str(value)


def human_bytes(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)
