"""Overhead counters for the benches: what a step costs besides wall time.

Per step (a ``with counter.step(name):`` block) and per table, without touching jobs/:

* **Spark jobs, stages, tasks.** The step runs under its own Spark job group (the local property
  ``spark.jobGroup.id`` of the calling thread; the job description is left alone so Delta's own
  descriptions stay readable). Job and stage ids are allocated by the DAG scheduler one after the
  other, so the jobs of a step are exactly the ids allocated between its start and its end
  (``dagScheduler.numTotalJobs`` / ``nextStageId`` read through py4j) as long as nothing else runs
  in the process meanwhile, which is how the benches run. ``jobs`` is that count. ``jobs_in_group``
  is what ``statusTracker().getJobIdsForGroup(group)`` returns for the step's group: the two differ
  when a job ran in a thread that did not inherit the group (a Python ``threading.Thread`` /
  ``ThreadPoolExecutor`` does not inherit Spark local properties; ``spark.newSession()`` in the same
  thread does, and so do Spark's and Delta's own JVM pools), or when the status store dropped jobs
  (``spark.ui.retainedJobs``); both figures are reported and ``jobs_outside_group`` is the difference.
  ``stages`` = stage ids allocated in the step (skipped stages included: a stage whose shuffle output
  is reused still costs a scheduling round-trip); ``stages_run`` / ``tasks`` come from the status
  store's job records (``JobData``: stage ids minus skipped stages, tasks minus skipped tasks).
* **Delta commits** = new ``_delta_log/<version>.json`` files under the lake root, by listing the
  lake before and after the step (staged tables promoted by a rename count where they end up; a
  table created and deleted inside the step is not seen). The ``operation`` of each commit is read
  from its ``commitInfo`` line. Checkpoints (``*.checkpoint*.parquet``) are counted apart.
* **Delta log / snapshot loads**, from Delta's own INFO log lines, captured by an in-memory log4j
  appender on the loggers ``org.apache.spark.sql.delta.DeltaLog`` and ``...delta.Snapshot`` (not
  printed; Delta 4.4 message texts): ``log_loads`` = ``Loading version`` (logged by
  ``SnapshotManagement.createSnapshot``: a snapshot built from a log segment listed and read from
  ``_delta_log``), ``snapshots`` = ``Created snapshot`` (logged by the ``Snapshot`` constructor,
  with the table path, hence the per-table attribution; equal to ``log_loads`` in every step
  measured so far), ``post_commit_snapshots`` = ``Creating a new snapshot v``
  (``createSnapshotAfterCommit``: the snapshot of a commit just written), ``snapshot_updates`` =
  ``Updated snapshot to`` lines (``SnapshotManagement.logCurrentSnapshot``; reported, not
  interpreted). Plus ``deltalog_instances`` = growth of Delta's DeltaLog cache
  (``DeltaLog.cacheSize``: table paths opened for the first time in the process) and
  ``state_reconstruction_jobs`` = Spark jobs whose description is Delta's ``Compute snapshot for
  version`` (a snapshot whose file list was materialized with a Spark job). Delta builds these
  messages only because the loggers are at INFO (the appender keeps the first 400 characters).
* **Great Expectations**: ``expectations.gates.run_gate`` is wrapped in this process only
  (``gates`` = calls, ``validations`` = checks validated, one GE ValidationDefinition.run each,
  ``ge_s`` = seconds inside run_gate).

Per table: commits and snapshots are attributed by path (a path component equal to a table's
directory name: ``raw/<t>``, ``backups/<day>/raw/<t>``, ``pseudonymized/<purpose>/<t>``, ...),
GE validations by the check's label (a ``.``-separated part equal to the table name), and jobs,
stages and seconds by **segments** of the step's timeline, each charged to one table or one phase:

* a job's ``progress(msg)`` callback (installed by wrapping the job entry points the pipeline steps
  call: ``jobs.backup.run_backup``, ``jobs.retention.run``, ``jobs.pseudonymize.run``,
  ``jobs.anonymize.run``, ``jobs.statistics.run``; the caller's own callback still runs) opens a
  segment for the table the message names ("planning devices_017", "pseudonymizing devices_017 for
  analytics", "backing up devices_017"; a release or statistic name counts as its table), or for
  the message's phase ("gate for analytics", "retention gate (Great Expectations)") when it names
  none (digits become ``#``);
* an entry point called for one release (``anonymize.run(..., ReleaseRequest(<release>))``) charges its
  whole run, messages included, to the release's table; any other entry point opens the phase
  ``<module>.<function>`` until its first message; when an entry point or a gate returns, the
  segment that was open before it resumes (retention's anonymize-before-delete stays with
  ``health_measurements``; the pipeline step's own code is ``(step code outside the job entry
  points)``);
* every GE check's ``ValidationDefinition.run`` is a segment of the check's table; the rest of a
  gate (ephemeral context, Data Docs) is the phase ``GE gate: context, data docs``;
* a check whose label names no table (a statistics region, a release built from retention's
  expired rows) is charged to the table whose segment was open when its gate started;
* a few functions that jobs call once per table in loops without a message (``TABLE_MARKERS``:
  ``Registers.holds_for`` / ``table_level_hold``, ``retention.remaining_expired`` /
  ``pseudonymize.one_pseudonym_per_subject`` / ``source_identifiers``) open a
  segment for the table in their arguments (a table name, a table path, a Table), so e.g. the
  nightly ``gates`` step's per-table reads, the version fingerprint of every table that
  ``anonymize`` and ``statistics`` compute, ``publish``'s dataset versions and the promotion after
  a pseudonymization gate are charged to their tables.

What a step does for many tables without any of these (a loop with no message and no marker)
stays with the segment open at the time (a phase or the last table named): per-table figures are
a lower bound of the per-table work, the phases hold the rest.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import re
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Mapping

COMMIT_FILE = re.compile(r"^(\d{20})\.json$")
CHECKPOINT_FILE = re.compile(r"^\d{20}\.checkpoint(\..*)?\.parquet$")
SNAPSHOT_LOGGERS = ("org.apache.spark.sql.delta.DeltaLog", "org.apache.spark.sql.delta.Snapshot")
LOG_KINDS = {"Created snapshot": "snapshots", "Loading version": "log_loads",
             "Creating a new snapshot v": "post_commit_snapshots", "Updated snapshot to": "snapshot_updates"}
SNAPSHOT_PATH = re.compile(r"path=(?:file:)?([^,\s]+?)/_delta_log")
# Job entry points the pipeline steps call, whose ``progress`` callback names the table at hand.
PROGRESS_ENTRY_POINTS = (("jobs.backup", "run_backup"), ("jobs.retention", "run"), ("jobs.pseudonymize", "run"),
                         ("jobs.anonymize", "run"), ("jobs.statistics", "run"), ("jobs.erasure", "run"))
# Functions called once per table in loops that send no progress message: a call opens a segment
# for the table in its arguments (a table name, or a Table with a path); the segment stays open
# until the next one. (module, attribute or Class.method)
TABLE_MARKERS = (("jobs.pseudonymize", "one_pseudonym_per_subject"),   # promotion after a purpose's gate
                 ("jobs.pseudonymize", "source_identifiers"),          # a purpose's gate checks, per table
                 ("jobs.retention", "remaining_expired"),              # checks after the retention gate
                 ("jobs.lake.subjects", "Registers.holds_for"),             # per-table holds (nightly gates, retention)
                 ("jobs.lake.subjects", "Registers.table_level_hold"))
SETUP_SEGMENT = "(step code outside the job entry points)"
GE_PHASE = "GE gate: context, data docs"


# ------------------------------------------------------------------ the lake's Delta logs

def delta_log_files(root: str | Path) -> dict[str, set[str]]:
    """{"commits": paths of every ``_delta_log/<version>.json`` under root, "checkpoints": ...}."""
    commits, checkpoints = set(), set()
    for dirpath, dirnames, filenames in os.walk(root):
        if os.path.basename(dirpath) != "_delta_log":
            continue
        for n in filenames:
            if COMMIT_FILE.match(n):
                commits.add(os.path.join(dirpath, n))
            elif CHECKPOINT_FILE.match(n):
                checkpoints.add(os.path.join(dirpath, n))
        dirnames[:] = [d for d in dirnames if d != "_commits"]
    return {"commits": commits, "checkpoints": checkpoints}


def commit_operation(path: str) -> str:
    """The commitInfo operation of one commit file (``WRITE``, ``MERGE``, ``DELETE``, ...)."""
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith('{"commitInfo"'):
                    return str(json.loads(line)["commitInfo"].get("operation", "?"))
    except (OSError, ValueError, KeyError):
        pass
    return "?"


# ------------------------------------------------------------------ attribution helpers

class TableNames:
    """Maps paths, progress messages and GE labels to table names (exact words, so ``devices`` is
    not found in ``devices_017``)."""

    def __init__(self, tables: Mapping[str, str] | Iterable[str] = (), aliases: Mapping[str, str] | None = None):
        items = tables.items() if isinstance(tables, Mapping) else ((t, t) for t in tables)
        self.by_dir: dict[str, str] = {}
        for name, path in items:
            self.by_dir[name] = name
            self.by_dir[Path(str(path)).name] = name
        for alias, table in (aliases or {}).items():      # a release or statistic -> its table
            self.by_dir.setdefault(alias, table)
        self.names = sorted(set(self.by_dir.values()))
        words = sorted(self.by_dir, key=len, reverse=True)
        self._word = re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(map(re.escape, words)) + r")(?![A-Za-z0-9_])") if words else None

    def of_path(self, path: str, root: str | Path | None = None) -> str | None:
        rel = os.path.relpath(path, root) if root else path
        parts = Path(rel).parts
        for part in reversed(parts):
            if part in self.by_dir:
                return self.by_dir[part]
        return None

    def of_message(self, message: str) -> str | None:
        if self._word is None:
            return None
        m = self._word.search(message)
        return self.by_dir[m.group(1)] if m else None

    def of_label(self, label: str) -> str | None:
        for part in reversed(str(label).split(".")):
            if part in self.by_dir:
                return self.by_dir[part]
        return None


def phase_of(message: str, table: str | None) -> str:
    """A message's phase: its text without the table name and numbers ("planning *", "gate for analytics")."""
    text = message.replace(table, "*") if table else message
    return re.sub(r"\d+", "#", text)[:80]


# ------------------------------------------------------------------ the counter

class OverheadCounter:
    """``with OverheadCounter(spark, lake_root, tables) as counter: with counter.step("backup") as s: ...``
    then ``s.result`` (also ``counter.results[step]``) holds the step's counts (see the module doc)."""

    def __init__(self, spark, lake_root: str | Path | None = None, tables: Mapping[str, str] | Iterable[str] = (),
                 capture_delta_log: bool = True, wrap_gates: bool = True, hook_progress: bool = True,
                 group_prefix: str = "wasure-bench", aliases: Mapping[str, str] | None = None):
        self.spark = spark
        self.sc = spark.sparkContext
        self.lake_root = Path(lake_root) if lake_root else None
        self.tables = TableNames(tables, aliases)
        self._context: list[str | None] = []         # the table of the job entry point(s) running
        self._gate_table: list[str | None] = []      # the table a running GE gate was started for
        self.capture_delta_log = capture_delta_log
        self.wrap_gates = wrap_gates
        self.hook_progress = hook_progress
        self.group_prefix = group_prefix
        self.results: dict[str, dict] = {}
        self.notes: list[str] = []
        self._lock = threading.Lock()
        self._restore: list[Callable[[], None]] = []
        self._writer = None
        self._current: _Step | None = None
        self._mapper = None
        self._installed = False

    # ---------------------------------------------------------- JVM handles

    @property
    def _dag(self):
        return self.sc._jsc.sc().dagScheduler()

    def job_counter(self) -> int:
        return int(self._dag.numTotalJobs())

    def stage_counter(self) -> int:
        value = self._dag.nextStageId()
        return int(value if isinstance(value, int) else value.get())

    def deltalog_cache_size(self) -> int | None:
        try:
            module = getattr(getattr(self.spark._jvm.org.apache.spark.sql.delta, "DeltaLog$"), "MODULE$")
            return int(module.cacheSize())
        except Exception:  # noqa: BLE001 - best effort (another Delta version)
            return None

    # ---------------------------------------------------------- install / uninstall

    def __enter__(self) -> "OverheadCounter":
        self.install()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def install(self) -> None:
        if self._installed:
            return
        self._installed = True
        if self.capture_delta_log:
            try:
                self._install_log_capture()
            except Exception as exc:  # noqa: BLE001
                self.notes.append(f"Delta log capture unavailable ({type(exc).__name__}: {str(exc)[:200]}): "
                                  "snapshot counts are missing")
                self._writer = None
        if self.wrap_gates:
            self._wrap_run_gate()
        if self.hook_progress:
            self._hook_progress()

    def close(self) -> None:
        while self._restore:
            try:
                self._restore.pop()()
            except Exception:  # noqa: BLE001 - uninstalling must not hide the bench's own result
                pass
        self._installed = False

    def _install_log_capture(self) -> None:
        jvm = self.spark._jvm
        log4j = jvm.org.apache.logging.log4j
        core = log4j.core
        context = log4j.LogManager.getContext(False)
        config = context.getConfiguration()
        # The message is cut after 400 characters: Delta prints whole snapshots (file lists) here.
        layout = core.layout.PatternLayout.newBuilder().withPattern("%c{1}|%.-400m%n").build()
        writer = jvm.java.io.StringWriter()
        name = f"{self.group_prefix}-delta-{id(self)}"
        appender = core.appender.WriterAppender.createAppender(layout, None, writer, name, False, True)
        appender.start()
        config.addAppender(appender)
        previous = {}
        for logger in SNAPSHOT_LOGGERS:
            previous[logger] = config.getLoggers().get(logger)
            logger_config = core.config.LoggerConfig(logger, log4j.Level.INFO, False)
            logger_config.addAppender(appender, log4j.Level.INFO, None)
            config.addLogger(logger, logger_config)
        context.updateLoggers()
        self._writer = writer

        def uninstall():
            for logger in SNAPSHOT_LOGGERS:
                config.removeLogger(logger)
                if previous[logger] is not None:
                    config.addLogger(logger, previous[logger])
            context.updateLoggers()
            appender.stop()
            with contextlib.suppress(Exception):
                config.removeAppender(name)
            self._writer = None
        self._restore.append(uninstall)

    def _drain_log(self) -> str:
        if self._writer is None:
            return ""
        buffer = self._writer.getBuffer()
        text = buffer.toString()
        buffer.setLength(0)
        return text

    def _wrap_run_gate(self) -> None:
        try:
            import expectations
            import expectations.gates as gates
        except ImportError:
            return
        original = gates.run_gate
        counter = self

        @functools.wraps(original)
        def run_gate(name, checks, docs_dir):
            checks = list(checks)
            before = counter._open_segment()
            # a check whose label names no table (a statistics region, a retired release) belongs to
            # the table being worked on when the gate started
            counter._gate_table.append(before[1] or (counter._context[-1] if counter._context else None))
            counter._segment(GE_PHASE, None)
            start = time.perf_counter()
            try:
                return original(name, checks, docs_dir)
            finally:
                counter._on_gate(name, [label for label, _df, _e in checks], time.perf_counter() - start)
                counter._gate_table.pop()
                counter._reopen(before)

        gates.run_gate = run_gate
        package_had = getattr(expectations, "run_gate", None) is original
        if package_had:
            expectations.run_gate = run_gate

        def uninstall():
            gates.run_gate = original
            if package_had:
                expectations.run_gate = original
        self._restore.append(uninstall)
        try:   # each check's validation is its own segment, charged to the check's table
            from great_expectations.core.validation_definition import ValidationDefinition
        except ImportError:
            return
        validate = ValidationDefinition.run

        @functools.wraps(validate)
        def run(definition, *args, **kwargs):
            label = str(getattr(definition, "name", ""))
            fallback = counter._gate_table[-1] if counter._gate_table else None
            counter._segment("GE validation", counter.tables.of_label(label) or fallback)
            try:
                return validate(definition, *args, **kwargs)
            finally:
                counter._segment(GE_PHASE, None)
        ValidationDefinition.run = run
        self._restore.append(functools.partial(setattr, ValidationDefinition, "run", validate))

    def _hook_progress(self) -> None:
        import importlib

        for module_name, attr in PROGRESS_ENTRY_POINTS:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            original = getattr(module, attr, None)
            if original is None:
                continue
            setattr(module, attr, self._with_progress(original))
            self._restore.append(functools.partial(setattr, module, attr, original))
        for module_name, attr in TABLE_MARKERS:
            try:
                owner = importlib.import_module(module_name)
            except ImportError:
                continue
            *classes, name = attr.split(".")
            for cls in classes:
                owner = getattr(owner, cls, None)
            original = getattr(owner, name, None) if owner is not None else None
            if original is None:
                continue
            setattr(owner, name, self._marking(original))
            self._restore.append(functools.partial(setattr, owner, name, original))

    def _marking(self, fn: Callable) -> Callable:
        counter = self

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if counter._current is not None:
                for value in (*args, *kwargs.values()):
                    table = None
                    if isinstance(value, str):
                        table = counter.tables.of_path(value) if "/" in value else counter.tables.of_message(value)
                    elif isinstance(getattr(value, "path", None), str):
                        table = counter.tables.of_path(value.path)
                    if table:
                        if counter._open_segment()[1] != table:
                            counter._segment(table, table)
                        break
            return fn(*args, **kwargs)
        return wrapper

    def _with_progress(self, fn: Callable) -> Callable:
        signature = inspect.signature(fn)
        if "progress" not in signature.parameters:
            return fn
        counter = self

        entry = f"{fn.__module__}.{fn.__name__}"

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            bound = signature.bind_partial(*args, **kwargs)
            theirs = bound.arguments.get("progress")

            def progress(message, _theirs=theirs):
                counter.progress(str(message))
                if _theirs is not None:
                    _theirs(message)
            bound.arguments["progress"] = progress
            # anonymize.run(..., ReleaseRequest(<release>)): its messages name no table, the release does
            named = getattr(bound.arguments.get("request"), "release", None)
            context = counter.tables.of_message(named) if isinstance(named, str) else None
            before = counter._open_segment()
            counter._context.append(context)
            counter._segment(context or entry, context)
            try:
                return fn(*bound.args, **bound.kwargs)
            finally:
                counter._context.pop()
                counter._reopen(before)
        return wrapper

    # ---------------------------------------------------------- events during a step

    def progress(self, message: str) -> None:
        """A job's progress message: closes the current segment and opens one for the table it names."""
        table = self.tables.of_message(message) or (self._context[-1] if self._context else None)
        self._segment(table or phase_of(message, None), table)

    def _open_segment(self) -> tuple[str | None, str | None]:
        step = self._current
        return (step._open[0], step._open[1]) if step is not None and step._open is not None else (None, None)

    def _reopen(self, segment: tuple[str | None, str | None]) -> None:
        """Back to the segment that was open before an entry point or a gate ran (its caller's work)."""
        label, table = segment
        if label is not None:
            self._segment(label, table)

    def _segment(self, label: str, table: str | None) -> None:
        step = self._current
        if step is None:
            return
        with self._lock:
            step.segment(table or label, table, self.job_counter(), self.stage_counter())

    def _on_gate(self, name: str, labels: list[str], seconds: float) -> None:
        step = self._current
        if step is None:
            return
        with self._lock:
            step.gates.append({"gate": name, "validations": len(labels), "s": round(seconds, 3)})
            fallback = self._gate_table[-1] if self._gate_table else None
            for label in labels:
                table = self.tables.of_label(label) or fallback
                if table:
                    step.table(table)["validations"] += 1
                else:
                    step.unattributed["validations"] += 1

    # ---------------------------------------------------------- the step

    @contextlib.contextmanager
    def step(self, name: str):
        if not self._installed:
            self.install()
        record = _Step(name)
        group = f"{self.group_prefix}:{name}:{time.monotonic_ns()}"
        previous_group = self.sc.getLocalProperty("spark.jobGroup.id")
        self._drain_log()
        logs_before = delta_log_files(self.lake_root) if self.lake_root else None
        cache_before = self.deltalog_cache_size()
        jobs_before, stages_before = self.job_counter(), self.stage_counter()
        record.segment(SETUP_SEGMENT, None, jobs_before, stages_before)
        self.sc.setLocalProperty("spark.jobGroup.id", group)
        self._current = record
        start = time.perf_counter()
        try:
            yield record
        finally:
            wall = time.perf_counter() - start
            self._current = None
            self.sc.setLocalProperty("spark.jobGroup.id", previous_group)
            jobs_after, stages_after = self.job_counter(), self.stage_counter()
            record.close(jobs_after, stages_after)
            record.result = self._summarize(record, group, wall, jobs_before, jobs_after, stages_before, stages_after,
                                            logs_before, cache_before)
            self.results[name] = record.result

    def _summarize(self, record: "_Step", group: str, wall: float, jobs_before: int, jobs_after: int,
                   stages_before: int, stages_after: int, logs_before, cache_before) -> dict:
        in_group = set(int(j) for j in self.sc.statusTracker().getJobIdsForGroup(group))
        job_ids = range(jobs_before, jobs_after)
        infos = self._job_infos(job_ids)
        found = [i for i in infos if i is not None]
        out = {"s": round(wall, 3), "jobs": len(job_ids), "jobs_in_group": len(in_group),
               "jobs_outside_group": len(set(job_ids) - in_group), "stages": stages_after - stages_before,
               "stages_run": sum(len(i["stageIds"]) - i.get("numSkippedStages", 0) for i in found),
               "tasks": sum(i.get("numTasks", 0) - i.get("numSkippedTasks", 0) for i in found),
               "jobs_failed": sum(1 for i in found if i.get("status") == "FAILED"),
               "jobs_not_in_status_store": len(infos) - len(found)}
        if len(in_group - set(job_ids)):
            out["jobs_in_group_outside_range"] = len(in_group - set(job_ids))
        descriptions = Counter()
        for i in found:
            desc = i.get("description") or ""
            if "Compute snapshot for version" in desc:
                descriptions["state_reconstruction_jobs"] += 1
            elif desc.startswith("Delta:"):
                descriptions["other_delta_described_jobs"] += 1
        out["state_reconstruction_jobs"] = descriptions["state_reconstruction_jobs"]
        out["other_delta_described_jobs"] = descriptions["other_delta_described_jobs"]
        # Delta commits, by table directory and by operation
        if logs_before is not None:
            logs_after = delta_log_files(self.lake_root)
            new_commits = sorted(logs_after["commits"] - logs_before["commits"])
            out["commits"] = len(new_commits)
            out["checkpoints"] = len(logs_after["checkpoints"] - logs_before["checkpoints"])
            operations = Counter()
            for path in new_commits:
                op = commit_operation(path)
                operations[op] += 1
                table = self.tables.of_path(path, self.lake_root)
                if table:
                    record.table(table)["commits"] += 1
                else:
                    record.unattributed["commits"] += 1
                    record.unattributed_commit_dirs[_table_dir(path, self.lake_root)] += 1
            out["commits_by_operation"] = dict(operations.most_common())
        # Delta snapshots and log loads (log4j lines)
        if self.capture_delta_log and self._writer is not None:
            kinds = Counter()
            for line in self._drain_log().splitlines():
                _logger, _sep, message = line.partition("|")
                for marker, kind in LOG_KINDS.items():
                    if marker in message:
                        kinds[kind] += 1
                        if kind == "snapshots":
                            m = SNAPSHOT_PATH.search(message)
                            table = self.tables.of_path(m.group(1), self.lake_root) if m else None
                            if table:
                                record.table(table)["snapshots"] += 1
                            else:
                                record.unattributed["snapshots"] += 1
                        break
            for kind in LOG_KINDS.values():
                out[kind] = kinds[kind]
        cache_after = self.deltalog_cache_size()
        if cache_before is not None and cache_after is not None:
            out["deltalog_instances"] = cache_after - cache_before
        out["gates"] = len(record.gates)
        out["validations"] = sum(g["validations"] for g in record.gates)
        out["ge_s"] = round(sum(g["s"] for g in record.gates), 3)
        out["gate_calls"] = record.gates
        # progress segments: jobs, stages, seconds per table and per phase
        for seg in record.segments:
            target = record.table(seg["table"]) if seg["table"] else record.phase(seg["label"])
            target["jobs"] += seg["jobs"]
            target["stages"] += seg["stages"]
            target["s"] += seg["s"]
            target["segments"] += 1
        out["progress_messages"] = len(record.segments) - 1
        out["per_table"] = {t: _rounded(v) for t, v in sorted(record.tables.items())}
        out["per_phase"] = {p: _rounded(v) for p, v in record.phases.items()}
        out["unattributed"] = dict(record.unattributed)
        if record.unattributed_commit_dirs:
            out["unattributed_commit_dirs"] = dict(record.unattributed_commit_dirs.most_common(20))
        return out

    def _job_infos(self, job_ids: Iterable[int]) -> list[dict | None]:
        """The status store's JobData of each job as a dict (Jackson, as the REST API writes it)."""
        store = self.sc._jsc.sc().statusStore()
        mapper = self._json_mapper()
        out = []
        for job_id in job_ids:
            try:
                out.append(json.loads(mapper.writeValueAsString(store.job(job_id))))
            except Exception:  # noqa: BLE001 - evicted by spark.ui.retainedJobs
                out.append(None)
        return out

    def _json_mapper(self):
        if self._mapper is None:
            jvm = self.spark._jvm
            mapper = jvm.com.fasterxml.jackson.databind.ObjectMapper()
            scala_module = getattr(getattr(jvm.com.fasterxml.jackson.module.scala, "DefaultScalaModule$"), "MODULE$")
            mapper.registerModule(scala_module)
            self._mapper = mapper
        return self._mapper


def _table_dir(path: str, root: Path | None) -> str:
    rel = os.path.relpath(path, root) if root else path
    parts = Path(rel).parts
    return "/".join(parts[:parts.index("_delta_log")]) if "_delta_log" in parts else rel


def _rounded(values: dict) -> dict:
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in values.items()}


def _zero() -> dict:
    return {"s": 0.0, "jobs": 0, "stages": 0, "segments": 0, "commits": 0, "snapshots": 0, "validations": 0}


class _Step:
    def __init__(self, name: str):
        self.name = name
        self.segments: list[dict] = []
        self.tables: dict[str, dict] = {}
        self.phases: dict[str, dict] = {}
        self.unattributed: Counter = Counter()
        self.unattributed_commit_dirs: Counter = Counter()
        self.gates: list[dict] = []
        self.result: dict | None = None
        self._open: tuple[str, str | None, int, int, float] | None = None

    def table(self, name: str) -> dict:
        return self.tables.setdefault(name, _zero())

    def phase(self, name: str) -> dict:
        return self.phases.setdefault(name, {"s": 0.0, "jobs": 0, "stages": 0, "segments": 0})

    def segment(self, label: str, table: str | None, jobs: int, stages: int) -> None:
        now = time.perf_counter()
        self.close(jobs, stages, now)
        self._open = (label, table, jobs, stages, now)

    def close(self, jobs: int, stages: int, now: float | None = None) -> None:
        if self._open is None:
            return
        label, table, jobs0, stages0, t0 = self._open
        self.segments.append({"label": label, "table": table, "jobs": jobs - jobs0, "stages": stages - stages0,
                              "s": (now or time.perf_counter()) - t0})
        self._open = None


# ------------------------------------------------------------------ summaries over steps

STEP_FIELDS = ("s", "jobs", "jobs_in_group", "stages", "stages_run", "tasks", "commits", "checkpoints", "snapshots",
               "log_loads", "post_commit_snapshots", "snapshot_updates", "deltalog_instances",
               "state_reconstruction_jobs", "gates", "validations", "ge_s")


def totals(steps: Mapping[str, dict]) -> dict:
    """Sums of the numeric step fields over steps (e.g. a whole nightly)."""
    out: dict[str, float] = {}
    for result in steps.values():
        for key in STEP_FIELDS:
            value = result.get(key)
            if isinstance(value, (int, float)):
                out[key] = out.get(key, 0) + value
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}


def compact(result: dict) -> dict:
    """A step result without its per-table detail (for tables that list many steps)."""
    return {k: v for k, v in result.items() if k not in ("per_table", "gate_calls")}


def spark_conf_lines() -> list[str]:
    """spark-defaults lines a bench adds (WASURE_SPARK_CONF) so the status store keeps every job
    of a step until it is counted (a job's record carries its stage ids and skipped stages, so the
    stages themselves need not be retained: Spark's default for stages is kept)."""
    return ["spark.ui.retainedJobs 200000"]


def with_bench_spark_conf(work: Path) -> Path:
    """Write a WASURE_SPARK_CONF file under ``work`` = the caller's own file (if any) + the bench's
    status-store sizes, and point the environment at it (before the first ``get_spark``)."""
    own = os.environ.get("WASURE_SPARK_CONF")
    lines = Path(own).read_text().splitlines() if own and Path(own).is_file() else []
    keys = {line.split(None, 1)[0] for line in lines if line.strip() and not line.lstrip().startswith("#")}
    lines += [line for line in spark_conf_lines() if line.split()[0] not in keys]
    path = work / "bench-spark.conf"
    path.write_text("\n".join(lines) + "\n")
    os.environ["WASURE_SPARK_CONF"] = str(path)
    return path
