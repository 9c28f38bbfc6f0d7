"""The one CCPA deadline extension: `wasure erase --extend REQUEST --reason TEXT` (S14)."""
import datetime as dt
import json

import pytest
from typer.testing import CliRunner

from jobs import erasure
from jobs.lake.layout import read_current

from conftest import EXAMPLE_POLICY

RECEIVED = dt.datetime(2026, 11, 1, 9, 0)


def _request(request_id: str, source: str) -> erasure.Request:
    return erasure.Request(request_id, source, RECEIVED, RECEIVED.date() + dt.timedelta(days=45), ["h" * 64])


def _extend(lake, request_id: str, *more: str):
    from jobs.cli import app

    return CliRunner().invoke(app, ["erase", "--extend", request_id, *more, "--policy", EXAMPLE_POLICY, "--lake", str(lake.root)])


def test_a_ccpa_request_is_extended_once_by_45_days_and_everything_shows_it(spark, lake_copy, keys_env, monkeypatch):
    from jobs.pipeline import DeadlineAlert, erasure_deadlines
    from jobs.policy import load_policy

    policy = load_policy(EXAMPLE_POLICY)
    erasure.append_states(spark, lake_copy, "received", [_request("ccpa-7", "ccpa"), _request("gdpr-7", "gdpr")],
                           "batch-1", RECEIVED.date())
    monkeypatch.setenv("WASURE_OPERATOR", "privacy-desk")
    first = _extend(lake_copy, "ccpa-7", "--reason", "identity verification pending", "--as-of", "2026-12-10")
    assert first.exit_code == 0, first.output
    assert "2027-01-30" in first.output                     # 2026-12-16 + 45 days

    request = erasure.load_states(spark, lake_copy)["ccpa-7"]
    assert request.deadline == dt.date(2027, 1, 30)
    detail = request.states["extended"]["detail"]
    assert detail == {"original_deadline": "2026-12-16", "new_deadline": "2027-01-30", "extended_on": "2026-12-10",
                      "by": "privacy-desk", "reason": "identity verification pending"}
    assert request.state == "received"                       # an event, not a step of the state machine

    receipt = erasure.build_receipts(spark, policy, lake_copy, [request], dt.date(2026, 12, 10))[0]
    assert receipt["deadline"] == "2027-01-30" and receipt["deadline_extension"]["by"] == "privacy-desk"
    assert json.loads((lake_copy.root / "receipts" / "ccpa-7.json").read_text())["deadline_extension"]["original_deadline"] == "2026-12-16"

    with pytest.raises(DeadlineAlert) as alert:
        erasure_deadlines(EXAMPLE_POLICY, str(lake_copy.root), "2027-01-20", warn_days=30)
    assert "ccpa-7 (ccpa, state received): due 2027-01-30 (deadline extended once)" in str(alert.value)

    rows_before = read_current(spark, lake_copy.state(erasure.STATE_TABLE)).count()
    again = _extend(lake_copy, "ccpa-7", "--reason", "once more", "--as-of", "2026-12-11")
    assert again.exit_code == 2 and "already extended" in again.output
    gdpr = _extend(lake_copy, "gdpr-7", "--reason", "busy", "--as-of", "2026-12-10")
    assert gdpr.exit_code == 2 and "only CCPA" in gdpr.output
    assert read_current(spark, lake_copy.state(erasure.STATE_TABLE)).count() == rows_before


def test_an_extension_after_the_original_deadline_or_without_a_reason_is_exit_2(spark, lake_copy, keys_env):
    erasure.append_states(spark, lake_copy, "received", [_request("ccpa-8", "ccpa")], "batch-1", RECEIVED.date())
    late = _extend(lake_copy, "ccpa-8", "--reason", "late", "--as-of", "2026-12-17")
    assert late.exit_code == 2 and "has passed" in late.output
    bare = _extend(lake_copy, "ccpa-8")
    assert bare.exit_code == 2 and "--reason is required" in bare.output
    unknown = _extend(lake_copy, "ccpa-404", "--reason", "x")
    assert unknown.exit_code == 2 and "no such erasure request" in unknown.output
    assert "extended" not in erasure.load_states(spark, lake_copy)["ccpa-8"].states
