"""Where the test suite waits on the JVM: a pytest plugin that sums, per call site, the seconds the
Python side spends in py4j calls (Spark jobs, Delta commits, planning), like ``bench.job_sites``
does for the nightly's steps.

    flock /tmp/wasure-spark.lock .venv/bin/python -m pytest -q -p bench.suite_sites tests \\
        --ignore=tests/cluster --ignore=tests/browser

A call is named by the innermost frames of wasure's own code on its stack (``job_sites.call_site``),
or by the test line that made it; calls under 10 ms are left out. Writes
``bench/results/<WASURE_SUITE_SITES or suite_sites>.json``: the sites (seconds, calls, JVM method),
the outermost wasure function of each call, and each test file's total. Calls from table threads
overlap in time, so the sums can exceed the run's wall time. A measuring tool, not a timing: each
call pays for a walk of its Python stack.
"""
from __future__ import annotations

import os
import threading
import time
import traceback
from collections import Counter
from pathlib import Path

from bench.common import REPO, write
from bench.job_sites import OWN_CODE, call_site

TESTS = str(REPO / "tests") + os.sep
SHORTEST_S = 0.01

_seconds: Counter = Counter()
_calls: Counter = Counter()
_outer: Counter = Counter()
_files: Counter = Counter()
_inside = threading.local()
_current = {"file": None}


def _site() -> tuple[str, str]:
    """(call site, outermost wasure function) of the calling thread's stack."""
    stack = traceback.extract_stack()
    own = [f for f in stack if f.filename.startswith(OWN_CODE)]
    if own:
        return call_site(), f"{Path(own[0].filename).relative_to(REPO)}:{own[0].name}"
    test = [f for f in stack if f.filename.startswith(TESTS)]
    if test:
        return f"(test) {Path(test[-1].filename).relative_to(REPO)}:{test[-1].lineno} {test[-1].name}", "(test code)"
    return "(other)", "(other)"


def pytest_configure(config) -> None:
    import py4j.java_gateway as gateway

    original = gateway.JavaMember.__call__

    def timed(member, *args):
        if getattr(_inside, "active", False):
            return original(member, *args)
        _inside.active, start = True, time.perf_counter()
        try:
            return original(member, *args)
        finally:
            waited = time.perf_counter() - start
            if waited >= SHORTEST_S:
                site, outer = _site()
                _seconds[(member.name, site)] += waited
                _calls[(member.name, site)] += 1
                _outer[outer] += waited
                _files[_current["file"]] += waited
            _inside.active = False

    gateway.JavaMember.__call__ = timed


def pytest_runtest_protocol(item, nextitem) -> None:
    _current["file"] = item.nodeid.split("::")[0]


def pytest_unconfigure(config) -> None:
    path = write(os.environ.get("WASURE_SUITE_SITES", "suite_sites"), {
        "command": "pytest " + " ".join(str(a) for a in config.invocation_params.args),
        "seconds_in_jvm_calls": round(sum(_seconds.values()), 1),
        "sites": [{"s": round(s, 2), "calls": _calls[key], "method": key[0], "site": key[1]}
                  for key, s in _seconds.most_common()],
        "outermost": [{"s": round(s, 2), "function": name} for name, s in _outer.most_common()],
        "test_files": [{"s": round(s, 2), "file": name} for name, s in _files.most_common()],
    })
    print(f"\nsuite sites: {path}")
