"""The lake lease: one wasure job writes to a lake at a time.

Why: the physical purge deletes every file no commit references (``VACUUM ... RETAIN 0 HOURS``, or
wasure's own ``LakeTable.delete_unreferenced_files``). A job writing the same table at that
moment (a closure's DELETE, a backup, a staged publish) has files on disk that no commit references
yet, and the purge deletes them: the commit then points at missing files, and the table is corrupt.
Delta's own conflict detection does not cover VACUUM. So every job that writes takes the lease for
its whole run, and a second one waits (``WASURE_LEASE_WAIT`` seconds, default one hour) and then
stops with exit 2 naming the holder, before anything is written.

On a local lake the lease is an advisory ``flock`` on ``<lake>/_wasure_lease`` (a file name Spark
and Delta ignore): the kernel releases it when its process dies, so a killed job never leaves a
stale lease. A lake on hdfs:// or s3a:// has no flock: there the lease is that file created
exclusively (HDFS refuses a second create), kept fresh by a heartbeat thread every
``HEARTBEAT_SECONDS``; a lease whose heartbeat is older than ``WASURE_LEASE_STALE`` seconds (default
300) belonged to a job that died, and is taken over. Within one process the lease is re-entrant
(retention calls the anonymize job, erasure the purge). The file holds the holder's job name, pid,
host and start time, never a personal value.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from jobs.runtime.console import InputError
from jobs.runtime.spark import queries_sized_for_the_run
from jobs.lake.storage import check_reachable, files_for, is_local, join, normalize

LEASE_FILE = "_wasure_lease"
DEFAULT_WAIT_SECONDS = 3600.0

_held: dict[str, tuple] = {}          # lake root -> (fd, depth) held by this process
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
        text = files_for(str(root)).read_text(join(str(root), LEASE_FILE))
        return json.loads(text) if text.strip() else None
    except Exception:  # noqa: BLE001 - no lease file (OSError locally, a JVM FileNotFound remotely)
        return None


def _holder_record(job: str) -> str:
    return json.dumps({"job": job, "pid": os.getpid(), "host": socket.gethostname(),
                       "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})


@contextlib.contextmanager
def lake_lease(root: str | Path, job: str, progress: Callable[[str], None] = lambda _m: None,
               wait_seconds: float | None = None) -> Iterator[None]:
    """Hold the lake's lease for the block (re-entrant within this process).

    >>> with lake_lease(lake.uri, "retention"):
    ...     physical_purge(spark, policy, lake, today)
    """
    key = normalize(str(root))
    with _guard:
        if key in _held:
            fd, depth = _held[key]
            _held[key] = (fd, depth + 1)
            acquired = False
        else:
            acquired = True
    if acquired:
        wait = _wait_seconds() if wait_seconds is None else wait_seconds
        fd = _acquire(Path(key), job, progress, wait) if is_local(key) else RemoteLease(key, job).acquire(progress, wait)
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
                if isinstance(fd, RemoteLease):
                    fd.release()
                else:
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
            if time.monotonic() >= deadline:
                os.close(fd)
                raise _busy(str(root), wait) from None
            if not told:
                other = holder(root) or {}
                progress(f"waiting for the lake lease held by {other.get('job', 'another job')} "
                         f"(pid {other.get('pid', '?')}, since {other.get('since', '?')})")
                told = True
            time.sleep(0.5)
    os.ftruncate(fd, 0)
    os.pwrite(fd, _holder_record(job).encode(), 0)
    return fd


def _busy(root: str, wait: float) -> LakeBusy:
    other = holder(root) or {}
    who = f"{other.get('job', 'another job')} (pid {other.get('pid', '?')}, since {other.get('since', '?')})"
    return LakeBusy(f"the lake {root} is busy: {who} holds its lease; waited {wait:.0f} s "
                    "(WASURE_LEASE_WAIT). Nothing was written; run again when it is done.")


class RemoteLease:
    """The lease on a Hadoop file system: exclusive create + heartbeat (see the module docstring)."""

    HEARTBEAT_SECONDS = 30.0

    def __init__(self, root: str, job: str) -> None:
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
        if spark is None:
            raise InputError(f"the lake {root} is remote: its lease needs the job's Spark session")
        check_reachable(root, spark)         # a NameNode that is down, a missing path: exit 2 naming the URI
        self.root, self.job = root, job
        self._jvm, conf = spark.sparkContext._jvm, spark.sparkContext._jsc.hadoopConfiguration()
        self._path = self._jvm.org.apache.hadoop.fs.Path(join(root, LEASE_FILE))
        self._fs = self._path.getFileSystem(conf)
        self._stop = threading.Event()

    def _try_create(self) -> bool:
        try:
            out = self._fs.create(self._path, False)
        except Exception as error:  # noqa: BLE001 - FileAlreadyExistsException arrives as a Py4JJavaError
            if "AlreadyExists" in str(error) or self._fs.exists(self._path):
                return False
            raise
        try:
            out.write(bytearray(_holder_record(self.job).encode()))
        finally:
            out.close()
        return True

    def _stale(self) -> bool:
        limit = float(os.environ.get("WASURE_LEASE_STALE", "300"))
        try:
            beat = self._fs.getFileStatus(self._path).getModificationTime() / 1000.0
        except Exception:  # noqa: BLE001 - released between our create and this look
            return False
        return time.time() - beat > limit

    def acquire(self, progress: Callable[[str], None], wait: float) -> "RemoteLease":
        deadline, told = time.monotonic() + wait, False
        while not self._try_create():
            if self._stale():
                progress(f"taking over the lease of a job that stopped heart-beating: {holder(self.root)}")
                self._fs.delete(self._path, False)
                continue
            if time.monotonic() >= deadline:
                raise _busy(self.root, wait) from None
            if not told:
                progress(f"waiting for the lake lease held by {holder(self.root)}")
                told = True
            time.sleep(0.5)
        threading.Thread(target=self._beat, name="wasure-lease-heartbeat", daemon=True).start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.HEARTBEAT_SECONDS):
            try:
                self._fs.setTimes(self._path, int(time.time() * 1000), -1)
            except Exception:  # noqa: BLE001 - a missed beat only shortens the margin
                pass

    def release(self) -> None:
        self._stop.set()
        self._fs.delete(self._path, False)


def with_lease(job: str) -> Callable:
    """Decorator for a job's ``run(spark, policy, lake, ...)``: the whole run holds the lease."""
    def decorate(run: Callable) -> Callable:
        @functools.wraps(run)
        def wrapper(*args, **kwargs):
            spark = kwargs["spark"] if "spark" in kwargs else args[0]
            lake = kwargs["lake"] if "lake" in kwargs else args[2]
            progress = kwargs.get("progress") or (lambda _m: None)
            with lake_lease(lake.uri, job, progress), queries_sized_for_the_run(spark):
                return run(*args, **kwargs)
        return wrapper
    return decorate
