"""Shared bench helpers: machine info, side-by-side medians, peak memory (driver + JVM), Spark
stage profiles, file-level byte accounting, JSON results.

Every bench script is a plain program (not a test). It writes ``bench/results/<name>.json`` with
the machine, the parameters, the command that produced it, medians of >= 3 runs and peak memory.
Run one Spark process at a time on a small box: ``flock /tmp/wasure-spark.lock make bench``.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


# The code a bench measures is the working tree when the script started (the repo may move on
# while it runs): commit and whether the engine's sources had uncommitted changes.
START = {"git_commit_at_start": _git("rev-parse", "--short", "HEAD"),
         "engine_sources_modified_at_start": sorted(
             line.split(maxsplit=1)[-1] for line in _git("status", "--porcelain", "--", "jobs", "anonymizers", "expectations").splitlines())}


def machine() -> dict:
    info = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "load_average_at_start": os.getloadavg()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info["git_commit"] = START["git_commit_at_start"]
    info["engine_sources_modified_at_start"] = START["engine_sources_modified_at_start"]
    try:
        import pyspark

        info["pyspark"] = pyspark.__version__
    except ImportError:
        pass
    return info


def command_line(module: str, argv: list[str] | None) -> str:
    return " ".join([".venv/bin/python -m", module, *(argv if argv is not None else sys.argv[1:])])


# ------------------------------------------------------------------ timing

def timed(fn: Callable[[], object], repeats: int = 3) -> dict:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "runs_s": times}


def summarize(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "runs_s": [round(t, 3) for t in times],
            "min_s": min(times), "max_s": max(times)}


def side_by_side(sides: dict[str, Callable[[int], object]], repeats: int = 3,
                 reset: Callable[[str, int], object] | None = None,
                 prepare: Callable[[str, int], object] | None = None) -> dict[str, dict]:
    """Run every side once per round, alternating the order each round (A B, B A, A B, ...), so
    that drift of the machine (load, page cache, JIT) hits both sides alike. ``prepare(side, round)``
    runs untimed before and ``reset(side, round)`` untimed after each timed call (e.g. give the side
    a fresh copy of the lake, then remove it). Returns side -> summary, with the value each call
    returned under ``results``."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    outputs: dict[str, list] = {name: [] for name in sides}
    names = list(sides)
    for round_ in range(repeats):
        order = names if round_ % 2 == 0 else list(reversed(names))
        for name in order:
            if prepare is not None:
                prepare(name, round_)
            start = time.perf_counter()
            out = sides[name](round_)
            times[name].append(time.perf_counter() - start)
            outputs[name].append(out)
            if reset is not None:
                reset(name, round_)
    return {name: {**summarize(times[name]), "results": outputs[name]} for name in names}


# ------------------------------------------------------------------ memory

def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            out.append(int(entry.name))
    return out


def descendants(pid: int | None = None) -> list[int]:
    pid = os.getpid() if pid is None else pid
    todo, seen = [pid], []
    while todo:
        for child in _children(todo.pop()):
            seen.append(child)
            todo.append(child)
    return seen


def _status(pid: int) -> dict[str, str]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {k: v.strip() for k, v in (line.split(":", 1) for line in lines if ":" in line)}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def cmdline(pid: int | str) -> str:
    """A process's command line, arguments space-separated ("" once it is gone)."""
    return _cmdline(int(pid))


def copy_tree(spark, source: str, target: str) -> None:
    """Untimed set-up: a lake, byte for byte, onto another file system (local disk, HDFS) through Hadoop."""
    jvm, conf = spark._jvm, spark._jsc.hadoopConfiguration()
    src, dst = jvm.org.apache.hadoop.fs.Path(source), jvm.org.apache.hadoop.fs.Path(target)
    if not jvm.org.apache.hadoop.fs.FileUtil.copy(src.getFileSystem(conf), src, dst.getFileSystem(conf), dst, False, conf):
        raise SystemExit(f"could not copy {source} to {target}")


def jvm_pids() -> list[int]:
    """The JVM(s) PySpark launched: java processes among this process's descendants."""
    return [p for p in descendants() if _status(p).get("Name") == "java" or "/java " in _cmdline(p)[:400]]


def _kib(value: str | None) -> int:
    return int(value.split()[0]) if value else 0


def peak_memory() -> dict:
    """Peak resident memory in MiB: the Python driver (ru_maxrss), the live JVM (VmHWM from
    /proc/<jvm pid>/status: the JVM is a live child, so RUSAGE_CHILDREN does not see it), the
    largest live Python worker, and driver + JVM."""
    driver = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    jvm = max((_kib(_status(p).get("VmHWM")) for p in jvm_pids()), default=0)
    jvms = set(jvm_pids())
    workers = [p for p in descendants() if p not in jvms and _status(p).get("Name", "").startswith("python")]
    worker = max((_kib(_status(p).get("VmHWM")) for p in workers), default=0)
    return {"driver_python_mib": round(driver / 1024, 1), "jvm_mib": round(jvm / 1024, 1),
            "python_worker_max_mib": round(worker / 1024, 1), "driver_plus_jvm_mib": round((driver + jvm) / 1024, 1)}


def peak_rss_mib() -> float:
    """Driver + JVM peak resident memory (MiB)."""
    return peak_memory()["driver_plus_jvm_mib"]


def current_rss_mib() -> float:
    own = _kib(_status(os.getpid()).get("VmRSS"))
    jvm = sum(_kib(_status(p).get("VmRSS")) for p in jvm_pids())
    return round((own + jvm) / 1024, 1)


# ------------------------------------------------------------------ files and bytes

def files_of(path: str | Path, include_log: bool = False) -> dict[str, int]:
    """relative path -> size of every file under a table directory (data and deletion vectors)."""
    root = Path(path)
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if not include_log and rel_dir.split(os.sep)[0] == "_delta_log":
            continue
        for n in names:
            if n.startswith(".") and n.endswith(".crc"):
                continue
            full = os.path.join(dirpath, n)
            try:
                out[os.path.join(rel_dir, n)] = os.path.getsize(full)
            except OSError:
                pass
    return out


def new_bytes(before: dict[str, int], after: dict[str, int]) -> int:
    return sum(size for name, size in after.items() if name not in before)


def dir_bytes(path: str | Path) -> int:
    return sum(files_of(path, include_log=True).values())


# ------------------------------------------------------------------ Spark UI stages (the profile)

def _ui_json(spark, route: str):
    url = spark.sparkContext.uiWebUrl
    if not url:
        return None
    app = spark.sparkContext.applicationId
    with urllib.request.urlopen(f"{url}/api/v1/applications/{app}/{route}", timeout=10) as response:
        return json.loads(response.read())


def last_stage_id(spark) -> int:
    try:
        stages = _ui_json(spark, "stages?status=complete") or []
        return max((s["stageId"] for s in stages), default=-1)
    except Exception:  # noqa: BLE001 - the profile is best effort (UI disabled)
        return -1


def stage_profile(spark, since_stage_id: int = -1, top: int = 8) -> dict:
    """The stages completed after ``since_stage_id`` (Spark UI REST API): count, total executor run
    time, and the ``top`` longest with their call sites, which is what the doc calls the profile."""
    try:
        stages = [s for s in (_ui_json(spark, "stages?status=complete") or []) if s["stageId"] > since_stage_id]
    except Exception as exc:  # noqa: BLE001
        return {"error": f"{type(exc).__name__}: {exc}"}

    def duration(s) -> float:
        try:
            from datetime import datetime

            fmt = "%Y-%m-%dT%H:%M:%S.%fGMT"
            return (datetime.strptime(s["completionTime"], fmt) - datetime.strptime(s["submissionTime"], fmt)).total_seconds()
        except (KeyError, ValueError):
            return 0.0

    rows = [{"stage": s["stageId"], "s": round(duration(s), 2), "tasks": s.get("numTasks"),
             "executor_run_s": round(s.get("executorRunTime", 0) / 1000, 2),
             "input_mib": round(s.get("inputBytes", 0) / 2**20, 1), "output_mib": round(s.get("outputBytes", 0) / 2**20, 1),
             "shuffle_write_mib": round(s.get("shuffleWriteBytes", 0) / 2**20, 1),
             "name": (s.get("name") or "")[:120]} for s in stages]
    rows.sort(key=lambda r: -r["s"])
    sites: dict[str, dict] = {}
    for r in rows:
        site = sites.setdefault(r["name"], {"name": r["name"], "stages": 0, "s": 0.0, "tasks": 0})
        site["stages"] += 1
        site["s"] = round(site["s"] + r["s"], 2)
        site["tasks"] += r["tasks"] or 0
    by_site = sorted(sites.values(), key=lambda x: -x["s"])
    return {"stages": len(rows), "tasks": sum(r["tasks"] or 0 for r in rows),
            "stage_seconds": round(sum(r["s"] for r in rows), 1),
            "executor_run_s": round(sum(r["executor_run_s"] for r in rows), 1), "top": rows[:top],
            "by_callsite": by_site[:top]}


# ------------------------------------------------------------------ set-up and output

def bench_env(work: Path) -> None:
    """Keys outside the lake, quiet Spark, warehouse inside the work dir."""
    os.environ.setdefault("WASURE_KEYS", str(work / "keys.json"))
    os.environ.setdefault("WASURE_SPARK_LOG_LEVEL", "ERROR")


def init_all_keys(policy) -> None:
    from jobs.runtime.keys import init_keys

    ids = [policy.defaults.ledger_key_id] + [p.key_id for p in policy.purposes.values()]
    init_keys(sorted(set(ids)))


def write(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"name": name, "machine": machine(), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                **payload}, indent=2, default=str))
    return path


# ------------------------------------------------------------------ the synthetic lake, generated once

LAKE_CACHE = Path(os.environ.get("WASURE_BENCH_LAKE_CACHE", REPO / "bench" / ".lakes"))


def copy_lake(source: Path, target: Path) -> Path:
    """A fresh copy of a lake directory (untimed set-up): every run starts from the same files, and
    a new path, so no Delta log state of an earlier run is reused."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    return target


def synthetic_lake(spark, policy, root: Path, subjects: int, events: int) -> tuple[dict[str, int], float]:
    """A generated lake at ``root``: (row counts per table, seconds its generation took).

    The generator is deterministic (seed, fixed as-of date), so the bench generates each
    (subjects, events) lake once, under ``bench/.lakes/`` (``WASURE_BENCH_LAKE_CACHE``), and copies
    it for every bench that needs it: the full sizes share one 10M-event lake instead of generating
    it four times. The cache key covers the policy and the generator's source, so a change to
    either regenerates. Copying is untimed, like generation."""
    import hashlib

    from jobs.generate import GenerateOptions, generate_lake
    from jobs.lake.layout import Lake

    generator = b"".join(p.read_bytes() for p in sorted((REPO / "jobs" / "generate").glob("*.py")))
    key = hashlib.sha256(generator + policy.sha256.encode()).hexdigest()[:12]
    cached = LAKE_CACHE / f"{subjects}x{events}-{key}"
    marker = cached / "generated.json"
    if not marker.exists():
        for stale in LAKE_CACHE.glob(f"{subjects}x{events}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        start = time.perf_counter()
        counts = generate_lake(spark, policy, Lake.at(cached / "lake"),
                               GenerateOptions(subjects=subjects, events_per_subject=events))
        marker.write_text(json.dumps({"counts": counts, "generate_s": time.perf_counter() - start}))
    info = json.loads(marker.read_text())
    copy_lake(cached / "lake", root)
    return info["counts"], info["generate_s"]
