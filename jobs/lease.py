"""The lake lease: one wasure job writes to a lake at a time.

Why: the physical purge runs ``VACUUM ... RETAIN 0 HOURS``. A job writing the same table at that
moment (a closure's MERGE, a backup, a staged publish) has files on disk that no commit references
yet, and VACUUM deletes them: the commit then points at missing files, and the table is corrupt.
Delta's own conflict detection does not cover VACUUM. So every job that writes takes the lease for
its whole run, and a second one waits (``WASURE_LEASE_WAIT`` seconds, default one hour) and then
stops with exit 2 naming the holder, before anything is written.

The lease is an advisory ``flock`` on ``<lake>/_wasure_lease`` (a file name Spark and Delta ignore):
the kernel releases it when its process dies, so a killed job never leaves a stale lease. Within
one process the lease is re-entrant (retention calls the anonymize job, erasure the purge).
The file holds the holder's job name, pid and start time, never a personal value.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import json
import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from jobs.console import InputError

LEASE_FILE = "_wasure_lease"
DEFAULT_WAIT_SECONDS = 3600.0

_held: dict[str, tuple[int, int]] = {}        # lake root -> (fd, depth) held by this process
_guard = threading.RLock()


class LakeBusy(InputError):
    """Another job holds the lake's lease for longer than we wait: exit 2, nothing written."""


def _wait_seconds() -> float:
    raw = os.environ.get("WASURE_LEASE_WAIT", str(DEFAULT_WAIT_SECONDS))
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"WASURE_LEASE_WAIT={raw!r}: a number of seconds is expected") from None
    if value < 0:
        raise InputError(f"WASURE_LEASE_WAIT={raw!r}: must be >= 0")
    return value


def holder(root: str | Path) -> dict | None:
    """Who holds (or last held) the lease: {"job", "pid", "since"}, or None."""
    try:
        text = (Path(root) / LEASE_FILE).read_text()
        return json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def lake_lease(root: str | Path, job: str, progress: Callable[[str], None] = lambda _m: None,
               wait_seconds: float | None = None) -> Iterator[None]:
    """Hold the lake's lease for the block (re-entrant within this process).

    >>> with lake_lease(lake.root, "retention"):
    ...     physical_purge(spark, policy, lake, today)
    """
    key = str(Path(root).resolve())
    with _guard:
        if key in _held:
            fd, depth = _held[key]
            _held[key] = (fd, depth + 1)
            acquired = False
        else:
            acquired = True
    if acquired:
        fd = _acquire(Path(key), job, progress, _wait_seconds() if wait_seconds is None else wait_seconds)
        with _guard:
            _held[key] = (fd, 1)
    try:
        yield
    finally:
        with _guard:
            fd, depth = _held[key]
            if depth > 1:
                _held[key] = (fd, depth - 1)
            else:
                del _held[key]
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)


def _acquire(root: Path, job: str, progress: Callable[[str], None], wait: float) -> int:
    if not root.is_dir():
        raise InputError(f"the lake {root} does not exist (or is not a directory)")
    fd = os.open(root / LEASE_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    deadline, told = time.monotonic() + wait, False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            other = holder(root) or {}
            who = f"{other.get('job', 'another job')} (pid {other.get('pid', '?')}, since {other.get('since', '?')})"
            if time.monotonic() >= deadline:
                os.close(fd)
                raise LakeBusy(f"the lake {root} is busy: {who} holds its lease; waited {wait:.0f} s "
                               "(WASURE_LEASE_WAIT). Nothing was written; run again when it is done.") from None
            if not told:
                progress(f"waiting for the lake lease held by {who}")
                told = True
            time.sleep(0.5)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"job": job, "pid": os.getpid(),
                              "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}).encode(), 0)
    return fd


def with_lease(job: str) -> Callable:
    """Decorator for a job's ``run(spark, policy, lake, ...)``: the whole run holds the lease."""
    def decorate(run: Callable) -> Callable:
        @functools.wraps(run)
        def wrapper(*args, **kwargs):
            lake = kwargs["lake"] if "lake" in kwargs else args[2]
            progress = kwargs.get("progress") or (lambda _m: None)
            with lake_lease(lake.root, job, progress):
                return run(*args, **kwargs)
        return wrapper
    return decorate
