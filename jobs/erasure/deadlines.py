"""Request deadlines: the one CCPA extension (`wasure erase --extend REQUEST --reason TEXT`), S14.

CCPA (Cal. Civ. Code 1798.130(a)(2); 11 CCR 7021(b)) lets a business extend the 45-day response
period once, by another 45 days, when it notifies the consumer within the first 45 days with the
reason. So an extension is refused (exit 2, nothing written) for a request that is not CCPA, one
already extended, one whose original deadline has passed, and one already closed.

The extension is one row in the request's state table (``state = "extended"``, after every other
state in order) with who, when, why and both deadlines; ``erasure.load_states`` applies it, so the
receipts, `wasure erase` summaries and the deadline alerts of the backup-lifecycle DAG all show the
new deadline, and receipts say it was extended. The reason is the operator's text: it must not
hold personal data (it names the request, never the subject).
"""
from __future__ import annotations

import datetime as dt
import getpass
import os

from pyspark.sql import SparkSession

from jobs.runtime.console import InputError
from jobs.erasure import EXTENDED, append_states, check_request_id, load_states
from jobs.lake.layout import Lake
from jobs.lake.lease import with_lease
from jobs.policy import Policy

EXTENSION_DAYS = 45
EXTENDABLE_SOURCES = ("ccpa",)
MAX_REASON = 500


def operator() -> str:
    """Who extends: ``WASURE_OPERATOR`` (set by the DAG or a wrapper), else the OS user."""
    return os.environ.get("WASURE_OPERATOR") or getpass.getuser()


def check_reason(reason: str | None) -> str:
    """The reason is stored and shown in receipts: it must not carry an identifier (the scrubber's
    detectors find none in it), and it is never echoed back in an error."""
    from anonymizers.scrub import scrub_text

    text = (reason or "").strip()
    if not text:
        raise InputError("--reason is required with --extend: the consumer is told why (CCPA 1798.130(a)(2))")
    if len(text) > MAX_REASON:
        raise InputError(f"--reason is {len(text)} characters; at most {MAX_REASON}")
    if scrub_text(text) != text:
        raise InputError("--reason looks like it holds personal data (an email, phone or other identifier): "
                         "describe the reason without it")
    return text


@with_lease("erasure deadline extension")
def extend(spark: SparkSession, policy: Policy, lake: Lake, request_id: str, reason: str,
           today: dt.date | None = None) -> dict:
    """Move a CCPA request's deadline by 45 days, once; returns what was recorded."""
    check_request_id(request_id, "--extend")
    reason = check_reason(reason)
    today = today or dt.datetime.now(dt.timezone.utc).date()
    request = load_states(spark, lake).get(request_id)
    if request is None:
        raise InputError(f"--extend {request_id}: no such erasure request")
    if request.source not in EXTENDABLE_SOURCES:
        raise InputError(f"--extend {request_id}: a {request.source} request; only CCPA requests have the one "
                         f"{EXTENSION_DAYS}-day extension")
    if EXTENDED in request.states:
        done = request.states[EXTENDED]["detail"]
        raise InputError(f"--extend {request_id}: already extended on {done.get('extended_on')} "
                         f"(deadline {done.get('new_deadline')}); CCPA allows one extension")
    if request.state == "closed":
        raise InputError(f"--extend {request_id}: the request is closed")
    # Checked against the real date too: a back-dated --as-of cannot revive a passed deadline.
    if max(today, dt.datetime.now(dt.timezone.utc).date()) > request.deadline:
        raise InputError(f"--extend {request_id}: its deadline {request.deadline} has passed; an extension must be "
                         f"notified within the first {EXTENSION_DAYS} days")
    original = request.deadline
    new = original + dt.timedelta(days=EXTENSION_DAYS)
    detail = {"original_deadline": original.isoformat(), "new_deadline": new.isoformat(),
              "extended_on": today.isoformat(), "by": operator(), "reason": reason}
    request.deadline = new
    append_states(spark, lake, EXTENDED, [request], f"ext-{today:%Y%m%d}", today, {request_id: detail})
    return {"request_id": request_id, **detail}
