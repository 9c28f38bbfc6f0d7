"""Great Expectations' Data Docs views, with their compiled Jinja templates shared in the process.

GE gives every view (one per site section, one for the index) its own Jinja ``Environment``, so
each gate compiled the same ~50 page templates again: ~0.35 s of pure Python per gate in a warm
process on the 2-core box (bench/gate_docs.py, docs/performance.md section 9), in processes that
run dozens of gates (a nightly, the test suite). Jinja's bytecode cache is the supported way to
reuse compiled templates across environments: the code is keyed by template name and a checksum
of its source, so an edited template compiles again, and each environment still renders with its
own filters and globals.
The pages are what GE's own views write (apart from the run times and element ids GE puts in
every page).

``expectations.gates`` names these classes in its site configuration (``SITE_VIEWS``).
"""
from __future__ import annotations

import threading

from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView
from jinja2 import BytecodeCache
from jinja2.bccache import Bucket


class ProcessTemplateCache(BytecodeCache):
    """Compiled template code kept in memory for the life of the process (a few hundred kB)."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def load_bytecode(self, bucket: Bucket) -> None:
        with self._lock:
            code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)       # ignored by Jinja if its checksum differs

    def dump_bytecode(self, bucket: Bucket) -> None:
        code = bucket.bytecode_to_string()
        with self._lock:
            self._code[bucket.key] = code


TEMPLATE_CODE = ProcessTemplateCache()


class _SharedTemplateCode:
    """Mixin: the GE view's own Jinja environment, with the process's compiled template code."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.env.bytecode_cache = TEMPLATE_CODE


class PageView(_SharedTemplateCode, DefaultJinjaPageView):
    """GE's page view (validation results, expectation suites)."""


class IndexPageView(_SharedTemplateCode, DefaultJinjaIndexPageView):
    """GE's index page view."""
